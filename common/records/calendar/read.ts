/**
 * Reading a calendar record: ring values, reservations, the age of the newest event, and the decision
 * checks a limiter evaluates. Plain functions over shared memory, used by the shard (to decide limits
 * atomically) and by readers on other threads (inside a seqlock read), so both answer the same way. See
 * common/layout.ts for the fields; the writes are in ./write.ts.
 *
 * Imported by worker threads: imports nothing main-only.
 */
import { mod } from '../../calendar.js';
import { CAL_LATEST_K, CAL_EMPTY_HEAD, CAL_RINGS, CAL_WIDE, CALF_LATEST, CALF_RESERVATIONS, RESERVATION_SCALE, calBucketBase, type ShardViews } from '../../layout.js';
import { Check } from '../../messages.js';
import type { CalShape } from './shape.js';

/** Outstanding reservations of the record at `o` at time `t`: 0 once the oldest has expired. */
export function calReserved(views: ShardViews, o: number, shape: CalShape, t: number): number {
  const word = views.f64[o + CALF_RESERVATIONS]!;
  const count = word % RESERVATION_SCALE;
  if (count === 0 || t - reservationsSince(word) >= shape.reservationTtlMs) return 0;
  return count;
}

/** When the oldest outstanding reservation of a reservations word was taken (ms, to the second). */
function reservationsSince(word: number): number {
  return Math.floor(word / RESERVATION_SCALE) * 1000;
}

/**
 * The reservations word after adding `delta` (+1 reserve, −1 commit or cancel) at time `t`: expired ones
 * are dropped first; a first reservation starts the clock. Undefined when the count would pass the scale.
 */
export function reservationsAfter(views: ShardViews, o: number, shape: CalShape, t: number, delta: 1 | -1): number | undefined {
  const count = calReserved(views, o, shape, t);
  const next = Math.max(0, count + delta);
  if (next >= RESERVATION_SCALE) return undefined;
  if (next === 0) return 0;
  const since = count === 0 ? Math.floor(t / 1000) : Math.floor(views.f64[o + CALF_RESERVATIONS]! / RESERVATION_SCALE);
  return since * RESERVATION_SCALE + next;
}

/**
 * True when a reservation granted at `reservedAt` is among the record's outstanding ones at `t`: not
 * expired, and not older than the oldest outstanding one (then it belonged to reservations that expired).
 */
export function reservationHeld(views: ShardViews, o: number, shape: CalShape, t: number, reservedAt: number): boolean {
  return calReserved(views, o, shape, t) > 0 && Math.floor(reservedAt / 1000) * 1000 >= reservationsSince(views.f64[o + CALF_RESERVATIONS]!);
}

/** Milliseconds from `t` until the outstanding reservations of the record expire (NaN: none). */
function reservationsExpireIn(views: ShardViews, o: number, shape: CalShape, t: number): number {
  return calReserved(views, o, shape, t) === 0 ? Number.NaN : Math.max(0, reservationsSince(views.f64[o + CALF_RESERVATIONS]!) + shape.reservationTtlMs - t);
}

/** Unit index in ring `r` of the record's latest count, or NaN when it has none. */
export function latestUnit(views: ShardViews, o: number, shape: CalShape, r: number): number {
  const pk = views.i32[2 * o + CAL_LATEST_K]!;
  if (pk === CAL_EMPTY_HEAD) return Number.NaN;
  return r === 0 ? pk : shape.latestIndex(r, pk);
}

/**
 * One ring as readers see it at unit index `kNow`: `value(k)` is the count of unit k (bucket plus the
 * latest count when it belongs to k). A clock set back never shows the ring's head as the future: `now`
 * is at least the newest unit the ring holds.
 */
class RingView {
  private u32: Uint32Array = new Uint32Array(0);
  private f64: Float64Array = new Float64Array(0);
  /** Float64 index of the promoted buckets, or 0 while narrow. */
  private wide = 0;
  /** Index (Uint32, or Float64 when wide) of the ring's first bucket. */
  private first = 0;
  private count = 0;
  private head = 0;
  private pu = Number.NaN;
  private latest = 0;
  now = 0;

  at(views: ShardViews, o: number, shape: CalShape, r: number, kNow: number): this {
    const ring = shape.rings[r]!;
    this.u32 = views.u32;
    this.f64 = views.f64;
    this.wide = views.i32[2 * o + CAL_WIDE]!;
    this.first = (this.wide !== 0 ? this.wide : calBucketBase(o, shape.rings.length)) + ring.base;
    this.count = ring.count;
    this.head = views.i32[2 * o + CAL_RINGS + r]!;
    this.pu = latestUnit(views, o, shape, r);
    this.latest = views.f64[o + CALF_LATEST]!;
    this.now = Math.max(kNow, this.head, Number.isNaN(this.pu) ? -Infinity : this.pu);
    return this;
  }

