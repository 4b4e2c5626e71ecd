/**
 * Supervision of one shard's thread: attaching a (current or replacement) thread to the shard's memory,
 * control calls that survive a replacement, and the restart after a death — attach the replacement and
 * replay every unapplied batch, or give the shard up after `maxRestarts` deaths without progress.
 * It is the {@link BatchSink} of the shard's pipeline: sent batches go to the attached thread.
 */
import { connectControl, releaseControl, type Remote } from '../../common/control.js';
import { ErrorCode, TallyworksError, closedError, reviveError } from '../../common/errors.js';
import type { AttachInfo, CalConfig, DataMessage, DataReply, ShardControl, ShardStats } from '../../common/messages.js';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { ResolvedOptions } from '../options.js';
import { ShardThread } from '../threads/threads.js';
import type { BatchPipeline, BatchSink } from './batch-pipeline.js';
import type { ShardMemory } from './shard-memory.js';

/** What supervision needs of the engine options. */
export type SupervisorConfig = Pick<ResolvedOptions, 'maxRestarts'>;

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

export class ShardSupervisor implements BatchSink {
  restarting = false;
  /**
   * True from the moment a thread is known lost until its replacement is attached: no batch can be applied
   * before this thread's event loop runs the restart, so spinning for room would only delay it.
   */
  replacing = false;
  /** Calendar configs registered with this shard, re-sent to a replacement thread. */
  readonly calendars: CalConfig[] = [];
  private readonly thread: ShardThread;
  private attachment: Attachment | undefined;
  /** Counts the threads attached: a death report of an earlier generation is stale. */
  private generation = 0;
  private failedRestarts = 0;
  private appliedAtRestart = 0;
  private sealed = false;
  restarts = 0;

  constructor(
    private readonly shard: number,
    private readonly config: SupervisorConfig,
    private readonly memory: ShardMemory,
    private readonly pipeline: BatchPipeline,
    private readonly timeCell: SharedArrayBuffer,
  ) {
    this.thread = new ShardThread(
      (err) => this.fail(new TallyworksError(ErrorCode.PROTOCOL, `shard ${shard}: ${err.message}`, { cause: err })),
      () => {
        // Deferred so that piscina has started its replacement thread; the generation is the dying
        // thread's, so a lease rejection for the same death that restarts first makes this a no-op.
        const generation = this.generation;
        this.replacing = true;
        setImmediate(() => this.restart(generation));
      },
    );
    pipeline.connect(this);
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
      const failure = this.pipeline.failed;
      if (a === undefined || failure !== undefined) throw failure ?? closedError('shard control');
      try {
        return await Promise.race([call(a.control), a.gone]);
      } catch (err) {
        if (err !== DETACHED) throw err;
      }
    }
  }

  /** The shard thread's stats (asked again of a replacement if the thread dies first). */
  stats(): Promise<ShardStats> {
    return this.control((c) => c.stats());
  }

  /** The current shard thread's data port, where the pipeline posts its batches. */
  get port(): MessagePort | undefined {
    return this.attachment?.data;
  }

  /** A read or close that waits keeps the process alive until the shard answers (the data port is ref'd). */
  keepAlive(on: boolean): void {
    if (on) this.attachment?.data.ref();
    else this.attachment?.data.unref();
  }

  /** Leases the (current or replacement) thread and connects the data and control ports. */
  private attach(): Attachment {
    const data = new MessageChannel();
    const control = new MessageChannel();
    const info: AttachInfo = {
      shard: this.shard,
      header: this.memory.header,
      arena: this.memory.arena,
      timeCell: this.timeCell,
      data: data.port2,
      control: control.port2,
      calendars: this.calendars,
      dirty: this.memory.dirty,
    };
    const generation = this.generation;
    const lease = this.thread.lease({ type: 'attach', attach: info }, [data.port2, control.port2]);
    lease.catch(() => this.restart(generation));
    data.port1.on('message', (reply: DataReply) => this.onReply(reply));
    // Only a read or close that waits keeps the process alive (see keepAlive).
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

  private onReply(reply: DataReply): void {
    switch (reply.type) {
      case 'applied':
      case 'duplicate':
        this.failedRestarts = 0;
        this.restarting = false;
        break;
      case 'gap':
        // Cannot happen on one ordered port; replay defensively rather than lose the order.
        this.pipeline.replay();
        break;
      case 'failed':
        this.fail(reviveError(reply.error) as TallyworksError);
        return;
      default:
        this.fail(new TallyworksError(ErrorCode.PROTOCOL, `shard ${this.shard}: unknown reply ${JSON.stringify(reply satisfies never)}`));
        return;
    }
    this.pipeline.resolveApplied();
    // Replies arrive in their own event-loop turn, so the producer's turn is over: send what it left.
    this.pipeline.sendLeftover();
  }

  /**
   * The shard thread died (piscina rejected its lease and starts a fresh thread): attach the replacement
   * to the same memory and replay every unapplied batch in order. Once per death (per generation).
   */
  private restart(generation: number): void {
    if (generation !== this.generation || this.pipeline.failed !== undefined || this.sealed) {
      // Another report of the same death restarted first: a replacement is attached already.
      if (this.attachment !== undefined) this.replacing = false;
      return;
    }
    const next = ++this.generation;
    this.restarts++;
    const applied = this.memory.appliedSeq();
    this.failedRestarts = applied === this.appliedAtRestart ? this.failedRestarts + 1 : 1;
    this.appliedAtRestart = applied;
    this.detach();
    if (this.failedRestarts > this.config.maxRestarts) {
      this.fail(
        new TallyworksError(
          ErrorCode.SHARD_FAILED,
          `shard ${this.shard} thread died ${this.failedRestarts} times without applying batch ${(applied + 1) | 0}; the shard is given up`,
        ),
      );
      return;
    }
    this.restarting = true;
    this.attach();
    this.replacing = false;
    this.pipeline.replay();
    // The replacement answers once it runs: from then on batches go out as usual (a shard with nothing in
    // flight sends no reply that would say so).
    this.control((c) => c.stats()).then(
      () => {
        if (this.generation !== next) return;
        this.restarting = false;
        this.pipeline.sendLeftover();
      },
      () => undefined,
    );
  }

  private fail(err: TallyworksError): void {
    this.pipeline.fail(err);
  }

  /** Lets the thread go once the pipeline is closed: asks it to detach, waits for its lease, ends it. */
  async close(): Promise<void> {
    this.sealed = true;
    const a = this.attachment;
    if (a !== undefined) {
      const detach: DataMessage = { type: 'detach' };
      a.data.postMessage(detach);
      await a.lease.catch(() => undefined);
    }
    this.detach();
    await this.thread.destroy();
  }

  /** Test hook: kills the shard thread as a crash would. */
  killThreadForTest(): Promise<void> {
    return this.thread.killForTest();
  }
}
