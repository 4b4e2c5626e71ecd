/**
 * Stat buffers (README, "Stat buffers"): per-key counts that each key hands to a flush handler one interval after
 * its first increment, with retries that never lose a count, stable flush ids for sink-side deduplication,
 * handler timeouts, dead letters, and a close that delivers everything it can before a deadline.
 *
 * The counts live in this thread's typed arrays, indexed by a key → position map, so `increment` on a known key
 * is a map lookup and a Float64 add: synchronous and allocation-free. The app's worker threads increment
 * through a {@link BufferLink} (see link.ts), which ships their counts here once per turn.
 *
 * All timed work (every key's flush, every retry, every handler timeout, the close deadline) is one entry
 * in one heap, with one timer armed for the earliest (or, on a test clock, run when the clock moves).
 *
 * Over 350 lines because one buffer's state — counts, deliveries in progress, retries, the due-time heap and
 * close — is one state machine over the same typed arrays; its link to worker threads is in ./link.ts.
 */
import { randomBytes } from 'node:crypto';
import { argumentRangeError, argumentTypeError, closedError, ErrorCode, TallyworksError, UndeliveredError } from '../../common/errors.js';
import type { Clock } from '../clock/clock.js';
import { type BufferEntry, type DeadLetter, resolveBufferOptions, type ResolvedBufferOptions } from './buffer-options.js';
import { DueHeap } from './due-heap.js';
import { BufferPersistence } from './buffer-persistence.js';
import { type BufferLink, LinkHost } from './link.js';
import { validateBufferKey } from '../keys.js';

/** Figures of one buffer, for monitoring and benchmarks. */
export interface BufferStats {
  /** Keys holding a count, or a count being delivered. */
  readonly keys: number;
  /** Handler calls in progress: running, or waiting to be retried. */
  readonly deliveries: number;
  /** Handler calls made (first attempts and retries). */
  readonly handlerCalls: number;
  /** Entries (key counts) delivered. */
  readonly delivered: number;
  /** Deliveries scheduled again after a failure (each a handler call to come). */
  readonly retries: number;
  /** Handler calls that failed or timed out. */
  readonly failures: number;
  /** Of those, the ones that timed out. */
  readonly timeouts: number;
  /** Entries handed to `onDeadLetter` (or listed by `close()`). */
  readonly deadLettered: number;
}

const IDLE = 0;
const SCHEDULED = 1;
/** Heap refs are `id * 4 + kind`: a key's position for FLUSH, a delivery's id for RETRY and TIMEOUT. */
const FLUSH = 0;
const RETRY = 1;
const TIMEOUT = 2;
const DEADLINE = 3;
const INITIAL_POSITIONS = 1024;

/** One handler call's worth of counts, retried unchanged (same counts, same flush id) until it succeeds. */
interface Delivery {
  readonly id: number;
  readonly flushId: string;
  readonly positions: number[];
  readonly keys: string[];
  readonly counts: number[];
  attempts: number;
  running: boolean;
  timeoutAt: number;
  retryAt: number;
  lastError: unknown;
  /** Attempts that timed out and have not settled since (they may still apply the counts). */
  timedOut: number[] | undefined;
  waiters: Array<() => void> | undefined;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

export class StatBuffer implements AsyncDisposable {
  readonly name: string;
  private readonly o: ResolvedBufferOptions;
  private readonly clock: Clock;
  /** key → position, for every key that holds a count or has a delivery in progress. */
  private readonly index = new Map<string, number>();
  private keyOf: string[] = [];
  private counts = new Float64Array(INITIAL_POSITIONS);
  /** Sum of the counts of the key's deliveries in progress (`count()` includes them). */
  private inflight = new Float64Array(INITIAL_POSITIONS);
  private callsInProgress = new Int32Array(INITIAL_POSITIONS);
  private dueAt = new Float64Array(INITIAL_POSITIONS);
  private state = new Uint8Array(INITIAL_POSITIONS);
  private readonly freePositions: number[] = [];
  private positionsUsed = 0;
  private readonly heap = new DueHeap();
  private readonly deliveries = new Map<number, Delivery>();
  private nextDelivery = 1;
  private readonly flushPrefix: string;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private immediate: NodeJS.Immediate | undefined;
  /** Callers awaiting `flush()` or `close()`: while there are any, the timers keep the process alive. */
  private holders = 0;
  private readonly unwatch: (() => void) | undefined;
  private shut = false;
  private closing: Promise<void> | undefined;
  private readonly links: LinkHost;
  private readonly persistence: BufferPersistence | undefined;
  private readonly undelivered: Array<[string, number]> = [];
  private idleWaiters: Array<() => void> = [];
  private handlerCalls = 0;
  private deliveredEntries = 0;
  private failures = 0;
  private retries = 0;
  private timeouts = 0;
  private deadLettered = 0;

