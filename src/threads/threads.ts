/**
 * Thread starting and supervision: piscina's one home, and the clock ticker's plain worker.
 *
 * A shard is a piscina pool of exactly one thread. piscina starts it, and replaces it if it dies; the
 * router runs one long "lease" task per attachment (it rejects when the thread dies, which starts the
 * replay). Batches do not travel as piscina tasks but on the lease's own port (see common/messages.ts).
 * `atomics: 'disabled'` on purpose: with 'sync' an idle worker blocks in Atomics.wait and its event loop
 * stalls, and the shard must keep serving its data and control ports.
 */
import { type MessagePort, Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { FlusherInit, ShardLeaseEnd, ShardTask } from '../../common/messages.js';

/** Options that only make sense for the main script: a worker given them would eval the code again or die. */
const MAIN_ONLY = /^(--input-type|--eval|--print|-e|-p|-pe)(=|$)/;

let execArgvForWorkers: string[] | undefined;

/**
 * The Node options of this process that a worker thread accepts, worked out once per process.
 *
 * A worker inherits the process's options unless given `execArgv`, and dies at start on some of them
 * (`--input-type`, set by `node --input-type=module -e …`). Given `execArgv`, its constructor refuses V8
 * and process-wide options (`--max-old-space-size`, `--expose-gc`, `--title`, …) with
 * ERR_WORKER_INVALID_EXEC_ARGV. Node offers no list of which is which, but that error names the refused
 * options: so a probe worker is constructed with the candidates, the named ones are dropped, and the
 * rest is what every thread gets. The probe runs only when the process has options at all.
 */
export function workerExecArgv(): string[] {
  if (execArgvForWorkers !== undefined) return execArgvForWorkers;
  const args: string[] = [];
  const own = process.execArgv;
  for (let i = 0; i < own.length; i++) {
    if (MAIN_ONLY.test(own[i]!)) {
      // `-e code` / `--input-type module`: the value is the next argument.
      if (!own[i]!.includes('=') && i + 1 < own.length && !own[i + 1]!.startsWith('-')) i++;
      continue;
    }
    args.push(own[i]!);
  }
  // Each round drops at least one option, so this ends after at most args.length rounds.
  while (args.length > 0) {
    const refused = refusedByWorker(args);
    if (refused.length === 0) break;
    const before = args.length;
    for (const flag of refused) {
      const at = args.indexOf(flag);
      if (at < 0) continue;
      // A refused `--flag value` written as two arguments takes its value with it.
      const withValue = !flag.includes('=') && at + 1 < args.length && !args[at + 1]!.startsWith('-');
      args.splice(at, withValue ? 2 : 1);
    }
    if (args.length === before) {
      args.length = 0; // the error named nothing we could find: run workers without options
    }
  }
  execArgvForWorkers = args;
  return args;
}

/** The options a worker constructor refuses among `args` (empty when it accepts them all). */
function refusedByWorker(args: string[]): string[] {
  let probe: Worker;
  try {
    probe = new Worker('', { eval: true, execArgv: args, stdout: true, stderr: true });
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw err;
    const listed = /flags: (.*)$/.exec((err as Error).message)?.[1] ?? '';
    return listed.split(', ').filter((f) => f.length > 0);
  }
  probe.unref();
  void probe.terminate();
  return [];
}

const shardEntry = new URL('../../workers/shard.js', import.meta.url);
const tickerEntry = new URL('../../workers/clock-ticker.js', import.meta.url);
const flusherEntry = new URL('../../workers/flusher.js', import.meta.url);

/**
 * A one-thread actor pool running workers/shard.
 *
 * Supervision beyond piscina's: piscina stops replacing threads for good once one dies during bootstrap
 * (`workerFailsDuringBootstrap`), and a task queued for that thread is never settled. So every thread loss
 * is reported to the lane (which re-leases), and a lease finding the pool without threads gets a new pool.
 */
export class ShardThread {
  private pool: Piscina<ShardTask, ShardLeaseEnd>;
  private destroying = false;
  private readonly onError: (err: Error) => void;
  private readonly onThreadLost: () => void;

  /** `onThreadLost` runs synchronously when a thread is removed, before piscina starts its replacement. */
  constructor(onError: (err: Error) => void, onThreadLost: () => void) {
    this.onError = onError;
    this.onThreadLost = onThreadLost;
    this.pool = this.startPool();
  }

  private startPool(): Piscina<ShardTask, ShardLeaseEnd> {
    const pool = new Piscina<ShardTask, ShardLeaseEnd>({
      filename: shardEntry.href,
      execArgv: workerExecArgv(),
      minThreads: 1,
      maxThreads: 1,
      // The lease of a dying thread and that of its replacement may overlap for a moment.
      concurrentTasksPerWorker: 2,
      atomics: 'disabled',
      idleTimeout: Number.POSITIVE_INFINITY,
      recordTiming: false,
    });
    pool.on('error', this.onError);
    pool.on('workerDestroy', () => {
      if (!this.destroying && pool === this.pool) this.onThreadLost();
    });
    return pool;
  }

  /** Runs a lease: resolves when the shard detaches, rejects when its thread dies. */
  lease(task: ShardTask, transferList: MessagePort[]): Promise<ShardLeaseEnd> {
    if (this.pool.threads.length === 0) {
      const abandoned = this.pool;
      this.pool = this.startPool();
      void abandoned.destroy().catch(() => undefined);
    }
    return this.pool.run(task, { transferList: transferList as never });
  }

  /** Kills the current thread (tests use it to prove crash recovery). */
  async killForTest(): Promise<void> {
    await Promise.all(this.pool.threads.map((t) => t.terminate()));
  }

  destroy(): Promise<void> {
    this.destroying = true;
    return this.pool.destroy();
  }
}

/** Starts the clock ticker thread; `control` holds the cells of common/ticker.ts. */
export function startTicker(timeCell: SharedArrayBuffer, control: SharedArrayBuffer, tickMs: number): Worker {
  const worker = new Worker(tickerEntry, { workerData: { timeCell, control, tickMs }, execArgv: workerExecArgv() });
  worker.unref();
  return worker;
}

/**
 * Starts the flusher actor thread (a plain worker: one long-lived actor, supervised by its client).
 * Unref'd: its ports keep the process alive only while a request waits.
 */
export function startFlusher(init: FlusherInit): Worker {
  const worker = new Worker(flusherEntry, {
    workerData: init,
    transferList: [init.data, init.control] as never,
    execArgv: workerExecArgv(),
  });
  worker.unref();
  return worker;
}
