-- rl.lua — one call's sliding-window rate-limit decisions on one partition, in op order, on Redis TIME.
--
-- An entity (a limiter's key) is one hash; its windows are sections of it, each G groups of groupMs
-- aligned to multiples of groupMs since the epoch (as common/records/sliding.ts in shared memory): group g
-- covers [g·groupMs, (g+1)·groupMs) and leaves the window when group g + G begins. Fields, window k:
--   h<k> the newest group · t<k> the window's total · l<k> the oldest group holding a count (−1: none)
--   d<k> the window's declined calls (suppressed)
--   <k>:<g> the count of group g · <k>d<g> its declined calls · sf, su the cached suppression factor and
--   until when (ms) · u the last decision (ms), read by rl-clean.lua
-- A decision reads what it needs in one HMGET and writes in one HSET; a slide reads and deletes the
-- groups that left (as many as groups passed, at most G); a refusal reads groups from the tail until
-- enough would free. Every key has a TTL (a window and a group past
-- the newest group), so nothing lives forever if the cleanup never runs.
--
-- KEYS[1]  the partition's index: sorted set of entity keys by the time they last opened a group
-- KEYS[2…] the entity hash of each op (in the partition's slot); COMMIT: KEYS[2] is the calling engine's
--          commit marker for the partition (its last commit sequence applied) and the entities follow
-- ARGV[1]  msgpack { strategy, k, windowMs1, groupMs1, …, windowMsk, groupMsk }  (suppressed, commit: k = 1)
-- ARGV[2]  msgpack ops, flat, per op: ABSOLUTE n, limit1, …, limitk · SUPPRESSED n, soft, hard, cacheMs, draw
--          · COMMIT n, limit, keys, declined (the hybrid provider: n calls were decided locally and are
--          counted unchecked, `declined` of them declined; keys 0: the absolute limiter's, 1: the suppressed
--          limiter's, whose declined counts slide too)
-- ARGV[3]  COMMIT: the call's sequence (increasing per engine and partition); ARGV[4] the marker's TTL, ms.
--          A sequence the marker holds already (a call re-sent after its reply was lost) counts nothing:
--          the ops only read, so a commit lands exactly once.
-- Reply    msgpack results, 4 values per op:
--            ABSOLUTE   { 1, total of window 1 after, 0, 0 } admitted · { 0, window, retryAfterMs,
--                       remainingAfterWaiting } refused
--                       (retryAfterMs −1: never, the increment is larger than the limit)
--            SUPPRESSED { outcome, suppressionFactor, total after, declined after }, outcome BELOW_SOFT,
--                       ADMITTED or DECLINED
--            COMMIT     { total after, retryAfterMs, remainingAfterWaiting, 0 } for one more under limit
--                       (retryAfterMs 0: it fits now) · keys 1: { total after, declined after, events of
--                       the last second, 0 }
--
-- The numbers: the lines below are read by test/common/scripts.test.ts and must equal RateStrategy and
-- RateOutcome (common/scripts.ts).
local ABSOLUTE, SUPPRESSED, COMMIT = 1, 2, 3
local BELOW_SOFT, ADMITTED, DECLINED = 0, 1, 2
local MAX = 9007199254740991
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local config = cmsgpack.unpack(ARGV[1])
local strategy, K = config[1], config[2]
local W, GM, G, g = {}, {}, {}, {}
local ttl = 0
for k = 1, K do
  W[k], GM[k] = config[1 + 2 * k], config[2 + 2 * k]
  G[k] = W[k] / GM[k]
  g[k] = math.floor(now / GM[k])
  ttl = math.max(ttl, W[k] + GM[k])
end
local index = KEYS[1]
-- Field names every op of the call uses, made once: per window newest group, total, tail, current group.
local HF, TF, LF, CUR = {}, {}, {}, {}
for k = 1, K do
  HF[k], TF[k], LF[k], CUR[k] = 'h' .. (k - 1), 't' .. (k - 1), 'l' .. (k - 1), (k - 1) .. ':' .. g[k]
end

-- Group field names (group indexes stay below 1e14: tostring writes them as integers).
local function count(k, u) return (k - 1) .. ':' .. u end
local function declinedOf(k, u) return (k - 1) .. 'd' .. u end

-- HMGET and HDEL of many fields, in chunks (unpack takes a few thousand values at most).
local CHUNK = 1000
local function hmget(e, names)
  local out = {}
  for c = 1, #names, CHUNK do
    local got = redis.call('HMGET', e, unpack(names, c, math.min(c + CHUNK - 1, #names)))
    for j = 1, #got do out[c + j - 1] = got[j] end
  end
  return out
end
local function hdel(e, names)
  for c = 1, #names, CHUNK do redis.call('HDEL', e, unpack(names, c, math.min(c + CHUNK - 1, #names))) end
end

-- A stored tail: −1 (or nothing) is none.
local function tailOf(v)
  local x = tonumber(v)
  if x == nil or x < 0 then return nil end
  return x
end

-- The first group from `from` to `to` (window k) holding a count, or nil: read STEP fields at a time.
local STEP = 16
local function firstHolding(e, k, from, to)
  for c = from, to, STEP do
    local names = {}
    for u = c, math.min(c + STEP - 1, to) do names[#names + 1] = count(k, u) end
    local got = redis.call('HMGET', e, unpack(names))
    for j = 1, #got do
      if got[j] then return c + j - 1 end
    end
  end
  return nil
end

-- Moves window k of entity `e` (state: h newest group, t total, l oldest group holding a count, d
-- declined) to group g[k]: the groups that left go out of the totals. Only groups from the tail on hold
-- counts, so a slide reads as many groups as left, and a new tail is looked for only when the old one left.
local function slide(e, st, k, suppressed)
  local h = st.h
  if h == nil or g[k] <= h then return end
  st.h = g[k]
  local cut = g[k] - G[k] -- groups up to here left
  if st.l == nil or st.l > cut then return end
  local from, to = math.max(st.l, h - G[k] + 1), math.min(h, cut)
  if from <= to then
    local names = {}
    for u = from, to do names[#names + 1] = count(k, u) end
    if suppressed then for u = from, to do names[#names + 1] = declinedOf(k, u) end end
    local got = hmget(e, names)
    local n = to - from + 1
    for j = 1, n do st.t = st.t - (tonumber(got[j]) or 0) end
    if suppressed then for j = n + 1, 2 * n do st.d = st.d - (tonumber(got[j]) or 0) end end
    hdel(e, names)
  end
  if cut >= h then
    st.l = nil
  else
    st.l = firstHolding(e, k, cut + 1, h)
  end
end

-- Window k refuses n under `limit` (after a slide): when will it fit, and how much room is there then?
-- The oldest groups free first (from the tail), each when it leaves the window.
local function whenRoom(e, st, k, limit, n)
  if n > limit or st.l == nil then return -1, limit end
  local freed = 0
  -- The tail alone mostly frees enough: read 1 group, then 4, then 16 at a time.
  local c, step = st.l, 1
  while c <= st.h do
    local names = {}
    for u = c, math.min(c + step - 1, st.h) do names[#names + 1] = count(k, u) end
    local got = redis.call('HMGET', e, unpack(names))
    for j = 1, #got do
      freed = freed + (tonumber(got[j]) or 0)
      if st.t - freed + n <= limit then
        return math.max(0, (c + j - 1 + G[k]) * GM[k] - now), limit - (st.t - freed)
      end
    end
    c = c + step
    step = math.min(step * 4, STEP)
  end
  return -1, limit
end

-- A new group was opened: the key and the index live another window and group; the index learns the time.
local function opened(e)
  redis.call('PEXPIRE', e, ttl)
  redis.call('ZADD', index, now, e)
  redis.call('PEXPIRE', index, ttl)
end

-- `u` (last decision, for rl-clean.lua) is written when it is a second old or more: a refusal that slid
-- nothing writes nothing.
local USED_EVERY = 1000

-- The absolute decision of the op at ops[at + 1 …]: n, then each window's limit.
local function absolute(e, ops, at)
  local n = ops[at + 1]
  -- One read: the last use, and per window its newest group, total, tail and the count of the current group.
  local names = { 'u' }
  for k = 1, K do
    names[#names + 1] = HF[k]
    names[#names + 1] = TF[k]
    names[#names + 1] = LF[k]
    names[#names + 1] = CUR[k]
  end
  local got = redis.call('HMGET', e, unpack(names))
  local states = {}
  local refused, retry, remaining = 0, -2, 0
  local changed, new = false, false
  for k = 1, K do
    local h0 = tonumber(got[4 * k - 2])
    local st = { h = h0, t = tonumber(got[4 * k - 1]) or 0, l = tailOf(got[4 * k]), cell = tonumber(got[4 * k + 1]) or 0, d = 0 }
    states[k] = st
    slide(e, st, k, false)
    -- A group opened (or the window was empty): the key's TTL is renewed below.
    if h0 == nil or g[k] > h0 then new = true end
    if st.h ~= h0 then changed = true end
    local limit = ops[at + 1 + k]
    if st.t + n > limit or st.t + n > MAX then
      local r, left = whenRoom(e, st, k, limit, n)
      -- The window that frees last names the wait (never: −1, the longest of all).
      if refused == 0 or (retry ~= -1 and (r == -1 or r > retry)) then refused, retry, remaining = k, r, left end
    end
  end
  local out = {}
  local admitted = refused == 0
  if admitted then
    for k = 1, K do
      local st = states[k]
      if st.h == nil then st.h = g[k] end
      -- The current group, or the newest if the clock went back (its count was not read yet then).
      local pos = math.max(g[k], st.h)
      local name = pos == g[k] and CUR[k] or count(k, pos)
      local cell = pos == g[k] and st.cell or (tonumber(redis.call('HGET', e, name)) or 0)
      if st.l == nil then
        st.l = pos
        changed = true
      end
      st.t = st.t + n
      out[#out + 1] = name
      out[#out + 1] = cell + n
      out[#out + 1] = TF[k]
      out[#out + 1] = st.t
    end
  end
  -- The newest group and the tail only when they moved (a slide, a first count); the total when it did.
  if changed then
    for k = 1, K do
      local st = states[k]
      if st.h ~= nil then
        out[#out + 1] = HF[k]
        out[#out + 1] = st.h
        out[#out + 1] = LF[k]
        out[#out + 1] = st.l or -1
        if not admitted then
          out[#out + 1] = TF[k]
          out[#out + 1] = st.t
        end
      end
    end
  end
  local used = tonumber(got[1])
  if used == nil or now - used >= USED_EVERY then
    out[#out + 1] = 'u'
    out[#out + 1] = now
  end
  if #out > 0 then redis.call('HSET', e, unpack(out)) end
  if new then opened(e) end
  if admitted then return 1, states[1].t, 0, 0 end
  return 0, refused - 1, retry, remaining
end

-- Events of the groups of window 1 that began less than a second before now.
local function lastSecond(e, st)
  if st.h == nil then return 0 end
  local names = {}
  for u = st.h, st.h - G[1] + 1, -1 do
    if now - u * GM[1] >= 1000 then break end
    names[#names + 1] = count(1, u)
  end
  if #names == 0 then return 0 end
  local sum = 0
  for _, v in ipairs(redis.call('HMGET', e, unpack(names))) do sum = sum + (tonumber(v) or 0) end
  return sum
end

-- The hybrid provider's commit of the op at ops[at + 1 …]: n calls decided locally (nd of them declined),
-- counted without a check (they were decided), then the total and when one more would fit under `limit`
-- (keys 1: the totals the suppressed strategy decides on).
local replay = false
local function commit(e, ops, at)
  local n, limit, keys, nd = ops[at + 1], ops[at + 2], ops[at + 3], ops[at + 4]
  if replay then n, nd = 0, 0 end
  local declined = keys ~= 0
  local got = redis.call('HMGET', e, HF[1], TF[1], LF[1], CUR[1], 'd0', declinedOf(1, g[1]))
  local h0 = tonumber(got[1])
  local st = { h = h0, t = tonumber(got[2]) or 0, l = tailOf(got[3]), d = tonumber(got[5]) or 0 }
  slide(e, st, 1, declined)
  local out = { 'u', now }
  if n > 0 and st.t + n <= MAX then
    if st.h == nil then st.h = g[1] end
    local pos = math.max(g[1], st.h)
    local name = pos == g[1] and CUR[1] or count(1, pos)
    local cell = pos == g[1] and (tonumber(got[4]) or 0) or (tonumber(redis.call('HGET', e, name)) or 0)
    if st.l == nil then st.l = pos end
    st.t = st.t + n
    out[#out + 1] = name
    out[#out + 1] = cell + n
    if declined and nd > 0 then
      local dname = declinedOf(1, pos)
      local dcell = pos == g[1] and (tonumber(got[6]) or 0) or (tonumber(redis.call('HGET', e, dname)) or 0)
      st.d = st.d + nd
      out[#out + 1] = dname
      out[#out + 1] = dcell + nd
    end
  end
  if st.h ~= nil then
    out[#out + 1] = HF[1]
    out[#out + 1] = st.h
    out[#out + 1] = TF[1]
    out[#out + 1] = st.t
    out[#out + 1] = LF[1]
    out[#out + 1] = st.l or -1
    if declined then
      out[#out + 1] = 'd0'
      out[#out + 1] = st.d
    end
  end
  redis.call('HSET', e, unpack(out))
  if h0 == nil or g[1] > h0 then opened(e) end
  if declined then return st.t, st.d, lastSecond(e, st), 0 end
  if st.t + 1 <= limit then return st.t, 0, limit - st.t, 0 end
  local retry, room = whenRoom(e, st, 1, limit, 1)
  return st.t, retry, room, 0
end

-- The suppressed decision of the op at ops[at + 1 …]: n, soft, hard, cacheMs, draw.
local function suppressed(e, ops, at)
  local n, soft, hard, cacheMs, draw = ops[at + 1], ops[at + 2], ops[at + 3], ops[at + 4], ops[at + 5]
  local got = redis.call('HMGET', e, 'h0', 't0', 'd0', 'sf', 'su', 'l0')
  local st = { h = tonumber(got[1]), t = tonumber(got[2]) or 0, d = tonumber(got[3]) or 0, l = tailOf(got[6]) }
  slide(e, st, 1, true)
  local outcome, sf = BELOW_SOFT, 0
  local out = { 'u', now }
  if st.t + n > MAX then
    -- Counting it would make the totals inexact: declined, and not counted.
    outcome, sf = DECLINED, 1
    n = 0
  elseif st.t + n > hard then
    outcome, sf = DECLINED, 1
  elseif st.t - st.d + n > soft then
    if now < (tonumber(got[5]) or -1) then
      sf = tonumber(got[4])
    else
      local perceived = math.max((st.t + n) / (W[1] / 1000), lastSecond(e, st) + n)
      sf = math.min(1, math.max(0, 1 - soft / (W[1] / 1000) / perceived))
      out[#out + 1] = 'sf'
      out[#out + 1] = sf
      out[#out + 1] = 'su'
      out[#out + 1] = now + cacheMs
    end
    outcome = draw >= sf and ADMITTED or DECLINED
  end
  local new = got[1] == false or g[1] > tonumber(got[1])
  if n > 0 then
    if st.h == nil then st.h = g[1] end
    local pos = math.max(g[1], st.h)
    if st.l == nil then st.l = pos end
    local cells = { count(1, pos), declinedOf(1, pos) }
    local before = redis.call('HMGET', e, unpack(cells))
    st.t = st.t + n
    out[#out + 1] = cells[1]
    out[#out + 1] = (tonumber(before[1]) or 0) + n
    if outcome == DECLINED then
      st.d = st.d + n
      out[#out + 1] = cells[2]
      out[#out + 1] = (tonumber(before[2]) or 0) + n
    end
  end
  if st.h ~= nil then
    out[#out + 1] = 'h0'
    out[#out + 1] = st.h
    out[#out + 1] = 't0'
    out[#out + 1] = st.t
    out[#out + 1] = 'd0'
    out[#out + 1] = st.d
    out[#out + 1] = 'l0'
    out[#out + 1] = st.l or -1
  end
  redis.call('HSET', e, unpack(out))
  if new then opened(e) end
  return outcome, sf, st.t, st.d
end

local ops = cmsgpack.unpack(ARGV[2])
local stride = strategy == ABSOLUTE and 1 + K or strategy == SUPPRESSED and 5 or 4
local first, seq, marker = 2, 0, nil
if strategy == COMMIT then
  first, seq, marker = 3, tonumber(ARGV[3]), KEYS[2]
  replay = (tonumber(redis.call('GET', marker)) or 0) >= seq
end
local results = {}
for i = first, #KEYS do
  local a, b, c, d
  local at = (i - first) * stride
  if strategy == ABSOLUTE then
    a, b, c, d = absolute(KEYS[i], ops, at)
  elseif strategy == SUPPRESSED then
    a, b, c, d = suppressed(KEYS[i], ops, at)
  else
    a, b, c, d = commit(KEYS[i], ops, at)
  end
  results[#results + 1] = a
  results[#results + 1] = b
  results[#results + 1] = c
  results[#results + 1] = d
end
if marker and not replay then redis.call('SET', marker, seq, 'PX', ARGV[4]) end
return cmsgpack.pack(results)
