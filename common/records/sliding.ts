/**
 * The sliding-window decision record kind (trypema's window accounting, in shared memory): one record per
 * key holds one section per window; a section is G groups of `groupMs` (G = windowMs / groupMs) with a
 * running total, so a decision is a slide (groups that left the window go out of the total) and one
 * compare. Deciders on any thread write it under its owner lock (./owner-lock.ts); the shard never does.
 * See common/layout.ts (KIND_SLIDE) for the fields.
 *
 * Groups are aligned to multiples of `groupMs` since the Unix epoch: group g covers [g·groupMs,
 * (g+1)·groupMs) and leaves the window when group g + G begins, so an event counts for between windowMs −
 * groupMs and windowMs (the precision is one group). A clock set back adds to the newest group.
 *
 * Write order inside the lock, so that {@link SlidingShape.repair} can finish what a dead holder left: a
 * slide zeroes the groups leaving before it moves the head (zeroing is idempotent), and a total is only
 * ever the sum of its groups, so the repair recomputes it from them. An interrupted decision was never
 * returned to anyone; the repair keeps its count if it was written (conservative: never more admitted).
 *
 * Over 350 lines because it is one record kind: its geometry, slide, the two strategies' decisions, the
 * reads and the repair, which must all agree on one write order.
 *
 * Imported by worker threads: imports nothing main-only.
 */
import { KIND_SLIDE, SL_STAMP, SLF_LAST_USED, SLF_SF, SLF_SF_UNTIL, SLF_WINDOWS, SLW_DECLINED, SLW_GROUPS, SLW_HEAD, SLW_TAIL, SLW_TOTAL } from '../layout.js';
import { type Decider, holderDead, lockRecord, type Repairer, tryLockRecord, unlockRecord } from './owner-lock.js';

/** One window of a record: its length and its group width, ms (windowMs a multiple of groupMs). */
export interface SlidingWindowSpec {
  readonly windowMs: number;
  readonly groupMs: number;
}

/** The most groups one window may have (a record of one window is then at most about 64 KiB). */
export const MAX_GROUPS = 4096;

/** What a decision returns when the record is no longer the handle's (retired, reused): nothing was done. */
export const STALE = -1;
/** What {@link decideAbsolute} returns. */
export const REFUSED = 0;
export const ADMITTED = 1;
/** What {@link decideSuppressed} returns. */
export const SUPPRESSED_BELOW_SOFT = 0;
export const SUPPRESSED_ADMITTED = 1;
export const SUPPRESSED_DECLINED = 2;

/**
 * The geometry every record of one limiter shares, the current group of each window (recomputed only when
 * the time leaves the current groups), and the figures of the last refused decision.
 */
export class SlidingShape implements Repairer {
  readonly count: number;
  readonly windowMs: Float64Array;
  readonly groupMs: Float64Array;
  readonly groups: Int32Array;
  /** Float64 offset of each window's section from the record's offset. */
  readonly base: Int32Array;
  readonly suppressed: boolean;
  /** Words one record occupies. */
  readonly words: number;
  /** Group index and position (g mod G) of each window at the time {@link at} last saw. */
  readonly g: Float64Array;
  readonly pos: Int32Array;
  private from = Infinity;
  private to = -Infinity;
  /** Set by a refused decision: the window that refused (the one that frees last), and its figures. */
  refused = -1;
  retryAfterMs = 0;
  remainingAfterWaiting = 0;
  /** Set by a suppressed decision: the suppression factor it used. */
  sf = 0;
  /** Set by an absolute decision: each window's count after it (what is left is the limit less this). */
  readonly totals: Float64Array;

  constructor(windows: readonly SlidingWindowSpec[], suppressed: boolean) {
    const k = windows.length;
    if (k === 0 || (suppressed && k !== 1)) throw new RangeError(`a sliding record holds 1${suppressed ? '' : ' or more'} windows, not ${k}`);
    this.count = k;
    this.suppressed = suppressed;
    this.windowMs = new Float64Array(k);
    this.groupMs = new Float64Array(k);
    this.groups = new Int32Array(k);
    this.base = new Int32Array(k);
    this.g = new Float64Array(k);
    this.pos = new Int32Array(k);
    this.totals = new Float64Array(k);
    let words = SLF_WINDOWS;
    windows.forEach((w, i) => {
      const groups = w.windowMs / w.groupMs;
      if (!(Number.isInteger(groups) && groups >= 1 && groups <= MAX_GROUPS)) throw new RangeError(`window ${w.windowMs} ms in groups of ${w.groupMs} ms`);
      this.windowMs[i] = w.windowMs;
      this.groupMs[i] = w.groupMs;
      this.groups[i] = groups;
      this.base[i] = words;
      words += SLW_GROUPS + groups * (suppressed ? 2 : 1);
    });
    this.words = words;
  }

