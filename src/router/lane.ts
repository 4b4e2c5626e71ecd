/**
 * A lane: the router's side of one shard. It owns the shard's memory (allocated here, on the calling
 * thread, so it survives the shard thread), the open batch the hot path appends to, the batches in
 * flight, and the replay of those batches when the shard thread dies.
 *
 * Backpressure. At most `maxInFlight` batches per shard are sent and not yet applied. A batch is free
 * again as soon as the shard publishes its sequence as applied (read from shared memory, so this works
 * even while the producer never yields to the event loop). When the open batch is full and no batch is
 * free, the producing call busy-waits on the shard's applied sequence: the producer is slowed to the
 * shard's pace and memory stays bounded. While a replacement thread starts (it boots a module, and piscina hands
 * it work only once this thread's event loop has seen it ready), the lane holds up to
 * `restartBacklogBatches` instead, so a producer that yields now and then is not blocked by a restart.
 * If the shard applies nothing for `stallTimeoutMs` (it died while the producer held the thread, so it
 * could not be replaced), the call throws ShardStalledError and records nothing. The main thread never
 * calls Atomics.wait.
 */
import { encode } from '../../common/codec.js';
import { connectControl, releaseControl, type Remote } from '../../common/control.js';
import { ErrorCode, TallyworksError, closedError, reviveError } from '../../common/errors.js';
import {
  allocWords,
  ARENA_FIRST_WORD,
  CELL_WORDS,
  DIRTY_INITIAL_BYTES,
  H_APPLIED_SEQ,
  H_USED_WORDS,
  HEADER_BYTES,
  refreshArenaViews,
  WORD_BYTES,
  seqAfter,
  shardViews,
  type ShardViews,
} from '../../common/layout.js';
import type { AttachInfo, CalConfig, CtrlOp, DataMessage, DataReply, RecordInit, ShardControl, ShardStats } from '../../common/messages.js';
import { readBegin, readValid } from '../../common/seqlock.js';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { ResolvedOptions } from '../options.js';
import { ShardThread } from '../threads/threads.js';
import { Batch, SEALED_BATCH } from './batch.js';

/** What a lane needs of the engine options (see EngineOptions for each one's meaning). */
export type LaneConfig = Pick<
  ResolvedOptions,
  'batchSize' | 'maxInFlight' | 'stallTimeoutMs' | 'maxShardMemoryBytes' | 'maxRestarts' | 'restartBacklogBatches'
>;

/** Initial arena size; it grows by doubling up to `maxShardMemoryBytes`. */
const INITIAL_ARENA_BYTES = 1 << 20;
/** Seqlock read attempts before a reader concludes the writer died mid-write and yields. */
const READ_SPINS = 1 << 16;
/** What {@link Lane.readConsistent} returns when a writer held the record for the whole spin. */
export const MISSED: unique symbol = Symbol('missed');
/** How long a producer spins on a full window before it queues into the restart backlog instead. */
const BACKLOG_AFTER_SPIN_MS = 2;
/** Decision cells allocated at a time. */
const CELL_BLOCK = 1024;

/** One shard thread's attachment: its lease and ports. Replaced when the thread dies. */
interface Attachment {
  readonly data: MessagePort;
  readonly controlPort: MessagePort;
  readonly control: Remote<ShardControl>;
  readonly lease: Promise<unknown>;
  /** Rejects with {@link DETACHED} when the attachment ends: a control call racing it never hangs. */
  readonly gone: Promise<never>;
  readonly end: () => void;
}

/** Why a control call on an attachment that ended was abandoned (it is asked again of the replacement). */
const DETACHED = new Error('the shard thread was replaced');

