/**
 * The batch pipeline of one shard: the open batch the hot path appends to, the pool of batches, the ones
 * sent and not yet applied, backpressure, the promises waiting for the shard to apply a batch, drains,
 * and the end-of-turn send, which encodes a batch and posts it to the shard thread its {@link BatchSink}
 * (./shard-supervisor.ts) has attached now. A batch is a set of typed columns ({@link Batch}), pooled: one
 * is reused only after the shard has applied it (the pipeline keeps it until then, to replay it if the
 * shard dies).
 *
 * A batch goes out when it is full or at the end of the event-loop turn in which its first op was written
 * (setImmediate, so many short tasks of one turn share a batch instead of sending one each).
 *
 * Backpressure. At most `maxInFlight` batches per shard are sent and not yet applied. A batch is free
 * again as soon as the shard publishes its sequence as applied (read from shared memory, so this works
 * even while the producer never yields to the event loop). When the open batch is full and no batch is
 * free, the producing call busy-waits on the shard's applied sequence: the producer is slowed to the
 * shard's pace and memory stays bounded. While a replacement thread starts (it boots a module, and
 * piscina hands it work only once this thread's event loop has seen it ready), the pipeline holds up to
 * `restartBacklogBatches` instead, so a producer that yields now and then is not blocked by a restart.
 * If the shard applies nothing for `stallTimeoutMs` (it died while the producer held the thread, so it
 * could not be replaced), the call throws ShardStalledError and records nothing. The main thread never
 * calls Atomics.wait.
 *
 * Deferred adds. A producer that adds to one record many times in a row (a limit admitting an id's events)
 * can hold them out of the batch and hand the pipeline the holder ({@link BatchPipeline.defer}): they go
 * in as one op before anything reads (isIdle, settleSync), drains or sends.
 *
 * Over 350 lines because it is the one place batches are opened, sent, waited for and replayed: the hot
 * path, backpressure, the end of turn, the barriers of synchronous and awaited reads share its state.
 */
import type { MessagePort } from 'node:worker_threads';
import { encode } from '../../common/codec.js';
import { ErrorCode, TallyworksError, closedError } from '../../common/errors.js';
import { seqAfter } from '../../common/layout.js';
import { type BatchEnvelope, type CalConfig, type CtrlOp, type DataMessage, INIT_STRIDE, type RecordKind } from '../../common/messages.js';
import type { ResolvedOptions } from '../options.js';
import type { ShardMemory } from './shard-memory.js';

/** What a pipeline needs of the engine options (see EngineOptions for each one's meaning). */
export type PipelineConfig = Pick<ResolvedOptions, 'batchSize' | 'maxInFlight' | 'stallTimeoutMs' | 'restartBacklogBatches'>;

/** One batch of ops for one shard, as typed columns. */
export class Batch {
  /** Serial number once sent; 0 while open. */
  seq = 0;
  /** Ops written. */
  n = 0;
  /** Time runs written. */
  runs = 0;
  /** Time of the last run (NaN: none yet, so the first op always opens a run). */
  lastTime = Number.NaN;
  readonly capacity: number;
  readonly offsets: Int32Array;
  readonly deltas: Float64Array;
  readonly runStarts: Int32Array;
  readonly runTimes: Float64Array;
  /**
   * Records the shard must create before it runs the ops (new keys travel with the batch): the first
   * `initLength` numbers, INIT_STRIDE a record (common/messages.ts); grown as needed.
   */
  inits = new Float64Array(0);
  initLength = 0;
  /** Calendar configs the shard must register before the inits. */
  readonly calendars: CalConfig[] = [];
  /** Ops that are not a plain add (decisions, loads, releases), referenced from `offsets`. */
  readonly ctrl: CtrlOp[] = [];

  constructor(capacity: number) {
    this.capacity = capacity;
    this.offsets = new Int32Array(capacity);
    this.deltas = new Float64Array(capacity);
    this.runStarts = new Int32Array(capacity);
    this.runTimes = new Float64Array(capacity);
  }

