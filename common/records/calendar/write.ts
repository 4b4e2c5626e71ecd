/**
 * Writing a calendar record: init, record an event, and merge / import of exported buckets. Every change goes through a {@link Journal}: on a shard thread that
 * makes each write undoable and skippable (workers/shard-core.ts), in property tests it writes straight
 * through. See ./read.ts for what readers see and common/layout.ts for the fields.
 *
 * Resuming after a death: the writes a thread did are skipped by count, so every path does the same writes
 * in the same order when run again — or, once its last write is done, takes a path whose writes are all
 * skipped (here: the last write of a fold sets the latest unit, after which the run is the one-write path).
 *
 * Imported by worker threads: imports nothing main-only.
 */
import { inCalendarRange, mod } from '../../calendar.js';
import { ErrorCode, TallyworksError } from '../../errors.js';
import {
  CAL_CONFIG,
  CAL_EMPTY_HEAD,
  CAL_LATEST_K,
  CAL_RINGS,
  CAL_WIDE,
  CALF_LATEST,
  calBucketBase,
  NARROW_MAX,
  type ShardViews,
} from '../../layout.js';
import type { LoadOp } from '../../messages.js';
import type { Journal, RecordMemory } from '../journal.js';
import type { CalShape } from './shape.js';

/** Writes a fresh (or reused) record: every ring empty, every bucket 0. */
export function initCal(views: ShardViews, o: number, shape: CalShape): void {
  const { i32, u32 } = views;
  const R = shape.rings.length;
  i32[2 * o + CAL_CONFIG] = shape.id;
  i32[2 * o + CAL_WIDE] = 0;
  i32[2 * o + CAL_LATEST_K] = CAL_EMPTY_HEAD;
  views.f64[o + CALF_LATEST] = 0;
  for (let r = 0; r < R; r++) i32[2 * o + CAL_RINGS + r] = CAL_EMPTY_HEAD;
  const base = calBucketBase(o, R);
  u32.fill(0, base, base + shape.buckets);
}

export class CalendarWriter {
  constructor(
    private readonly memory: RecordMemory,
    private readonly journal: Journal,
  ) {}

  private get views(): ShardViews {
    return this.memory.views;
  }

  /**
   * Adds `delta` at time `t` to the record at `o`. An event in the latest unit is one journaled add to the
   * latest count (the common case); an event of a later unit first folds the latest count into every ring;
   * an event older than the latest unit (recordAt) goes straight into the rings.
   */
  add(o: number, shape: CalShape, t: number, delta: number): void {
    // A time no calendar can index (only a custom clock can send one: the API refuses them) is skipped.
    if (!inCalendarRange(t)) return;
    shape.seek(t);
    const kf = shape.ks[0]!;
    const lk = this.views.i32[2 * o + CAL_LATEST_K]!;
    if (kf === lk) {
      this.journal.write(o + CALF_LATEST, this.views.f64[o + CALF_LATEST]! + delta);
      return;
    }
    if (kf < lk) {
      for (let r = 0; r < shape.rings.length; r++) {
        const j = this.ringBucket(o, shape, r, shape.ks[r]!);
        if (j !== -1) this.addBucket(o, shape, j, delta);
      }
      return;
    }
    this.journal.lock(o);
    if (lk !== CAL_EMPTY_HEAD) {
      const latest = this.views.f64[o + CALF_LATEST]!;
      for (let r = 0; r < shape.rings.length; r++) {
        const j = this.ringBucket(o, shape, r, r === 0 ? lk : shape.latestIndex(r, lk));
        if (j !== -1) this.addBucket(o, shape, j, latest);
      }
    }
    this.journal.write(o + CALF_LATEST, delta);
    this.journal.write(-1 - (2 * o + CAL_LATEST_K), kf);
    this.journal.unlock(o);
  }

