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
import { CalShape, evaluateChecks, initCal, OUTCOME_ALLOWED, OUTCOME_REFUSED_BASE, reservationHeld, reservationsAfter } from './cal-record.js';
import { inCalendarRange, mod } from './calendar.js';
import { ErrorCode, TallyworksError, protocolError } from './errors.js';
import { hopFastPos, initHop, moveHop } from './hop.js';
import {
  allocWords,
  CAL_CONFIG,
  CAL_EMPTY_HEAD,
  CAL_PENDING_K,
  CAL_RINGS,
  CAL_WIDE,
  CALF_PENDING,
  CALF_RESERVATIONS,
  calBucketBase,
  CNT_LAX,
  CNTF_COMMITTED,
  CNTF_REMOTE,
  CNTF_REMOTE_AT,
  CNTF_TARGET,
  CNTF_TOTAL,
  H_APPLIED_SEQ,
  H_ATTACHES,
  H_BATCH_SEQ,
  H_RECORDS,
  H_UNDO_SLOT,
  HF_STEP,
  HF_UNDO_OLD,
  HF_UNDO_POS,
  HF_UNDO_STEP,
  KIND_CAL,
  KIND_CNT,
  KIND_HOP,
  KIND_NONE,
  NARROW_MAX,
  refreshArenaViews,
  seqAfter,
  shardViews,
  STEP_SCALE,
  type ShardViews,
} from './layout.js';
import { Action, type BatchEnvelope, type CalConfig, compare, type CounterOp, CounterMode, type CtrlOp, type LoadOp, type ShardStats } from './messages.js';
import { writeBegin, writeEnd } from './seqlock.js';

export type ApplyResult = 'applied' | 'duplicate' | 'gap';

export class ShardCore {
  readonly shard: number;
  readonly views: ShardViews;
  private readonly arena: SharedArrayBuffer;
  /** The engine clock's time cell, as this thread sees it. */
  private readonly time: Float64Array;
  private readonly shapes = new Map<number, CalShape>();
  /** Writes of the current op to skip: done by a thread that died, found in the journal. */
  private skipWrites = 0;
  private readonly retry = new Float64Array(1);
  /** Nesting depth of the record seqlock held (a fold may move rings and promote inside one change). */
  private lockDepth = 0;
  private lastConfig = -1;
  private lastShape: CalShape | undefined;
  /** The dirty bitmap of lax counters (rebuilt when the router grows it). */
  private readonly dirtyBuffer: SharedArrayBuffer;
  private dirty: Int32Array;
  /**
   * Dirty bits gathered during a batch (this thread's own memory) and the words they touch: published to
   * the shared bitmap once per batch, one Atomics.or per word, instead of a locked operation per add.
   */
  private marks = new Int32Array(32);
  private readonly markedWords: number[] = [];

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
    this.dirtyBuffer = dirty;
    this.dirty = new Int32Array(dirty);
    this.time = new Float64Array(timeCell, 0, 1);
    this.views = shardViews(header, arena);
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
    const slot = h[H_UNDO_SLOT]!;
    if (slot !== 0 && (Atomics.load(i32, 2 * slot) & 1) === 1) writeEnd(i32, slot);
    h[H_UNDO_SLOT] = 0;
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
    this.publishMarks();
    h[H_UNDO_SLOT] = 0;
    hf[HF_UNDO_STEP] = -1;
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
        case KIND_CAL:
          initCal(this.views, o, this.shapeFor(a, o));
          break;
        case KIND_CNT:
          i32[2 * o + CNT_LAX] = a;
          f64[o + CNTF_TOTAL] = 0;
          f64[o + CNTF_COMMITTED] = 0;
          f64[o + CNTF_REMOTE] = 0;
          f64[o + CNTF_REMOTE_AT] = Number.NEGATIVE_INFINITY;
          f64[o + CNTF_TARGET] = Number.NaN;
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