  value(k: number): number {
    let v = 0;
    if (k <= this.head && this.head - k < this.count) {
      const j = this.first + mod(k, this.count);
      v = this.wide !== 0 ? this.f64[j]! : this.u32[j]!;
    }
    return k === this.pu ? v + this.latest : v;
  }
}

/** One reusable view per thread: readers are synchronous, so one at a time. */
const view = new RingView();

/** The newest `n` buckets of ring `r` at unit index `kNow`, newest first, into `out` (length n). */
export function readRing(views: ShardViews, o: number, shape: CalShape, r: number, kNow: number, n: number, out: number[] | Float64Array): void {
  const v = view.at(views, o, shape, r, kNow);
  for (let i = 0; i < n; i++) out[i] = v.value(v.now - i);
}

/** Sum of the newest `n` buckets of ring `r` at unit index `kNow`. */
export function sumRing(views: ShardViews, o: number, shape: CalShape, r: number, kNow: number, n: number): number {
  const v = view.at(views, o, shape, r, kNow);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += v.value(v.now - i);
  return sum;
}

/**
 * Age at `t` of the newest (or, with `oldest`, the oldest) non-zero bucket over every ring, measured from
 * the bucket's start: bucket precision. Undefined when every bucket is zero. `shape.seek(t)` first.
 */
export function seenAge(views: ShardViews, o: number, shape: CalShape, t: number, oldest: boolean): number | undefined {
  let best: number | undefined;
  for (let r = 0; r < shape.rings.length; r++) {
    const v = view.at(views, o, shape, r, shape.ks[r]!);
    const count = shape.rings[r]!.count;
    for (let step = 0; step < count; step++) {
      const k = v.now - (oldest ? count - 1 - step : step);
      if (v.value(k) === 0) continue;
      const age = t - shape.calendar.start(shape.rings[r]!.unit, k);
      if (best === undefined || (oldest ? age > best : age < best)) best = age;
      break;
    }
  }
  return best;
}

/** Decision outcomes as written to a decision cell. */
export const OUTCOME_UNDECIDED = -1;
export const OUTCOME_ALLOWED = 1;
/** A refusal by check i is written as OUTCOME_REFUSED_BASE + i. */
export const OUTCOME_REFUSED_BASE = 2;

/**
 * Evaluates decision checks ([kind, ring, n, limit] quadruples, see messages.ts Check) against the record at
 * `o` at instant `t`. Returns -1 when all pass, else the index of the first failing check, with a retry-after
 * estimate (ms, NaN when none can be given) in `retry[0]`. `shape.seek(t)` first. Used by the shard for
 * atomic decisions and by readers for `check()`, so both answer the same way.
 */
export function evaluateChecks(views: ShardViews, o: number, shape: CalShape, t: number, checks: readonly number[], retry: Float64Array): number {
  for (let c = 0; c + 3 < checks.length; c += 4) {
    const kind = checks[c]!;
    const r = checks[c + 1]!;
    const n = checks[c + 2]!;
    const limit = checks[c + 3]!;
    if (kind === Check.COOLDOWN) {
      const age = seenAge(views, o, shape, t, false);
      if (age === undefined || age >= limit) continue;
      retry[0] = limit - age;
      return c / 4;
    }
    const kNow = shape.ks[r]!;
    const count = sumRing(views, o, shape, r, kNow, n);
    if (kind === Check.AT_LEAST) {
      if (count >= limit) continue;
      retry[0] = Number.NaN;
      return c / 4;
    }
    // AT_MOST: outstanding reservations count as recorded, until they expire.
    const reserved = calReserved(views, o, shape, t);
    if (count + reserved < limit) continue;
    // The earlier of: enough buckets leave the window with the reservations still held, or the
    // reservations expire and enough buckets have left for the count alone.
    const held = atMostRetry(views, o, shape, r, kNow, n, count + reserved - limit + 1, t);
    const expiry = reservationsExpireIn(views, o, shape, t);
    const alone = count < limit ? 0 : atMostRetry(views, o, shape, r, kNow, n, count - limit + 1, t);
    const released = Number.isNaN(expiry) ? Number.NaN : Math.max(expiry, alone);
    retry[0] = Number.isNaN(held) ? released : Number.isNaN(released) ? held : Math.min(held, released);
    return c / 4;
  }
  return -1;
}

/** When enough of the oldest buckets of the window will have left it to let one more event in. */
function atMostRetry(views: ShardViews, o: number, shape: CalShape, r: number, kNow: number, n: number, need: number, t: number): number {
  const v = view.at(views, o, shape, r, kNow);
  const unit = shape.rings[r]!.unit;
  let dropped = 0;
  for (let i = n - 1; i >= 0; i--) {
    const k = v.now - i;
    dropped += v.value(k);
    // Bucket i leaves the window when unit k + n begins.
    if (dropped >= need) return Math.max(0, shape.calendar.start(unit, k + n) - t);
  }
  return Number.NaN; // outstanding reservations alone hold the window full
}
