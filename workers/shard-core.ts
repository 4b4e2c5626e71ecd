/**
 * The shard actor's core: batch sequencing, time runs, repair after a death, control-op dispatch, and the
 * journal every record kind writes through. The record kinds' own algorithms live in common/records/
 * (hop.ts, calendar/, counter.ts); the thread entry (workers/shard.ts) only decodes messages and calls
 * this, so tests drive it without a thread.
 *
 * Exactly-once under thread death. The router keeps every batch until the shard has applied it, and
 * replays unacknowledged batches to the replacement thread; the shard makes the replay exact:
 *  - Batches carry an Int32 serial number; `appliedSeq` in the header is published with Atomics.store after
 *    the last op, so a replay of an applied batch is recognised and skipped.
 *  - Inside a batch, the header journals the step (op index × STEP_SCALE + writes done in that op) and, for
 *    the last write, its position and the old value (HF_UNDO_POS / HF_UNDO_OLD / HF_UNDO_STEP). A
 *    replacement thread first undoes a write that may have happened without its step, then resumes at the
 *    step, skipping the writes of the op in flight that were done.
 *  - Window and ring moves only zero buckets and then advance the head, so a half-done move is redone safely.
 *  - Record initialisation writes the kind last and is skipped when the kind is set.
 *
 * Imported by worker threads: imports nothing main-only.
 */
import { protocolError } from '../common/errors.js';
import {
  allocWords,
  CAL_CONFIG,
  H_APPLIED_SEQ,
  H_ATTACHES,
  H_BATCH_SEQ,
  H_RECORDS,
  H_UNDO_OFFSET,
  HF_STEP,
  HF_UNDO_OLD,
  HF_UNDO_POS,
  HF_UNDO_STEP,
  KIND_CAL,
  KIND_CNT,
  KIND_HOP,
  KIND_NONE,
  refreshArenaViews,
  seqAfter,
  shardViews,
  STEP_SCALE,
  type ShardViews,
} from '../common/layout.js';
import { type BatchEnvelope, type CalConfig, type CtrlOp, INIT_STRIDE, type ShardStats } from '../common/messages.js';
import { CalShape } from '../common/records/calendar/shape.js';
import { CalendarWriter, initCal } from '../common/records/calendar/write.js';
import { addCounter, counterOp, DirtyMarks, initCounter, laxIndexOf } from '../common/records/counter.js';
import { addHop, initHop, loadHop } from '../common/records/hop.js';
import type { Journal, RecordMemory } from '../common/records/journal.js';
import { writeBegin, writeEnd } from '../common/seqlock.js';

export type ApplyResult = 'applied' | 'duplicate' | 'gap';

export class ShardCore implements Journal, RecordMemory {
  readonly shard: number;
  readonly views: ShardViews;
  private readonly arena: SharedArrayBuffer;
  /** The engine clock's time cell, as this thread sees it. */
  private readonly time: Float64Array;
  private readonly shapes = new Map<number, CalShape>();
  /** Writes of the current op to skip: done by a thread that died, found in the journal. */
  private skipWrites = 0;
  /** The calendar kind's write algorithms, journaled through this core. */
  private readonly calendar: CalendarWriter;
  /** Nesting depth of the record seqlock held (a fold may move rings and promote inside one change). */
  private lockDepth = 0;
  private lastConfig = -1;
  private lastShape: CalShape | undefined;
  /** Dirty bits of the lax counters the batch adds to. */
  private readonly marks: DirtyMarks;

  /** Attaches to a shard's memory and repairs whatever a thread that died mid-batch left behind. */
  constructor(
    shard: number,
    header: SharedArrayBuffer,
    arena: SharedArrayBuffer,
    timeCell: SharedArrayBuffer,
    calendars: readonly CalConfig[] = [],
    dirty: SharedArrayBuffer = new SharedArrayBuffer(4),
  ) {
    this.shard = shard;
    this.arena = arena;
    this.marks = new DirtyMarks(dirty);
    this.time = new Float64Array(timeCell, 0, 1);
    this.views = shardViews(header, arena);
    this.calendar = new CalendarWriter(this, this);
    for (const c of calendars) this.registerCalendar(c);
    Atomics.add(this.views.header, H_ATTACHES, 1);
    this.repair();
  }

  get appliedSeq(): number {
    return Atomics.load(this.views.header, H_APPLIED_SEQ);
  }

  private registerCalendar(config: CalConfig): void {
    if (!this.shapes.has(config.id)) this.shapes.set(config.id, new CalShape(config));
  }

