-- buffer-sink.lua — adds one stat buffer flush to a hash, at most once per flush id.
--
-- KEYS[1]  the hash: field = buffer key, value = its integer total
-- KEYS[2]  the flush id's marker (same hash slot as KEYS[1])
-- ARGV[1]  marker time to live, ms (longer than the buffer keeps retrying a flush)
-- ARGV[2]  one msgpack array: key, count, key, count, …
-- Reply    1 = added now, 0 = this flush id had been added already (nothing done)
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local entries = cmsgpack.unpack(ARGV[2])
for i = 1, #entries, 2 do
  -- '%.0f' keeps every digit of a count up to 2^53 (a plain number would be sent as 1e+15).
  redis.call('HINCRBY', KEYS[1], entries[i], string.format('%.0f', entries[i + 1]))
end
return 1
