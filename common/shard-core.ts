/**
 * What a shard actor does to its memory, as plain functions over shared memory so that tests can drive
 * them without a thread. The thread entry (workers/shard.ts) only decodes messages and calls this.
 *
 * Exactly-once under thread death. The router keeps every batch until the shard has applied it, and
 * replays unacknowledged batches to the replacement thread; the shard makes the replay exact:
 *  - Batches carry an Int32 serial number; `appliedSeq` in the header is published with Atomics.store after
 *    the last op, so a replay of an applied batch is recognised and skipped.
 *  - Inside a batch, the header journals `progress` (ops done) and, for the op in flight, the bucket it
 *    writes and the bucket's old value (`undoOp`/`undoPos`/`undoOld`). A replacement thread first undoes a
 *    write that may have happened without its `progress` step, then resumes at `progress`.
 *  - Window moves only zero buckets and then advance the head, so a half-done move is redone safely.
 *  - Record initialisation writes the kind last and is skipped when the kind is set.
 *
 * Imported by worker threads: imports nothing main-only.
 */
import { protocolError } from './errors.js';
import { hopFastPos, initHop, moveHop } from './hop.js';
import {
  H_APPLIED_SEQ,
  H_ATTACHES,
  H_BATCH_SEQ,
  H_PROGRESS,
  H_RECORDS,
  H_UNDO_OP,
  H_UNDO_SLOT,
  HF_UNDO_OLD,
  HF_UNDO_POS,
  KIND_HOP,
  KIND_NONE,
  refreshArenaViews,
  seqAfter,
  shardViews,
  type ShardViews,
} from './layout.js';
import type { BatchEnvelope, ShardStats } from './messages.js';
import { writeBegin, writeEnd } from './seqlock.js';

export type ApplyResult = 'applied' | 'duplicate' | 'gap';

export class ShardCore {
  readonly shard: number;
  readonly views: ShardViews;
  private readonly arena: SharedArrayBuffer;
  /** The engine clock's time cell, as this thread sees it. */
  private readonly time: Float64Array;

  /** Attaches to a shard's memory and repairs whatever a thread that died mid-batch left behind. */
  constructor(shard: number, header: SharedArrayBuffer, arena: SharedArrayBuffer, timeCell: SharedArrayBuffer) {
    this.shard = shard;
    this.arena = arena;
    this.time = new Float64Array(timeCell, 0, 1);
    this.views = shardViews(header, arena);
    Atomics.add(this.views.header, H_ATTACHES, 1);
    this.repair();
  }

  get appliedSeq(): number {
    return Atomics.load(this.views.header, H_APPLIED_SEQ);
  }

  /** Release a seqlock a move left odd, and undo a bucket write that may lack its progress step. */
  private repair(): void {
    const { header: h, headerF64: hf, i32 } = this.views;
    const slot = h[H_UNDO_SLOT]!;
    if (slot !== 0 && (Atomics.load(i32, 2 * slot) & 1) === 1) writeEnd(i32, slot);
    h[H_UNDO_SLOT] = 0;
    if (h[H_UNDO_OP] === h[H_PROGRESS] && h[H_UNDO_OP]! >= 0) {
      // One aligned 8-byte store, like the write it undoes: readers see the old or the new value.
      this.views.f64[hf[HF_UNDO_POS]!] = hf[HF_UNDO_OLD]!;
      h[H_UNDO_OP] = -1;
    }
  }

  /** Applies one batch if it is the next one; see {@link ApplyResult}. */
  apply(batch: BatchEnvelope): ApplyResult {
    const h = this.views.header;
    const applied = Atomics.load(h, H_APPLIED_SEQ);
    if (!seqAfter(batch.seq, applied)) return 'duplicate';
    if (batch.seq !== ((applied + 1) | 0)) return 'gap';
    refreshArenaViews(this.views, this.arena);
    let start = 0;
    if (h[H_BATCH_SEQ] === batch.seq) {
      start = h[H_PROGRESS]!; // resuming a batch a dead thread had begun
    } else {
      h[H_PROGRESS] = 0;
      h[H_UNDO_OP] = -1;
      h[H_BATCH_SEQ] = batch.seq;
    }
    this.initRecords(batch);
    this.applyOps(batch, start);
    h[H_UNDO_SLOT] = 0;
    h[H_UNDO_OP] = -1;
    Atomics.store(h, H_APPLIED_SEQ, batch.seq);
    return 'applied';
  }

  private initRecords(batch: BatchEnvelope): void {
    const { i32, f64, header } = this.views;
    for (const [o, kind, a, b] of batch.inits) {
      if (i32[2 * o + 1] !== KIND_NONE) continue; // done before this thread's predecessor died
      switch (kind) {
        case KIND_HOP:
          initHop(f64, o, a, b);
          break;
        default:
          throw protocolError(`shard ${this.shard} record init`, kind);
      }
      Atomics.store(i32, 2 * o + 1, kind);
      header[H_RECORDS] = header[H_RECORDS]! + 1;
    }
  }

  private applyOps(batch: BatchEnvelope, start: number): void {
    const { header: h, headerF64: hf, i32, f64 } = this.views;
    const { slots, deltas, runStarts, runTimes } = batch;
    const n = slots.length;
    const runs = runStarts.length;
    let r = 0;
    while (r + 1 < runs && runStarts[r + 1]! <= start) r++;
    let t = runTimes[r]!;
    let nextRun = r + 1 < runs ? runStarts[r + 1]! : n;
    for (let i = start; i < n; i++) {
      if (i === nextRun) {
        t = runTimes[++r]!;
        nextRun = r + 1 < runs ? runStarts[r + 1]! : n;
      }
      const o = slots[i]!;
      let pos: number;
      switch (i32[2 * o + 1]) {
        case KIND_HOP:
          pos = hopFastPos(f64, o, t);
          if (pos === -1) {
            h[H_UNDO_SLOT] = o; // so that a replacement can release a seqlock left odd
            writeBegin(i32, o);
            pos = moveHop(f64, o, t);
            writeEnd(i32, o);
          }
          break;
        default:
          throw protocolError(`shard ${this.shard} op on record ${o}`, i32[2 * o + 1]);
      }
      const old = f64[pos]!;
      hf[HF_UNDO_POS] = pos;
      hf[HF_UNDO_OLD] = old;
      h[H_UNDO_OP] = i;
      f64[pos] = old + deltas[i]!;
      h[H_PROGRESS] = i + 1;
    }
  }

  stats(): ShardStats {
    const h = this.views.header;
    return {
      shard: this.shard,
      appliedSeq: Atomics.load(h, H_APPLIED_SEQ),
      records: h[H_RECORDS]!,
      arenaBytes: this.arena.byteLength,
      attaches: h[H_ATTACHES]!,
      clockMs: this.time[0]!,
    };
  }
}