  /** @internal created by `engine.buffer()` */
  constructor(options: unknown, clock: Clock) {
    this.o = resolveBufferOptions(options);
    this.name = this.o.name;
    this.clock = clock;
    this.flushPrefix = `${this.name}:${randomBytes(6).toString('hex')}:`;
    this.unwatch = clock.watch?.(this.poll);
    this.links = new LinkHost(this.name, (key, n) => this.add(key, n));
    const host = { name: this.name, pending: () => this.pending(), restore: (key: string, n: number) => this.add(key, n) };
    this.persistence = this.o.storage === undefined ? undefined : new BufferPersistence(host, this.o.storage, this.o.persistMs, this.o.onPersistError);
  }

  /** Resolves once counts stored by an earlier buffer of this name (the `storage` option) are back. */
  ready(): Promise<void> {
    return this.persistence?.ready ?? Promise.resolve();
  }

  /** With `storage`: saves the counts not yet delivered now (the buffer does it every `persistMs`). */
  persist(): Promise<void> {
    if (this.persistence === undefined) return Promise.reject(new TallyworksError(ErrorCode.INVALID_ARGUMENT, `persist() needs buffer "${this.name}" to have the storage option`));
    return this.persistence.persist();
  }

  /** Every key's count not yet delivered: held, plus being delivered. */
  private pending(): Array<[string, number]> {
    const out: Array<[string, number]> = [];
    for (const [key, pos] of this.index) {
      const n = this.counts[pos]! + this.inflight[pos]!;
      if (n !== 0) out.push([key, n]);
    }
    return out;
  }

  /**
   * Adds `n` (default 1; negative allowed) to `key`'s count: synchronous, no I/O, allocation-free for a key
   * that already holds a count. The first increment of a key schedules its flush one `intervalMs` later.
   */
  increment(key: string, n = 1): void {
    if (this.shut) throw closedError(`buffer "${this.name}"`);
    if (typeof n !== 'number' || !Number.isSafeInteger(n)) this.badCount(n);
    this.add(key, n);
  }

  /** The key's count, including counts being delivered; undefined when it holds none. */
  count(key: string): number | undefined {
    const pos = this.index.get(key);
    return pos === undefined ? undefined : this.counts[pos]! + this.inflight[pos]!;
  }

  /**
   * Flushes `key` now (every key when omitted, and retries every count waiting for its retry now). Resolves
   * once what it took has been delivered or given to `onDeadLetter`. A key without a count calls nothing.
   */
  async flush(key?: string): Promise<void> {
    if (this.shut) throw closedError(`buffer "${this.name}"`);
    if (key === undefined) return this.await(this.flushAll());
    validateBufferKey(key);
    const pos = this.index.get(key);
    if (pos === undefined || this.state[pos] !== SCHEDULED) return;
    const positions: number[] = [];
    const counts: number[] = [];
    this.take(pos, positions, counts);
    await this.await(this.deliver(positions, counts));
  }

  /**
   * A link for one of the app's worker threads: transfer it (`worker.postMessage(link, [link.port])`) and
   * call `connectBuffer(link)` there. Its increments reach this buffer once per turn of that thread.
   */
  link(): BufferLink {
    if (this.shut) throw closedError(`buffer "${this.name}"`);
    return this.links.open();
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.shut;
  }

  stats(): BufferStats {
    return {
      keys: this.index.size,
      deliveries: this.deliveries.size,
      handlerCalls: this.handlerCalls,
      delivered: this.deliveredEntries,
      retries: this.retries,
      failures: this.failures,
      timeouts: this.timeouts,
      deadLettered: this.deadLettered,
    };
  }

