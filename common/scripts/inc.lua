-- inc.lua — apply.lua's common case, leaner: a call whose every op is an unconditional increment, run on
-- one partition hash at most once per (instance, sequence). No modes, no comparisons, half the packing.
--
-- KEYS[1]  the partition hash: field = counter key, value = its integer value
-- KEYS[2]  the calling instance's marker for this partition: "<seq>:<msgpack results>" (same hash slot, and
--          the same marker apply.lua writes: one sequence per instance and partition, whichever script ran)
-- ARGV[1]  seq: > 0, increasing per instance and partition
-- ARGV[2]  marker time to live, ms
-- ARGV[3]  the ops, one msgpack array of 2 values per op: field, n
-- Reply    { status, results }  status as apply.lua's; results = msgpack array of one value per op: the
--          new value, or, for an increment refused (it would leave the safe-integer range, or the field
--          holds no integer; nothing written), a one-element array holding the value as it is (the old
--          value; the caller takes old = new − n for the others)
--
-- The numbers: the line below is read by test/common/scripts.test.ts and must equal ApplyStatus
-- (common/scripts.ts).
local APPLIED, REPLAYED, STALE = 1, 2, 3
local seq = tonumber(ARGV[1])
local stored = redis.call('GET', KEYS[2])
if stored then
  local colon = string.find(stored, ':', 1, true)
  local last = tonumber(string.sub(stored, 1, colon - 1))
  if last == seq then return { REPLAYED, string.sub(stored, colon + 1) } end
  if last > seq then return { STALE, '' } end
end
local h = KEYS[1]
local MAX = 9007199254740991
local ops = cmsgpack.unpack(ARGV[3])
local results = {}
-- pcall: an error half way must not abort the script after earlier ops wrote (see apply.lua).
for i = 1, #ops, 2 do
  local field, n = ops[i], ops[i + 1]
  -- Integers as decimal digits: past 1e14 a number would be written as 1e+14, which Redis refuses.
  local digits = n
  if n >= 1e14 or n <= -1e14 then digits = string.format('%.0f', n) end
  local new = redis.pcall('HINCRBY', h, field, digits)
  if type(new) == 'table' then
    new = { tonumber(redis.call('HGET', h, field) or '0') or 0 }
  elseif new > MAX or new < -MAX then
    -- Past 2^53 the caller's `new - n` would be inexact: undo, then read the value back.
    redis.pcall('HINCRBY', h, field, string.format('%.0f', -n))
    new = { tonumber(redis.call('HGET', h, field) or '0') or 0 }
  end
  results[(i + 1) / 2] = new
end
local packed = cmsgpack.pack(results)
redis.call('SET', KEYS[2], ARGV[1] .. ':' .. packed, 'PX', ARGV[2])
return { APPLIED, packed }
