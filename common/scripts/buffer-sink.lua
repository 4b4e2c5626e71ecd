-- buffer-sink.lua — adds one stat buffer flush to a hash, at most once per flush id, all or nothing.
--
-- KEYS[1]  the hash: field = buffer key, value = its integer total
-- KEYS[2]  the flush id's marker (same hash slot as KEYS[1])
-- ARGV[1]  marker time to live, ms (longer than the buffer keeps retrying a flush)
-- ARGV[2]  one msgpack array: key, count, key, count, …
-- Reply    1 = added now, 0 = this flush id had been added already (nothing done); an error reply (nothing
--          written, no marker) when a field holds no integer or would leave the 64-bit range
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local entries = cmsgpack.unpack(ARGV[2])
-- Check every field before writing anything: Redis does not undo a script's earlier writes when a later
-- command fails, and a marker over a half-applied flush would make its retry add nothing.
for i = 1, #entries, 2 do
  local v = redis.call('HGET', KEYS[1], entries[i])
  if v then
    if not string.match(v, '^-?%d+$') then
      return redis.error_reply('TW_SINK_REFUSED field ' .. entries[i] .. ' of ' .. KEYS[1] .. ' holds no integer')
    end
    local sum = tonumber(v) + entries[i + 1]
    if sum >= 9.2e18 or sum <= -9.2e18 then
      return redis.error_reply('TW_SINK_REFUSED field ' .. entries[i] .. ' of ' .. KEYS[1] .. ' would leave the 64-bit range')
    end
  end
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
for i = 1, #entries, 2 do
  -- '%.0f' keeps every digit of a count up to 2^53 (a plain number could be sent as 1e+15).
  redis.call('HINCRBY', KEYS[1], entries[i], string.format('%.0f', entries[i + 1]))
end
return 1