  /** Release a seqlock a move left odd, and undo a write that may lack its journal step. */
  private repair(): void {
    const { header: h, headerF64: hf, i32 } = this.views;
    const offset = h[H_UNDO_OFFSET]!;
    if (offset !== 0 && (Atomics.load(i32, 2 * offset) & 1) === 1) writeEnd(i32, offset);
    h[H_UNDO_OFFSET] = 0;
    if (hf[HF_UNDO_STEP] === hf[HF_STEP] && hf[HF_UNDO_STEP]! >= 0) {
      // One aligned store, like the write it undoes: readers see the old or the new value.
      const pos = hf[HF_UNDO_POS]!;
      if (pos >= 0) this.views.f64[pos] = hf[HF_UNDO_OLD]!;
      else this.views.u32[-1 - pos] = hf[HF_UNDO_OLD]!;
      hf[HF_UNDO_STEP] = -1;
    }
  }

  /** Applies one batch if it is the next one; see {@link ApplyResult}. */
  apply(batch: BatchEnvelope): ApplyResult {
    const h = this.views.header;
    const hf = this.views.headerF64;
    const applied = Atomics.load(h, H_APPLIED_SEQ);
    if (!seqAfter(batch.seq, applied)) return 'duplicate';
    if (batch.seq !== ((applied + 1) | 0)) return 'gap';
    refreshArenaViews(this.views, this.arena);
    let step = 0;
    if (h[H_BATCH_SEQ] === batch.seq) {
      step = hf[HF_STEP]!; // resuming a batch a dead thread had begun
    } else {
      hf[HF_STEP] = 0;
      hf[HF_UNDO_STEP] = -1;
      h[H_BATCH_SEQ] = batch.seq;
    }
    for (const c of batch.calendars) this.registerCalendar(c);
    this.initRecords(batch);
    const start = Math.floor(step / STEP_SCALE);
    // Resuming: the ops a dead thread applied marked their counters in its own memory, now lost.
    if (start > 0) this.markCounters(batch, start);
    this.applyOps(batch, start, step % STEP_SCALE);
    this.marks.publish();
    h[H_UNDO_OFFSET] = 0;
    hf[HF_UNDO_STEP] = -1;
    Atomics.store(h, H_APPLIED_SEQ, batch.seq);
    return 'applied';
  }

  private initRecords(batch: BatchEnvelope): void {
    const { i32, f64, header } = this.views;
    const inits = batch.inits;
    for (let i = 0; i < inits.length; i += INIT_STRIDE) {
      const o = inits[i]!;
      const kind = inits[i + 1]!;
      if (i32[2 * o + 1] !== KIND_NONE) continue; // done before this thread's predecessor died
      switch (kind) {
        case KIND_HOP:
          initHop(f64, o, inits[i + 2]!, inits[i + 3]!);
          break;
        case KIND_CAL:
          initCal(this.views, o, this.shapeFor(inits[i + 2]!, o));
          break;
        case KIND_CNT:
          initCounter(this.views, o, inits[i + 2]!);
          break;
        default:
          throw protocolError(`shard ${this.shard} record init`, kind);
      }
      Atomics.store(i32, 2 * o + 1, kind);
      header[H_RECORDS] = header[H_RECORDS]! + 1;
    }
  }

  private shapeFor(config: number, o: number): CalShape {
    const shape = this.shapes.get(config);
    if (shape === undefined) throw protocolError(`shard ${this.shard} calendar record ${o}`, `config ${config}`);
    return shape;
  }

  /** Marks every lax counter ops [0, end) of `batch` add to (a resumed batch's ops done before the death). */
  private markCounters(batch: BatchEnvelope, end: number): void {
    const { i32 } = this.views;
    for (let i = 0; i < end; i++) {
      const o = batch.offsets[i]!;
      if (o >= 0 && i32[2 * o + 1] === KIND_CNT && laxIndexOf(this.views, o) >= 0) this.marks.mark(laxIndexOf(this.views, o));
    }
  }

  private applyOps(batch: BatchEnvelope, start: number, skip: number): void {
    const hf = this.views.headerF64;
    const { offsets, deltas, runStarts, runTimes } = batch;
    const n = offsets.length;
    const runs = runStarts.length;
    let r = 0;
    while (r + 1 < runs && runStarts[r + 1]! <= start) r++;
    let t = runTimes[r]!;
    let nextRun = r + 1 < runs ? runStarts[r + 1]! : n;
    this.skipWrites = skip;
    for (let i = start; i < n; i++) {
      if (i === nextRun) {
        t = runTimes[++r]!;
        nextRun = r + 1 < runs ? runStarts[r + 1]! : n;
      }
      const o = offsets[i]!;
      const step = i * STEP_SCALE;
      const i32 = this.views.i32;
      const f64 = this.views.f64;
      switch (o >= 0 ? i32[2 * o + 1] : KIND_NONE) {
        case KIND_HOP:
          addHop(f64, this, o, t, deltas[i]!);
          break;
        case KIND_CAL:
          this.calendar.add(o, this.calShape(o), t, deltas[i]!);
          break;
        case KIND_CNT: {
          const lax = addCounter(this.views, this, o, deltas[i]!);
          if (lax >= 0) this.marks.mark(lax);
          break;
        }
        default:
          if (o >= 0) throw protocolError(`shard ${this.shard} op on record ${o}`, i32[2 * o + 1]);
          this.applyCtrl(batch.ctrl[-1 - o], i);
      }
      hf[HF_STEP] = step + STEP_SCALE;
      this.skipWrites = 0;
    }
  }