  hasContent(): boolean {
    return this.n > 0 || this.initLength > 0 || this.calendars.length > 0;
  }

  /** The envelope fields (views over the columns, no copy; the codec copies them). */
  envelope(): BatchEnvelope {
    return {
      seq: this.seq,
      inits: this.inits.subarray(0, this.initLength),
      calendars: this.calendars,
      ctrl: this.ctrl,
      offsets: this.offsets.subarray(0, this.n),
      deltas: this.deltas.subarray(0, this.n),
      runStarts: this.runStarts.subarray(0, this.runs),
      runTimes: this.runTimes.subarray(0, this.runs),
    };
  }

  reset(): void {
    this.seq = 0;
    this.n = 0;
    this.runs = 0;
    this.lastTime = Number.NaN;
    this.initLength = 0;
    this.calendars.length = 0;
    this.ctrl.length = 0;
  }
}

/** A batch with no room, installed as a lane's open batch once the lane is sealed or failed: the hot path's
 *  "full" check then routes every append to the slow path, which throws — at no cost to the hot path. */
export const SEALED_BATCH = new Batch(0);

/** Where sent batches go, and the state of the thread behind it. */
export interface BatchSink {
  /** True from a restart until the replacement thread answers: the restart backlog applies. */
  readonly restarting: boolean;
  /** True from a death until the replacement is attached: nothing can be applied before the event loop runs. */
  readonly replacing: boolean;
  /** The data port of the shard thread attached now (undefined between a death and its replacement). */
  readonly port: MessagePort | undefined;
}

/** How long a producer spins on a full window before it queues into the restart backlog instead. */
const BACKLOG_AFTER_SPIN_MS = 2;

/**
 * Adds kept out of the batch (see {@link BatchPipeline.defer}): `unsent` events at `unsentAt` for the
 * record at `offset` (an event counter whose limit decisions admitted them).
 */
export interface DeferredAdd {
  readonly offset: number;
  unsent: number;
  unsentAt: number;
  /** In the pipeline's list of deferred adds (the pipeline's to set and clear: each is listed once). */
  listed: boolean;
}

interface Waiter {
  readonly seq: number;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

export class BatchPipeline {
  /** The open batch. Public for the hot path's sake; only `appendAt` writes it. */
  open: Batch;
  private readonly time: Float64Array;
  private readonly free: Batch[] = [];
  private readonly inflight: Batch[] = [];
  private readonly waiters: Waiter[] = [];
  private readonly deferred: DeferredAdd[] = [];
  private lastSeq = 0;
  private failure: TallyworksError | undefined;
  private sealed = false;
  private sink: BatchSink | undefined;
  private endOfTurnScheduled = false;
  private readonly endOfTurnCallback = (): void => {
    this.endOfTurnScheduled = false;
    this.endOfTurn();
  };

  constructor(
    private readonly shard: number,
    private readonly config: PipelineConfig,
    private readonly memory: ShardMemory,
    timeCell: SharedArrayBuffer,
    /** Called at the first op of every batch, before it is stamped (a sleeping clock refreshes its cell). */
    private readonly touchClock: (() => void) | undefined,
    /** Tells when a waiter starts or stops keeping the process alive (a read or close that waits). */
    private readonly keepAlive: (on: boolean) => void,
  ) {
    this.time = new Float64Array(timeCell, 0, 1);
    for (let i = 0; i <= config.maxInFlight; i++) this.free.push(new Batch(config.batchSize));
    this.open = this.free.pop()!;
  }

  connect(sink: BatchSink): void {
    this.sink = sink;
  }

  /** The first op of a batch: refresh the clock, and send the batch at the end of this turn. */
  private firstOp(): void {
    this.touchClock?.();
    this.scheduleEndOfTurn();
  }

  private scheduleEndOfTurn(): void {
    if (this.endOfTurnScheduled) return;
    this.endOfTurnScheduled = true;
    setImmediate(this.endOfTurnCallback).unref();
  }

