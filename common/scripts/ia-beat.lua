-- ia-beat.lua — an instance's heartbeat on one instance-aware partition (or its leaving), the registry's
-- upkeep, one bounded step of the sweep, and the live instances. Keys as in ia.lua.
--
-- KEYS[1]  the partition hash (fields: keys; values: their slices, see ia.lua)
-- KEYS[2]  the registry: sorted set of incarnations "<instanceId>#<generation>" by last-seen time (ms)
-- KEYS[3]  the generations: hash instanceId → current generation
-- KEYS[4]  the sweep state: hash { cur = HSCAN cursor, need = full passes still owed }
-- ARGV[1]  the calling instance's id
-- ARGV[2]  dead-instance threshold, ms (who counts as live in the reply)
-- ARGV[3]  retention, ms: an incarnation not seen for longer is forgotten (its slices become garbage and
--          never count again; its instance starts a new generation)
-- ARGV[4]  BEAT = heartbeat, LEAVE = the instance closes: its slices are gone at once
-- Reply    the live incarnations (seen within the threshold), after this call
--
-- Incremental reaping. Slices of a dead incarnation stop counting the moment it is past the threshold
-- (ia.lua sums live slices only), so nothing has to be subtracted. Forgetting one (LEAVE, retention,
-- ia.lua's CLEAR_MINE) only owes the sweep a pass: each call rewrites at most one HSCAN step of fields
-- (COUNT 64), dropping slices the registry no longer holds. The cost of a call is bounded, whatever the
-- number of dead instances or keys.
--
-- The numbers: the line below is read by test/common/scripts.test.ts and must equal BeatMode.
local BEAT, LEAVE = 1, 2
local data, reg, gens, sweep = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local me = id .. '#' .. (redis.call('HGET', gens, id) or '0')
local owed = false
if tonumber(ARGV[4]) == LEAVE then
  redis.call('ZREM', reg, me)
  redis.call('HINCRBY', gens, id, 1)
  owed = true
else
  redis.call('ZADD', reg, now, me)
end

-- Forget incarnations past the retention (a bounded number per call).
local expired = redis.call('ZRANGEBYSCORE', reg, '-inf', '(' .. (now - tonumber(ARGV[3])), 'LIMIT', 0, 16)
for _, inc in ipairs(expired) do
  redis.call('ZREM', reg, inc)
  local hash = string.find(inc, '#', 1, true)
  local who, gen = string.sub(inc, 1, hash - 1), string.sub(inc, hash + 1)
  -- Its instance, if it ever returns, starts afresh (none of the forgotten slices may count again).
  if (redis.call('HGET', gens, who) or '0') == gen then redis.call('HINCRBY', gens, who, 1) end
  owed = true
end
if owed then redis.call('HSET', sweep, 'need', 2) end

-- One sweep step: rewrite the fields of one HSCAN step, dropping slices of forgotten incarnations.
local need = tonumber(redis.call('HGET', sweep, 'need') or '0')
if need > 0 then
  local step = redis.call('HSCAN', data, redis.call('HGET', sweep, 'cur') or '0', 'COUNT', 64)
  local seen = {}
  local fields = step[2]
  for i = 1, #fields, 2 do
    local slices = cmsgpack.unpack(fields[i + 1])
    local out = {}
    for j = 1, #slices, 2 do
      local inc = slices[j]
      local s = seen[inc]
      if s == nil then
        s = redis.call('ZSCORE', reg, inc) ~= false
        seen[inc] = s
      end
      if s then
        out[#out + 1] = inc
        out[#out + 1] = slices[j + 1]
      end
    end
    if #out == 0 then
      redis.call('HDEL', data, fields[i])
    elseif #out < #slices then
      redis.call('HSET', data, fields[i], cmsgpack.pack(out))
    end
  end
  -- A pass ends when the cursor is back at 0; two are owed after a change, so one starts after it.
  if step[1] == '0' then
    need = need - 1
    if need == 0 then
      -- No slice of a forgotten incarnation is left: an instance with no incarnation in the registry needs
      -- no generation any more (it would start afresh either way). Without this the hash kept a field for
      -- every instance id ever seen (a new random id per process start, by default).
      local all = redis.call('HGETALL', gens)
      for i = 1, #all, 2 do
        if not redis.call('ZSCORE', reg, all[i] .. '#' .. all[i + 1]) then redis.call('HDEL', gens, all[i]) end
      end
    end
  end
  redis.call('HSET', sweep, 'cur', step[1], 'need', need)
end

-- Nothing lives forever: a partition no instance beats for twice the retention is gone (every slice in it
-- was forgotten by then anyway).
local ttl = 2 * tonumber(ARGV[3])
redis.call('PEXPIRE', data, ttl)
redis.call('PEXPIRE', reg, ttl)
redis.call('PEXPIRE', gens, ttl)
redis.call('PEXPIRE', sweep, ttl)

-- Live as in ia.lua: seen at or after now − threshold.
return redis.call('ZRANGEBYSCORE', reg, now - tonumber(ARGV[2]), '+inf')