  /**
   * Adds (merge) or writes (import) bucket values given by absolute unit index, ring by ring, as one change
   * for readers. The latest count is left alone by a merge (adds commute) and zeroed by an import (last, so
   * that the number of writes does not depend on it).
   */
  load(o: number, shape: CalShape, op: LoadOp): void {
    shape.seek(op.t);
    this.journal.lock(o);
    for (let r = 0; r < shape.rings.length; r++) {
      const ring = shape.rings[r]!;
      const kNow = shape.ks[r]!;
      this.ringBucket(o, shape, r, kNow); // bring the ring to now: idempotent
      const head = op.heads[r];
      const values = op.values[r] ?? [];
      for (let b = 0; b < ring.count; b++) {
        const k = kNow - b;
        const src = head === null || head === undefined ? -1 : head - k;
        const v = src >= 0 && src < values.length ? values[src]! : 0;
        const j = ring.base + mod(k, ring.count);
        if (op.type === 'import') this.setBucket(o, shape, j, v);
        else if (v !== 0) this.addBucket(o, shape, j, v);
      }
    }
    if (op.type === 'import') this.journal.write(o + CALF_LATEST, 0);
    this.journal.unlock(o);
  }

  /**
   * Record-wide index of the bucket holding unit `k` in ring `r`, moving the ring forward first when `k`
   * is past its head; -1 when `k` is older than the ring holds.
   */
  private ringBucket(o: number, shape: CalShape, r: number, k: number): number {
    const i32 = this.views.i32;
    const ring = shape.rings[r]!;
    const hi = 2 * o + CAL_RINGS + r;
    const head = i32[hi]!;
    if (k === head) return ring.base + mod(k, ring.count);
    if (k < head) return head - k < ring.count ? ring.base + mod(k, ring.count) : -1;
    // Move: zero the buckets of the units passed, then advance the head (idempotent if cut short, so not
    // journaled).
    this.journal.lock(o);
    const passed = head === CAL_EMPTY_HEAD ? ring.count : k - head;
    const wide = i32[2 * o + CAL_WIDE]!;
    for (let u = 0; u < Math.min(passed, ring.count); u++) {
      const j = ring.base + mod(k - u, ring.count);
      if (wide !== 0) this.views.f64[wide + j] = 0;
      else this.views.u32[calBucketBase(o, shape.rings.length) + j] = 0;
    }
    i32[hi] = k;
    this.journal.unlock(o);
    return ring.base + mod(k, ring.count);
  }

  /** Adds to record-wide bucket `j`, promoting the record to Float64 buckets if a count passes 2^32 − 1. */
  private addBucket(o: number, shape: CalShape, j: number, delta: number): void {
    let wide = this.views.i32[2 * o + CAL_WIDE]!;
    if (wide === 0) {
      const p = calBucketBase(o, shape.rings.length) + j;
      const v = this.views.u32[p]! + delta;
      if (v <= NARROW_MAX) {
        this.journal.write(-1 - p, v);
        return;
      }
      wide = this.promote(o, shape);
    }
    this.journal.write(wide + j, this.views.f64[wide + j]! + delta);
  }

  /** Overwrites record-wide bucket `j`. */
  private setBucket(o: number, shape: CalShape, j: number, value: number): void {
    let wide = this.views.i32[2 * o + CAL_WIDE]!;
    if (wide === 0) {
      if (value <= NARROW_MAX) {
        this.journal.write(-1 - (calBucketBase(o, shape.rings.length) + j), value);
        return;
      }
      wide = this.promote(o, shape);
    }
    this.journal.write(wide + j, value);
  }

  /**
   * Copies the record's buckets to fresh Float64 words and points the record at them. A thread that dies
   * before `wide` is set leaves only unused words; the replay promotes again.
   */
  private promote(o: number, shape: CalShape): number {
    const c = this.memory.allocate(shape.buckets);
    if (c === -1) {
      throw new TallyworksError(
        ErrorCode.CAPACITY,
        `shard ${this.memory.shard}: a bucket passed 2^32 − 1 and promoting its record to 64-bit buckets needs ${shape.buckets * 8} bytes more than maxShardMemoryBytes allows`,
      );
    }
    const { i32, u32, f64 } = this.views;
    const base = calBucketBase(o, shape.rings.length);
    this.journal.lock(o);
    for (let j = 0; j < shape.buckets; j++) f64[c + j] = u32[base + j]!;
    Atomics.store(i32, 2 * o + CAL_WIDE, c);
    this.journal.unlock(o);
    return c;
  }
}