  /**
   * Holds `d`'s adds out of the batch until anything reads, drains or sends (at the latest at the end of
   * this turn): the caller adds to `d.unsent` while the time stays `d.unsentAt`, so the events of one id
   * go out as one op. Call it when `d.unsent` goes from 0 to some (a `d` already listed stays listed once).
   * Throws like an append when the pipeline takes no more ops.
   */
  defer(d: DeferredAdd): void {
    this.check();
    if (!d.listed) {
      d.listed = true;
      this.deferred.push(d);
    }
    this.scheduleEndOfTurn();
  }

  /**
   * Appends the deferred adds to the open batch while it has room, sending it when full, never waiting
   * (so it may run anywhere: a read's check, the end of a turn); true when none remain deferred.
   */
  private takeDeferred(): boolean {
    const list = this.deferred;
    if (list.length === 0) return true;
    if (this.failure !== undefined || this.sealed) {
      this.dropDeferred();
      return true;
    }
    let i = 0;
    for (; i < list.length; i++) {
      if (this.open.n >= this.open.capacity && !this.trySend()) break; // no room until the shard applies more
      const d = list[i]!;
      if (d.unsent !== 0) this.appendAt(d.offset, d.unsent, d.unsentAt);
      d.unsent = 0;
      d.listed = false;
    }
    list.splice(0, i);
    return list.length === 0;
  }

  /** The pipeline takes no more ops: deferred adds are lost with the open batch they would have joined. */
  private dropDeferred(): void {
    for (const d of this.deferred) {
      d.unsent = 0;
      d.listed = false;
    }
    this.deferred.length = 0;
  }

  // ── hot path ──────────────────────────────────────────────────────────────────────────────────────

  /** Appends one op (record offset, delta) stamped with the clock's time. Allocation-free. */
  append(offset: number, delta: number): void {
    // The first op of a batch: the clock may have slept through an idle spell; it refreshes before the stamp.
    if (this.open.n === 0) this.firstOp();
    this.appendAt(offset, delta, this.time[0]!);
  }

  /** Appends one op stamped with time `t` (ms) instead of the clock's. */
  appendAt(offset: number, delta: number, t: number): void {
    const b = this.open;
    const n = b.n;
    if (n >= b.capacity) {
      this.makeRoom();
      this.appendAt(offset, delta, t);
      return;
    }
    if (t !== b.lastTime) {
      b.runStarts[b.runs] = n;
      b.runTimes[b.runs++] = t;
      b.lastTime = t;
    }
    b.offsets[n] = offset;
    b.deltas[n] = delta;
    b.n = n + 1;
    if (n + 1 === b.capacity) this.trySend();
    else if (n === 0) this.firstOp();
  }

  /** Appends an op that is not a plain add (see CtrlOp); it runs in order with the ops around it. */
  appendCtrl(op: CtrlOp): void {
    if (this.open.n >= this.open.capacity) this.makeRoom();
    const b = this.open;
    b.ctrl.push(op);
    this.append(-b.ctrl.length, 0);
  }

  /**
   * Queues the creation of a record of `kind` at `offset` in the open batch, with its two parameters (see
   * INIT_STRIDE); new keys travel with the batch that first uses them.
   */
  appendInit(offset: number, kind: RecordKind, a: number, b: number): void {
    this.check();
    const batch = this.open;
    if (!batch.hasContent()) this.firstOp();
    let at = batch.initLength;
    if (at + INIT_STRIDE > batch.inits.length) {
      const grown = new Float64Array(Math.max(16 * INIT_STRIDE, 2 * batch.inits.length));
      grown.set(batch.inits.subarray(0, at));
      batch.inits = grown;
    }
    const inits = batch.inits;
    inits[at++] = offset;
    inits[at++] = kind;
    inits[at++] = a;
    inits[at++] = b;
    batch.initLength = at;
  }

  /** Queues a calendar config's registration in the open batch (before any record that uses it). */
  appendCalendar(config: CalConfig): void {
    this.check();
    if (!this.open.hasContent()) this.firstOp();
    this.open.calendars.push(config);
  }

