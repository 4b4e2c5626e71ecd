/**
 * The fixed-window decision record kind: what a calendar limit (`atMost(limit, window)` of an event
 * store) decides on. One record holds one id's counts over the newest `n` units of one calendar ring
 * (bucket of unit k at k mod n), their running total, and the id's outstanding reservations (holds), so a
 * decision is a move to the current unit (buckets that left the window go out of the total), one compare
 * and one add. The shard never writes it, so the journal is not involved. The same events still reach the id's calendar record through the batched
 * append: this record is the decision's copy, kept in step by every write of the id (src/events/gates.ts).
 * See common/layout.ts (KIND_FIXED) for the fields.
 *
 * Windows are calendar units (the store's zone): `atMost(10, 'hour')` counts since hh:00, `[2, 'hour']` the
 * current and the previous hour. A clock set back adds to the newest unit.
 *
 * Holds expire together: once the newest outstanding one is `ttlMs` old, they count as none, so no hold
 * stops counting before its own `ttlMs` (the store's `reservationTtlMs`). Holds taken from the first one
 * after none were live on are one series; a release of a hold from an earlier series releases nothing:
 * its place was given up when it expired.
 *
 * One writer: event stores live on the engine's thread, which is the only thread that decides on, writes
 * or reads these records, so they need no lock (measured: the owner lock of ./owner-lock.ts cost about a
 * sixth of a decision in one ad-hoc run: 5.6 vs 6.8 M decisions/s). A kind decided from several threads (./sliding.ts) takes that lock; so would this
 * one if event stores were ever linked to worker threads. Its thread dying ends the process, so no
 * repair is needed either.
 *
 * Imported by worker threads: imports nothing main-only.
 */
import { FXF_BUCKETS, FXF_KIND, FXF_HEAD, FXF_HOLDS, FXF_HOLDS_LAST, FXF_HOLDS_SERIES, FXF_TOTAL, KIND_FIXED } from '../layout.js';

/**
 * Position of unit k's bucket among n. Unit indexes inside the calendar's range fit an Int32, so this is an
 * integer remainder (a Float64 one is a library call, and this is on every decision's path).
 */
function pos(k: number, n: number): number {
  const r = (k | 0) % n;
  return r < 0 ? r + n : r;
}

/** The geometry of one window's records: `n` buckets. */
export class FixedWindowShape {
  /** Words one record occupies. */
  readonly words: number;

  constructor(readonly n: number) {
    this.words = FXF_BUCKETS + n;
  }
}

/**
 * Writes a fresh (or reused) record at unit `k`: empty, or holding `newestFirst[i]` for unit k − i (the
 * id's calendar buckets when it already has events).
 */
export function initFixed(f64: Float64Array, o: number, shape: FixedWindowShape, k: number, newestFirst: ArrayLike<number> | undefined): void {
  f64[o + FXF_KIND] = KIND_FIXED;
  for (let w = o + FXF_HEAD; w < o + shape.words; w++) f64[w] = 0;
  let total = 0;
  if (newestFirst !== undefined) {
    for (let i = 0; i < shape.n; i++) {
      const v = newestFirst[i]!;
      f64[o + FXF_BUCKETS + pos(k - i, shape.n)] = v;
      total += v;
    }
  }
  f64[o + FXF_TOTAL] = total;
  f64[o + FXF_HEAD] = k;
}

/** Moves the record to unit `k` (never back) and returns its head. */
function moveTo(f64: Float64Array, o: number, n: number, k: number): number {
  const head = f64[o + FXF_HEAD]!;
  if (k <= head) return head;
  const b = o + FXF_BUCKETS;
  if (k - head >= n) {
    for (let i = 0; i < n; i++) f64[b + i] = 0;
    f64[o + FXF_TOTAL] = 0;
  } else {
    let total = f64[o + FXF_TOTAL]!;
    for (let j = head + 1; j <= k; j++) {
      const p = b + pos(j, n);
      total -= f64[p]!;
      f64[p] = 0;
    }
    f64[o + FXF_TOTAL] = total;
  }
  f64[o + FXF_HEAD] = k;
  return k;
}

/** The record's outstanding holds at `t` (0 once the newest is `ttlMs` old). */
export function holdsAt(f64: Float64Array, o: number, t: number, ttlMs: number): number {
  const holds = f64[o + FXF_HOLDS]!;
  return holds === 0 || t - f64[o + FXF_HOLDS_LAST]! >= ttlMs ? 0 : holds;
}

/**
 * The limit decision at unit `k`, time `t`: true (and 1 counted in unit k) while total + holds < limit,
 * else false with nothing changed.
 */
export function decideFixed(f64: Float64Array, o: number, shape: FixedWindowShape, k: number, t: number, ttlMs: number, limit: number): boolean {
  // The common case inline (same unit, no holds): this is every decision's path.
  let head = f64[o + FXF_HEAD]!;
  if (k > head) {
    moveTo(f64, o, shape.n, k);
    head = k; // not moveTo's result: a call's result would make `head` a boxed number on every path
  }
  const total = f64[o + FXF_TOTAL]!;
  const holds = f64[o + FXF_HOLDS]!;
  // holdsAt, written out: a double handed to a call that is not inlined is boxed (allocated).
  const live = holds === 0 || t - f64[o + FXF_HOLDS_LAST]! >= ttlMs ? 0 : holds;
  if (total + live >= limit) return false;
  const p = o + FXF_BUCKETS + (shape.n === 1 ? 0 : pos(head, shape.n));
  f64[p] = f64[p]! + 1;
  f64[o + FXF_TOTAL] = total + 1;
  return true;
}

