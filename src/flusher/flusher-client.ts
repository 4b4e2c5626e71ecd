/**
 * The main thread's side of the flusher actor: starts its thread, tells it about new lax counters, asks it
 * to run lax ops in Redis, and closes it. See common/flusher-core.ts for what the actor does.
 */
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import { connectControl, releaseControl, type Remote } from '../../common/control.js';
import { ErrorCode, TallyworksError, reviveError } from '../../common/errors.js';
import type {
  FlusherCloseReport,
  FlusherControl,
  FlusherMessage,
  FlusherOp,
  FlusherReply,
  FlusherStats,
  LaxEntryInit,
} from '../../common/messages.js';
import type { ConnectionSpec } from '../../common/redis.js';
import type { Lane } from '../router/lane.js';
import { startFlusher } from '../threads/threads.js';

export interface FlusherClientOptions {
  readonly connection: ConnectionSpec;
  /** This engine's instance id in Redis (names its call markers). */
  readonly instance: string;
  readonly prefix: string;
  readonly flushIntervalMs: number;
  readonly commandTimeoutMs: number;
}

interface Waiting {
  readonly resolve: (results: number[]) => void;
  readonly reject: (err: Error) => void;
}

export class FlusherClient {
  /** This engine's instance id in Redis (names its call markers). */
  readonly instance: string;
  private readonly worker: Worker;
  private readonly data: MessagePort;
  private readonly controlPort: MessagePort;
  private readonly control: Remote<FlusherControl>;
  private readonly gauges: Int32Array;
  private readonly waiting = new Map<number, Waiting>();
  private registrations: LaxEntryInit[] = [];
  private registrationScheduled = false;
  private nextId = 1;
  private failure: TallyworksError | undefined;
  private readonly exited: Promise<void>;

  private constructor(lanes: readonly Lane[], timeCell: SharedArrayBuffer, options: FlusherClientOptions) {
    this.instance = options.instance;
    const data = new MessageChannel();
    const control = new MessageChannel();
    const gauges = new SharedArrayBuffer(4);
    this.gauges = new Int32Array(gauges);
    this.worker = startFlusher({
      shards: lanes.map((l) => ({ header: l.header, arena: l.arena, dirty: l.dirty })),
      timeCell,
      gauges,
      connection: options.connection,
      prefix: options.prefix,
      instance: this.instance,
      flushIntervalMs: options.flushIntervalMs,
      commandTimeoutMs: options.commandTimeoutMs,
      data: data.port2,
      control: control.port2,
    });
    this.data = data.port1;
    this.controlPort = control.port1;
    this.control = connectControl<FlusherControl>(control.port1);
    this.data.on('message', (reply: FlusherReply) => this.onReply(reply));
    this.data.unref();
    this.controlPort.unref();
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.on('error', (err) => this.fail(threadError(err)));
    this.worker.on('exit', () => this.fail(new TallyworksError(ErrorCode.CLOSED, 'the flusher thread ended')));
  }

  /** Starts the flusher thread and resolves once it is connected to Redis and answering. */
  static async start(lanes: readonly Lane[], timeCell: SharedArrayBuffer, options: FlusherClientOptions): Promise<FlusherClient> {
    const client = new FlusherClient(lanes, timeCell, options);
    const failed = new Promise<never>((_, reject) => client.worker.once('error', (err) => reject(threadError(err))));
    failed.catch(() => undefined);
    await Promise.race([client.control.stats(), failed]);
    return client;
  }

  private fail(err: TallyworksError): void {
    this.failure ??= err;
    for (const w of this.waiting.values()) w.reject(this.failure);
    this.waiting.clear();
  }

  /** Flush cycles the flusher has finished (mod 2^32): a new value means committed totals may have moved. */
  cycles(): number {
    return Atomics.load(this.gauges, 0);
  }


  /** Tells the flusher about a new lax counter (sent at the end of the tick, before any request). */
  register(lane: Lane, lax: number, slot: number, key: string, partition: number): void {
    this.registrations.push([lane.index, lax, slot, key, partition]);
    if (!this.registrationScheduled) {
      this.registrationScheduled = true;
      setImmediate(() => this.sendRegistrations()).unref();
    }
  }

  private sendRegistrations(): void {
    this.registrationScheduled = false;
    if (this.registrations.length === 0) return;
    const message: FlusherMessage = { type: 'register', entries: this.registrations };
    this.registrations = [];
    this.data.postMessage(message);
  }

  /** Runs `ops` in Redis after each counter's pending delta; [new, old] per op. */
  request(ops: FlusherOp[]): Promise<number[]> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    this.sendRegistrations();
    const id = this.nextId++;
    const message: FlusherMessage = { type: 'request', id, ops };
    return new Promise((resolve, reject) => {
      if (this.waiting.size === 0) this.data.ref();
      this.waiting.set(id, { resolve, reject });
      this.data.postMessage(message);
    });
  }

  private onReply(reply: FlusherReply): void {
    const w = this.waiting.get(reply.id);
    if (w === undefined) return;
    this.waiting.delete(reply.id);
    if (this.waiting.size === 0) this.data.unref();
    switch (reply.type) {
      case 'result':
        w.resolve(reply.results);
        break;
      case 'error':
        w.reject(reviveError(reply.error) as Error);
        break;
      default:
        w.reject(new TallyworksError(ErrorCode.PROTOCOL, `flusher: unknown reply ${JSON.stringify(reply)}`));
    }
  }

  /** Runs a flush cycle now (after the one running) and resolves with the flusher's figures. */
  flushNow(): Promise<FlusherStats> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    this.sendRegistrations();
    return this.control.flushNow();
  }

  /** Test hook: see FlusherControl.loseRepliesForTest. */
  async loseRepliesForTest(count: number): Promise<void> {
    await this.control.loseRepliesForTest(count);
  }

  stats(): Promise<FlusherStats> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return this.control.stats();
  }

  /** Final flush (bounded by `timeoutMs`), then ends the thread; reports what could not be delivered. */
  async close(timeoutMs: number): Promise<FlusherCloseReport> {
    let report: FlusherCloseReport = { undelivered: [] };
    try {
      if (this.failure === undefined) {
        this.sendRegistrations();
        this.controlPort.ref();
        report = await this.control.close(timeoutMs);
      }
    } finally {
      releaseControl(this.control);
      this.controlPort.close();
      this.data.close();
      await this.worker.terminate();
      await this.exited;
    }
    if (this.failure !== undefined && this.failure.code !== ErrorCode.CLOSED) throw this.failure;
    return report;
  }
}

/** The flusher thread's uncaught error as its own class (e.g. Redis refusing the thread's connection), else wrapped. */
function threadError(err: Error): TallyworksError {
  const revived = reviveError(err);
  return revived instanceof TallyworksError ? revived : new TallyworksError(ErrorCode.PROTOCOL, `flusher thread failed: ${err.message}`, { cause: err });
}
