/**
 * Reading a calendar record: ring values and the age of the newest (or oldest) event. Plain functions over
 * shared memory, used by the shard and by readers on other threads (inside a seqlock read), so both
 * answer the same way. See common/layout.ts for the fields; the writes are in ./write.ts.
 *
 * Imported by worker threads: imports nothing main-only.
 */
import { CAL_LATEST_K, CAL_EMPTY_HEAD, CAL_RINGS, CAL_WIDE, CALF_LATEST, calBucketBase, type ShardViews } from '../../layout.js';
import type { CalShape } from './shape.js';

/** Unit index in ring `r` of the record's latest count, or NaN when it has none. */
function latestUnit(views: ShardViews, o: number, shape: CalShape, r: number): number {
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
      const j = this.first + slot(k, this.count);
      v = this.wide !== 0 ? this.f64[j]! : this.u32[j]!;
    }
    return k === this.pu ? v + this.latest : v;
  }

  /**
   * `value(now)`, `value(now − 1)`, … of the newest `n` units into `out`, walked like {@link sum} (no
   * remainder per unit); returns how many up to the oldest non-zero one (0: all zero).
   */
  readInto(n: number, out: number[] | Float64Array): number {
    const { first, count, head, u32, f64, pu, latest } = this;
    const wide = this.wide !== 0;
    let j = slot(head, count);
    let used = 0;
    for (let i = 0; i < n; i++) {
      const k = this.now - i;
      let v = 0;
      // now ≥ head, so k meets head first: from there the slots go down one a unit.
      if (k <= head && head - k < count) {
        v = wide ? f64[first + j]! : u32[first + j]!;
        j = j === 0 ? count - 1 : j - 1;
      }
      if (k === pu) v += latest;
      out[i] = v;
      if (v !== 0) used = i + 1;
    }
    return used;
  }

  /** The sum of `value(k)` over the newest `n` units (now − n + 1 … now): one remainder, then a walk. */
  sum(n: number): number {
    const oldest = this.now - n + 1;
    const hi = Math.min(this.now, this.head);
    const lo = Math.max(oldest, this.head - this.count + 1);
    let sum = 0;
    if (hi >= lo) {
      const first = this.first;
      const last = this.count - 1;
      let j = slot(hi, this.count);
      const wide = this.wide !== 0;
      for (let k = hi; k >= lo; k--) {
        sum += wide ? this.f64[first + j]! : this.u32[first + j]!;
        j = j === 0 ? last : j - 1;
      }
    }
    return this.pu >= oldest && this.pu <= this.now ? sum + this.latest : sum;
  }
}

/**
 * Bucket position of unit k among `count`. Unit indexes fit an Int32 inside the calendar's range, so this is
 * an integer remainder (`mod`'s Float64 ones are library calls: two per bucket read were most of a sum).
 */
function slot(k: number, count: number): number {
  const r = (k | 0) % count;
  return r < 0 ? r + count : r;
}

/** One reusable view per thread: readers are synchronous, so one at a time. */
const view = new RingView();

/** The unit ring `r` reads as now at unit index `kNow`: kNow, or the newest unit it holds if later (a clock set back). */
export function ringNow(views: ShardViews, o: number, shape: CalShape, r: number, kNow: number): number {
  return view.at(views, o, shape, r, kNow).now;
}

/** The newest `n` buckets of ring `r` at unit index `kNow`, newest first, into `out` (length n). */
export function readRing(views: ShardViews, o: number, shape: CalShape, r: number, kNow: number, n: number, out: number[] | Float64Array): void {
  const v = view.at(views, o, shape, r, kNow);
  for (let i = 0; i < n; i++) out[i] = v.value(v.now - i);
}

/**
 * {@link readRing}, returning how many of the `n` buckets written reach the oldest non-zero one (the rest
 * are 0): what a persist keeps of a ring.
 */
export function readRingTrimmed(views: ShardViews, o: number, shape: CalShape, r: number, kNow: number, n: number, out: number[] | Float64Array): number {
  return view.at(views, o, shape, r, kNow).readInto(n, out);
}

/** Sum of the newest `n` buckets of ring `r` at unit index `kNow`. */
export function sumRing(views: ShardViews, o: number, shape: CalShape, r: number, kNow: number, n: number): number {
  return view.at(views, o, shape, r, kNow).sum(n);
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
