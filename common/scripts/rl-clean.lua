-- rl-clean.lua — deletes the rate-limit entities of one partition's index that no decision used for longer
-- than a given time (Redis TIME), and moves the others to their real last-use time in the index.
--
-- KEYS[1]  the index: sorted set of entity keys (see rl.lua)
-- KEYS[2…] entities to look at (the client reads the oldest of the index first: ZRANGE 0 n)
-- ARGV[1]  staleAfterMs: an entity whose last decision ("u", written at most once a second by rl.lua) is
--          older than this and a second is deleted
-- Reply    how many were deleted
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local before = now - tonumber(ARGV[1]) - 1000
local deleted = 0
for i = 2, #KEYS do
  local e = KEYS[i]
  local used = tonumber(redis.call('HGET', e, 'u'))
  if used == nil or used < before then
    redis.call('DEL', e)
    redis.call('ZREM', KEYS[1], e)
    deleted = deleted + 1
  else
    redis.call('ZADD', KEYS[1], used, e)
  end
end
return deleted