  /** The time {@link at} last saw (a refusal's waits are counted from it: no time passed to a rare call). */
  now = Number.NaN;

  /** Brings the current groups to time `now` (cheap while `now` stays inside them). */
  at(now: number): void {
    this.now = now;
    if (now >= this.from && now < this.to) return;
    let from = -Infinity;
    let to = Infinity;
    for (let k = 0; k < this.count; k++) {
      const gm = this.groupMs[k]!;
      const g = Math.floor(now / gm);
      this.g[k] = g;
      this.pos[k] = g % this.groups[k]!;
      from = Math.max(from, g * gm);
      to = Math.min(to, (g + 1) * gm);
    }
    this.from = from;
    this.to = to;
  }

  /** Finishes what a holder that died inside the lock left: every total is the sum of its groups again. */
  repair(f64: Float64Array, o: number): void {
    for (let k = 0; k < this.count; k++) {
      const s = o + this.base[k]!;
      const G = this.groups[k]!;
      let total = 0;
      let declined = 0;
      for (let j = 0; j < G; j++) total += f64[s + SLW_GROUPS + j]!;
      if (this.suppressed) for (let j = 0; j < G; j++) declined += f64[s + SLW_GROUPS + G + j]!;
      f64[s + SLW_TOTAL] = total;
      f64[s + SLW_DECLINED] = declined;
      const head = f64[s + SLW_HEAD]!;
      f64[s + SLW_TAIL] = head === -Infinity ? Infinity : oldestHolding(f64, s, G, head - G + 1, head);
    }
  }
}

/** The oldest group index from `from` to `to` whose count is not 0, or Infinity. */
function oldestHolding(f64: Float64Array, s: number, G: number, from: number, to: number): number {
  let p = ((from % G) + G) % G;
  for (let u = from; u <= to; u++) {
    if (f64[s + SLW_GROUPS + p] !== 0) return u;
    if (++p === G) p = 0;
  }
  return Infinity;
}

/** Writes a fresh record (the caller owns it: no other thread knows its offset yet). */
export function initSliding(i32: Int32Array, f64: Float64Array, o: number, shape: SlidingShape, stamp: number, now: number, d: Decider): void {
  // Under the lock: a reused record may still be locked for a moment by a thread whose handle names its
  // old allocation (it finds the stamp changed and lets go). The version word is the lock's; it stays.
  const version = lockRecord(i32, f64, o, d, shape);
  i32[2 * o + 1] = KIND_SLIDE;
  i32[2 * o + SL_STAMP] = stamp;
  for (let w = o + SLF_LAST_USED; w < o + shape.words; w++) f64[w] = 0;
  f64[o + SLF_LAST_USED] = now;
  f64[o + SLF_SF_UNTIL] = -Infinity;
  for (let k = 0; k < shape.count; k++) {
    f64[o + shape.base[k]! + SLW_HEAD] = -Infinity;
    f64[o + shape.base[k]! + SLW_TAIL] = Infinity;
  }
  unlockRecord(i32, o, version);
}

/** The stamp of the record at `o` (which allocation it is; a handle compares it under the lock). */
export function stampOf(i32: Int32Array, o: number): number {
  return i32[2 * o + SL_STAMP]!;
}

/** Moves window section `s` (G groups) to group `g`: the groups that left go out of the totals. */
function slide(f64: Float64Array, s: number, G: number, g: number, suppressed: boolean): void {
  const head = f64[s + SLW_HEAD]!;
  if (g <= head) return;
  const counts = s + SLW_GROUPS;
  const declined = counts + G;
  if (g - head >= G) {
    for (let j = 0; j < G; j++) f64[counts + j] = 0;
    if (suppressed) for (let j = 0; j < G; j++) f64[declined + j] = 0;
    f64[s + SLW_TOTAL] = 0;
    f64[s + SLW_DECLINED] = 0;
    f64[s + SLW_TAIL] = Infinity;
  } else {
    let p = (head + 1) % G;
    for (let u = head + 1; u <= g; u++) {
      f64[s + SLW_TOTAL] = f64[s + SLW_TOTAL]! - f64[counts + p]!;
      f64[counts + p] = 0;
      if (suppressed) {
        f64[s + SLW_DECLINED] = f64[s + SLW_DECLINED]! - f64[declined + p]!;
        f64[declined + p] = 0;
      }
      if (++p === G) p = 0;
    }
    // The oldest count left the window: the next one holding a count (only older than the old head).
    const tail = f64[s + SLW_TAIL]!;
    if (tail <= g - G) f64[s + SLW_TAIL] = oldestHolding(f64, s, G, Math.max(tail + 1, g - G + 1), head);
  }
  f64[s + SLW_HEAD] = g;
}

