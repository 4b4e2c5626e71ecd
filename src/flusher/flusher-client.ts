/**
 * The main thread's side of the flusher actor: starts its thread, tells it about new lax counters, asks it
 * to run lax ops in Redis, supervises it, and closes it. See workers/flusher-core.ts for what the actor does.
 *
 * Supervision. A flusher thread that dies (a crash, or someone terminating it) is replaced: the replacement
 * gets every registration so far and the partition state in shared memory, resolves the dead thread's
 * calls in flight from their markers, and delivers every pending delta (they are in shard memory, so none
 * is lost, and none is doubled). Meanwhile lax adds go on (they never touch the flusher) and requests wait
 * for the replacement. Requests that were with the dead thread are asked again when they only read, and
 * rejected with TW_REDIS_OUTCOME_UNKNOWN when they write (they may have reached Redis). A thread that dies
 * `maxRestarts` times in a row without finishing a flush cycle is given up (TW_FLUSHER_FAILED): lax ops
 * reject with that error, and close() lists every delta Redis has not confirmed.
 *
 * Over 350 lines because supervision (respawn with the registrations and partition state, resolving what a
 * dead thread left, giving up) and the request path it protects share every field; the actor is in
 * workers/flusher-core.ts.
 */
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import { connectControl, releaseControl, type Remote } from '../../common/control.js';
import { ErrorCode, TallyworksError, reviveError } from '../../common/errors.js';
import { CNTF_COMMITTED, CNTF_TOTAL } from '../../common/layout.js';
import type {
  FlusherCloseReport,
  FlusherControl,
  FlusherMessage,
  FlusherOp,
  FlusherReply,
  FlusherStats,
  LaxEntryInit,
} from '../../common/messages.js';
import { type ConnectionSpec, FLUSH_PARTITIONS } from '../../common/redis.js';
import { Mode } from '../../common/scripts.js';
import type { Lane } from '../router/lane.js';
import { startFlusher } from '../threads/threads.js';

export interface FlusherClientOptions {
  readonly connection: ConnectionSpec;
  /** This engine's instance id in Redis (names its call markers). */
  readonly instance: string;
  readonly prefix: string;
  readonly flushIntervalMs: number;
  readonly commandTimeoutMs: number;
  /** Deaths in a row without a finished flush cycle before the flusher is given up. */
  readonly maxRestarts: number;
  /** The first thread connects in the background too (the engine started while Redis was unreachable). */
  readonly connectInBackground: boolean;
  /** Instance-aware counters: this engine's instance id, threshold and retention (see EngineOptions). */
  readonly instanceId: string;
  readonly deadInstanceThresholdMs: number;
  readonly instanceRetentionMs: number;
}

interface Waiting {
  readonly ops: FlusherOp[];
  readonly resolve: (results: number[]) => void;
  readonly reject: (err: Error) => void;
}

/** One flusher thread and its ports. */
interface FlusherThread {
  readonly worker: Worker;
  readonly data: MessagePort;
  readonly controlPort: MessagePort;
  readonly control: Remote<FlusherControl>;
  readonly exited: Promise<void>;
  /** Resolves once the thread answered (it is connected, or connecting in the background as a replacement). */
  readonly ready: Promise<void>;
  /** Rejects with {@link LOST} when the thread dies: a call racing it never hangs on a dead port. */
  readonly gone: Promise<never>;
  /** Requests posted to this thread and not answered yet. */
  readonly sent: Set<number>;
  /** Registration messages posted to this thread (control calls wait for them: see FlusherControl.flushNow). */
  registrations: number;
  readonly replacement: boolean;
  /** Set once `ready` resolved. */
  answered: boolean;
  /** Set once its ports are closed. */
  retired: boolean;
}

const LOST = new Error('the flusher thread died');