  private applyOps(batch: BatchEnvelope, start: number, skip: number): void {
    const { header: h, headerF64: hf } = this.views;
    const { slots, deltas, runStarts, runTimes } = batch;
    const n = slots.length;
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
      const o = slots[i]!;
      const step = i * STEP_SCALE;
      const i32 = this.views.i32;
      const f64 = this.views.f64;
      switch (o >= 0 ? i32[2 * o + 1] : KIND_NONE) {
        case KIND_HOP: {
          let pos = hopFastPos(f64, o, t);
          if (pos === -1) {
            h[H_UNDO_SLOT] = o; // so that a replacement can release a seqlock left odd
            writeBegin(i32, o);
            pos = moveHop(f64, o, t);
            writeEnd(i32, o);
          }
          const old = f64[pos]!;
          hf[HF_UNDO_POS] = pos;
          hf[HF_UNDO_OLD] = old;
          hf[HF_UNDO_STEP] = step;
          f64[pos] = old + deltas[i]!;
          break;
        }
        case KIND_CAL:
          this.addCal(o, t, deltas[i]!);
          break;
        case KIND_CNT:
          this.addCounter(o, deltas[i]!);
          break;
        default:
          if (o >= 0) throw protocolError(`shard ${this.shard} op on record ${o}`, i32[2 * o + 1]);
          this.applyCtrl(batch.ctrl[-1 - o], i);
      }
      hf[HF_STEP] = step + STEP_SCALE;
      this.skipWrites = 0;
    }
  }

  // ── calendar records ──────────────────────────────────────────────────────────────────────────────

  /**
   * A journaled write: the op's next write step. Writes a thread that died had already done (and whose
   * step it recorded) are skipped, so a resumed op redoes exactly the rest. `pos` as in HF_UNDO_POS.
   */
  private write(pos: number, value: number): void {
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

  /** Opens (or nests into) a change of record `o` that readers must see whole. */
  private lock(o: number): void {
    if (this.lockDepth++ === 0) {
      this.views.header[H_UNDO_SLOT] = o; // so that a replacement can release a seqlock left odd
      writeBegin(this.views.i32, o);
    }
  }

  private unlock(o: number): void {
    if (--this.lockDepth === 0) writeEnd(this.views.i32, o);
  }

  private calShape(o: number): CalShape {
    const config = this.views.i32[2 * o + CAL_CONFIG]!;
    if (config !== this.lastConfig) {
      this.lastShape = this.shapeFor(config, o);
      this.lastConfig = config;
    }
    return this.lastShape!;
  }

  /**
   * Adds `delta` at time `t` to the calendar record at `o`. An event in the unit of the pending count is one
   * journaled add to it (the common case); an event of a later unit first folds the pending count into every
   * ring; an event older than the pending unit (recordAt) goes straight into the rings.
   *
   * Resuming after a death: the writes a thread did are skipped by count, so every path must do the same
   * writes in the same order when run again — or, once its last write is done, take a path whose writes
   * are all skipped (here: the last write sets the pending unit, after which the run is the one-write path).
   */
  private addCal(o: number, t: number, delta: number): void {
    // A time no calendar can index (only a custom clock can send one: the API refuses them) is skipped.
    if (!inCalendarRange(t)) return;
    const shape = this.calShape(o);
    shape.seek(t);
    const kf = shape.ks[0]!;
    const pk = this.views.i32[2 * o + CAL_PENDING_K]!;
    if (kf === pk) {
      this.write(o + CALF_PENDING, this.views.f64[o + CALF_PENDING]! + delta);
      return;
    }
    if (kf < pk) {
      for (let r = 0; r < shape.rings.length; r++) {
        const j = this.ringBucket(o, shape, r, shape.ks[r]!);
        if (j !== -1) this.addBucket(o, shape, j, delta);
      }
      return;
    }
    this.lock(o);
    if (pk !== CAL_EMPTY_HEAD) {
      const pending = this.views.f64[o + CALF_PENDING]!;
      for (let r = 0; r < shape.rings.length; r++) {
        const j = this.ringBucket(o, shape, r, r === 0 ? pk : shape.pendingIndex(r, pk));
        if (j !== -1) this.addBucket(o, shape, j, pending);
      }
    }
    this.write(o + CALF_PENDING, delta);
    this.write(-1 - (2 * o + CAL_PENDING_K), kf);
    this.unlock(o);
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
    // Move: zero the buckets of the units passed, then advance the head (idempotent if cut short).
    this.lock(o);
    const passed = head === CAL_EMPTY_HEAD ? ring.count : k - head;
    const wide = i32[2 * o + CAL_WIDE]!;
    for (let u = 0; u < Math.min(passed, ring.count); u++) {
      const j = ring.base + mod(k - u, ring.count);
      if (wide !== 0) this.views.f64[wide + j] = 0;
      else this.views.u32[calBucketBase(o, shape.rings.length) + j] = 0;
    }
    i32[hi] = k;
    this.unlock(o);
    return ring.base + mod(k, ring.count);
  }

  /** Adds to record-wide bucket `j`, promoting the record to Float64 buckets if a count passes 2^32 − 1. */
  private addBucket(o: number, shape: CalShape, j: number, delta: number): void {
    let wide = this.views.i32[2 * o + CAL_WIDE]!;
    if (wide === 0) {
      const p = calBucketBase(o, shape.rings.length) + j;
      const v = this.views.u32[p]! + delta;
      if (v <= NARROW_MAX) {
        this.write(-1 - p, v);
        return;
      }
      wide = this.promote(o, shape);
    }
    this.write(wide + j, this.views.f64[wide + j]! + delta);
  }

  /** Overwrites record-wide bucket `j`. */
  private setBucket(o: number, shape: CalShape, j: number, value: number): void {
    let wide = this.views.i32[2 * o + CAL_WIDE]!;
    if (wide === 0) {
      if (value <= NARROW_MAX) {
        this.write(-1 - (calBucketBase(o, shape.rings.length) + j), value);
        return;
      }
      wide = this.promote(o, shape);
    }
    this.write(wide + j, value);
  }

  /**
   * Copies the record's buckets to fresh Float64 words and points the record at them. A thread that dies
   * before `wide` is set leaves only unused words; the replay promotes again.
   */
  private promote(o: number, shape: CalShape): number {
    const c = allocWords(this.views.header, this.arena, shape.buckets);
    if (c === -1) {
      throw new TallyworksError(
        ErrorCode.CAPACITY,
        `shard ${this.shard}: a bucket passed 2^32 − 1 and promoting its record to 64-bit buckets needs ${shape.buckets * 8} bytes more than maxShardMemoryBytes allows`,
      );
    }
    refreshArenaViews(this.views, this.arena);
    const { i32, u32, f64 } = this.views;
    const base = calBucketBase(o, shape.rings.length);
    this.lock(o);
    for (let j = 0; j < shape.buckets; j++) f64[c + j] = u32[base + j]!;
    Atomics.store(i32, 2 * o + CAL_WIDE, c);
    this.unlock(o);
    return c;
  }

  // ── counter records ───────────────────────────────────────────────────────────────────────────────

  /** Adds to a counter's total (one journaled write) and notes it dirty for the flusher (see publishMarks). */
  private addCounter(o: number, delta: number): void {
    this.write(o + CNTF_TOTAL, this.views.f64[o + CNTF_TOTAL]! + delta);
    const lax = this.views.i32[2 * o + CNT_LAX]!;
    if (lax >= 0) this.mark(lax);
  }

  private mark(lax: number): void {
    const w = lax >>> 5;
    if (w >= this.marks.length) {
      const grown = new Int32Array(Math.max(w + 1, this.marks.length * 2));
      grown.set(this.marks);
      this.marks = grown;
    }
    if (this.marks[w] === 0) this.markedWords.push(w);
    this.marks[w]! |= 1 << (lax & 31);
  }

  /**
   * Sets the batch's dirty bits in the shared bitmap. After every total the batch wrote (the locked
   * Atomics.or orders them), so a flusher that takes a bit reads totals that include the adds behind it;
   * before appliedSeq, so a replay of the batch never depends on this thread's memory.
   */
  private publishMarks(): void {
    if (this.markedWords.length === 0) return;
    if (this.marks.length > this.dirty.length) this.dirty = new Int32Array(this.dirtyBuffer);
    for (const w of this.markedWords) {
      Atomics.or(this.dirty, w, this.marks[w]!);
      this.marks[w] = 0;
    }
    this.markedWords.length = 0;
  }

  /** Marks every lax counter ops [0, end) of `batch` add to (a resumed batch's ops done before the death). */
  private markCounters(batch: BatchEnvelope, end: number): void {
    const { i32 } = this.views;
    for (let i = 0; i < end; i++) {
      const o = batch.slots[i]!;
      if (o >= 0 && i32[2 * o + 1] === KIND_CNT && i32[2 * o + CNT_LAX]! >= 0) this.mark(i32[2 * o + CNT_LAX]!);
    }
  }

  /**
   * An in-process counter op (embedded mode). The cell is written before the journaled write of the total,
   * so a resumed op whose write was done (skipWrites) finds its result already in the cell.
   */
  private counterOp(op: CounterOp): void {
    if (this.skipWrites > 0) {
      this.skipWrites--;
      return;
    }
    const f64 = this.views.f64;
    const o = op.slot;
    const old = f64[o + CNTF_TOTAL]!;
    let next = old;
    if (compare(op.cmp, old, op.x)) {
      if (op.mode === CounterMode.INC) next = old + op.n;
      else if (op.mode === CounterMode.SET) next = op.n;
      else if (op.mode === CounterMode.DEL) next = 0;
      else throw protocolError(`shard ${this.shard} counter op mode`, op.mode);
    }
    const safe = Math.abs(next) <= Number.MAX_SAFE_INTEGER;
    f64[op.cell] = safe ? next : Number.NaN;
    f64[op.cell + 1] = old;
    if (safe && next !== old) this.write(o + CNTF_TOTAL, next);
  }

  // ── ops that are not a plain add ──────────────────────────────────────────────────────────────────

  private applyCtrl(op: CtrlOp | undefined, i: number): void {
    if (op === undefined) throw protocolError(`shard ${this.shard} control op ${i}`, op);
    const i32 = this.views.i32;
    const o = op.slot;
    if (op.type === 'release') {
      if (i32[2 * o + 1] !== KIND_NONE) {
        Atomics.store(i32, 2 * o + 1, KIND_NONE);
        this.views.header[H_RECORDS] = this.views.header[H_RECORDS]! - 1;
      }
      return;
    }
    if (op.type === 'counter') {
      if (i32[2 * o + 1] !== KIND_CNT) throw protocolError(`shard ${this.shard} counter op on record ${o}`, i32[2 * o + 1]);
      this.counterOp(op);
      return;
    }
    if (i32[2 * o + 1] !== KIND_CAL) throw protocolError(`shard ${this.shard} ${op.type} on record ${o}`, i32[2 * o + 1]);
    const shape = this.calShape(o);
    switch (op.type) {
      case 'decide': {
        // A resumed decision whose first write was done had passed: do not decide again.
        // A reservation past the most a record counts is refused like a full window (it cannot be held).
        const reservations = op.action === Action.RESERVE ? reservationsAfter(this.views, o, shape, op.t, 1) : 0;
        if (this.skipWrites === 0) {
          shape.seek(op.t);
          if (reservations === undefined) this.retry[0] = Number.NaN;
          const failed = reservations === undefined ? 0 : evaluateChecks(this.views, o, shape, op.t, op.checks, this.retry);
          if (failed !== -1) {
            this.views.f64[op.cell] = OUTCOME_REFUSED_BASE + failed;
            this.views.f64[op.cell + 1] = this.retry[0]!;
            return;
          }
        }
        this.views.f64[op.cell] = OUTCOME_ALLOWED;
        this.views.f64[op.cell + 1] = 0;
        if (op.action === Action.RECORD) this.addCal(o, op.t, 1);
        else if (op.action === Action.RESERVE) this.write(o + CALF_RESERVATIONS, reservations!);
        return;
      }
      case 'commit':
      case 'cancel':
        // One write for count and time together, so a replay after a death redoes or skips it whole. A
        // reservation that had expired releases nothing: its place was given up already.
        if (reservationHeld(this.views, o, shape, op.t, op.reservedAt)) this.write(o + CALF_RESERVATIONS, reservationsAfter(this.views, o, shape, op.t, -1)!);
        if (op.type === 'commit') this.addCal(o, op.t, 1);
        return;
      case 'merge':
      case 'import':
        this.load(o, shape, op);
        return;
      default:
        throw protocolError(`shard ${this.shard} control op`, op);
    }
  }

  /**
   * Adds (merge) or writes (import) bucket values given by absolute unit index, ring by ring, as one change
   * for readers. The pending count is left alone by a merge (adds commute) and zeroed by an import (last,
   * so that the number of writes does not depend on it).
   */
  private load(o: number, shape: CalShape, op: LoadOp): void {
    shape.seek(op.t);
    this.lock(o);
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
    if (op.type === 'import') this.write(o + CALF_PENDING, 0);
    this.unlock(o);
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