/**
 * The position a count of now goes to in window `k` (after a slide): the current group, or the newest if
 * the clock went back; the tail moves to it if the window held nothing.
 */
function addPosition(f64: Float64Array, s: number, shape: SlidingShape, k: number): number {
  const head = f64[s + SLW_HEAD]!;
  if (f64[s + SLW_TAIL]! > head) f64[s + SLW_TAIL] = head;
  return head > shape.g[k]! ? head % shape.groups[k]! : shape.pos[k]!;
}

/**
 * When window section `s` (after a slide) has room for `n` under `limit`: sets the shape's retryAfterMs
 * (until the oldest groups that free enough have left) and remainingAfterWaiting (the room then, n
 * included). `n` above `limit` never fits: Infinity, and the whole limit.
 */
function whenRoom(f64: Float64Array, s: number, shape: SlidingShape, k: number, limit: number, n: number): void {
  const now = shape.now;
  const G = shape.groups[k]!;
  const gm = shape.groupMs[k]!;
  const head = f64[s + SLW_HEAD]!;
  const total = f64[s + SLW_TOTAL]!;
  let freed = 0;
  if (n <= limit) {
    // Oldest group holding a count first.
    const from = Math.max(f64[s + SLW_TAIL]!, head - G + 1);
    let p = from - Math.floor(from / G) * G; // not `%`: a Float64 remainder is a library call
    for (let u = from; u <= head; u++) {
      freed += f64[s + SLW_GROUPS + p]!;
      if (++p === G) p = 0;
      if (total - freed + n <= limit) {
        shape.retryAfterMs = Math.max(0, (u + G) * gm - now);
        shape.remainingAfterWaiting = limit - (total - freed);
        return;
      }
    }
  }
  shape.retryAfterMs = Infinity;
  shape.remainingAfterWaiting = limit;
}

/**
 * The absolute decision at time `now` (the shape brought to it with `at(now)`): `n` is admitted, and
 * counted in every window, only if every window has room for it under its limit; otherwise nothing is
 * counted and the shape names the window that frees last. Returns ADMITTED, REFUSED, or STALE when the
 * record's stamp is not `stamp` (the handle's record was retired).
 */
export function decideAbsolute(i32: Int32Array, f64: Float64Array, o: number, stamp: number, shape: SlidingShape, limits: Float64Array, n: number, now: number, d: Decider): number {
  const version = lockRecord(i32, f64, o, d, shape);
  if (i32[2 * o + SL_STAMP] !== stamp) {
    unlockRecord(i32, o, version);
    return STALE;
  }
  let refused = -1;
  let retry = -1;
  let remaining = 0;
  for (let k = 0; k < shape.count; k++) {
    const s = o + shape.base[k]!;
    slide(f64, s, shape.groups[k]!, shape.g[k]!, false);
    shape.totals[k] = f64[s + SLW_TOTAL]!;
    const after = f64[s + SLW_TOTAL]! + n;
    if (after > limits[k]! || after > Number.MAX_SAFE_INTEGER) {
      whenRoom(f64, s, shape, k, limits[k]!, n);
      if (shape.retryAfterMs > retry) {
        refused = k;
        retry = shape.retryAfterMs;
        remaining = shape.remainingAfterWaiting;
      }
    }
  }
  shape.retryAfterMs = retry;
  shape.remainingAfterWaiting = remaining;
  if (refused === -1) {
    for (let k = 0; k < shape.count; k++) {
      const s = o + shape.base[k]!;
      const p = s + SLW_GROUPS + addPosition(f64, s, shape, k);
      f64[p] = f64[p]! + n;
      f64[s + SLW_TOTAL] = f64[s + SLW_TOTAL]! + n;
      shape.totals[k] = shape.totals[k]! + n;
    }
  }
  shape.refused = refused;
  f64[o + SLF_LAST_USED] = now;
  unlockRecord(i32, o, version);
  return refused === -1 ? ADMITTED : REFUSED;
}

/**
 * Takes up to `n` events back out of every window of an absolute record at the time the shape is at (its
 * newest groups first: the events counted last), for an event that should not have counted. Returns what
 * window 0 gave back (less than `n` if it held less), or STALE. A group is lowered before its total, the
 * write order the repair relies on.
 */