export class FlusherClient {
  /** This engine's instance id in Redis (names its call markers). */
  readonly instance: string;
  private readonly lanes: readonly Lane[];
  private readonly timeCell: SharedArrayBuffer;
  private readonly options: FlusherClientOptions;
  private readonly gauges = new Int32Array(new SharedArrayBuffer(4));
  private readonly partitionState = new SharedArrayBuffer(FLUSH_PARTITIONS * 2 * 8);
  private thread: FlusherThread;
  private readonly waiting = new Map<number, Waiting>();
  /** Every registration so far (a replacement starts from all of them) and those not sent to this thread. */
  private readonly registered: LaxEntryInit[] = [];
  private unsent: LaxEntryInit[] = [];
  private registrationScheduled = false;
  /** Requests waiting for a replacement thread to answer. */
  private held: number[] = [];
  private nextId = 1;
  private failure: TallyworksError | undefined;
  private closing = false;
  private restarts = 0;
  private deathsWithoutProgress = 0;

  private constructor(lanes: readonly Lane[], timeCell: SharedArrayBuffer, options: FlusherClientOptions) {
    this.instance = options.instance;
    this.lanes = lanes;
    this.timeCell = timeCell;
    this.options = options;
    this.thread = this.spawn(false);
  }

  /** Starts the flusher thread and resolves once it is connected to Redis and answering. */
  static async start(lanes: readonly Lane[], timeCell: SharedArrayBuffer, options: FlusherClientOptions): Promise<FlusherClient> {
    const client = new FlusherClient(lanes, timeCell, options);
    try {
      await client.thread.ready;
    } catch (err) {
      client.closing = true;
      await client.thread.worker.terminate();
      throw err;
    }
    return client;
  }

  private spawn(replacement: boolean): FlusherThread {
    const data = new MessageChannel();
    const control = new MessageChannel();
    Atomics.store(this.gauges, 0, 0);
    const worker = startFlusher({
      shards: this.lanes.map((l) => ({ header: l.header, arena: l.arena, dirty: l.dirty })),
      timeCell: this.timeCell,
      gauges: this.gauges.buffer as SharedArrayBuffer,
      connection: this.options.connection,
      prefix: this.options.prefix,
      instance: this.instance,
      flushIntervalMs: this.options.flushIntervalMs,
      commandTimeoutMs: this.options.commandTimeoutMs,
      data: data.port2,
      control: control.port2,
      partitionState: this.partitionState,
      entries: this.registered,
      replacement,
      connectInBackground: replacement || this.options.connectInBackground,
      instanceId: this.options.instanceId,
      deadInstanceThresholdMs: this.options.deadInstanceThresholdMs,
      instanceRetentionMs: this.options.instanceRetentionMs,
      heartbeatIntervalMs: heartbeatIntervalMs(this.options.deadInstanceThresholdMs),
    });
    this.unsent = [];
    const remote = connectControl<FlusherControl>(control.port1);
    let lose!: () => void;
    const gone = new Promise<never>((_, reject) => (lose = () => reject(LOST)));
    gone.catch(() => undefined);
    const firstError = new Promise<never>((_, reject) => worker.once('error', (err) => reject(threadError(err))));
    firstError.catch(() => undefined);
    const thread: FlusherThread = {
      worker,
      data: data.port1,
      controlPort: control.port1,
      control: remote,
      exited: new Promise((resolve) => worker.once('exit', () => resolve())),
      ready: Promise.race([remote.stats().then(() => undefined), firstError]),
      gone,
      sent: new Set(),
      registrations: 0,
      replacement,
      answered: false,
      retired: false,
    };
    void thread.ready.then(
      () => (thread.answered = true),
      () => undefined,
    );
    thread.data.on('message', (reply: FlusherReply) => this.onReply(thread, reply));
    thread.data.unref();
    thread.controlPort.unref();
    worker.on('error', () => undefined); // reported through `exit` (and, at the start, `ready`)
    void thread.exited.then(() => {
      lose();
      this.lost(thread);
    });
    if (replacement) void thread.ready.then(() => this.release(thread), () => undefined);
    return thread;
  }

