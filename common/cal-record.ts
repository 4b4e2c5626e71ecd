/**
 * Calendar records (tiny_counter parity): one ring of buckets per calendar unit, in a shard's arena. See
 * common/layout.ts for the fields. Reads here are plain functions over shared memory, used by the shard
 * (to decide limits) and by readers on other threads (inside a seqlock read); writes live in the shard.
 *
 * Imported by worker threads: imports nothing main-only.
 */
import { type CalUnitCode, mod, NOMINAL_UNIT_MS, UnitCursor, ZoneCalendar } from './calendar.js';
import {
  CAL_CONFIG,
  CAL_EMPTY_HEAD,
  CAL_PENDING_K,
  CAL_RINGS,
  CAL_WIDE,
  CALF_PENDING,
  CALF_RESERVATIONS,
  RESERVATION_SCALE,
  calBucketBase,
  calRecordWords,
  type ShardViews,
} from './layout.js';
import { Check, type CalConfig } from './messages.js';

export interface CalRing {
  readonly unit: CalUnitCode;
  readonly count: number;
  /** Index of the ring's first bucket among the record's buckets. */
  readonly base: number;
}

/**
 * A calendar config resolved for use on one thread: its zone calendar and a cursor per ring. `seek(t)`
 * leaves in `ks` the unit index of `t` for every ring; while `t` stays in [from, to) that costs two
 * comparisons.
 */
export class CalShape {
  readonly id: number;
  readonly calendar: ZoneCalendar;
  readonly rings: readonly CalRing[];
  readonly buckets: number;
  readonly reservationTtlMs: number;
  readonly words: number;
  readonly ks: Int32Array;
  private readonly ringByUnit: Int8Array;
  private readonly cursors: UnitCursor[];
  /** Separate cursors for pending counts' units, so that looking one up does not move `ks`'s. */
  private readonly pendingCursors: UnitCursor[];
  private lastPending = Number.NaN;
  private lastPendingStart = 0;
  private from = Number.POSITIVE_INFINITY;
  private to = Number.NEGATIVE_INFINITY;

  constructor(config: CalConfig) {
    this.id = config.id;
    this.reservationTtlMs = config.reservationTtlMs;
    this.calendar = new ZoneCalendar(config.timeZone);
    let base = 0;
    const rings: CalRing[] = [];
    for (const [unit, count] of config.rings) {
      rings.push({ unit: unit as CalUnitCode, count, base });
      base += count;
    }
    this.rings = rings;
    this.ringByUnit = Int8Array.from({ length: 7 }, (_, u) => rings.findIndex((r) => r.unit === u));
    this.buckets = base;
    this.words = calRecordWords(rings.length, base);
    this.ks = new Int32Array(rings.length);
    this.cursors = rings.map((r) => new UnitCursor(this.calendar, r.unit));
    this.pendingCursors = rings.map((r) => new UnitCursor(this.calendar, r.unit));
  }

  /**
   * Unit index in ring `r` of the finest-ring unit `kf` (a pending count's), leaving `ks` alone. Pending
   * counts of active ids share the current unit, so the start of the last one asked is cached.
   */
  pendingIndex(r: number, kf: number): number {
    if (kf !== this.lastPending) {
      this.lastPendingStart = this.calendar.start(this.rings[0]!.unit, kf);
      this.lastPending = kf;
    }
    return this.pendingCursors[r]!.at(this.lastPendingStart);
  }

  /** Sets `ks` to the unit indexes of instant `t`. */
  seek(t: number): void {
    if (t >= this.from && t < this.to) return;
    let from = Number.NEGATIVE_INFINITY;
    let to = Number.POSITIVE_INFINITY;
    for (let r = 0; r < this.cursors.length; r++) {
      const c = this.cursors[r]!;
      this.ks[r] = c.at(t);
      if (c.startMs > from) from = c.startMs;
      if (c.endMs < to) to = c.endMs;
    }
    this.from = from;
    this.to = to;
  }

  /** Index of the ring tracking `unit`, or -1. */
  ringOf(unit: CalUnitCode): number {
    return this.ringByUnit[unit] ?? -1;
  }

  /** The ring spanning the most time (what `ever()` reads). */
  get longestRing(): number {
    let best = 0;
    let span = 0;
    for (let r = 0; r < this.rings.length; r++) {
      const s = spanMs(this.rings[r]!);
      if (s > span) {
        span = s;
        best = r;
      }
    }
    return best;
  }
}

function spanMs(ring: CalRing): number {
  return NOMINAL_UNIT_MS[ring.unit]! * ring.count;
}

/** Writes a fresh (or reused) record: every ring empty, every bucket 0. */
export function initCal(views: ShardViews, o: number, shape: CalShape): void {
  const { i32, u32 } = views;
  const R = shape.rings.length;
  i32[2 * o + CAL_CONFIG] = shape.id;
  i32[2 * o + CAL_WIDE] = 0;
  i32[2 * o + CAL_PENDING_K] = CAL_EMPTY_HEAD;
  views.f64[o + CALF_PENDING] = 0;
  views.f64[o + CALF_RESERVATIONS] = 0;
  for (let r = 0; r < R; r++) i32[2 * o + CAL_RINGS + r] = CAL_EMPTY_HEAD;
  const base = calBucketBase(o, R);
  u32.fill(0, base, base + shape.buckets);
}

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

/** Unit index in ring `r` of the record's pending count, or NaN when it has none. */
export function pendingUnit(views: ShardViews, o: number, shape: CalShape, r: number): number {
  const pk = views.i32[2 * o + CAL_PENDING_K]!;
  if (pk === CAL_EMPTY_HEAD) return Number.NaN;
  return r === 0 ? pk : shape.pendingIndex(r, pk);
}

/**
 * One ring as readers see it at unit index `kNow`: `value(k)` is the count of unit k (bucket plus the
 * pending count when it belongs to k). A clock set back never shows the ring's head as the future: `now`
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
  private pending = 0;
  now = 0;

  at(views: ShardViews, o: number, shape: CalShape, r: number, kNow: number): this {
    const ring = shape.rings[r]!;
    this.u32 = views.u32;
    this.f64 = views.f64;
    this.wide = views.i32[2 * o + CAL_WIDE]!;
    this.first = (this.wide !== 0 ? this.wide : calBucketBase(o, shape.rings.length)) + ring.base;
    this.count = ring.count;
    this.head = views.i32[2 * o + CAL_RINGS + r]!;
    this.pu = pendingUnit(views, o, shape, r);
    this.pending = views.f64[o + CALF_PENDING]!;
    this.now = Math.max(kNow, this.head, Number.isNaN(this.pu) ? -Infinity : this.pu);
    return this;
  }

  value(k: number): number {
    let v = 0;
    if (k <= this.head && this.head - k < this.count) {
      const j = this.first + mod(k, this.count);
      v = this.wide !== 0 ? this.f64[j]! : this.u32[j]!;
    }
    return k === this.pu ? v + this.pending : v;
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
export const OUTCOME_PENDING = -1;
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
  return Number.NaN; // pending reservations alone hold the window full
}