  /**
   * Refuses new increments, collects what linked threads still hold, flushes every key, and retries what
   * fails until `closeTimeoutMs` has passed; what is still undelivered then goes to `onDeadLetter` (without
   * one, the promise rejects with an UndeliveredError listing it). Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.shut = true;
      this.holders++;
      const deadline = this.clock.now() + this.o.closeTimeoutMs;
      try {
        // Linked threads share the close budget: on a wall clock the time they take to answer over their
        // ports has passed on the clock too; on a test clock the deadline stays closeTimeoutMs of clock
        // time, however long a loaded machine took to collect.
        await this.links.close(this.o.closeTimeoutMs);
        // Stored counts still being read back are delivered with the rest (a failed read was reported).
        await this.persistence?.ready.catch(() => undefined);
        this.heap.push(deadline, DEADLINE);
        this.flushAll();
        this.arm();
        if (this.deliveries.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
        // What could not be delivered is kept for the next buffer of this name (nothing, usually).
        await this.persistence?.close(this.o.onDeadLetter === undefined ? [...this.undelivered] : []);
      } finally {
        this.holders--;
        this.unwatch?.();
        clearTimeout(this.timer);
        if (this.immediate !== undefined) clearImmediate(this.immediate);
        this.timer = undefined;
        this.immediate = undefined;
      }
      if (this.undelivered.length > 0) throw new UndeliveredError(this.undelivered, undefined, `counts of buffer "${this.name}" to its handler`);
    })();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** The add behind `increment` and linked threads' counts (which still arrive while closing). */
  private add(key: string, n: number): void {
    let pos = this.index.get(key);
    if (pos === undefined) pos = this.admit(key);
    else if (this.state[pos] === IDLE) this.schedule(pos);
    const v = this.counts[pos]! + n;
    if (v > Number.MAX_SAFE_INTEGER || v < -Number.MAX_SAFE_INTEGER) {
      // The count would stop being exact: deliver what it holds now and start over with `n`. The key is
      // rescheduled with `n` before the delivery starts, so a handler that returns at once cannot free it.
      const positions: number[] = [];
      const counts: number[] = [];
      this.take(pos, positions, counts);
      this.schedule(pos);
      this.counts[pos] = n;
      this.deliver(positions, counts);
      return;
    }
    this.counts[pos] = v;
  }

  private badCount(n: unknown): never {
    if (typeof n !== 'number') throw argumentTypeError('n', 'a safe integer (|n| ≤ 2^53 − 1)', n);
    throw argumentRangeError('n', 'a safe integer (|n| ≤ 2^53 − 1)', n);
  }

  /** A key's first count: a position and a flush time. */
  private admit(key: string): number {
    validateBufferKey(key);
    let pos = this.freePositions.pop();
    if (pos === undefined) {
      pos = this.positionsUsed++;
      if (pos === this.counts.length) this.grow();
    }
    this.index.set(key, pos);
    this.keyOf[pos] = key;
    this.counts[pos] = 0;
    this.inflight[pos] = 0;
    this.callsInProgress[pos] = 0;
    this.schedule(pos);
    return pos;
  }

  private schedule(pos: number): void {
    const j = this.o.jitterMs;
    // Jitter is in (0, jitterMs]: 1 − random() is in (0, 1].
    const due = this.clock.now() + this.o.intervalMs + (j === 0 ? 0 : j * (1 - Math.random()));
    this.state[pos] = SCHEDULED;
    this.dueAt[pos] = due;
    this.heap.push(due, pos * 4 + FLUSH);
    if (due < this.timerAt) this.arm();
  }

  private grow(): void {
    const size = this.counts.length * 2;
    const counts = new Float64Array(size);
    const inflight = new Float64Array(size);
    const callsInProgress = new Int32Array(size);
    const dueAt = new Float64Array(size);
    const state = new Uint8Array(size);
    counts.set(this.counts);
    inflight.set(this.inflight);
    callsInProgress.set(this.callsInProgress);
    dueAt.set(this.dueAt);
    state.set(this.state);
    Object.assign(this, { counts, inflight, callsInProgress, dueAt, state });
  }

  /** Takes the key's count out (later increments start a new count and a new flush time). */
  private take(pos: number, positions: number[], counts: number[]): void {
    const c = this.counts[pos]!;
    this.counts[pos] = 0;
    this.state[pos] = IDLE;
    if (c === 0) {
      this.release(pos);
      return;
    }
    this.inflight[pos] = this.inflight[pos]! + c;
    this.callsInProgress[pos] = this.callsInProgress[pos]! + 1;
    positions.push(pos);
    counts.push(c);
  }