interface Waiter {
  readonly seq: number;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

export class Lane {
  readonly index: number;
  /** The open batch. Public for the hot path's sake; only `append` writes it. */
  open: Batch;
  private readonly config: LaneConfig;
  readonly header: SharedArrayBuffer;
  readonly arena: SharedArrayBuffer;
  /** The dirty bitmap of this shard's lax counters (see common/layout.ts). */
  readonly dirty: SharedArrayBuffer;
  /** Lax indexes handed out (bits of `dirty` in use). */
  private laxCount = 0;
  private readonly views: ShardViews;
  private readonly timeCell: SharedArrayBuffer;
  private readonly time: Float64Array;
  private readonly thread: ShardThread;
  private readonly onFirstOp: () => void;
  private readonly free: Batch[] = [];
  private readonly inflight: Batch[] = [];
  private readonly waiters: Waiter[] = [];
  private lastSeq = 0;
  /** Calendar configs registered with this shard, re-sent to a replacement thread. */
  private readonly calendars: CalConfig[] = [];
  /** Decision cells not in use (Float64 indexes into the arena). */
  private readonly freeCells: number[] = [];
  /** Words of released records, by record size, reusable once the release is applied. */
  private readonly freeRecords = new Map<number, number[]>();
  private epoch = 0;
  private failedRestarts = 0;
  private appliedAtRestart = 0;
  private restarts = 0;
  private attachment: Attachment | undefined;
  private failure: TallyworksError | undefined;
  private sealed = false;
  /** True from a restart until the replacement thread answers. */
  private restarting = false;
  /**
   * True from the moment a thread is known lost until its replacement is attached: no batch can be applied
   * before this thread's event loop runs the restart, so spinning for room would only delay it.
   */
  private replacing = false;

  constructor(index: number, config: LaneConfig, timeCell: SharedArrayBuffer, onFirstOp: () => void) {
    this.index = index;
    this.config = config;
    this.header = new SharedArrayBuffer(HEADER_BYTES);
    this.arena = new SharedArrayBuffer(Math.min(INITIAL_ARENA_BYTES, config.maxShardMemoryBytes), {
      maxByteLength: config.maxShardMemoryBytes,
    });
    this.views = shardViews(this.header, this.arena);
    this.views.header[H_USED_WORDS] = ARENA_FIRST_WORD;
    this.dirty = new SharedArrayBuffer(DIRTY_INITIAL_BYTES, { maxByteLength: Math.max(DIRTY_INITIAL_BYTES, config.maxShardMemoryBytes / 64) });
    this.timeCell = timeCell;
    this.time = new Float64Array(timeCell, 0, 1);
    this.onFirstOp = onFirstOp;
    this.thread = new ShardThread(
      (err) => this.fail(new TallyworksError(ErrorCode.PROTOCOL, `shard ${index}: ${err.message}`, { cause: err })),
      () => {
        // Deferred so that piscina has started its replacement thread; the epoch is the dying thread's, so
        // a lease rejection for the same death that restarts first makes this a no-op.
        const epoch = this.epoch;
        this.replacing = true;
        setImmediate(() => this.restart(epoch));
      },
    );
    for (let i = 0; i <= config.maxInFlight; i++) this.free.push(new Batch(config.batchSize));
    this.open = this.free.pop()!;
  }

  /** Starts the shard thread, attaches it to the memory, and resolves once it (or its replacement) answers. */
  async start(): Promise<void> {
    this.attach();
    await this.control((c) => c.stats());
  }

  /**
   * A control-plane call to the shard thread. If the thread dies before it answers, the call is asked
   * again of the replacement (control calls only read), so it neither hangs on a closed port nor fails
   * for a restart; it rejects when the shard is given up or the engine closes. Bounded: each retry needs
   * a new thread, and after `maxRestarts` deaths without progress the shard is given up.
   */
  private async control<T>(call: (c: Remote<ShardControl>) => Promise<T>): Promise<T> {
    for (;;) {
      const a = this.attachment;
      if (a === undefined || this.failure !== undefined) throw this.failure ?? closedError('shard control');
      try {
        return await Promise.race([call(a.control), a.gone]);
      } catch (err) {
        if (err !== DETACHED) throw err;
      }
    }
  }