  // ── the journal (see common/records/journal.ts) ──────────────────────────────────────────────────

  /**
   * A journaled write: the op's next write step. Writes a thread that died had already done (and whose
   * step it recorded) are skipped, so a resumed op redoes exactly the rest. `pos` as in HF_UNDO_POS.
   */
  write(pos: number, value: number): void {
    if (this.skipWrites > 0) {
      this.skipWrites--;
      return;
    }
    const hf = this.views.headerF64;
    const step = hf[HF_STEP]!;
    if (pos >= 0) {
      hf[HF_UNDO_OLD] = this.views.f64[pos]!;
      hf[HF_UNDO_POS] = pos;
      hf[HF_UNDO_STEP] = step;
      this.views.f64[pos] = value;
    } else {
      hf[HF_UNDO_OLD] = this.views.u32[-1 - pos]!;
      hf[HF_UNDO_POS] = pos;
      hf[HF_UNDO_STEP] = step;
      this.views.u32[-1 - pos] = value;
    }
    hf[HF_STEP] = step + 1;
  }

  /**
   * The op's only write (see Journal.writeOnly): the undo entry carries the op's own step, so repair()
   * undoes it when the op did not finish (HF_STEP was not advanced past it) and the replay redoes it.
   */
  writeOnly(pos: number, value: number): void {
    const hf = this.views.headerF64;
    const f64 = this.views.f64;
    hf[HF_UNDO_POS] = pos;
    hf[HF_UNDO_OLD] = f64[pos]!;
    hf[HF_UNDO_STEP] = hf[HF_STEP]!;
    f64[pos] = value;
  }

  /** Opens (or nests into) a change of record `o` that readers must see whole. */
  lock(o: number): void {
    if (this.lockDepth++ === 0) {
      this.views.header[H_UNDO_OFFSET] = o; // so that a replacement can release a seqlock left odd
      writeBegin(this.views.i32, o);
    }
  }

  unlock(o: number): void {
    if (--this.lockDepth === 0) writeEnd(this.views.i32, o);
  }

  resuming(): boolean {
    return this.skipWrites > 0;
  }

  allocate(words: number): number {
    const c = allocWords(this.views.header, this.arena, words);
    if (c !== -1) refreshArenaViews(this.views, this.arena);
    return c;
  }

  private calShape(o: number): CalShape {
    const config = this.views.i32[2 * o + CAL_CONFIG]!;
    if (config !== this.lastConfig) {
      this.lastShape = this.shapeFor(config, o);
      this.lastConfig = config;
    }
    return this.lastShape!;
  }

  // ── ops that are not a plain add ──────────────────────────────────────────────────────────────────

  private applyCtrl(op: CtrlOp | undefined, i: number): void {
    if (op === undefined) throw protocolError(`shard ${this.shard} control op ${i}`, op);
    const i32 = this.views.i32;
    const o = op.offset;
    if (op.type === 'release') {
      if (i32[2 * o + 1] !== KIND_NONE) {
        Atomics.store(i32, 2 * o + 1, KIND_NONE);
        this.views.header[H_RECORDS] = this.views.header[H_RECORDS]! - 1;
      }
      return;
    }
    if (op.type === 'counter') {
      if (i32[2 * o + 1] !== KIND_CNT) throw protocolError(`shard ${this.shard} counter op on record ${o}`, i32[2 * o + 1]);
      counterOp(this.views, this, op, this.shard);
      return;
    }
    if (i32[2 * o + 1] === KIND_HOP && op.type === 'merge') {
      loadHop(this.views.f64, this, o, op.heads[0] ?? -Infinity, op.values[0] ?? []);
      return;
    }
    if (i32[2 * o + 1] !== KIND_CAL) throw protocolError(`shard ${this.shard} ${op.type} on record ${o}`, i32[2 * o + 1]);
    const shape = this.calShape(o);
    switch (op.type) {
      case 'merge':
      case 'import':
        this.calendar.load(o, shape, op);
        return;
      default:
        throw protocolError(`shard ${this.shard} control op`, op satisfies never);
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