export function releaseAbsolute(i32: Int32Array, f64: Float64Array, o: number, stamp: number, shape: SlidingShape, n: number, d: Decider): number {
  const version = lockRecord(i32, f64, o, d, shape);
  if (i32[2 * o + SL_STAMP] !== stamp) {
    unlockRecord(i32, o, version);
    return STALE;
  }
  let released = 0;
  for (let k = 0; k < shape.count; k++) {
    const s = o + shape.base[k]!;
    const G = shape.groups[k]!;
    slide(f64, s, G, shape.g[k]!, false);
    const head = f64[s + SLW_HEAD]!;
    let left = n;
    let p = head === -Infinity ? 0 : head % G;
    for (let j = 0; j < G && left > 0 && head !== -Infinity; j++) {
      const take = Math.min(f64[s + SLW_GROUPS + p]!, left);
      f64[s + SLW_GROUPS + p] = f64[s + SLW_GROUPS + p]! - take;
      f64[s + SLW_TOTAL] = f64[s + SLW_TOTAL]! - take;
      left -= take;
      if (--p < 0) p = G - 1;
    }
    if (k === 0) released = n - left;
  }
  unlockRecord(i32, o, version);
  return released;
}

/** Empties every window of the record (its groups first, then the totals). Returns 0, or STALE. */
export function clearSliding(i32: Int32Array, f64: Float64Array, o: number, stamp: number, shape: SlidingShape, d: Decider): number {
  const version = lockRecord(i32, f64, o, d, shape);
  if (i32[2 * o + SL_STAMP] !== stamp) {
    unlockRecord(i32, o, version);
    return STALE;
  }
  for (let k = 0; k < shape.count; k++) {
    const s = o + shape.base[k]!;
    const G = shape.groups[k]!;
    const groups = G * (shape.suppressed ? 2 : 1);
    for (let j = 0; j < groups; j++) f64[s + SLW_GROUPS + j] = 0;
    f64[s + SLW_TOTAL] = 0;
    f64[s + SLW_DECLINED] = 0;
    f64[s + SLW_TAIL] = Infinity;
  }
  f64[o + SLF_SF_UNTIL] = -Infinity;
  unlockRecord(i32, o, version);
  return 0;
}

/** Events of window section `s` in groups that began less than a second before `now`. */
function lastSecond(f64: Float64Array, s: number, G: number, gm: number, now: number): number {
  const head = f64[s + SLW_HEAD]!;
  let sum = 0;
  let p = head % G;
  for (let u = head, j = 0; j < G && now - u * gm < 1000; u--, j++) {
    sum += f64[s + SLW_GROUPS + p]!;
    if (--p < 0) p = G - 1;
  }
  return sum;
}

/**
 * The suppression factor with `n` more events forecast (counted once): 0 while the accepted events
 * (total − declined) and `n` stay below `soft`, else 1 − (soft / windowSeconds) / perceived rate, where the
 * perceived rate is the larger of the window's average and its last second.
 */
export function suppressionFactorOf(total: number, declined: number, lastSecondCount: number, windowSeconds: number, soft: number, n: number): number {
  if (total - declined + n < soft) return 0;
  const perceived = Math.max((total + n) / windowSeconds, lastSecondCount + n);
  const sf = 1 - soft / windowSeconds / perceived;
  return sf < 0 ? 0 : sf > 1 ? 1 : sf;
}

/** The suppression factor of the record at `o` at `now`, as a reader sees it (call inside a seqlock read). */
export function suppressionFactorAt(f64: Float64Array, o: number, shape: SlidingShape, windowSeconds: number, soft: number, now: number): number {
  const s = o + shape.base[0]!;
  if (f64[s + SLW_HEAD] === -Infinity) return 0;
  const total = countInWindow(f64, o, shape, 0, now);
  const declined = countInWindow(f64, o, shape, 0, now, true);
  return suppressionFactorOf(total, declined, lastSecond(f64, s, shape.groups[0]!, shape.groupMs[0]!, now), windowSeconds, soft, 0);
}

/**
 * The suppressed decision at `now` (one window; the shape brought to `now`): past the hard limit every call
 * is declined (suppression factor 1, at once, not one cache period late); below the soft limit (n
 * included) it is admitted (soft = rate × windowSeconds, hard = soft × hardLimitFactor); in between it is admitted with probability 1 − sf, where `draw` is a uniform
 * number in [0, 1) drawn before the lock and sf is cached in the record for `cacheMs`. Every call counts
 * in the total, a declined one also in the declined count. Returns SUPPRESSED_* (the shape's sf is set),
 * or STALE when the record's stamp is not `stamp`.
 */