  /** Drops a key that holds no count and no delivery in progress (the spec's "dead counters are removed"). */
  private release(pos: number): void {
    if (this.state[pos] !== IDLE || this.callsInProgress[pos] !== 0) return;
    this.index.delete(this.keyOf[pos]!);
    this.keyOf[pos] = '';
    this.freePositions.push(pos);
  }

  /** Takes every scheduled key and retries every delivery waiting for its retry; returns what is in progress. */
  private flushAll(): Delivery[] {
    const positions: number[] = [];
    const counts: number[] = [];
    for (const pos of this.index.values()) if (this.state[pos] === SCHEDULED) this.take(pos, positions, counts);
    const waiting = [...this.deliveries.values()];
    this.deliver(positions, counts);
    for (const d of waiting) if (!d.running) this.attempt(d);
    return [...this.deliveries.values()];
  }

  /** Groups taken counts into handler calls (one per key, or batches of up to `maxBatch`) and starts them. */
  private deliver(positions: number[], counts: number[]): Delivery[] {
    const out: Delivery[] = [];
    const per = this.o.onFlush !== undefined ? 1 : this.o.maxBatch;
    for (let i = 0; i < positions.length; i += per) {
      const s = positions.slice(i, i + per);
      const d: Delivery = {
        id: this.nextDelivery,
        flushId: this.flushPrefix + this.nextDelivery++,
        positions: s,
        keys: s.map((pos) => this.keyOf[pos]!),
        counts: counts.slice(i, i + per),
        attempts: 0,
        running: false,
        timeoutAt: 0,
        retryAt: 0,
        lastError: undefined,
        timedOut: undefined,
        waiters: undefined,
      };
      this.deliveries.set(d.id, d);
      out.push(d);
    }
    for (const d of out) this.attempt(d);
    return out;
  }

  /** One handler call for `d`. Its settlement is matched to the attempt, so a late one cannot confuse a retry. */
  private attempt(d: Delivery): void {
    const attempt = ++d.attempts;
    d.running = true;
    this.handlerCalls++;
    if (this.o.timeoutMs !== Infinity) {
      d.timeoutAt = this.clock.now() + this.o.timeoutMs;
      this.heap.push(d.timeoutAt, d.id * 4 + TIMEOUT);
      this.arm();
    }
    let result: unknown;
    try {
      result =
        this.o.onFlush !== undefined
          ? this.o.onFlush(d.keys[0]!, d.counts[0]!, d.flushId)
          : this.o.onFlushBatch!(
              d.keys.map((key, i): BufferEntry => ({ key, count: d.counts[i]! })),
              d.flushId,
            );
    } catch (err) {
      this.endAttempt(d, attempt, false, err);
      return;
    }
    if (isThenable(result)) {
      result.then(
        () => this.endAttempt(d, attempt, true, undefined),
        (err: unknown) => this.endAttempt(d, attempt, false, err),
      );
    } else this.endAttempt(d, attempt, true, undefined);
  }

  /**
   * A handler call settled. Success of any attempt, even one that timed out, means the sink has the count.
   * A failure counts only for the attempt still running (a timed-out attempt was already counted).
   */
  private endAttempt(d: Delivery, attempt: number, ok: boolean, err: unknown): void {
    if (this.deliveries.get(d.id) !== d) return;
    const late = d.timedOut?.indexOf(attempt) ?? -1;
    if (late >= 0) d.timedOut!.splice(late, 1);
    if (ok) {
      this.finish(d);
      this.deliveredEntries += d.positions.length;
      return;
    }
    if (attempt !== d.attempts || !d.running) return;
    this.fail(d, err);
  }

  private fail(d: Delivery, err: unknown): void {
    d.running = false;
    d.lastError = err;
    this.failures++;
    if (d.attempts >= this.o.maxAttempts) {
      this.deadLetter(d, (d.timedOut?.length ?? 0) > 0);
      return;
    }
    const base = Math.min(this.o.maxBackoffMs, this.o.backoffMs * 2 ** Math.min(d.attempts - 1, 40));
    // Half fixed, half random, so that retries of many keys failing together spread out.
    d.retryAt = this.clock.now() + base / 2 + (Math.random() * base) / 2;
    this.retries++;
    this.heap.push(d.retryAt, d.id * 4 + RETRY);
    this.arm();
  }

