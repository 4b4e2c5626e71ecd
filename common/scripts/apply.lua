-- apply.lua — runs one call's counter ops on one partition hash, at most once per (instance, sequence).
--
-- KEYS[1]  the partition hash: field = counter key, value = its integer value
-- KEYS[2]  the calling instance's marker for this partition: "<seq>:<msgpack results>" (same hash slot)
-- ARGV[1]  seq: > 0 for a call that writes, increasing per instance and partition; 0 = read only, no marker
-- ARGV[2]  marker time to live, ms
-- ARGV[3]  the ops, one msgpack array of 5 values per op: mode, field, cmp, x, n (one argument, so a call of
--          many ops costs the client one string, not five per op)
--            mode GET reads · INC adds n (checked) · SET writes n · DEL deletes · ADD adds a flushed lax
--                 delta · CLEAR deletes the whole partition (field ignored)
--            cmp  against x; a missing field compares as 0
-- Reply    { status, results }  status APPLIED = applied now, REPLAYED = seq had been applied (results are
--          the ones stored then), STALE = seq is older than the one stored (nothing done, no results)
--          results = msgpack array of new, old per op; new is false when an INC or ADD was refused (it
--          would leave the safe-integer range, or the field holds no integer; nothing written); a failed
--          comparison gives new = old
--
-- The numbers: the three lines below are read by test/common/scripts.test.ts and must equal Mode and Cmp
-- (common/messages.ts) and ApplyStatus (common/scripts.ts).
local GET, INC, SET, DEL, ADD, CLEAR = 0, 1, 2, 3, 4, 5
local ALWAYS, EQ, LT, GT, NE = 0, 1, 2, 3, 4
local APPLIED, REPLAYED, STALE = 1, 2, 3
local seq = tonumber(ARGV[1])
if seq > 0 then
  local stored = redis.call('GET', KEYS[2])
  if stored then
    local colon = string.find(stored, ':', 1, true)
    local last = tonumber(string.sub(stored, 1, colon - 1))
    if last == seq then return { REPLAYED, string.sub(stored, colon + 1) } end
    if last > seq then return { STALE, '' } end
  end
end
local h = KEYS[1]
local MAX = 9007199254740991
local ops = cmsgpack.unpack(ARGV[3])
local results = {}
local r = 0
-- Writes use pcall: an error half way (a field that holds no integer, or one past 2^63) must not abort the
-- script after earlier ops wrote, since the marker would then be missing for a call that partly applied.
-- Such an op is refused instead (new = false), like an INC that would leave the safe-integer range.
local function incr(field, digits)
  local v = redis.pcall('HINCRBY', h, field, digits)
  if type(v) == 'table' then return nil end
  return v
end
local function current(field)
  return tonumber(redis.call('HGET', h, field) or '0') or 0
end
for i = 1, #ops, 5 do
  local mode, field, cmp, x, n = ops[i], ops[i + 1], ops[i + 2], ops[i + 3], ops[i + 4]
  -- Integers as decimal digits: past 1e14 a number would be written as 1e+14, which Redis refuses.
  local digits = n
  if n >= 1e14 or n <= -1e14 then digits = string.format('%.0f', n) end
  local old, new
  if mode == ADD or (mode == INC and cmp == ALWAYS) then
    -- An unconditional add: one command; the old value follows from the new one.
    new = incr(field, digits)
    if new == nil then
      old, new = current(field), false
    else
      old = new - n
      if new > MAX or new < -MAX then
        -- Past 2^53 `new - n` is inexact: undo, then read the value back.
        redis.pcall('HINCRBY', h, field, string.format('%.0f', -n))
        old, new = current(field), false
      end
    end
  elseif mode == CLEAR then
    redis.call('DEL', h)
    old, new = 0, 0
  else
    old = current(field)
    new = old
    local pass = cmp == ALWAYS or (cmp == EQ and old == x) or (cmp == LT and old < x) or (cmp == GT and old > x)
      or (cmp == NE and old ~= x)
    if mode ~= GET and pass then
      if mode == INC then
        if old + n > MAX or old + n < -MAX then
          new = false
        else
          new = incr(field, digits) or false
        end
      elseif mode == SET then
        redis.call('HSET', h, field, digits)
        new = n
      elseif mode == DEL then
        redis.call('HDEL', h, field)
        new = 0
      end
    end
  end
  results[r + 1] = new
  results[r + 2] = old
  r = r + 2
end
local packed = cmsgpack.pack(results)
if seq > 0 then
  redis.call('SET', KEYS[2], ARGV[1] .. ':' .. packed, 'PX', ARGV[2])
end
return { APPLIED, packed }