  /** Throws when the pipeline takes no more ops: the shard was given up, or the engine closed. */
  check(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.sealed) throw closedError('engine');
  }

  private makeRoom(): void {
    this.check();
    this.waitForRoom();
  }

  private waitForRoom(): void {
    if (this.trySend()) return;
    if (this.sink?.replacing === true) {
      // The thread is gone and its replacement can only be attached on the event loop, which this call
      // holds: waiting here cannot succeed. Take the batch into the restart backlog, or refuse at once.
      if (this.trySend(this.config.restartBacklogBatches)) return;
      throw new TallyworksError(
        ErrorCode.SHARD_STALLED,
        `shard ${this.shard} is being replaced and its restart backlog (${this.config.restartBacklogBatches} batches) is full; yield to the event loop so the replacement can attach. The op was not recorded`,
      );
    }
    const start = Date.now();
    const deadline = start + this.config.stallTimeoutMs;
    // Spin on the applied sequence alone, and try to send only when it moved (nothing else can free room).
    let seen = Number.NaN; // the first turn always tries
    for (let spins = 1; ; spins++) {
      const applied = this.memory.appliedSeq();
      if (applied !== seen) {
        seen = applied;
        if (this.trySend()) return;
      }
      if ((spins & 0x3ff) !== 0) continue;
      const now = Date.now();
      // No batch applied for a while: the shard may have died, which this thread can only learn on the
      // event loop. Queue into the restart backlog (bounded) instead of spinning, so that a producer that
      // yields between batches lets the restart run; one that never yields still meets the deadline.
      if (now - start >= BACKLOG_AFTER_SPIN_MS && this.trySend(this.config.restartBacklogBatches)) return;
      if (now > deadline) {
        throw new TallyworksError(
          ErrorCode.SHARD_STALLED,
          `shard ${this.shard} applied no batch for ${this.config.stallTimeoutMs} ms while ${this.inflight.length} batches waited; the op was not recorded`,
        );
      }
    }
  }

  // ── sending and acknowledgement ───────────────────────────────────────────────────────────────────

  /** Returns applied batches to the pool. */
  private reclaim(): void {
    const applied = this.memory.appliedSeq();
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
    this.takeDeferred();
    if (this.sink?.restarting === true && this.open.n < this.open.capacity && this.open.ctrl.length === 0) return;
    this.trySend();
  }

  /**
   * Sends the open batch if it has content and a batch is free (at most `limit` unapplied: maxInFlight, or
   * the restart backlog while a replacement thread starts); false when it must wait.
   */
  trySend(limit = this.sink?.restarting === true ? this.config.restartBacklogBatches : this.config.maxInFlight): boolean {
    const b = this.open;
    if (!b.hasContent()) return true;
    this.reclaim();
    if (this.inflight.length >= limit) return false;
    this.lastSeq = (this.lastSeq + 1) | 0;
    b.seq = this.lastSeq;
    this.inflight.push(b);
    this.open = this.free.pop() ?? new Batch(this.config.batchSize);
    this.post(b);
    return true;
  }

  /** Posts a batch to the shard thread attached now, encoded (common/codec.ts), its bytes transferred. */
  private post(b: Batch): void {
    const port = this.sink?.port;
    if (port === undefined) return; // no thread attached: the replacement gets it in the replay
    const envelope = encode(b.envelope());
    const message: DataMessage = { type: 'apply', envelope };
    port.postMessage(message, [envelope.buffer as ArrayBuffer]);
  }

  /**
   * Sends what a producer left in the open batch (after a reply, or once a replacement answers), and the
   * deferred adds a full window left out, now that the shard applied more.
   */
  sendLeftover(): void {
    if (this.sealed) return;
    this.takeDeferred();
    if (this.open.hasContent()) this.trySend();
  }

  /** Re-sends every batch the shard has not applied, in order (to a replacement thread). */
  replay(): void {
    this.reclaim();
    for (const b of this.inflight) this.post(b);
  }