/** Total + holds at unit `k`, time `t` (the record moved to k). */
export function loadFixed(f64: Float64Array, o: number, shape: FixedWindowShape, k: number, t: number, ttlMs: number): number {
  moveTo(f64, o, shape.n, k);
  const value = f64[o + FXF_TOTAL]! + holdsAt(f64, o, t, ttlMs);
  return value;
}

/** The total alone at unit `k` (the record moved to k): the events in the window. */
export function countFixed(f64: Float64Array, o: number, shape: FixedWindowShape, k: number): number {
  moveTo(f64, o, shape.n, k);
  const value = f64[o + FXF_TOTAL]!;
  return value;
}

/**
 * Adds `delta` events of unit `kEvent` after moving the record to unit `k`: counted when kEvent is inside
 * the window (an event older than the window is not the limit's), into the newest bucket when kEvent is
 * later than the head (a clock set back).
 */
export function addFixed(f64: Float64Array, o: number, shape: FixedWindowShape, k: number, kEvent: number, delta: number): void {
  const head = moveTo(f64, o, shape.n, k);
  const at = Math.min(kEvent, head);
  if (head - at < shape.n) {
    const p = o + FXF_BUCKETS + pos(at, shape.n);
    f64[p] = f64[p]! + delta;
    f64[o + FXF_TOTAL] = f64[o + FXF_TOTAL]! + delta;
  }
}

/**
 * Takes one hold at `t` and returns the series it belongs to, for its release. Expired holds are dropped
 * first: the first hold taken while none are live begins a new series, numbered `fresh` (a number the
 * caller never passed before, for any record: so a release can never mistake a hold of an earlier series,
 * expired or handed on from a retired record, for one of this series, whatever the clock did since).
 */
export function holdFixed(f64: Float64Array, o: number, t: number, ttlMs: number, fresh: number): number {
  const holds = holdsAt(f64, o, t, ttlMs);
  if (holds === 0) {
    f64[o + FXF_HOLDS_SERIES] = fresh;
    f64[o + FXF_HOLDS_LAST] = t;
  } else {
    // A clock set back: the series expires ttlMs after its newest hold.
    f64[o + FXF_HOLDS_LAST] = Math.max(f64[o + FXF_HOLDS_LAST]!, t);
  }
  f64[o + FXF_HOLDS] = holds + 1;
  return f64[o + FXF_HOLDS_SERIES]!;
}

/**
 * Releases one hold of series `series` (holdFixed's result), if that series is still the record's and
 * live at `t`; returns whether it was. Each hold must be released at most once (the caller's to ensure).
 */
export function releaseFixed(f64: Float64Array, o: number, t: number, ttlMs: number, series: number): boolean {
  const holds = holdsAt(f64, o, t, ttlMs);
  const held = holds > 0 && f64[o + FXF_HOLDS_SERIES] === series;
  if (held) f64[o + FXF_HOLDS] = holds - 1;
  return held;
}

/** Words of a record's head (kind, unit, total, holds): what a retired gate hands its holds on in. */
export const FIXED_HEAD_WORDS = FXF_BUCKETS;

/**
 * When a refused decision at time `t` (record at unit `k`, holds as of t) may pass, in ms from `t`: the
 * earlier of enough of the oldest buckets leaving the window with the holds still held, and the holds
 * expiring with enough buckets gone for the events alone. NaN for a limit of 0 (nothing ever passes).
 * `startOf(k)` is the first instant of unit k. Read on the deciding thread, right after the decision.
 */
export function retryFixed(f64: Float64Array, o: number, shape: FixedWindowShape, t: number, ttlMs: number, limit: number, startOf: (k: number) => number): number {
  const total = f64[o + FXF_TOTAL]!;
  const holds = holdsAt(f64, o, t, ttlMs);
  if (limit <= 0) return Number.NaN;
  // One unit and no holds (the common refusal): its events all leave when the next unit begins.
  if (holds === 0 && shape.n === 1) return Math.max(0, startOf(f64[o + FXF_HEAD]! + 1) - t);
  const held = leaveMs(f64, o, shape, total + holds - limit + 1, t, startOf);
  if (holds === 0) return held;
  const expiry = Math.max(0, f64[o + FXF_HOLDS_LAST]! + ttlMs - t);
  const alone = total < limit ? 0 : leaveMs(f64, o, shape, total - limit + 1, t, startOf);
  const released = Number.isNaN(alone) ? Number.NaN : Math.max(expiry, alone);
  return Number.isNaN(held) ? released : Number.isNaN(released) ? held : Math.min(held, released);
}

/** Ms from `t` until the oldest buckets that hold `need` events have left the window (NaN: they never do). */
function leaveMs(f64: Float64Array, o: number, shape: FixedWindowShape, need: number, t: number, startOf: (k: number) => number): number {
  if (need <= 0) return 0;
  const n = shape.n;
  const head = f64[o + FXF_HEAD]!;
  let dropped = 0;
  for (let i = n - 1; i >= 0; i--) {
    const k = head - i;
    dropped += f64[o + FXF_BUCKETS + pos(k, n)]!;
    // The bucket of unit k leaves the window when unit k + n begins.
    if (dropped >= need) return Math.max(0, startOf(k + n) - t);
  }
  return Number.NaN;
}
