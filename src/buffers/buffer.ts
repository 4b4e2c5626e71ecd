/**
 * Stat buffers (spec/buffers.md): per-key counts that each key hands to a flush handler one interval after
 * its first increment, with retries that never lose a count, stable flush ids for sink-side deduplication,
 * handler timeouts, dead letters, and a close that delivers everything it can before a deadline.
 *
 * The counts live in this thread's typed arrays, indexed by a key → slot map, so `increment` on a known key
 * is a map lookup and a Float64 add: synchronous and allocation-free. The app's worker threads increment
 * through a {@link BufferLink} (see link.ts), which ships their counts here once per turn.
 *
 * All timed work (every key's flush, every retry, every handler timeout, the close deadline) is one entry
 * in one heap, with one timer armed for the earliest (or, on a test clock, run when the clock moves).
 */
import { randomBytes } from 'node:crypto';
import { argumentRangeError, argumentTypeError, closedError, ErrorCode, TallyworksError, UndeliveredError } from '../../common/errors.js';
import type { Clock } from '../clock/clock.js';
import { type BufferEntry, type DeadLetter, resolveBufferOptions, type ResolvedBufferOptions } from './buffer-options.js';
import { DueHeap } from './due-heap.js';
import { type BufferLink, LinkHost } from './link.js';
import { validateBufferKey } from '../keys.js';

/** Figures of one buffer, for monitoring and benchmarks. */
export interface BufferStats {
  /** Keys holding a count, or a count being delivered. */
  readonly keys: number;
  /** Handler calls pending: running, or waiting to be retried. */
  readonly deliveries: number;
  /** Handler calls made (first attempts and retries). */
  readonly handlerCalls: number;
  /** Entries (key counts) delivered. */
  readonly delivered: number;
  /** Handler calls that failed or timed out. */
  readonly failures: number;
  /** Of those, the ones that timed out. */
  readonly timeouts: number;
  /** Entries handed to `onDeadLetter` (or listed by `close()`). */
  readonly deadLettered: number;
}

const IDLE = 0;
const SCHEDULED = 1;
/** Heap refs are `id * 4 + kind`: a key's slot for FLUSH, a delivery's id for RETRY and TIMEOUT. */
const FLUSH = 0;
const RETRY = 1;
const TIMEOUT = 2;
const DEADLINE = 3;
const INITIAL_SLOTS = 1024;