  /** The thread ended. Unless it was closed on purpose, a replacement takes over (or, too often, none). */
  private lost(thread: FlusherThread): void {
    // The first thread failing to start fails createEngine instead (start() reports its error).
    if (thread !== this.thread || this.closing || (!thread.replacement && !thread.answered)) return;
    retire(thread);
    // Requests with the dead thread: reads are asked again, writes may have reached Redis.
    for (const id of thread.sent) {
      const w = this.waiting.get(id);
      if (w === undefined) continue;
      if (w.ops.every((op) => op.type === 'counter' && op.mode === Mode.GET)) {
        this.held.push(id);
        continue;
      }
      this.waiting.delete(id);
      w.reject(
        new TallyworksError(
          ErrorCode.REDIS_OUTCOME_UNKNOWN,
          'the flusher thread died while the lax counter operation was with it; it may or may not have been applied (pending deltas are still delivered exactly once)',
        ),
      );
    }
    const progressed = Atomics.load(this.gauges, 0) > 0;
    this.deathsWithoutProgress = progressed ? 1 : this.deathsWithoutProgress + 1;
    if (this.deathsWithoutProgress > this.options.maxRestarts) {
      this.fail(new TallyworksError(ErrorCode.FLUSHER_FAILED, `the flusher thread died ${this.deathsWithoutProgress} times without finishing a flush cycle; lax counters are no longer delivered`));
      return;
    }
    this.restarts++;
    this.thread = this.spawn(true);
  }

  /** The replacement answers: it gets what was held for it. */
  private release(thread: FlusherThread): void {
    if (thread !== this.thread) return;
    this.sendRegistrations();
    const held = this.held;
    this.held = [];
    for (const id of held) {
      const w = this.waiting.get(id);
      if (w !== undefined) this.post(id, w.ops);
    }
  }

  private fail(err: TallyworksError): void {
    this.failure ??= err;
    for (const w of this.waiting.values()) w.reject(this.failure);
    this.waiting.clear();
    this.held = [];
  }

  /** Flush cycles the current flusher thread has finished (mod 2^32): a new value means committed totals may have moved. */
  cycles(): number {
    return Atomics.load(this.gauges, 0);
  }

  /** Times a flusher thread was replaced. */
  get threadRestarts(): number {
    return this.restarts;
  }

  /** Tells the flusher about a new lax counter (sent at the end of the tick, before any request). */
  register(lane: Lane, lax: number, offset: number, key: string, partition: number): void {
    const entry: LaxEntryInit = { shard: lane.index, lax, offset, key, partition };
    this.registered.push(entry);
    this.unsent.push(entry);
    if (!this.registrationScheduled) {
      this.registrationScheduled = true;
      setImmediate(() => this.sendRegistrations()).unref();
    }
  }

  private sendRegistrations(): void {
    this.registrationScheduled = false;
    if (this.unsent.length === 0) return;
    const message: FlusherMessage = { type: 'register', entries: this.unsent };
    this.unsent = [];
    this.thread.registrations++;
    this.thread.data.postMessage(message);
  }