  /** Leases the (current or replacement) thread and connects the data and control ports. */
  private attach(): Attachment {
    const data = new MessageChannel();
    const control = new MessageChannel();
    const info: AttachInfo = {
      shard: this.index,
      header: this.header,
      arena: this.arena,
      timeCell: this.timeCell,
      data: data.port2,
      control: control.port2,
      calendars: this.calendars,
      dirty: this.dirty,
    };
    const epoch = this.epoch;
    const lease = this.thread.lease({ type: 'attach', attach: info }, [data.port2, control.port2]);
    lease.catch(() => this.restart(epoch));
    data.port1.on('message', (reply: DataReply) => this.onReply(reply));
    // Only a pending read or close keeps the process alive (see waitApplied).
    data.port1.unref();
    control.port1.unref();
    let end!: () => void;
    const gone = new Promise<never>((_, reject) => (end = () => reject(DETACHED)));
    gone.catch(() => undefined);
    this.attachment = { data: data.port1, controlPort: control.port1, control: connectControl<ShardControl>(control.port1), lease, gone, end };
    return this.attachment;
  }

  private detach(): void {
    const a = this.attachment;
    if (a === undefined) return;
    this.attachment = undefined;
    a.end();
    releaseControl(a.control);
    a.controlPort.close();
    a.data.close();
  }

  // ── hot path ──────────────────────────────────────────────────────────────────────────────────────

  /** Appends one op (record word offset, delta) stamped with the clock's time. Allocation-free. */
  append(slot: number, delta: number): void {
    // The first op of a batch: the clock may have slept through an idle spell; it refreshes before the stamp.
    if (this.open.n === 0) this.onFirstOp();
    this.appendAt(slot, delta, this.time[0]!);
  }

  /** Appends one op stamped with time `t` (ms) instead of the clock's. */
  appendAt(slot: number, delta: number, t: number): void {
    const b = this.open;
    const n = b.n;
    if (n >= b.capacity) {
      this.makeRoom();
      this.appendAt(slot, delta, t);
      return;
    }
    if (t !== b.lastTime) {
      b.runStarts[b.runs] = n;
      b.runTimes[b.runs++] = t;
      b.lastTime = t;
    }
    b.slots[n] = slot;
    b.deltas[n] = delta;
    b.n = n + 1;
    if (n + 1 === b.capacity) this.trySend();
    else if (n === 0) this.onFirstOp();
  }

  /** Appends an op that is not a plain add (see CtrlOp); it runs in order with the ops around it. */
  appendCtrl(op: CtrlOp): void {
    if (this.open.n >= this.open.capacity) this.makeRoom();
    const b = this.open;
    b.ctrl.push(op);
    this.append(-b.ctrl.length, 0);
  }

  private makeRoom(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.sealed) throw closedError('engine');
    this.waitForRoom();
  }

  private waitForRoom(): void {
    if (this.trySend()) return;
    if (this.replacing) {
      // The thread is gone and its replacement can only be attached on the event loop, which this call
      // holds: waiting here cannot succeed. Take the batch into the restart backlog, or refuse at once.
      if (this.trySend(this.config.restartBacklogBatches)) return;
      throw new TallyworksError(
        ErrorCode.SHARD_STALLED,
        `shard ${this.index} is being replaced and its restart backlog (${this.config.restartBacklogBatches} batches) is full; yield to the event loop so the replacement can attach. The op was not recorded`,
      );
    }
    const start = Date.now();
    const deadline = start + this.config.stallTimeoutMs;
    for (let spins = 1; ; spins++) {
      if (this.trySend()) return;
      if ((spins & 0x3ff) !== 0) continue;
      const now = Date.now();
      // No batch applied for a while: the shard may have died, which this thread can only learn on the
      // event loop. Queue into the restart backlog (bounded) instead of spinning, so that a producer that
      // yields between batches lets the restart run; one that never yields still meets the deadline.
      if (now - start >= BACKLOG_AFTER_SPIN_MS && this.trySend(this.config.restartBacklogBatches)) return;
      if (now > deadline) {
        throw new TallyworksError(
          ErrorCode.SHARD_STALLED,
          `shard ${this.index} applied no batch for ${this.config.stallTimeoutMs} ms while ${this.inflight.length} batches waited; the op was not recorded`,
        );
      }
    }
  }

  // ── records ───────────────────────────────────────────────────────────────────────────────────────

