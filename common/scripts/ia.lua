-- ia.lua — one call's instance-aware counter ops on one partition, at most once per (engine, sequence).
--
-- Every instance owns a slice of a key; the cumulative is the sum of the slices of live instances. A key's
-- slices live together in one field of the partition hash, so an op costs O(instances holding the key)
-- and never touches another key: nothing here is O(dead instances × keys).
--
-- KEYS[1]  the partition hash: field = counter key, value = msgpack { inc1, v1, inc2, v2, … } — the slices
--          of that key, each under an incarnation "<instanceId>#<generation>"
-- KEYS[2]  the calling engine's marker for this partition, as in apply.lua: "<seq>:<msgpack results>"
-- KEYS[3]  the registry: sorted set of incarnations by last-seen time (Redis TIME, ms)
-- KEYS[4]  the generations: hash instanceId → current generation (missing: 0)
-- KEYS[5]  the sweep state: hash { cur = HSCAN cursor, need = passes still owed } (see ia-beat.lua)
-- ARGV[1]  seq: > 0 for a call that writes, increasing per engine and partition; 0 = read only, no marker
-- ARGV[2]  marker time to live, ms
-- ARGV[3]  the calling instance's id
-- ARGV[4]  dead-instance threshold, ms: an incarnation not seen for longer is not counted (its slices
--          are kept until the registry forgets it, so an instance that returns counts again)
-- ARGV[5]  the ops, one msgpack array of 5 values per op: mode, field, cmp, x, n
--            GET reads · INC adds n to my slice (cmp against the cumulative) · SET makes n the whole value,
--            as my slice, dropping every other slice (a new epoch of the key; cmp against the cumulative)
--            · DEL deletes the key (a new epoch) · ADD adds a flushed lax delta to my slice · CLEAR
--            deletes the whole partition · SET_MINE sets my slice (cmp against my slice) · DEL_MINE
--            removes my slice · CLEAR_MINE starts a new generation of me: every slice I held is gone
-- Reply    { status, results }  status as apply.lua's; results = msgpack array of 4 values per op:
--          cumulative after, my slice after, cumulative before, my slice before; "after" = false when an
--          INC, ADD, SET_MINE or DEL_MINE was refused (its cumulative or my slice would be outside the
--          safe-integer range; nothing written); a failed comparison gives after = before. A cumulative
--          can be outside that range without a write (an instance returned and its slices count again):
--          a GET reports it as it is, and only SET, DEL or CLEAR write such a key (the client reports it)
--
-- The numbers: the three lines below are read by test/common/scripts.test.ts and must equal IaMode, Cmp
-- and ApplyStatus.
local GET, INC, SET, DEL, ADD, CLEAR, SET_MINE, DEL_MINE, CLEAR_MINE = 0, 1, 2, 3, 4, 5, 6, 7, 8
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
local data, reg, gens = KEYS[1], KEYS[3], KEYS[4]
local MAX = 9007199254740991
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = now - tonumber(ARGV[4])
local id = ARGV[3]
local me = id .. '#' .. (redis.call('HGET', gens, id) or '0')
-- Every call is a heartbeat: an instance that returns after being counted dead counts again, every key.
redis.call('ZADD', reg, now, me)

-- Last-seen time per incarnation (false: not registered), read once per call.
local seen = { [me] = now }
local function lastSeen(inc)
  local s = seen[inc]
  if s == nil then
    s = redis.call('ZSCORE', reg, inc)
    if s then s = tonumber(s) end
    seen[inc] = s
  end
  return s
end

-- A key's slices, its cumulative (live slices only) and my slice.
local function load(field)
  local raw = redis.call('HGET', data, field)
  local slices = raw and cmsgpack.unpack(raw) or {}
  local cum, mine = 0, 0
  for i = 1, #slices, 2 do
    local inc, v = slices[i], slices[i + 1]
    if inc == me then mine = v end
    local s = lastSeen(inc)
    if s and s >= cutoff then cum = cum + v end
  end
  return slices, cum, mine
end

-- Writes a key's slices with my slice set to `value` (0 removes it); slices of incarnations the registry
-- no longer holds are dropped on the way, and so are zeros. No slice left: the field goes.
local function store(field, slices, value)
  local out = {}
  local placed = false
  for i = 1, #slices, 2 do
    local inc, v = slices[i], slices[i + 1]
    if inc == me then
      v = value
      placed = true
    end
    if v ~= 0 and lastSeen(inc) then
      out[#out + 1] = inc
      out[#out + 1] = v
    end
  end
  if not placed and value ~= 0 then
    out[#out + 1] = me
    out[#out + 1] = value
  end
  if #out == 0 then
    redis.call('HDEL', data, field)
  else
    redis.call('HSET', data, field, cmsgpack.pack(out))
  end
end

local function passes(cmp, v, x)
  return cmp == ALWAYS or (cmp == EQ and v == x) or (cmp == LT and v < x) or (cmp == GT and v > x) or (cmp == NE and v ~= x)
end

local ops = cmsgpack.unpack(ARGV[5])
local results = {}
local r = 0
for i = 1, #ops, 5 do
  local mode, field, cmp, x, n = ops[i], ops[i + 1], ops[i + 2], ops[i + 3], ops[i + 4]
  local cum0, mine0, cum1, mine1 = 0, 0, 0, 0
  if mode == CLEAR then
    redis.call('DEL', data)
  elseif mode == CLEAR_MINE then
    redis.call('ZREM', reg, me)
    -- The old generation is forgotten from here on, also by the ops after this one in the same call.
    seen[me] = false
    me = id .. '#' .. redis.call('HINCRBY', gens, id, 1)
    redis.call('ZADD', reg, now, me)
    seen[me] = now
    -- The old generation's slices are garbage now: the sweep owes a full pass.
    redis.call('HSET', KEYS[5], 'need', 2)
  else
    local slices
    slices, cum0, mine0 = load(field)
    cum1, mine1 = cum0, mine0
    if mode == INC or mode == ADD then
      if passes(mode == ADD and ALWAYS or cmp, cum0, x) then
        if cum0 + n > MAX or cum0 + n < -MAX or mine0 + n > MAX or mine0 + n < -MAX then
          cum1, mine1 = false, false
        else
          cum1, mine1 = cum0 + n, mine0 + n
          store(field, slices, mine1)
        end
      end
    elseif mode == SET then
      if passes(cmp, cum0, x) then
        cum1, mine1 = n, n
        store(field, {}, n)
      end
    elseif mode == DEL then
      cum1, mine1 = 0, 0
      redis.call('HDEL', data, field)
    elseif mode == SET_MINE then
      if passes(cmp, mine0, x) then
        if cum0 - mine0 + n > MAX or cum0 - mine0 + n < -MAX then
          cum1, mine1 = false, false
        else
          cum1, mine1 = cum0 - mine0 + n, n
          store(field, slices, n)
        end
      end
    elseif mode == DEL_MINE then
      if cum0 - mine0 > MAX or cum0 - mine0 < -MAX then
        cum1, mine1 = false, false
      else
        cum1, mine1 = cum0 - mine0, 0
        store(field, slices, 0)
      end
    end
  end
  results[r + 1] = cum1
  results[r + 2] = mine1
  results[r + 3] = cum0
  results[r + 4] = mine0
  r = r + 4
end
local packed = cmsgpack.pack(results)
if seq > 0 then
  redis.call('SET', KEYS[2], ARGV[1] .. ':' .. packed, 'PX', ARGV[2])
end
return { APPLIED, packed }