  private deadLetter(d: Delivery, unsettled: boolean): void {
    this.finish(d);
    this.deadLettered += d.positions.length;
    const handler = this.o.onDeadLetter;
    if (handler === undefined) {
      for (let i = 0; i < d.keys.length; i++) this.undelivered.push([d.keys[i]!, d.counts[i]!]);
      return;
    }
    const letters = d.keys.map((key, i): DeadLetter => ({ key, count: d.counts[i]!, flushId: d.flushId, attempts: d.attempts, error: d.lastError, unsettled }));
    const failed = (err: unknown): void => {
      // The dead-letter handler itself failed: the counts are still not lost, close() lists them.
      for (const l of letters) this.undelivered.push([l.key, l.count]);
      process.emitWarning(`tallyworks: onDeadLetter of buffer "${this.name}" failed: ${String(err)}`, 'TallyworksWarning');
    };
    try {
      const result = handler(letters);
      if (isThenable(result)) result.then(undefined, failed);
    } catch (err) {
      failed(err);
    }
  }

  /** `d` is settled for good (delivered or dead-lettered): its keys stop counting it. */
  private finish(d: Delivery): void {
    this.deliveries.delete(d.id);
    d.running = false;
    for (let i = 0; i < d.positions.length; i++) {
      const pos = d.positions[i]!;
      this.inflight[pos] = this.inflight[pos]! - d.counts[i]!;
      this.callsInProgress[pos] = this.callsInProgress[pos]! - 1;
      this.release(pos);
    }
    if (d.waiters !== undefined) for (const w of d.waiters) w();
    if (this.deliveries.size === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private whenDone(d: Delivery): Promise<void> {
    if (this.deliveries.get(d.id) !== d) return Promise.resolve();
    return new Promise((resolve) => (d.waiters ??= []).push(resolve));
  }

  /** Awaits `ds` while keeping the process alive for their retries. */
  private async await(ds: Delivery[]): Promise<void> {
    this.holders++;
    this.arm();
    try {
      await Promise.all(ds.map((d) => this.whenDone(d)));
    } finally {
      if (--this.holders === 0) {
        // Nobody awaits any more: the timers stop keeping the process alive.
        this.timer?.unref();
        this.immediate?.unref();
      }
    }
  }

  /** Runs every entry that is due: key flushes, retries, timeouts, the close deadline. */
  private readonly poll = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    this.immediate = undefined;
    const now = this.clock.now();
    const positions: number[] = [];
    const counts: number[] = [];
    const retries: Delivery[] = [];
    let deadline = false;
    while (this.heap.peek() <= now) {
      const due = this.heap.pop();
      const ref = this.heap.poppedRef;
      const kind = ref % 4;
      const id = (ref - kind) / 4;
      if (kind === FLUSH) {
        if (this.state[id] === SCHEDULED && this.dueAt[id] === due) this.take(id, positions, counts);
      } else if (kind === DEADLINE) {
        deadline = true;
      } else {
        const d = this.deliveries.get(id);
        if (d === undefined) continue;
        if (kind === RETRY && !d.running && d.retryAt === due) retries.push(d);
        else if (kind === TIMEOUT && d.running && d.timeoutAt === due) {
          this.timeouts++;
          (d.timedOut ??= []).push(d.attempts);
          this.fail(d, new TallyworksError(ErrorCode.FLUSH_TIMEOUT, `buffer "${this.name}": the flush handler did not settle within ${this.o.timeoutMs} ms (flush id ${d.flushId})`));
        }
      }
    }
    this.deliver(positions, counts);
    for (const d of retries) if (this.deliveries.get(d.id) === d && !d.running) this.attempt(d);
    if (deadline) for (const d of [...this.deliveries.values()]) this.deadLetter(d, d.running || (d.timedOut?.length ?? 0) > 0);
    this.arm();
  };

  /** One timer for the earliest entry (none on a test clock, whose moves run `poll`); unref'd unless awaited. */
  private arm(): void {
    const at = this.heap.peek();
    if (at === Infinity || (this.closing !== undefined && this.holders === 0)) return;
    const keepAlive = this.holders > 0;
    const now = this.clock.now();
    if (at <= now) {
      this.immediate ??= setImmediate(this.poll);
      if (!keepAlive) this.immediate.unref();
      else this.immediate.ref();
      return;
    }
    if (this.unwatch !== undefined) return;
    if (this.timer === undefined || at < this.timerAt) {
      clearTimeout(this.timer);
      this.timerAt = at;
      this.timer = setTimeout(this.poll, at - now);
    }
    if (!keepAlive) this.timer.unref();
    else this.timer.ref();
  }
}
