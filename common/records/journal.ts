/**
 * The interface a record kind's write algorithm changes shard memory through. The shard thread's journal
 * (workers/shard-core.ts) makes every write undoable and skippable, so a batch a dead thread left half done
 * is resumed exactly; {@link DirectJournal} writes straight through, for property tests of the algorithms.
 *
 * A write position `pos` names one word of the arena: `pos ≥ 0` is a Float64 index, `pos < 0` is the
 * Uint32 index `-1 - pos` (narrow calendar buckets, and the Int32 fields a write algorithm changes).
 *
 * Imported by worker threads: imports nothing main-only.
 */
import { writeBegin, writeEnd } from '../seqlock.js';
import type { ShardViews } from '../layout.js';

export interface Journal {
  /** Writes `value` at `pos` as one step of the op in progress. */
  write(pos: number, value: number): void;
  /**
   * The op's one and only journaled write, to Float64 position `pos ≥ 0` (a hop bucket, a counter's total):
   * journaled without a step of its own, so a replacement undoes it when the op did not finish and the
   * replay does it again. Cheaper than {@link write}; an op that uses it makes no other journaled write.
   */
  writeOnly(pos: number, value: number): void;
  /** Opens (or nests into) a change of the record at offset `o` that readers must see whole. */
  lock(o: number): void;
  /** Closes what the matching {@link lock} opened. */
  unlock(o: number): void;
  /**
   * True when the op's next write is one a thread that died had already made (it will be skipped): an
   * algorithm whose side results (a result cell) were computed from memory before that write must not
   * compute them again from memory after it.
   */
  resuming(): boolean;
}

/** The shard memory a write algorithm runs on, and how it grows. */
export interface RecordMemory {
  readonly shard: number;
  /** Current views (re-read after {@link allocate}: the arena may have grown). */
  readonly views: ShardViews;
  /** Float64 offset of `words` fresh words of the arena, or -1 when maxShardMemoryBytes is reached. */
  allocate(words: number): number;
}

/** A journal that only writes: no undo, no skipping. The seqlock is still taken, so readers stay exact. */
export class DirectJournal implements Journal {
  private depth = 0;

  constructor(private readonly views: ShardViews) {}

  write(pos: number, value: number): void {
    if (pos >= 0) this.views.f64[pos] = value;
    else this.views.u32[-1 - pos] = value;
  }

  writeOnly(pos: number, value: number): void {
    this.views.f64[pos] = value;
  }

  lock(o: number): void {
    if (this.depth++ === 0) writeBegin(this.views.i32, o);
  }

  unlock(o: number): void {
    if (--this.depth === 0) writeEnd(this.views.i32, o);
  }

  resuming(): boolean {
    return false;
  }
}