  /** Reserves `words` 8-byte words for a new record and queues its creation in the open batch. */
  createRecord(words: number, kind: number, a: number, b: number, key: string): number {
    if (this.failure !== undefined) throw this.failure;
    if (this.sealed) throw closedError('engine');
    const offset = this.freeRecords.get(words)?.pop() ?? this.allocate(words, 'record');
    const init: RecordInit = [offset, kind, a, b, key];
    if (!this.open.hasContent()) this.onFirstOp();
    this.open.inits.push(init);
    return offset;
  }

  private allocate(words: number, what: string): number {
    const offset = allocWords(this.views.header, this.arena, words);
    if (offset === -1) {
      throw new TallyworksError(
        ErrorCode.CAPACITY,
        `shard ${this.index} has no room for a ${what} of ${words * 8} bytes within maxShardMemoryBytes (${this.config.maxShardMemoryBytes}); nothing was created`,
      );
    }
    return offset;
  }

  /**
   * Lets a record go (compact): the shard clears it in order with the ops before, and its words are reused
   * for a record of the same size once the shard has applied that. The caller must drop its handle.
   */
  releaseRecord(slot: number, words: number): Promise<void> {
    this.appendCtrl({ type: 'release', slot });
    return this.drain().then(() => {
      let list = this.freeRecords.get(words);
      if (list === undefined) this.freeRecords.set(words, (list = []));
      list.push(slot);
    });
  }

