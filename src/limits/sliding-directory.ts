/**
 * The sliding-window decision records of one limiter, by key: where each key's record is (a segment of
 * its shard's decision memory, src/router/decision-arena.ts, and an offset), its stamp, a
 * free list of retired records for reuse, and the sweep that retires keys idle longer than `staleAfterMs`.
 */
import type { Decider } from '../../common/records/owner-lock.js';
import { initSliding, lastUsedOf, retireIfIdle, type SlidingShape } from '../../common/records/sliding.js';
import type { DecisionPlace, DecisionSegment } from '../router/decision-arena.js';
import type { Router } from '../router/router.js';
import type { DeciderRegistry } from './deciders.js';

/** One key's record. */
export interface SlidingEntry {
  readonly views: DecisionSegment;
  readonly lane: number;
  readonly offset: number;
  readonly stamp: number;
}

/**
 * Where a provider finds its keys' records: the engine's directory on its own thread, a link's on a
 * worker thread (./link.ts).
 */
export interface RecordSource {
  readonly shape: SlidingShape;
  get(key: string): SlidingEntry | undefined;
  /** The record of a valid key if one exists anywhere (a linked thread asks the engine's), without creating one. */
  find(key: string): SlidingEntry | undefined;
  /** The record of a valid key, created if new. */
  getOrCreate(key: string, now: number): SlidingEntry;
  /** Drops what is known of `key` (its record was retired): the next getOrCreate finds or makes a new one. */
  forget(key: string): void;
  /** Keys known. */
  readonly size: number;
}

export class SlidingDirectory implements RecordSource {
  private readonly entries = new Map<string, SlidingEntry>();
  /** Retired records' offsets, by shard: reused only for this limiter's records (same size, same kind). */
  private readonly free: DecisionPlace[][];

  constructor(
    private readonly router: Router,
    readonly shape: SlidingShape,
    private readonly registry: DeciderRegistry,
    /** The engine thread's decider (it initialises and retires records under their locks). */
    private readonly decider: Decider,
  ) {
    this.free = router.lanes.map(() => []);
  }

  get(key: string): SlidingEntry | undefined {
    return this.entries.get(key);
  }

  find(key: string): SlidingEntry | undefined {
    return this.entries.get(key);
  }

  /** The record of `key` (a valid key), created at time `now` if new. Throws TW_CAPACITY when no room, creating nothing. */
  getOrCreate(key: string, now: number): SlidingEntry {
    const known = this.entries.get(key);
    if (known !== undefined) return known;
    const lane = this.router.laneFor(key);
    const place = this.free[lane.index]!.pop() ?? lane.decisions.take(this.shape.words);
    const { segment: views, offset } = place;
    const stamp = this.registry.stamp();
    try {
      initSliding(views.i32, views.f64, offset, this.shape, stamp, now, this.decider);
    } catch (err) {
      this.free[lane.index]!.push(place); // not made: the words stay for the next record
      throw err;
    }
    const entry: SlidingEntry = { views, lane: lane.index, offset, stamp };
    this.entries.set(key, entry);
    return entry;
  }

  /** Nothing to drop here: this directory retires records itself (see sweep). */
  forget(): void {}

  get size(): number {
    return this.entries.size;
  }

  /** Retires every key no decision touched since `before` (ms) and not locked now; returns how many. */
  sweep(before: number): number {
    let retired = 0;
    for (const [key, e] of this.entries) {
      const { i32, f64 } = e.views;
      if (lastUsedOf(f64, e.offset) >= before) continue;
      if (!retireIfIdle(i32, f64, e.offset, this.shape, before, this.decider)) continue;
      this.entries.delete(key);
      this.free[e.lane]!.push({ segment: e.views, offset: e.offset });
      retired++;
    }
    return retired;
  }
}