export function decideSuppressed(
  i32: Int32Array,
  f64: Float64Array,
  o: number,
  stamp: number,
  shape: SlidingShape,
  windowSeconds: number,
  soft: number,
  hard: number,
  cacheMs: number,
  n: number,
  draw: number,
  now: number,
  d: Decider,
): number {
  const version = lockRecord(i32, f64, o, d, shape);
  if (i32[2 * o + SL_STAMP] !== stamp) {
    unlockRecord(i32, o, version);
    return STALE;
  }
  const s = o + shape.base[0]!;
  const G = shape.groups[0]!;
  slide(f64, s, G, shape.g[0]!, true);
  const total = f64[s + SLW_TOTAL]!;
  let outcome: number;
  let sf = 0;
  if (total + n > Number.MAX_SAFE_INTEGER) {
    // Counting it would make the totals inexact: declined, and not counted.
    shape.sf = 1;
    f64[o + SLF_LAST_USED] = now;
    unlockRecord(i32, o, version);
    return SUPPRESSED_DECLINED;
  }
  if (total + n > hard) {
    sf = 1;
    outcome = SUPPRESSED_DECLINED;
  } else if (total - f64[s + SLW_DECLINED]! + n <= soft) {
    outcome = SUPPRESSED_BELOW_SOFT;
  } else {
    if (now < f64[o + SLF_SF_UNTIL]!) sf = f64[o + SLF_SF]!;
    else {
      sf = suppressionFactorOf(total, f64[s + SLW_DECLINED]!, lastSecond(f64, s, G, shape.groupMs[0]!, now), windowSeconds, soft, n);
      f64[o + SLF_SF] = sf;
      f64[o + SLF_SF_UNTIL] = now + cacheMs;
    }
    outcome = draw >= sf ? SUPPRESSED_ADMITTED : SUPPRESSED_DECLINED;
  }
  const p = addPosition(f64, s, shape, 0);
  f64[s + SLW_GROUPS + p] = f64[s + SLW_GROUPS + p]! + n;
  f64[s + SLW_TOTAL] = total + n;
  if (outcome === SUPPRESSED_DECLINED) {
    f64[s + SLW_GROUPS + G + p] = f64[s + SLW_GROUPS + G + p]! + n;
    f64[s + SLW_DECLINED] = f64[s + SLW_DECLINED]! + n;
  }
  shape.sf = sf;
  f64[o + SLF_LAST_USED] = now;
  unlockRecord(i32, o, version);
  return outcome;
}

/**
 * Window `k`'s events at `now` as a reader sees them (no lock; call inside a seqlock read): the groups still
 * in the window, whether or not a decision has slid it since. `declined` selects the declined counts.
 */
export function countInWindow(f64: Float64Array, o: number, shape: SlidingShape, k: number, now: number, declined = false): number {
  const s = o + shape.base[k]!;
  const G = shape.groups[k]!;
  const head = f64[s + SLW_HEAD]!;
  if (head === -Infinity) return 0;
  const g = Math.max(Math.floor(now / shape.groupMs[k]!), head);
  const from = s + SLW_GROUPS + (declined ? G : 0);
  let sum = 0;
  let p = head % G;
  for (let u = head; u > g - G && u > head - G; u--) {
    sum += f64[from + p]!;
    if (--p < 0) p = G - 1;
  }
  return sum;
}

/** When the record at `o` was last decided on, ms (a plain read: the sweep's hint, checked again under the lock). */
export function lastUsedOf(f64: Float64Array, o: number): number {
  return f64[o + SLF_LAST_USED]!;
}

/**
 * Retires the record at `o` if nothing decided on it since `before` (ms), checked under its lock: its stamp
 * becomes 0, so a handle another thread still holds finds it no longer its own. Returns true if retired.
 */
export function retireIfIdle(i32: Int32Array, f64: Float64Array, o: number, shape: SlidingShape, before: number, d: Decider): boolean {
  // A record locked now is in use, unless its holder is known dead: then it is taken over and repaired.
  let version = tryLockRecord(i32, o, d);
  if (version === -1) {
    if (!holderDead(i32, o, d)) return false;
    version = lockRecord(i32, f64, o, d, shape);
  }
  const idle = f64[o + SLF_LAST_USED]! < before;
  if (idle) i32[2 * o + SL_STAMP] = 0;
  unlockRecord(i32, o, version);
  return idle;
}