  /** Runs `ops` in Redis after each counter's pending delta; [new, old] per op. */
  request(ops: FlusherOp[]): Promise<number[]> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { ops, resolve, reject });
      this.post(id, ops);
    });
  }

  private post(id: number, ops: FlusherOp[]): void {
    this.sendRegistrations();
    const thread = this.thread;
    if (thread.sent.size === 0) thread.data.ref();
    thread.sent.add(id);
    const message: FlusherMessage = { type: 'request', id, ops };
    thread.data.postMessage(message);
  }

  private onReply(thread: FlusherThread, reply: FlusherReply): void {
    thread.sent.delete(reply.id);
    if (thread.sent.size === 0) thread.data.unref();
    const w = this.waiting.get(reply.id);
    if (w === undefined) return;
    this.waiting.delete(reply.id);
    switch (reply.type) {
      case 'result':
        w.resolve(reply.results);
        break;
      case 'error':
        w.reject(reviveError(reply.error) as Error);
        break;
      default:
        w.reject(new TallyworksError(ErrorCode.PROTOCOL, `flusher: unknown reply ${JSON.stringify(reply satisfies never)}`));
    }
  }

  /**
   * A control call to the flusher thread; if that thread dies first, it is asked again of the replacement
   * (control calls read, or flush, which is safe to repeat). Rejects once the flusher is given up.
   */
  private async call<T>(run: (c: Remote<FlusherControl>, thread: FlusherThread) => Promise<T>): Promise<T> {
    for (;;) {
      if (this.failure !== undefined) throw this.failure;
      const thread = this.thread;
      try {
        await Promise.race([thread.ready, thread.gone]);
        this.sendRegistrations();
        return await Promise.race([run(thread.control, thread), thread.gone]);
      } catch (err) {
        if (err !== LOST) throw err;
      }
    }
  }

  /** Runs a flush cycle now (after the one running) and resolves with the flusher's figures. */
  flushNow(): Promise<FlusherStats> {
    return this.call((c, thread) => c.flushNow(thread.registrations));
  }

  /** Test hook: see FlusherControl.loseRepliesForTest. */
  async loseRepliesForTest(count: number): Promise<void> {
    await this.call((c) => c.loseRepliesForTest(count));
  }

  /** Test hook: stops or resumes the heartbeats (this instance then looks dead to the others, until it acts). */
  async pauseHeartbeatsForTest(paused: boolean): Promise<void> {
    await this.call((c) => c.pauseHeartbeatsForTest(paused));
  }

  /** Test hook: terminates the flusher thread, as an outside `worker.terminate()` would. */
  async terminateForTest(): Promise<void> {
    await this.thread.worker.terminate();
  }

  /** Test hook: makes the flusher thread throw, as a crash would. */
  crashForTest(): void {
    this.thread.data.postMessage({ type: 'crash-for-test' });
  }

  stats(): Promise<FlusherStats> {
    return this.call((c) => c.stats());
  }

  /**
   * Final flush (bounded by `timeoutMs`), then ends the thread; reports what could not be delivered. If
   * the thread dies during the final flush, or the flusher was given up, what Redis has not confirmed is
   * read from shard memory and reported: close() never resolves while a delta is undelivered.
   */
  async close(timeoutMs: number): Promise<FlusherCloseReport> {
    let report: FlusherCloseReport | undefined;
    const deadline = Date.now() + timeoutMs;
    try {
      while (report === undefined && this.failure === undefined) {
        const thread = this.thread;
        thread.controlPort.ref();
        try {
          await Promise.race([thread.ready, thread.gone]);
          this.sendRegistrations();
          report = await Promise.race([thread.control.close(Math.max(0, deadline - Date.now()), thread.registrations), thread.gone]);
        } catch (err) {
          if (err !== LOST) throw err;
          if (Date.now() >= deadline) break; // no time left for a replacement's final flush
        }
      }
    } finally {
      this.closing = true;
      const thread = this.thread;
      retire(thread);
      await thread.worker.terminate();
      await thread.exited;
    }
    return report ?? { undelivered: this.undeliveredInMemory() };
  }

  /** Every lax delta Redis has not confirmed, read from shard memory (total − committed per counter). */
  private undeliveredInMemory(): Array<[string, number]> {
    const out: Array<[string, number]> = [];
    for (const { shard, offset, key } of this.registered) {
      const lane = this.lanes[shard]!;
      const pending = lane.readConsistent(offset, (v) => v.f64[offset + CNTF_TOTAL]! - v.f64[offset + CNTF_COMMITTED]!);
      if (typeof pending === 'number' && pending !== 0) out.push([key, pending]);
    }
    return out;
  }

  /** @internal the failure that gave the flusher up, if any (close() reports it). */
  get failed(): TallyworksError | undefined {
    return this.failure;
  }
}

/** The heartbeat period: a third of the dead-instance threshold, so two beats may be lost before it passes. */
export function heartbeatIntervalMs(thresholdMs: number): number {
  return Math.max(10, Math.floor(thresholdMs / 3));
}

/** Closes a thread's ports (once). */
function retire(thread: FlusherThread): void {
  if (thread.retired) return;
  thread.retired = true;
  releaseControl(thread.control);
  thread.controlPort.close();
  thread.data.close();
}

/** The flusher thread's uncaught error as its own class (e.g. Redis refusing the thread's connection), else wrapped. */
function threadError(err: Error): TallyworksError {
  const revived = reviveError(err);
  return revived instanceof TallyworksError ? revived : new TallyworksError(ErrorCode.PROTOCOL, `flusher thread failed: ${err.message}`, { cause: err });
}