  /** Registers a calendar config with the shard (in order, before any record that uses it). */
  registerCalendar(config: CalConfig): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.sealed) throw closedError('engine');
    this.calendars.push(config);
    if (!this.open.hasContent()) this.onFirstOp();
    this.open.calendars.push(config);
  }

  /**
   * The next lax index: the counter's bit in the dirty bitmap, which grows (before the index is handed out,
   * so the shard and the flusher find the bit inside the buffer).
   */
  allocLaxIndex(): number {
    const index = this.laxCount;
    const bytes = ((index >>> 5) + 1) * 4;
    if (bytes > this.dirty.byteLength) {
      if (bytes > this.dirty.maxByteLength) {
        throw new TallyworksError(ErrorCode.CAPACITY, `shard ${this.index} has no room for another lax counter within maxShardMemoryBytes; nothing was created`);
      }
      this.dirty.grow(Math.min(this.dirty.maxByteLength, Math.max(bytes, this.dirty.byteLength * 2)));
    }
    this.laxCount++;
    return index;
  }

  /** A decision cell (Float64 index) for one decision; give it back with freeCell once read. */
  allocCell(): number {
    if (this.freeCells.length === 0) {
      const base = this.allocate(CELL_BLOCK * CELL_WORDS, 'block of decision cells');
      for (let c = CELL_BLOCK - 1; c >= 0; c--) this.freeCells.push(base + c * CELL_WORDS);
    }
    return this.freeCells.pop()!;
  }

  freeCell(cell: number): void {
    this.freeCells.push(cell);
  }

  // ── sending, acknowledgement, replay ──────────────────────────────────────────────────────────────

  private appliedSeq(): number {
    return Atomics.load(this.views.header, H_APPLIED_SEQ);
  }

  /** Returns applied batches to the pool. */
  private reclaim(): void {
    const applied = this.appliedSeq();
    while (this.inflight.length > 0 && !seqAfter(this.inflight[0]!.seq, applied)) {
      const b = this.inflight.shift()!;
      b.reset();
      // Keep the steady-state pool; batches added for a restart backlog are let go.
      if (this.free.length + this.inflight.length < this.config.maxInFlight + 1) this.free.push(b);
    }
  }

  /**
   * The end of a turn in which ops were written: sends the open batch, except while a replacement thread
   * starts. Then the batch stays open and fills (it goes out when full, on a drain, or once the replacement
   * answers), so a producer writing a few ops per turn does not turn the restart backlog into many tiny
   * batches and fill it in a few turns.
   */
  endOfTurn(): void {
    if (this.restarting && this.open.n < this.open.capacity && this.open.ctrl.length === 0) return;
    this.trySend();
  }

  /**
   * Sends the open batch if it has content and a batch slot is free (at most `limit` unapplied: maxInFlight,
   * or the restart backlog while a replacement thread starts); false when it must wait.
   */
  trySend(limit = this.restarting ? this.config.restartBacklogBatches : this.config.maxInFlight): boolean {
    const b = this.open;
    if (!b.hasContent()) return true;
    this.reclaim();
    if (this.inflight.length >= limit) return false;
    this.lastSeq = (this.lastSeq + 1) | 0;
    b.seq = this.lastSeq;
    this.inflight.push(b);
    this.open = this.free.pop() ?? new Batch(this.config.batchSize);
    this.dispatch(b);
    return true;
  }

  private dispatch(b: Batch): void {
    const envelope = encode(b.envelope());
    const message: DataMessage = { type: 'apply', envelope };
    this.attachment?.data.postMessage(message, [envelope.buffer as ArrayBuffer]);
  }

  private onReply(reply: DataReply): void {
    switch (reply.type) {
      case 'applied':
      case 'duplicate':
        this.failedRestarts = 0;
        this.restarting = false;
        break;
      case 'gap':
        // Cannot happen on one ordered port; replay defensively rather than lose the order.
        this.replay();
        break;
      case 'failed':
        this.fail(reviveError(reply.error) as TallyworksError);
        return;
      default:
        this.fail(new TallyworksError(ErrorCode.PROTOCOL, `shard ${this.index}: unknown reply ${JSON.stringify(reply)}`));
        return;
    }
    this.settle();
    // Replies arrive in their own event-loop turn, so the producer's tick is over: send what it left.
    if (this.open.hasContent() && !this.sealed) this.trySend();
  }

  /** Re-sends every batch the shard has not applied, in order. */
  private replay(): void {
    this.reclaim();
    for (const b of this.inflight) this.dispatch(b);
  }

  /**
   * The shard thread died (piscina rejected its lease and starts a fresh thread): attach the replacement
   * to the same memory and replay every unapplied batch in order. Once per death (per epoch).
   */
  private restart(epoch: number): void {
    if (epoch !== this.epoch || this.failure !== undefined || this.sealed) {
      // Another report of the same death restarted first: a replacement is attached already.
      if (this.attachment !== undefined) this.replacing = false;
      return;
    }
    const epochAfter = ++this.epoch;
    this.restarts++;
    const applied = this.appliedSeq();
    this.failedRestarts = applied === this.appliedAtRestart ? this.failedRestarts + 1 : 1;
    this.appliedAtRestart = applied;
    this.detach();
    if (this.failedRestarts > this.config.maxRestarts) {
      this.fail(
        new TallyworksError(
          ErrorCode.SHARD_FAILED,
          `shard ${this.index} thread died ${this.failedRestarts} times without applying batch ${(applied + 1) | 0}; the shard is given up`,
        ),
      );
      return;
    }
    this.restarting = true;
    this.attach();
    this.replacing = false;
    this.replay();
    // The replacement answers once it runs: from then on batches go out as usual (a shard with nothing in
    // flight sends no reply that would say so).
    this.control((c) => c.stats()).then(
      () => {
        if (this.epoch !== epochAfter) return;
        this.restarting = false;
        if (this.open.hasContent() && !this.sealed) this.trySend();
      },
      () => undefined,
    );
  }

  private fail(err: TallyworksError): void {
    this.failure = err;
    this.open = SEALED_BATCH;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private settle(): void {
    if (this.waiters.length === 0) return;
    const applied = this.appliedSeq();
    let kept = 0;
    for (const w of this.waiters) {
      if (seqAfter(w.seq, applied)) this.waiters[kept++] = w;
      else w.resolve();
    }
    this.waiters.length = kept;
    if (kept === 0) this.attachment?.data.unref();
  }

  private waitApplied(seq: number): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (!seqAfter(seq, this.appliedSeq())) return Promise.resolve();
    // A pending read or close keeps the process alive until the shard answers.
    if (this.waiters.length === 0) this.attachment?.data.ref();
    return new Promise((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
  }

  /** True when nothing is open and the shard has applied everything sent: reads need no round trip. */
  isIdle(): boolean {
    return !this.open.hasContent() && !seqAfter(this.lastSeq, this.appliedSeq());
  }

  /** Sends the open batch and resolves once the shard has applied everything sent so far. */
  async drain(): Promise<void> {
    for (;;) {
      if (this.failure !== undefined) throw this.failure;
      if (this.open.hasContent() && !this.trySend()) {
        await this.waitApplied(this.inflight[0]!.seq);
        continue;
      }
      if (!seqAfter(this.lastSeq, this.appliedSeq())) return;
      await this.waitApplied(this.lastSeq);
    }
  }

  // ── reads (from shared memory, after a drain) ─────────────────────────────────────────────────────

  /**
   * Runs `read` over the shard's memory until it ran while no writer held record `slot`'s seqlock (see
   * common/seqlock.ts), and returns its result; MISSED if a writer held the record for the whole spin.
   */
  readConsistent<T>(slot: number, read: (views: ShardViews) => T): T | typeof MISSED {
    this.refreshViews();
    const i32 = this.views.i32;
    for (let i = 0; i < READ_SPINS; i++) {
      const s = readBegin(i32, slot);
      if (s === -1) continue;
      // After readBegin: buckets the shard promoted before it are in words it allocated before it.
      this.refreshViews();
      const value = read(this.views);
      if (readValid(i32, slot, s)) return value;
    }
    return MISSED;
  }

  /**
   * Reads record `slot` at the clock's now once the shard has applied everything this thread sent to it,
   * so a read sees every op issued before it.
   */
  async readSettled<T>(slot: number, clock: { now(): number }, read: (views: ShardViews, now: number) => T): Promise<T> {
    for (;;) {
      if (!this.isIdle()) await this.drain();
      const now = clock.now();
      const value = this.readConsistent(slot, (v) => read(v, now));
      if (value !== MISSED) return value;
      // A writer held the record's seqlock for the whole spin: its thread died mid-write. The replacement
      // repairs the record; give the event loop a turn so the restart can run.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Rebuilds the views if the arena may have grown. A plain read of the bump allocator instead of the
   * arena's byteLength (≈ 24 ns a check): words are handed out before the arena grows, and a reader reaches
   * words the shard allocated (promoted buckets) only through a seqlock read, whose atomic loads order them.
   */
  private refreshViews(): void {
    if (this.views.header[H_USED_WORDS]! * WORD_BYTES > this.views.f64.byteLength) refreshArenaViews(this.views, this.arena);
  }

  /** Reads a decision cell the shard has written: [outcome, retry-after ms]. */
  readCell(cell: number): [number, number] {
    this.refreshViews();
    return [this.views.f64[cell]!, this.views.f64[cell + 1]!];
  }

  /** Marks a decision cell pending before its decision is sent. */
  resetCell(cell: number): void {
    this.refreshViews();
    this.views.f64[cell] = -1;
  }

  // ── lifecycle ─────────────────────────────────────────────────────────────────────────────────────

  async stats(): Promise<ShardStats & { restarts: number; inflight: number }> {
    const s = await this.control((c) => c.stats());
    this.reclaim();
    return { ...s, restarts: this.restarts, inflight: this.inflight.length };
  }

  /** Drains, then refuses further ops; repeated drains catch ops issued while an earlier drain waited. */
  async close(): Promise<void> {
    try {
      while (!this.isIdle() && this.failure === undefined) await this.drain();
    } finally {
      this.sealed = true;
      if (this.failure === undefined) this.open = SEALED_BATCH;
      for (const w of this.waiters.splice(0)) w.reject(closedError('engine'));
      const a = this.attachment;
      if (a !== undefined) {
        const detach: DataMessage = { type: 'detach' };
        a.data.postMessage(detach);
        await a.lease.catch(() => undefined);
      }
      this.detach();
      await this.thread.destroy();
    }
    if (this.failure !== undefined) throw this.failure;
  }

  /** Test hook: kills the shard thread as a crash would. */
  killThreadForTest(): Promise<void> {
    return this.thread.killForTest();
  }

  get failed(): TallyworksError | undefined {
    return this.failure;
  }
}