  /** The shard is given up: the pipeline takes no more ops, and every waiter fails with `err`. */
  fail(err: TallyworksError): void {
    this.failure = err;
    this.open = SEALED_BATCH;
    this.dropDeferred();
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  get failed(): TallyworksError | undefined {
    return this.failure;
  }

  /** Batches sent and not yet applied. */
  inflightCount(): number {
    this.reclaim();
    return this.inflight.length;
  }

  /** Ops waiting for the shard: in the open batch, held as deferred adds, and in batches sent and not applied. */
  queuedOps(): number {
    this.reclaim();
    let n = this.open.n + this.deferred.length;
    for (const b of this.inflight) n += b.n;
    return n;
  }

  /** Resolves the waiters whose batch the shard has applied. */
  resolveApplied(): void {
    if (this.waiters.length === 0) return;
    const applied = this.memory.appliedSeq();
    let kept = 0;
    for (const w of this.waiters) {
      if (seqAfter(w.seq, applied)) this.waiters[kept++] = w;
      else w.resolve();
    }
    this.waiters.length = kept;
    if (kept === 0) this.keepAlive(false);
  }

  private waitApplied(seq: number): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (!seqAfter(seq, this.memory.appliedSeq())) return Promise.resolve();
    // A read or close that waits keeps the process alive until the shard answers.
    if (this.waiters.length === 0) this.keepAlive(true);
    return new Promise((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
  }

  /**
   * True when nothing is open and the shard has applied everything sent: reads need no round trip.
   * Deferred adds go into the open batch first (so a read that finds the pipeline busy settles them too).
   */
  isIdle(): boolean {
    return this.takeDeferred() && !this.open.hasContent() && !seqAfter(this.lastSeq, this.memory.appliedSeq());
  }

  /**
   * The barrier of a synchronous read: sends the open batch and spins until the shard has applied
   * everything sent, for at most about `stallTimeoutMs` in all (sending may itself wait up to that for room). A shard thread being replaced can only be attached on
   * the event loop, which this call holds: then it throws TW_SHARD_STALLED at once (use the awaited read).
   */
  settleSync(): void {
    this.check();
    if (this.isIdle()) return;
    if (this.sink?.restarting === true || this.sink?.replacing === true) {
      throw new TallyworksError(ErrorCode.SHARD_STALLED, `shard ${this.shard} is being replaced: a synchronous read cannot wait for it here; yield to the event loop or use the awaited read`);
    }
    const deadline = Date.now() + this.config.stallTimeoutMs;
    // Send the open batch (waiting for room, at most stallTimeoutMs), and the deferred adds behind it.
    while (this.open.hasContent()) {
      this.waitForRoom();
      this.takeDeferred();
    }
    for (let spins = 1; seqAfter(this.lastSeq, this.memory.appliedSeq()); spins++) {
      if ((spins & 0x3ff) === 0 && Date.now() > deadline) {
        throw new TallyworksError(ErrorCode.SHARD_STALLED, `shard ${this.shard} applied no batch for ${this.config.stallTimeoutMs} ms while a synchronous read waited`);
      }
    }
  }

  /** Sends the open batch and resolves once the shard has applied everything sent so far. */
  async drain(): Promise<void> {
    for (;;) {
      if (this.failure !== undefined) throw this.failure;
      this.takeDeferred();
      if (this.open.hasContent() && !this.trySend()) {
        await this.waitApplied(this.inflight[0]!.seq);
        continue;
      }
      if (!seqAfter(this.lastSeq, this.memory.appliedSeq())) {
        if (this.deferred.length === 0) return;
        continue; // room again: the rest of the deferred adds go in
      }
      await this.waitApplied(this.lastSeq);
    }
  }

  /** Drains until idle (repeated drains catch ops issued while an earlier one waited), then takes no more. */
  async close(): Promise<void> {
    try {
      while (!this.isIdle() && this.failure === undefined) await this.drain();
    } finally {
      this.sealed = true;
      if (this.failure === undefined) this.open = SEALED_BATCH;
      this.dropDeferred();
      for (const w of this.waiters.splice(0)) w.reject(closedError('engine'));
    }
  }
}