/** One handler call's worth of counts, retried unchanged (same counts, same flush id) until it succeeds. */
interface Delivery {
  readonly id: number;
  readonly flushId: string;
  readonly slots: number[];
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
  /** key → slot, for every key that holds a count or has a delivery pending. */
  private readonly index = new Map<string, number>();
  private keyOf: string[] = [];
  private counts = new Float64Array(INITIAL_SLOTS);
  /** Sum of the counts of the key's pending deliveries (`count()` includes them). */
  private inflight = new Float64Array(INITIAL_SLOTS);
  private pendingCalls = new Int32Array(INITIAL_SLOTS);
  private dueAt = new Float64Array(INITIAL_SLOTS);
  private state = new Uint8Array(INITIAL_SLOTS);
  private readonly freeSlots: number[] = [];
  private slotsUsed = 0;
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
  private readonly undelivered: Array<[string, number]> = [];
  private idleWaiters: Array<() => void> = [];
  private handlerCalls = 0;
  private deliveredEntries = 0;
  private failures = 0;
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
    const slot = this.index.get(key);
    return slot === undefined ? undefined : this.counts[slot]! + this.inflight[slot]!;
  }

  /**
   * Flushes `key` now (every key when omitted, and retries every count waiting for its retry now). Resolves
   * once what it took has been delivered or given to `onDeadLetter`. A key without a count calls nothing.
   */
  async flush(key?: string): Promise<void> {
    if (this.shut) throw closedError(`buffer "${this.name}"`);
    if (key === undefined) return this.await(this.flushAll());
    validateBufferKey(key);
    const slot = this.index.get(key);
    if (slot === undefined || this.state[slot] !== SCHEDULED) return;
    const slots: number[] = [];
    const counts: number[] = [];
    this.take(slot, slots, counts);
    await this.await(this.deliver(slots, counts));
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
        this.heap.push(deadline, DEADLINE);
        this.flushAll();
        this.arm();
        if (this.deliveries.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
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
    let slot = this.index.get(key);
    if (slot === undefined) slot = this.admit(key);
    else if (this.state[slot] === IDLE) this.schedule(slot);
    const v = this.counts[slot]! + n;
    if (v > Number.MAX_SAFE_INTEGER || v < -Number.MAX_SAFE_INTEGER) {
      // The count would stop being exact: deliver what it holds now and start over with `n`. The key is
      // rescheduled with `n` before the delivery starts, so a handler that returns at once cannot free it.
      const slots: number[] = [];
      const counts: number[] = [];
      this.take(slot, slots, counts);
      this.schedule(slot);
      this.counts[slot] = n;
      this.deliver(slots, counts);
      return;
    }
    this.counts[slot] = v;
  }

  private badCount(n: unknown): never {
    if (typeof n !== 'number') throw argumentTypeError('n', 'a safe integer (|n| ≤ 2^53 − 1)', n);
    throw argumentRangeError('n', 'a safe integer (|n| ≤ 2^53 − 1)', n);
  }

  /** A key's first count: a slot and a flush time. */
  private admit(key: string): number {
    validateBufferKey(key);
    let slot = this.freeSlots.pop();
    if (slot === undefined) {
      slot = this.slotsUsed++;
      if (slot === this.counts.length) this.grow();
    }
    this.index.set(key, slot);
    this.keyOf[slot] = key;
    this.counts[slot] = 0;
    this.inflight[slot] = 0;
    this.pendingCalls[slot] = 0;
    this.schedule(slot);
    return slot;
  }

  private schedule(slot: number): void {
    const j = this.o.jitterMs;
    // Jitter is in (0, jitterMs]: 1 − random() is in (0, 1].
    const due = this.clock.now() + this.o.intervalMs + (j === 0 ? 0 : j * (1 - Math.random()));
    this.state[slot] = SCHEDULED;
    this.dueAt[slot] = due;
    this.heap.push(due, slot * 4 + FLUSH);
    if (due < this.timerAt) this.arm();
  }

  private grow(): void {
    const size = this.counts.length * 2;
    const counts = new Float64Array(size);
    const inflight = new Float64Array(size);
    const pendingCalls = new Int32Array(size);
    const dueAt = new Float64Array(size);
    const state = new Uint8Array(size);
    counts.set(this.counts);
    inflight.set(this.inflight);
    pendingCalls.set(this.pendingCalls);
    dueAt.set(this.dueAt);
    state.set(this.state);
    Object.assign(this, { counts, inflight, pendingCalls, dueAt, state });
  }

  /** Takes the key's count out (later increments start a new count and a new flush time). */
  private take(slot: number, slots: number[], counts: number[]): void {
    const c = this.counts[slot]!;
    this.counts[slot] = 0;
    this.state[slot] = IDLE;
    if (c === 0) {
      this.release(slot);
      return;
    }
    this.inflight[slot] = this.inflight[slot]! + c;
    this.pendingCalls[slot] = this.pendingCalls[slot]! + 1;
    slots.push(slot);
    counts.push(c);
  }

  /** Drops a key that holds no count and no pending delivery (the spec's "dead counters are removed"). */
  private release(slot: number): void {
    if (this.state[slot] !== IDLE || this.pendingCalls[slot] !== 0) return;
    this.index.delete(this.keyOf[slot]!);
    this.keyOf[slot] = '';
    this.freeSlots.push(slot);
  }

  /** Takes every scheduled key and retries every delivery waiting for its retry; returns what is pending. */
  private flushAll(): Delivery[] {
    const slots: number[] = [];
    const counts: number[] = [];
    for (const slot of this.index.values()) if (this.state[slot] === SCHEDULED) this.take(slot, slots, counts);
    const waiting = [...this.deliveries.values()];
    this.deliver(slots, counts);
    for (const d of waiting) if (!d.running) this.attempt(d);
    return [...this.deliveries.values()];
  }

  /** Groups taken counts into handler calls (one per key, or batches of up to `maxBatch`) and starts them. */
  private deliver(slots: number[], counts: number[]): Delivery[] {
    const out: Delivery[] = [];
    const per = this.o.onFlush !== undefined ? 1 : this.o.maxBatch;
    for (let i = 0; i < slots.length; i += per) {
      const s = slots.slice(i, i + per);
      const d: Delivery = {
        id: this.nextDelivery,
        flushId: this.flushPrefix + this.nextDelivery++,
        slots: s,
        keys: s.map((slot) => this.keyOf[slot]!),
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
      this.settle(d, attempt, false, err);
      return;
    }
    if (isThenable(result)) {
      result.then(
        () => this.settle(d, attempt, true, undefined),
        (err: unknown) => this.settle(d, attempt, false, err),
      );
    } else this.settle(d, attempt, true, undefined);
  }

  /**
   * A handler call settled. Success of any attempt, even one that timed out, means the sink has the count.
   * A failure counts only for the attempt still running (a timed-out attempt was already counted).
   */
  private settle(d: Delivery, attempt: number, ok: boolean, err: unknown): void {
    if (this.deliveries.get(d.id) !== d) return;
    const late = d.timedOut?.indexOf(attempt) ?? -1;
    if (late >= 0) d.timedOut!.splice(late, 1);
    if (ok) {
      this.finish(d);
      this.deliveredEntries += d.slots.length;
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
    this.heap.push(d.retryAt, d.id * 4 + RETRY);
    this.arm();
  }

  private deadLetter(d: Delivery, unsettled: boolean): void {
    this.finish(d);
    this.deadLettered += d.slots.length;
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
    for (let i = 0; i < d.slots.length; i++) {
      const slot = d.slots[i]!;
      this.inflight[slot] = this.inflight[slot]! - d.counts[i]!;
      this.pendingCalls[slot] = this.pendingCalls[slot]! - 1;
      this.release(slot);
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
    const slots: number[] = [];
    const counts: number[] = [];
    const retries: Delivery[] = [];
    let deadline = false;
    while (this.heap.peek() <= now) {
      const due = this.heap.pop();
      const ref = this.heap.poppedRef;
      const kind = ref % 4;
      const id = (ref - kind) / 4;
      if (kind === FLUSH) {
        if (this.state[id] === SCHEDULED && this.dueAt[id] === due) this.take(id, slots, counts);
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
    this.deliver(slots, counts);
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
