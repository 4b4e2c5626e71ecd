/**
 * Stat buffers against their spec: the twelve spec scenarios on a test clock (interval 1000), then
 * batching, retries and backoff, handler timeouts, dead letters, close() and its deadline, validation and
 * the process-liveness promise of the timers.
 *
 * Time is a {@link TestClock}: a buffer runs its due work inside `clock.advance()`/`clock.set()`, and what
 * is due "now" on a setImmediate. Handlers record `clock.now()` when called, so times are asserted exactly
 * (moving the clock 1 ms at a time, a call due at a fractional time lands on the next whole ms). Only the
 * child-process tests at the end use wall time, because what they check is wall-clock timers.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test, type TestContext } from 'node:test';
import {
  type BufferEntry,
  createEngine,
  type DeadLetter,
  type Engine,
  ErrorCode,
  type StatBuffer,
  TallyworksError,
  TestClock,
  UndeliveredError,
} from '../../../src/index.js';

// ── helpers ─────────────────────────────────────────────────────────────────────────────────────────

const TEST_TIMEOUT_MS = 8_000;
function it(name: string, fn: (t: TestContext) => Promise<void>): void {
  test(name, { timeout: TEST_TIMEOUT_MS }, fn);
}

/** One turn of the event loop: handler promises settle, buffer work due "now" runs. */
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
async function settle(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await tick();
}

/** Moves the clock to `t` in steps of `step` ms, letting promises settle after every move. */
async function stepTo(clock: TestClock, t: number, step = 1): Promise<void> {
  while (clock.now() < t) {
    clock.advance(Math.min(step, t - clock.now()));
    await tick();
  }
}

/** Sets the clock to `t` in one move, then lets promises settle. */
async function jumpTo(clock: TestClock, t: number): Promise<void> {
  clock.set(t);
  await settle();
}

interface Env {
  readonly clock: TestClock;
  readonly engine: Engine;
}
const opened: Env[] = [];
async function setup(): Promise<Env> {
  const clock = new TestClock(0);
  const engine = await createEngine({ clock, shards: 1 });
  const env = { clock, engine };
  opened.push(env);
  return env;
}
/** Closes every engine a test opened, moving its clock so that close deadlines pass (a failed test never hangs). */
afterEach(async () => {
  for (const { clock, engine } of opened.splice(0)) {
    let done = false;
    engine.close().then(
      () => (done = true),
      () => (done = true),
    );
    for (let i = 0; i < 200 && !done; i++) {
      clock.advance(1_000_000);
      await tick();
    }
  }
});

interface Call {
  readonly key: string;
  readonly count: number;
  readonly flushId: string;
  readonly at: number;
}
/** An onFlush that records (key, count, flushId, clock time) and then does what `then` returns. */
function recorder(clock: TestClock, then?: (call: Call, index: number) => unknown): { calls: Call[]; onFlush: (key: string, count: number, flushId: string) => unknown } {
  const calls: Call[] = [];
  return {
    calls,
    onFlush: (key, count, flushId) => {
      const call = { key, count, flushId, at: clock.now() };
      calls.push(call);
      return then?.(call, calls.length - 1);
    },
  };
}

interface BatchCall {
  readonly entries: BufferEntry[];
  readonly flushId: string;
  readonly at: number;
}
function batchRecorder(clock: TestClock, then?: (call: BatchCall, index: number) => unknown): { calls: BatchCall[]; onFlushBatch: (entries: BufferEntry[], flushId: string) => unknown } {
  const calls: BatchCall[] = [];
  return {
    calls,
    onFlushBatch: (entries, flushId) => {
      const call = { entries: entries.map((e) => ({ key: e.key, count: e.count })), flushId, at: clock.now() };
      calls.push(call);
      return then?.(call, calls.length - 1);
    },
  };
}
const sortedEntries = (entries: BufferEntry[]): BufferEntry[] => [...entries].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}
function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Follows a promise without awaiting it. */
interface Tracked {
  done: boolean;
  rejected: boolean;
  error: unknown;
  at: number;
}
function track(p: Promise<unknown>, clock: TestClock): Tracked {
  const s: Tracked = { done: false, rejected: false, error: undefined, at: NaN };
  p.then(
    () => {
      s.done = true;
      s.at = clock.now();
    },
    (err: unknown) => {
      s.done = true;
      s.rejected = true;
      s.error = err;
      s.at = clock.now();
    },
  );
  return s;
}

const never = (): Promise<void> => new Promise<void>(() => {});

/** Runs `fn` and returns what it threw (or what its promise rejected with); fails when it succeeded. */
async function caught(fn: () => unknown, what: string): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  assert.fail(`${what}: expected an error, but the call succeeded`);
}
async function expectCode(fn: () => unknown, code: string, what: string, mentions?: string): Promise<void> {
  const err = await caught(fn, what);
  assert.ok(err instanceof TallyworksError, `${what}: not a TallyworksError: ${String(err)}`);
  assert.equal((err as TallyworksError).code, code, `${what}: wrong code: ${String(err)}`);
  if (mentions !== undefined) assert.ok((err as Error).message.includes(mentions), `${what}: message does not name ${mentions}: ${(err as Error).message}`);
}

// ── the spec's scenarios (fake clock, interval 1000) ──────────────────────────────────────────────

describe('stat buffer spec scenarios', () => {
  it('scenario 1: increment at 0 and (k, 9) at 200 → count 10; at 1000 the handler gets (k, 10) once; count → undefined', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock);
    const b = engine.buffer({ name: 's1', intervalMs: 1000, onFlush: r.onFlush });
    b.increment('k');
    await jumpTo(clock, 200);
    b.increment('k', 9);
    assert.equal(b.count('k'), 10);
    await stepTo(clock, 999);
    assert.equal(r.calls.length, 0, 'nothing before 1000');
    assert.equal(b.count('k'), 10);
    await stepTo(clock, 1000);
    assert.equal(r.calls.length, 1);
    assert.deepEqual({ key: r.calls[0]!.key, count: r.calls[0]!.count, at: r.calls[0]!.at }, { key: 'k', count: 10, at: 1000 });
    assert.equal(typeof r.calls[0]!.flushId, 'string');
    assert.ok(r.calls[0]!.flushId.startsWith('s1:'), `flush id starts with the buffer's name: ${r.calls[0]!.flushId}`);
    assert.equal(b.count('k'), undefined);
    await stepTo(clock, 5000, 10);
    assert.equal(r.calls.length, 1, 'called once');
    assert.equal(b.stats().keys, 0);
  });

  it('scenario 2: an increment at 1100 after the flush starts a new timer: flush at 2100 with only the new total', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock);
    const b = engine.buffer({ name: 's2', intervalMs: 1000, onFlush: r.onFlush });
    b.increment('k', 10);
    await stepTo(clock, 1000);
    assert.equal(r.calls.length, 1);
    await jumpTo(clock, 1100);
    b.increment('k', 4);
    b.increment('k', 2);
    assert.equal(b.count('k'), 6);
    await stepTo(clock, 2099);
    assert.equal(r.calls.length, 1, 'no flush before 2100');
    await stepTo(clock, 2100);
    assert.equal(r.calls.length, 2);
    assert.deepEqual([r.calls[1]!.key, r.calls[1]!.count, r.calls[1]!.at], ['k', 6, 2100]);
    assert.notEqual(r.calls[1]!.flushId, r.calls[0]!.flushId, 'a new count has a new flush id');
    await stepTo(clock, 4000, 10);
    assert.equal(r.calls.length, 2);
    assert.equal(b.count('k'), undefined);
  });

  it("scenario 3: 'a' at 0 and 'b' at 500 → 'a' flushes at 1000, 'b' at 1500", async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock);
    const b = engine.buffer({ name: 's3', intervalMs: 1000, onFlush: r.onFlush });
    b.increment('a');
    await jumpTo(clock, 500);
    b.increment('b', 2);
    await stepTo(clock, 2500);
    assert.deepEqual(
      r.calls.map((c) => [c.key, c.count, c.at]),
      [
        ['a', 1, 1000],
        ['b', 2, 1500],
      ],
    );
  });

  it('scenario 4: jitter 200 → the flush lands in (1000, 1200]', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock);
    const b = engine.buffer({ name: 's4', intervalMs: 1000, jitterMs: 200, onFlush: r.onFlush });
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    for (const k of keys) b.increment(k);
    await stepTo(clock, 1000);
    assert.equal(r.calls.length, 0, 'nothing at 1000 (the jitter is in (0, 200])');
    await stepTo(clock, 1500);
    assert.deepEqual(r.calls.map((c) => c.key).sort(), [...keys].sort(), 'every key flushed once');
    for (const c of r.calls) assert.ok(c.at > 1000 && c.at <= 1200, `${c.key} flushed at ${c.at}`);
    assert.ok(new Set(r.calls.map((c) => c.at)).size > 1, 'the jitter is random: 40 keys do not all flush in the same ms');
  });

  it('scenario 4 (bounds): jitter with random() = 0 lands exactly at 1200, with random() → 1 just after 1000', async (t) => {
    const { clock, engine } = await setup();
    const r = recorder(clock);
    const random = t.mock.method(Math, 'random', () => 0);
    const hi = engine.buffer({ name: 's4hi', intervalMs: 1000, jitterMs: 200, onFlush: r.onFlush });
    hi.increment('hi');
    random.mock.mockImplementation(() => 0.999999999);
    const lo = engine.buffer({ name: 's4lo', intervalMs: 1000, jitterMs: 200, onFlush: r.onFlush });
    lo.increment('lo');
    random.mock.restore();
    await stepTo(clock, 1000);
    assert.equal(r.calls.length, 0);
    await stepTo(clock, 1199);
    assert.deepEqual(r.calls.map((c) => [c.key, c.at]), [['lo', 1001]]);
    await stepTo(clock, 1300);
    assert.deepEqual(
      r.calls.map((c) => [c.key, c.at]),
      [
        ['lo', 1001],
        ['hi', 1200],
      ],
    );
  });

  it('scenario 5: fails twice then succeeds (backoff 200) → the same total delivered once; increments during retries delivered too', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock, (_call, i) => (i < 2 ? Promise.reject(new Error(`sink down ${i}`)) : Promise.resolve()));
    const b = engine.buffer({ name: 's5', intervalMs: 1000, backoffMs: 200, onFlush: r.onFlush });
    b.increment('k', 7);
    b.increment('k', 3);
    await stepTo(clock, 1000);
    assert.equal(r.calls.length, 1);
    assert.equal(b.count('k'), 10, 'a failed count is still counted');
    await stepTo(clock, 1050);
    b.increment('k', 3); // during the retries: a new count, flushing at 2050
    assert.equal(b.count('k'), 13);
    await stepTo(clock, 1700);
    b.increment('k', 2); // joins the new count
    assert.equal(b.count('k'), 5, 'the first total was delivered by now; 3 + 2 wait');
    await stepTo(clock, 3500);

    assert.equal(r.calls.length, 4, JSON.stringify(r.calls));
    const [c1, c2, c3, c4] = r.calls as [Call, Call, Call, Call];
    for (const c of [c1, c2, c3]) assert.deepEqual([c.key, c.count, c.flushId], ['k', 10, c1.flushId], 'retries re-send the same key, count and flush id');
    assert.equal(c1.at, 1000);
    assert.ok(c2.at - c1.at >= 100 && c2.at - c1.at <= 200, `first retry ${c2.at - c1.at} ms later (expected [100, 200))`);
    assert.ok(c3.at - c2.at >= 200 && c3.at - c2.at <= 400, `second retry ${c3.at - c2.at} ms later (expected [200, 400))`);
    assert.deepEqual([c4.key, c4.count, c4.at], ['k', 5, 2050]);
    assert.notEqual(c4.flushId, c1.flushId);
    // Delivered: 10 once (c3) and 5 once (c4) = every increment, none twice.
    assert.equal(c3.count + c4.count, 7 + 3 + 3 + 2);
    assert.equal(b.count('k'), undefined);
    assert.deepEqual(b.stats(), { keys: 0, deliveries: 0, handlerCalls: 4, delivered: 2, retries: 2, failures: 2, timeouts: 0, deadLettered: 0 });
  });

  it('scenario 6: flush(k) → the handler runs promptly; flush of an unknown key → no handler call', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock);
    const b = engine.buffer({ name: 's6', intervalMs: 1000, onFlush: r.onFlush });
    b.increment('k', 2);
    await jumpTo(clock, 100);
    await b.flush('k');
    assert.deepEqual(r.calls.map((c) => [c.key, c.count, c.at]), [['k', 2, 100]]);
    assert.equal(b.count('k'), undefined);
    await b.flush('unknown');
    assert.equal(r.calls.length, 1, 'no call for an unknown key');
    await stepTo(clock, 2500, 10);
    assert.equal(r.calls.length, 1, 'the key does not flush again at 1000');
    assert.equal(b.count('unknown'), undefined);
  });

  it('scenario 7: increment after close() → a typed error (TW_CLOSED)', async () => {
    const { engine } = await setup();
    const b = engine.buffer({ name: 's7', intervalMs: 1000, onFlush: () => {} });
    b.increment('k');
    await b.close();
    assert.equal(b.closed, true);
    assert.throws(
      () => b.increment('k'),
      (err: unknown) => err instanceof TallyworksError && err.code === ErrorCode.CLOSED && /s7/.test(err.message),
    );
    assert.equal(b.count('k'), undefined);
  });

  it("scenario 8: close() with 'dump' = 1 pending → the handler gets ('dump', 1) before close resolves", async () => {
    const { clock, engine } = await setup();
    const events: string[] = [];
    const b = engine.buffer({
      name: 's8',
      intervalMs: 1000,
      onFlush: async (key, count) => {
        events.push(`call ${key} ${count} at ${clock.now()}`);
        await tick();
        events.push('handler done');
      },
    });
    b.increment('dump');
    await jumpTo(clock, 10);
    await b.close().then(() => events.push('closed'));
    assert.deepEqual(events, ['call dump 1 at 10', 'handler done', 'closed']);
    assert.equal(b.count('dump'), undefined);
    assert.equal(b.stats().delivered, 1);
  });

  it('scenario 9: increment(k, 5), increment(k, −5) → count 0; a flush of 0 skips the handler', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock);
    const b = engine.buffer({ name: 's9', intervalMs: 1000, onFlush: r.onFlush });
    b.increment('k', 5);
    b.increment('k', -5);
    assert.equal(b.count('k'), 0);
    b.increment('j', 5);
    b.increment('j', -5);
    await b.flush('j');
    assert.equal(r.calls.length, 0, 'flush(j) of 0 calls nothing');
    assert.equal(b.count('j'), undefined);
    await stepTo(clock, 2000, 10);
    assert.equal(r.calls.length, 0, 'the timed flush of 0 calls nothing');
    assert.equal(b.count('k'), undefined);
    assert.equal(b.stats().keys, 0);
    assert.equal(b.stats().handlerCalls, 0);
  });

  it('scenario 10 (same thread): 10,000 increments → count 10,000 → one handler call with 10,000', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock);
    const b = engine.buffer({ name: 's10', intervalMs: 1000, onFlush: r.onFlush });
    for (let i = 0; i < 10_000; i++) b.increment('k');
    assert.equal(b.count('k'), 10_000);
    await stepTo(clock, 1500, 10);
    assert.deepEqual(r.calls.map((c) => [c.key, c.count, c.at]), [['k', 10_000, 1000]]);
  });

  it("scenario 11: two buffers with key 'foo' (100 and 10) stay separate", async () => {
    const { clock, engine } = await setup();
    const r1 = recorder(clock);
    const r2 = recorder(clock);
    const one = engine.buffer({ name: 's11a', intervalMs: 1000, onFlush: r1.onFlush });
    const two = engine.buffer({ name: 's11b', intervalMs: 1000, onFlush: r2.onFlush });
    one.increment('foo', 100);
    two.increment('foo', 10);
    assert.equal(one.count('foo'), 100);
    assert.equal(two.count('foo'), 10);
    await stepTo(clock, 1000);
    assert.deepEqual(r1.calls.map((c) => [c.key, c.count, c.at]), [['foo', 100, 1000]]);
    assert.deepEqual(r2.calls.map((c) => [c.key, c.count, c.at]), [['foo', 10, 1000]]);
    assert.notEqual(r1.calls[0]!.flushId, r2.calls[0]!.flushId);
  });

  it('scenario 12: a handler that never settles (timeoutMs 100) counts as a failure and is retried; the flush id shows the sink the duplicate', async () => {
    const { clock, engine } = await setup();
    const seen: string[] = []; // the sink's record of flush ids
    const r = recorder(clock, (call, i) => {
      seen.push(call.flushId);
      return i === 0 ? never() : Promise.resolve();
    });
    const b = engine.buffer({ name: 's12', intervalMs: 1000, timeoutMs: 100, backoffMs: 200, onFlush: r.onFlush });
    b.increment('k', 4);
    await stepTo(clock, 1099);
    assert.equal(r.calls.length, 1);
    assert.equal(b.stats().timeouts, 0);
    await stepTo(clock, 1100);
    assert.equal(b.stats().timeouts, 1, 'timed out at 1100');
    assert.equal(b.stats().failures, 1, 'a timeout counts as a failure');
    assert.equal(b.count('k'), 4);
    await stepTo(clock, 1600);
    assert.equal(r.calls.length, 2, 'retried once, then delivered');
    const [c1, c2] = r.calls as [Call, Call];
    assert.deepEqual([c2.key, c2.count, c2.flushId], ['k', 4, c1.flushId]);
    assert.ok(c2.at >= 1200 && c2.at <= 1300, `retry at ${c2.at} (timeout at 1100 + [100, 200))`);
    assert.equal(seen.length, 2);
    assert.equal(new Set(seen).size, 1, 'the sink sees the same flush id twice: a duplicate it can drop');
    assert.equal(b.count('k'), undefined);
    assert.deepEqual(b.stats(), { keys: 0, deliveries: 0, handlerCalls: 2, delivered: 1, retries: 1, failures: 1, timeouts: 1, deadLettered: 0 });
  });
});

// ── batches ─────────────────────────────────────────────────────────────────────────────────────────

describe('stat buffer onFlushBatch', () => {
  it('keys due in the same poll arrive in one call; a key due later in its own', async () => {
    const { clock, engine } = await setup();
    const r = batchRecorder(clock);
    const b = engine.buffer({ name: 'batch1', intervalMs: 1000, onFlushBatch: r.onFlushBatch });
    b.increment('a', 1);
    b.increment('b', 2);
    await jumpTo(clock, 500);
    b.increment('c', 3);
    await stepTo(clock, 2000);
    assert.equal(r.calls.length, 2, JSON.stringify(r.calls));
    assert.deepEqual(sortedEntries(r.calls[0]!.entries), [
      { key: 'a', count: 1 },
      { key: 'b', count: 2 },
    ]);
    assert.equal(r.calls[0]!.at, 1000);
    assert.deepEqual(r.calls[1]!.entries, [{ key: 'c', count: 3 }]);
    assert.equal(r.calls[1]!.at, 1500);
    assert.notEqual(r.calls[0]!.flushId, r.calls[1]!.flushId);
    assert.equal(b.stats().delivered, 3, 'delivered counts entries');
    assert.equal(b.stats().handlerCalls, 2);
  });

  it('keys with different due times that come due in one clock move share one call', async () => {
    const { clock, engine } = await setup();
    const r = batchRecorder(clock);
    const b = engine.buffer({ name: 'batch2', intervalMs: 1000, onFlushBatch: r.onFlushBatch });
    b.increment('a', 1);
    await jumpTo(clock, 300);
    b.increment('b', 2);
    await jumpTo(clock, 600);
    b.increment('c', 3);
    await jumpTo(clock, 5000);
    assert.equal(r.calls.length, 1);
    assert.deepEqual(sortedEntries(r.calls[0]!.entries), [
      { key: 'a', count: 1 },
      { key: 'b', count: 2 },
      { key: 'c', count: 3 },
    ]);
  });

  it('maxBatch splits a poll into calls of at most maxBatch entries, each with its own flush id', async () => {
    const { clock, engine } = await setup();
    const r = batchRecorder(clock);
    const b = engine.buffer({ name: 'batch3', intervalMs: 1000, maxBatch: 2, onFlushBatch: r.onFlushBatch });
    for (const [i, k] of ['a', 'b', 'c', 'd', 'e'].entries()) b.increment(k, i + 1);
    await stepTo(clock, 1000);
    assert.deepEqual(
      r.calls.map((c) => c.entries.length),
      [2, 2, 1],
    );
    assert.deepEqual(sortedEntries(r.calls.flatMap((c) => c.entries)), [
      { key: 'a', count: 1 },
      { key: 'b', count: 2 },
      { key: 'c', count: 3 },
      { key: 'd', count: 4 },
      { key: 'e', count: 5 },
    ]);
    assert.equal(new Set(r.calls.map((c) => c.flushId)).size, 3);
    for (const c of r.calls) assert.equal(c.at, 1000);
  });

  it('a failed batch is retried whole: same entries, same flush id', async () => {
    const { clock, engine } = await setup();
    const r = batchRecorder(clock, (_c, i) => {
      if (i === 0) throw new Error('db down');
    });
    const b = engine.buffer({ name: 'batch4', intervalMs: 1000, backoffMs: 100, onFlushBatch: r.onFlushBatch });
    b.increment('x', 5);
    b.increment('y', 6);
    await stepTo(clock, 1300);
    assert.equal(r.calls.length, 2);
    assert.equal(r.calls[1]!.flushId, r.calls[0]!.flushId);
    assert.deepEqual(sortedEntries(r.calls[1]!.entries), sortedEntries(r.calls[0]!.entries));
    assert.deepEqual(sortedEntries(r.calls[1]!.entries), [
      { key: 'x', count: 5 },
      { key: 'y', count: 6 },
    ]);
    assert.equal(b.stats().keys, 0);
    assert.equal(b.stats().delivered, 2);
  });
});

// ── retries, backoff, timeouts ────────────────────────────────────────────────────────────────────

describe('stat buffer retries and timeouts', () => {
  it('the backoff doubles per attempt and is capped by maxBackoffMs: with random() = 0 the delays are exactly base/2', async (t) => {
    const { clock, engine } = await setup();
    t.mock.method(Math, 'random', () => 0);
    const letters: DeadLetter[][] = [];
    const r = recorder(clock, () => {
      throw new Error('always');
    });
    const b = engine.buffer({ name: 'backoff0', intervalMs: 1000, backoffMs: 100, maxBackoffMs: 800, maxAttempts: 8, onFlush: r.onFlush, onDeadLetter: (l) => void letters.push(l) });
    b.increment('k');
    await stepTo(clock, 4000);
    const gaps = r.calls.slice(1).map((c, i) => c.at - r.calls[i]!.at);
    // base = min(800, 100·2^(a−1)) = 100, 200, 400, 800, 800, 800, 800; delay = base/2 + random·base/2
    assert.deepEqual(gaps, [50, 100, 200, 400, 400, 400, 400]);
    assert.equal(letters.length, 1);
  });

  it('the backoff with random() → 1 approaches base: delays 100, 200, 400, 800, 800 (cap)', async (t) => {
    const { clock, engine } = await setup();
    t.mock.method(Math, 'random', () => 0.9999999);
    const r = recorder(clock, () => Promise.reject(new Error('always')));
    const b = engine.buffer({ name: 'backoff1', intervalMs: 1000, backoffMs: 100, maxBackoffMs: 800, onFlush: r.onFlush });
    b.increment('k');
    await stepTo(clock, 1000 + 100 + 200 + 400 + 800 + 800 + 10);
    const gaps = r.calls.slice(1).map((c, i) => c.at - r.calls[i]!.at);
    assert.deepEqual(gaps, [100, 200, 400, 800, 800]);
    for (const c of r.calls) assert.equal(c.flushId, r.calls[0]!.flushId);
  });

  it('the backoff with real randomness: each delay within [base/2, base], roughly doubling, capped', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock, () => Promise.reject(new Error('always')));
    const b = engine.buffer({ name: 'backoff2', intervalMs: 1000, backoffMs: 200, maxBackoffMs: 1600, onFlush: r.onFlush });
    b.increment('k');
    await stepTo(clock, 12_000);
    const gaps = r.calls.slice(1).map((c, i) => c.at - r.calls[i]!.at);
    assert.ok(gaps.length >= 7, `gaps ${JSON.stringify(gaps)}`);
    gaps.forEach((gap, i) => {
      const base = Math.min(1600, 200 * 2 ** i);
      assert.ok(gap >= base / 2 && gap <= base, `delay of retry ${i + 1} is ${gap} ms, expected [${base / 2}, ${base}]`);
    });
  });

  it('defaults: intervalMs 5000, first retry after [500, 1000) ms, the cap at 30000 (delays with random() = 0: 500 … 15000)', async (t) => {
    const { clock, engine } = await setup();
    t.mock.method(Math, 'random', () => 0);
    const r = recorder(clock, () => Promise.reject(new Error('always')));
    const b = engine.buffer({ name: 'defaults', onFlush: r.onFlush });
    b.increment('k');
    await stepTo(clock, 4990, 10);
    assert.equal(r.calls.length, 0);
    await stepTo(clock, 5000, 10);
    await stepTo(clock, 5000 + 500 + 1000 + 2000 + 4000 + 8000 + 15000 + 15000, 50);
    assert.equal(r.calls[0]!.at, 5000);
    const gaps = r.calls.slice(1).map((c, i) => c.at - r.calls[i]!.at);
    assert.deepEqual(gaps, [500, 1000, 2000, 4000, 8000, 15000, 15000]);
  });

  it('a sync-throwing handler is a failure: retried with the same key, count and flush id', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock, (_c, i) => {
      if (i === 0) throw new TypeError('oops');
    });
    const b = engine.buffer({ name: 'sync-throw', intervalMs: 1000, backoffMs: 100, onFlush: r.onFlush });
    b.increment('k', 3);
    await stepTo(clock, 1000);
    assert.equal(r.calls.length, 1);
    assert.equal(b.count('k'), 3);
    assert.equal(b.stats().failures, 1);
    await stepTo(clock, 1200);
    assert.equal(r.calls.length, 2);
    assert.deepEqual([r.calls[1]!.key, r.calls[1]!.count, r.calls[1]!.flushId], ['k', 3, r.calls[0]!.flushId]);
    assert.equal(b.count('k'), undefined);
    assert.deepEqual(b.stats(), { keys: 0, deliveries: 0, handlerCalls: 2, delivered: 1, retries: 1, failures: 1, timeouts: 0, deadLettered: 0 });
  });

  it('a late success of a timed-out attempt counts as delivered and cancels the pending retry', async () => {
    const { clock, engine } = await setup();
    const first = deferred();
    const r = recorder(clock, (_c, i) => (i === 0 ? first.promise : Promise.resolve()));
    const b = engine.buffer({ name: 'late-ok', intervalMs: 1000, timeoutMs: 100, backoffMs: 1000, onFlush: r.onFlush });
    b.increment('k', 8);
    await stepTo(clock, 1100);
    assert.equal(b.stats().timeouts, 1);
    assert.equal(b.stats().deliveries, 1, 'waiting for its retry');
    assert.equal(b.count('k'), 8, 'a timed-out count is still counted');
    await stepTo(clock, 1200);
    first.resolve(); // before the retry (due in [1600, 2100))
    await settle();
    assert.equal(b.count('k'), undefined);
    assert.equal(b.stats().deliveries, 0);
    assert.equal(b.stats().delivered, 1);
    await stepTo(clock, 4000, 5);
    assert.equal(r.calls.length, 1, 'the retry was cancelled');
    assert.deepEqual(b.stats(), { keys: 0, deliveries: 0, handlerCalls: 1, delivered: 1, retries: 1, failures: 1, timeouts: 1, deadLettered: 0 });
  });

  it('a late success of a timed-out attempt while its retry runs: delivered once, the retry settling later changes nothing', async () => {
    const { clock, engine } = await setup();
    const first = deferred();
    const second = deferred();
    const r = recorder(clock, (_c, i) => (i === 0 ? first.promise : second.promise));
    const b = engine.buffer({ name: 'late-ok2', intervalMs: 1000, timeoutMs: 1000, backoffMs: 100, onFlush: r.onFlush });
    b.increment('k', 8);
    await stepTo(clock, 2000); // timeout
    await stepTo(clock, 2100); // the retry runs (due in [2050, 2100))
    assert.equal(r.calls.length, 2);
    first.resolve();
    await settle();
    assert.equal(b.count('k'), undefined);
    assert.equal(b.stats().delivered, 1);
    second.reject(new Error('late failure of the retry'));
    await settle();
    await stepTo(clock, 6000, 10);
    assert.equal(r.calls.length, 2);
    assert.deepEqual(b.stats(), { keys: 0, deliveries: 0, handlerCalls: 2, delivered: 1, retries: 1, failures: 1, timeouts: 1, deadLettered: 0 });
  });

  it('a late failure of a timed-out attempt is not counted twice; the retry delivers', async () => {
    const { clock, engine } = await setup();
    const first = deferred();
    const r = recorder(clock, (_c, i) => (i === 0 ? first.promise : undefined));
    const b = engine.buffer({ name: 'late-fail', intervalMs: 1000, timeoutMs: 100, backoffMs: 1000, onFlush: r.onFlush });
    b.increment('k', 2);
    await stepTo(clock, 1200);
    first.reject(new Error('too late'));
    await settle();
    assert.equal(b.stats().failures, 1);
    assert.equal(b.stats().deliveries, 1);
    await stepTo(clock, 2200, 5);
    assert.equal(r.calls.length, 2);
    assert.equal(r.calls[1]!.flushId, r.calls[0]!.flushId);
    assert.deepEqual(b.stats(), { keys: 0, deliveries: 0, handlerCalls: 2, delivered: 1, retries: 1, failures: 1, timeouts: 1, deadLettered: 0 });
  });
});

// ── dead letters ──────────────────────────────────────────────────────────────────────────────────

describe('stat buffer maxAttempts and onDeadLetter', () => {
  it('past maxAttempts the count goes to onDeadLetter with key, count, flush id, attempts, the last error, unsettled false', async () => {
    const { clock, engine } = await setup();
    const errors: Error[] = [];
    const r = recorder(clock, (_c, i) => {
      const err = new Error(`fail ${i}`);
      errors.push(err);
      return Promise.reject(err);
    });
    const letters: DeadLetter[][] = [];
    const b = engine.buffer({ name: 'dl1', intervalMs: 1000, backoffMs: 100, maxAttempts: 3, onFlush: r.onFlush, onDeadLetter: (l) => void letters.push(l) });
    b.increment('k', 7);
    await stepTo(clock, 3000);
    assert.equal(r.calls.length, 3);
    for (const c of r.calls) assert.equal(c.flushId, r.calls[0]!.flushId);
    assert.equal(letters.length, 1);
    assert.deepEqual(letters[0], [{ key: 'k', count: 7, flushId: r.calls[0]!.flushId, attempts: 3, error: errors[2], unsettled: false }]);
    assert.equal(b.count('k'), undefined);
    assert.deepEqual(b.stats(), { keys: 0, deliveries: 0, handlerCalls: 3, delivered: 0, retries: 2, failures: 3, timeouts: 0, deadLettered: 1 });
    await stepTo(clock, 10_000, 50);
    assert.equal(r.calls.length, 3, 'no call after the dead letter');
  });

  it('maxAttempts with a handler that never settles: the letter is unsettled, its error TW_FLUSH_TIMEOUT', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock, never);
    const letters: DeadLetter[][] = [];
    const b = engine.buffer({ name: 'dl2', intervalMs: 1000, timeoutMs: 50, backoffMs: 100, maxAttempts: 2, onFlush: r.onFlush, onDeadLetter: (l) => void letters.push(l) });
    b.increment('k', 9);
    await stepTo(clock, 1500);
    assert.equal(r.calls.length, 2);
    assert.equal(letters.length, 1);
    const [letter] = letters[0]! as [DeadLetter];
    assert.deepEqual([letter.key, letter.count, letter.flushId, letter.attempts, letter.unsettled], ['k', 9, r.calls[0]!.flushId, 2, true]);
    assert.ok(letter.error instanceof TallyworksError && letter.error.code === ErrorCode.FLUSH_TIMEOUT, `error: ${String(letter.error)}`);
    assert.equal(b.stats().timeouts, 2);
    assert.equal(b.stats().deadLettered, 1);
    assert.equal(b.count('k'), undefined);
  });

  it('a timed-out attempt that later failed no longer makes the letter unsettled', async () => {
    const { clock, engine } = await setup();
    const first = deferred();
    const r = recorder(clock, (_c, i) => (i === 0 ? first.promise : Promise.reject(new Error('second'))));
    const letters: DeadLetter[][] = [];
    const b = engine.buffer({ name: 'dl3', intervalMs: 1000, timeoutMs: 50, backoffMs: 1000, maxAttempts: 2, onFlush: r.onFlush, onDeadLetter: (l) => void letters.push(l) });
    b.increment('k', 1);
    await stepTo(clock, 1100);
    first.reject(new Error('first, late'));
    await settle();
    await stepTo(clock, 2200, 5);
    assert.equal(letters.length, 1);
    assert.equal(letters[0]![0]!.unsettled, false);
    assert.equal((letters[0]![0]!.error as Error).message, 'second');
    assert.equal(letters[0]![0]!.attempts, 2);
  });

  it('a dead-lettered batch gives one letter per entry, all with the batch flush id', async () => {
    const { clock, engine } = await setup();
    const r = batchRecorder(clock, () => Promise.reject(new Error('no')));
    const letters: DeadLetter[][] = [];
    const b = engine.buffer({ name: 'dl4', intervalMs: 1000, maxAttempts: 1, onFlushBatch: r.onFlushBatch, onDeadLetter: (l) => void letters.push(l) });
    b.increment('p', 1);
    b.increment('q', 2);
    await stepTo(clock, 1000);
    assert.equal(letters.length, 1);
    const got = [...letters[0]!].sort((a, b2) => (a.key < b2.key ? -1 : 1)).map((l) => [l.key, l.count, l.flushId, l.attempts, l.unsettled]);
    assert.deepEqual(got, [
      ['p', 1, r.calls[0]!.flushId, 1, false],
      ['q', 2, r.calls[0]!.flushId, 1, false],
    ]);
    assert.equal(b.stats().deadLettered, 2);
    assert.equal(b.stats().keys, 0);
  });

  it('an onDeadLetter that throws does not drop the counts: close() rejects listing them', async () => {
    const { clock, engine } = await setup();
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      const b = engine.buffer({
        name: 'dl5',
        intervalMs: 1000,
        maxAttempts: 1,
        onFlush: () => Promise.reject(new Error('no')),
        onDeadLetter: () => {
          throw new Error('dead letter store down');
        },
      });
      b.increment('k', 6);
      await stepTo(clock, 1000);
      const err = await caught(() => b.close(), 'close');
      assert.ok(err instanceof UndeliveredError, String(err));
      assert.equal(err.code, ErrorCode.UNDELIVERED);
      assert.deepEqual(err.undelivered, [['k', 6]]);
      await settle();
      assert.ok(warnings.some((w) => w.includes('dl5')), `warnings: ${JSON.stringify(warnings)}`);
    } finally {
      process.off('warning', onWarning);
    }
  });
});

// ── close ─────────────────────────────────────────────────────────────────────────────────────────

describe('stat buffer close()', () => {
  it('close() with a forever-failing handler retries until closeTimeoutMs of clock time, then dead-letters and resolves', async () => {
    const { clock, engine } = await setup();
    const err = new Error('forever');
    const r = recorder(clock, () => {
      throw err;
    });
    const letters: DeadLetter[][] = [];
    const b = engine.buffer({ name: 'close1', intervalMs: 1000, backoffMs: 100, closeTimeoutMs: 500, onFlush: r.onFlush, onDeadLetter: (l) => void letters.push(l) });
    b.increment('k', 3);
    const closing = track(b.close(), clock);
    await settle();
    assert.equal(r.calls.length, 1, 'close flushes the key at once');
    assert.equal(r.calls[0]!.at, 0);
    await stepTo(clock, 499, 10);
    assert.equal(closing.done, false, 'still retrying before the deadline');
    assert.ok(r.calls.length >= 3, `retried: ${r.calls.length} calls`);
    await stepTo(clock, 500);
    assert.equal(closing.done, true);
    assert.equal(closing.rejected, false, String(closing.error));
    assert.equal(closing.at, 500, 'closed at the deadline');
    assert.equal(letters.length, 1);
    assert.deepEqual(letters[0], [{ key: 'k', count: 3, flushId: r.calls[0]!.flushId, attempts: r.calls.length, error: err, unsettled: false }]);
    const calls = r.calls.length;
    await stepTo(clock, 3000, 50);
    assert.equal(r.calls.length, calls, 'no retries after close');
  });

  it('close() without onDeadLetter rejects with TW_UNDELIVERED listing [key, count] at the deadline', async () => {
    const { clock, engine } = await setup();
    const b = engine.buffer({ name: 'close2', intervalMs: 1000, backoffMs: 100, closeTimeoutMs: 300, onFlush: () => Promise.reject(new Error('down')) });
    b.increment('a', 3);
    b.increment('b', -4);
    const closing = track(b.close(), clock);
    await settle(); // close() starts its deadline once it has collected from linked threads (a turn)
    await stepTo(clock, 299);
    assert.equal(closing.done, false);
    await stepTo(clock, 300);
    assert.equal(closing.done, true);
    assert.equal(closing.rejected, true);
    const err = closing.error;
    assert.ok(err instanceof UndeliveredError, String(err));
    assert.equal(err.code, ErrorCode.UNDELIVERED);
    assert.deepEqual([...err.undelivered].map((e) => [...e]).sort(), [
      ['a', 3],
      ['b', -4],
    ]);
    assert.equal(b.stats().deadLettered, 2);
    assert.equal(b.count('a'), undefined);
  });

  it('close() with a hung handler and no timeoutMs: at the deadline the letter is unsettled', async () => {
    const { clock, engine } = await setup();
    const letters: DeadLetter[][] = [];
    const r = recorder(clock, never);
    const b = engine.buffer({ name: 'close3', intervalMs: 1000, closeTimeoutMs: 300, onFlush: r.onFlush, onDeadLetter: (l) => void letters.push(l) });
    b.increment('k', 2);
    const closing = track(b.close(), clock);
    await settle();
    await stepTo(clock, 299, 10);
    assert.equal(closing.done, false);
    await stepTo(clock, 300);
    assert.equal(closing.done, true);
    assert.equal(closing.rejected, false);
    assert.equal(letters.length, 1);
    const [letter] = letters[0]! as [DeadLetter];
    assert.deepEqual([letter.key, letter.count, letter.flushId, letter.attempts, letter.unsettled], ['k', 2, r.calls[0]!.flushId, 1, true]);
  });

  it('close() retries at once a count waiting for its retry, and resolves when that delivers (no clock move)', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock, (_c, i) => (i === 0 ? Promise.reject(new Error('once')) : Promise.resolve()));
    const b = engine.buffer({ name: 'close4', intervalMs: 1000, backoffMs: 5000, onFlush: r.onFlush });
    b.increment('k', 4);
    await stepTo(clock, 1000);
    assert.equal(r.calls.length, 1);
    assert.equal(b.stats().deliveries, 1, 'waiting for a retry in [3500, 6000)');
    b.increment('k', 1); // a new count, not due yet
    const closing = track(b.close(), clock);
    await settle(5);
    assert.equal(closing.done, true, 'close delivered without waiting for the backoff');
    assert.equal(closing.rejected, false, String(closing.error));
    const got = r.calls.map((c) => [c.key, c.count, c.at, c.flushId === r.calls[0]!.flushId]).sort((x, y) => Number(x[1]) - Number(y[1]));
    assert.deepEqual(got, [
      ['k', 1, 1000, false],
      ['k', 4, 1000, true],
      ['k', 4, 1000, true],
    ]);
    assert.deepEqual(b.stats(), { keys: 0, deliveries: 0, handlerCalls: 3, delivered: 2, retries: 1, failures: 1, timeouts: 0, deadLettered: 0 });
  });

  it('close() is idempotent and flush()/link() on a closed buffer fail with TW_CLOSED', async () => {
    const { engine } = await setup();
    const b = engine.buffer({ name: 'close5', intervalMs: 1000, onFlush: () => {} });
    const p1 = b.close();
    const p2 = b.close();
    assert.equal(p1, p2);
    await p1;
    await expectCode(() => b.flush(), ErrorCode.CLOSED, 'flush()');
    await expectCode(() => b.flush('k'), ErrorCode.CLOSED, "flush('k')");
    await expectCode(() => b.link(), ErrorCode.CLOSED, 'link()');
    await expectCode(() => b.increment('k', 1), ErrorCode.CLOSED, 'increment');
  });

  it('close() with closeTimeoutMs 0 and a hung handler gives up on the next turn, without a clock move', async () => {
    // The deadline is due "now" at close(); work due now runs on a setImmediate. BUG: close() pushes the
    // deadline onto the heap without arming anything (buffer.ts close(), ~line 184), so it waits for the
    // clock to move (on a wall clock: for whatever timer was armed before, possibly never).
    const { clock, engine } = await setup();
    const letters: DeadLetter[][] = [];
    const b = engine.buffer({ name: 'close6', intervalMs: 1000, closeTimeoutMs: 0, onFlush: never, onDeadLetter: (l) => void letters.push(l) });
    b.increment('k', 3);
    const closing = track(b.close(), clock);
    await settle(10);
    assert.equal(closing.done, true, 'close() still pending with the deadline due');
    assert.equal(letters.length, 1);
    assert.deepEqual(letters[0]!.map((l) => [l.key, l.count, l.unsettled]), [['k', 3, true]]);
  });

  it('engine.close() closes its buffers first, delivering what they hold', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock);
    const b = engine.buffer({ name: 'eclose', intervalMs: 1000, onFlush: r.onFlush });
    b.increment('x', 11);
    await jumpTo(clock, 10);
    await engine.close();
    assert.deepEqual(r.calls.map((c) => [c.key, c.count, c.at]), [['x', 11, 10]]);
    assert.equal(b.closed, true);
    await expectCode(() => b.increment('x'), ErrorCode.CLOSED, 'increment after engine.close');
    await expectCode(() => engine.buffer({ name: 'late', onFlush: () => {} }), ErrorCode.CLOSED, 'engine.buffer after close');
  });

  it("engine.close() rejects with the buffer's UndeliveredError when it cannot deliver", async () => {
    const { clock, engine } = await setup();
    const b = engine.buffer({ name: 'eclose2', intervalMs: 1000, backoffMs: 50, closeTimeoutMs: 200, onFlush: () => Promise.reject(new Error('down')) });
    b.increment('y', 2);
    const closing = engine.close();
    const state = track(closing, clock);
    await settle();
    await stepTo(clock, 190, 10);
    assert.equal(state.done, false, 'the buffer is still retrying');
    await stepTo(clock, 210, 10);
    const err = await caught(() => closing, 'engine.close()'); // the shard threads end in real time
    assert.ok(err instanceof UndeliveredError, String(err));
    assert.equal(err.code, ErrorCode.UNDELIVERED);
    assert.deepEqual(err.undelivered, [['y', 2]]);
  });
});

// ── flush, count, keys ──────────────────────────────────────────────────────────────────────────

describe('stat buffer flush(), count() and keys', () => {
  it('flush() delivers every key now and resolves only once the handlers settled', async () => {
    const { clock, engine } = await setup();
    const gates: Deferred[] = [];
    const r = recorder(clock, () => {
      const d = deferred();
      gates.push(d);
      return d.promise;
    });
    const b = engine.buffer({ name: 'flushall', intervalMs: 1000, onFlush: r.onFlush });
    b.increment('a', 1);
    b.increment('b', 2);
    b.increment('z', 0);
    await jumpTo(clock, 40);
    b.increment('c', 3);
    await jumpTo(clock, 50);
    const flushing = track(b.flush(), clock);
    await settle();
    assert.deepEqual(r.calls.map((c) => [c.key, c.count, c.at]).sort(), [
      ['a', 1, 50],
      ['b', 2, 50],
      ['c', 3, 50],
    ]);
    assert.equal(flushing.done, false, 'waits for the handlers');
    assert.equal(b.count('b'), 2, 'in flight, still counted');
    gates[0]!.resolve();
    gates[1]!.resolve();
    await settle();
    assert.equal(flushing.done, false, 'one handler still running');
    gates[2]!.resolve();
    await settle();
    assert.equal(flushing.done, true);
    assert.equal(flushing.rejected, false);
    assert.equal(b.stats().keys, 0);
    await stepTo(clock, 3000, 10);
    assert.equal(r.calls.length, 3, 'nothing left to flush at 1000 or 1040');
  });

  it('flush() also retries at once what waits for its retry', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock, (_c, i) => (i === 0 ? Promise.reject(new Error('once')) : undefined));
    const b = engine.buffer({ name: 'flushretry', intervalMs: 1000, backoffMs: 10_000, onFlush: r.onFlush });
    b.increment('k', 5);
    await stepTo(clock, 1000);
    assert.equal(b.stats().deliveries, 1);
    await b.flush();
    assert.equal(r.calls.length, 2);
    assert.deepEqual([r.calls[1]!.count, r.calls[1]!.at, r.calls[1]!.flushId], [5, 1000, r.calls[0]!.flushId]);
    assert.equal(b.count('k'), undefined);
    await stepTo(clock, 12_000, 100);
    assert.equal(r.calls.length, 2, 'the cancelled retry does not run');
  });

  it('flush(key) with a failing handler resolves only once a retry delivered', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock, (_c, i) => (i === 0 ? Promise.reject(new Error('once')) : undefined));
    const b = engine.buffer({ name: 'flushkey', intervalMs: 1000, backoffMs: 200, onFlush: r.onFlush });
    b.increment('k', 5);
    const flushing = track(b.flush('k'), clock);
    await settle();
    assert.equal(r.calls.length, 1);
    assert.equal(flushing.done, false, 'the count failed and waits for its retry');
    await stepTo(clock, 250);
    assert.equal(r.calls.length, 2);
    assert.equal(flushing.done, true);
    assert.ok(flushing.at >= 100 && flushing.at <= 200, `resolved at ${flushing.at}`);
  });

  it('count() includes in-flight counts; increments during the flush form the next count', async () => {
    const { clock, engine } = await setup();
    const gate = deferred();
    const r = recorder(clock, (_c, i) => (i === 0 ? gate.promise : undefined));
    const b = engine.buffer({ name: 'inflight', intervalMs: 1000, onFlush: r.onFlush });
    b.increment('k', 10);
    await stepTo(clock, 1000);
    assert.equal(r.calls.length, 1);
    assert.equal(b.count('k'), 10);
    assert.deepEqual([b.stats().keys, b.stats().deliveries], [1, 1]);
    await jumpTo(clock, 1200);
    b.increment('k', 5);
    assert.equal(b.count('k'), 15);
    gate.resolve();
    await settle();
    assert.equal(b.count('k'), 5);
    await stepTo(clock, 2200);
    assert.deepEqual(r.calls.map((c) => [c.key, c.count, c.at]), [
      ['k', 10, 1000],
      ['k', 5, 2200],
    ]);
    assert.equal(b.count('k'), undefined);
  });

  it('keys are removed once delivered: stats().keys goes back to 0', async () => {
    const { clock, engine } = await setup();
    let calls = 0;
    const b = engine.buffer({ name: 'keys', intervalMs: 1000, onFlush: async () => void calls++ });
    for (let i = 0; i < 2000; i++) b.increment(`key-${i}`, i + 1);
    assert.equal(b.stats().keys, 2000);
    assert.equal(b.count('key-1999'), 2000);
    await stepTo(clock, 1000);
    await settle();
    assert.equal(calls, 2000);
    assert.deepEqual(b.stats(), { keys: 0, deliveries: 0, handlerCalls: 2000, delivered: 2000, retries: 0, failures: 0, timeouts: 0, deadLettered: 0 });
    assert.equal(b.count('key-0'), undefined);
    // Slots are reused: a second round works the same.
    for (let i = 0; i < 2000; i++) b.increment(`other-${i}`);
    await stepTo(clock, 2000);
    await settle();
    assert.equal(calls, 4000);
    assert.equal(b.stats().keys, 0);
  });

  it('negative counts are kept and delivered', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock);
    const b = engine.buffer({ name: 'negative', intervalMs: 1000, onFlush: r.onFlush });
    b.increment('down', -3);
    b.increment('mixed', 2);
    b.increment('mixed', -7);
    assert.equal(b.count('down'), -3);
    assert.equal(b.count('mixed'), -5);
    await stepTo(clock, 1000);
    assert.deepEqual(r.calls.map((c) => [c.key, c.count]).sort(), [
      ['down', -3],
      ['mixed', -5],
    ]);
  });

  it('a count that would pass 2^53 − 1 is handed over early and the rest is kept (sync handler)', async () => {
    // BUG: add()'s overflow path (buffer.ts ~lines 210-218) delivers the old count; a handler that returns
    // synchronously finishes the delivery at once, which releases the key's position (index entry deleted, position
    // put on the free list) — then add() schedules that released position and writes n into it. The key is gone
    // from the index (count() is undefined) and the next increment re-admits the key into the same position with
    // count 0: the 2 below is lost and 3 is delivered instead of 5.
    const { clock, engine } = await setup();
    const r = recorder(clock);
    const b = engine.buffer({ name: 'huge', intervalMs: 1000, onFlush: r.onFlush });
    b.increment('k', Number.MAX_SAFE_INTEGER);
    b.increment('k', 2);
    assert.deepEqual(r.calls.map((c) => [c.key, c.count, c.at]), [['k', Number.MAX_SAFE_INTEGER, 0]]);
    b.increment('k', 3);
    assert.equal(b.count('k'), 5, 'the count after the early hand-over');
    assert.equal(b.stats().keys, 1);
    await stepTo(clock, 1000);
    assert.deepEqual(r.calls.map((c) => [c.key, c.count, c.at]), [
      ['k', Number.MAX_SAFE_INTEGER, 0],
      ['k', 5, 1000],
    ]);
  });

  it('a count that would pass 2^53 − 1 is handed over early and the rest is kept (async handler)', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock, async () => {});
    const b = engine.buffer({ name: 'huge2', intervalMs: 1000, onFlush: r.onFlush });
    b.increment('k', -Number.MAX_SAFE_INTEGER);
    b.increment('k', -2);
    assert.deepEqual(r.calls.map((c) => [c.key, c.count, c.at]), [['k', -Number.MAX_SAFE_INTEGER, 0]]);
    await settle();
    b.increment('k', -3);
    assert.equal(b.count('k'), -5);
    await stepTo(clock, 1000);
    assert.deepEqual(r.calls.map((c) => [c.key, c.count, c.at]), [
      ['k', -Number.MAX_SAFE_INTEGER, 0],
      ['k', -5, 1000],
    ]);
  });

  it('a handler may increment re-entrantly: the increments form the next counts, flushed one interval later', async () => {
    const { clock, engine } = await setup();
    let b!: StatBuffer;
    const r = recorder(clock, (call) => {
      if (call.key === 'k' && call.count === 10) {
        b.increment('k', 1);
        b.increment('other', 2);
        assert.equal(b.count('k'), 11, 'inside the handler: 10 in flight + 1');
      }
    });
    b = engine.buffer({ name: 'reentrant', intervalMs: 1000, onFlush: r.onFlush });
    b.increment('k', 10);
    await stepTo(clock, 1000);
    assert.equal(r.calls.length, 1);
    assert.equal(b.count('k'), 1);
    assert.equal(b.count('other'), 2);
    await stepTo(clock, 2500);
    assert.deepEqual(r.calls.map((c) => [c.key, c.count, c.at]).sort(), [
      ['k', 1, 2000],
      ['k', 10, 1000],
      ['other', 2, 2000],
    ]);
    assert.equal(b.stats().keys, 0);
  });
});

// ── validation ────────────────────────────────────────────────────────────────────────────────────

describe('stat buffer validation', () => {
  it('each bad option throws TW_INVALID_ARGUMENT naming the option', async () => {
    const { engine } = await setup();
    const onFlush = (): void => {};
    const onDeadLetter = (): void => {};
    const cases: Array<[string, Record<string, unknown>]> = [
      ['intervalMs', { intervalMs: 0 }],
      ['intervalMs', { intervalMs: -1 }],
      ['intervalMs', { intervalMs: 1.5 }],
      ['intervalMs', { intervalMs: '1000' }],
      ['intervalMs', { intervalMs: Number.NaN }],
      ['intervalMs', { intervalMs: 2 ** 31 }],
      ['jitterMs', { jitterMs: -1 }],
      ['jitterMs', { jitterMs: 0.5 }],
      ['jitterMs', { jitterMs: 'x' }],
      ['backoffMs', { backoffMs: -1 }],
      ['backoffMs', { backoffMs: 2.5 }],
      ['maxBackoffMs', { maxBackoffMs: -1 }],
      ['maxBackoffMs', { backoffMs: 500, maxBackoffMs: 100 }],
      ['maxAttempts', { maxAttempts: 0, onDeadLetter }],
      ['maxAttempts', { maxAttempts: 1.5, onDeadLetter }],
      ['maxAttempts', { maxAttempts: '3', onDeadLetter }],
      ['onDeadLetter', { maxAttempts: 3 }],
      ['onDeadLetter', { onDeadLetter: 'x' }],
      ['timeoutMs', { timeoutMs: 0 }],
      ['timeoutMs', { timeoutMs: -5 }],
      ['timeoutMs', { timeoutMs: Infinity }],
      ['maxBatch', { maxBatch: 0 }],
      ['maxBatch', { maxBatch: 1.5 }],
      ['maxBatch', { maxBatch: 1_000_001 }],
      ['closeTimeoutMs', { closeTimeoutMs: -1 }],
      ['closeTimeoutMs', { closeTimeoutMs: 0.5 }],
      ['onFlush', { onFlush: 'not a function' }],
      ['onFlushBatch', { onFlush: undefined, onFlushBatch: 5 }],
      ['onFlush', { onFlushBatch: () => {} }], // both
      ['onFlush', { onFlush: undefined }], // neither
      ['interval', { interval: 1000 }], // unknown option
      ['name', { name: '' }],
      ['name', { name: 5 }],
      ['name', { name: undefined }],
      ['name', { name: 'n'.repeat(201) }],
    ];
    let i = 0;
    for (const [option, bad] of cases) {
      const options = { name: `v${i++}`, onFlush, ...bad };
      await expectCode(() => engine.buffer(options as never), ErrorCode.INVALID_ARGUMENT, `${option}: ${JSON.stringify(bad)}`, option);
    }
    await expectCode(() => engine.buffer(null as never), ErrorCode.INVALID_ARGUMENT, 'null options', 'options');
    await expectCode(() => engine.buffer('views' as never), ErrorCode.INVALID_ARGUMENT, 'string options', 'options');
    // A valid buffer with every option given is accepted.
    const ok = engine.buffer({ name: 'v-ok', intervalMs: 1, jitterMs: 0, backoffMs: 0, maxBackoffMs: 0, maxAttempts: 1, timeoutMs: 1, maxBatch: 1, closeTimeoutMs: 0, onFlushBatch: () => {}, onDeadLetter });
    assert.equal(ok.name, 'v-ok');
  });

  it('a bad n throws TW_INVALID_ARGUMENT and a bad key TW_INVALID_KEY, naming it, and nothing is counted', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock);
    const b = engine.buffer({ name: 'badargs', intervalMs: 1000, onFlush: r.onFlush });
    for (const n of [1.5, Number.NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 53), '1', null, 1n, {}]) {
      await expectCode(() => b.increment('k', n as never), ErrorCode.INVALID_ARGUMENT, `n = ${String(n)}`, '"n"');
    }
    assert.equal(b.count('k'), undefined);
    b.increment('k', 2);
    await expectCode(() => b.increment('k', 0.5), ErrorCode.INVALID_ARGUMENT, 'n = 0.5 on a known key', '"n"');
    assert.equal(b.count('k'), 2);
    // Buffer keys follow the shared key rule (non-empty, well-formed, at most 255 UTF-8 bytes); ":" is allowed.
    for (const key of ['', 5, undefined, null, {}, Symbol('s'), 'x'.repeat(256), '\uD800', 'a\uDC00b']) {
      await expectCode(() => b.increment(key as never), ErrorCode.INVALID_KEY, `key = ${String(key).slice(0, 10)}`, 'key');
    }
    await expectCode(() => b.flush(5 as never), ErrorCode.INVALID_KEY, 'flush(5)', 'key');
    const ok = engine.buffer({ name: 'keys-ok', intervalMs: 1000, onFlush: () => {} });
    ok.increment('page:home');
    assert.equal(ok.count('page:home'), 1, 'a colon is fine in a buffer key');
    ok.increment('€'.repeat(85));
    assert.equal(ok.count('€'.repeat(85)), 1, '255 UTF-8 bytes is the limit');
    assert.equal(b.stats().keys, 1);
    await stepTo(clock, 1000);
    assert.deepEqual(r.calls.map((c) => [c.key, c.count]), [['k', 2]]);
  });

  it('a duplicate name among open buffers throws TW_INVALID_ARGUMENT; the name is free again once closed', async () => {
    const { clock, engine } = await setup();
    const r = recorder(clock);
    const first = engine.buffer({ name: 'dup', intervalMs: 1000, onFlush: r.onFlush });
    await expectCode(() => engine.buffer({ name: 'dup', intervalMs: 500, onFlush: () => {} }), ErrorCode.INVALID_ARGUMENT, 'duplicate name', 'options.name');
    first.increment('k', 1);
    await stepTo(clock, 1000);
    assert.deepEqual(r.calls.map((c) => [c.key, c.count]), [['k', 1]], 'the first buffer still works');
    await first.close();
    const second = engine.buffer({ name: 'dup', intervalMs: 1000, onFlush: r.onFlush });
    second.increment('k', 2);
    await stepTo(clock, 2000);
    assert.deepEqual(r.calls.map((c) => [c.key, c.count]), [
      ['k', 1],
      ['k', 2],
    ]);
    assert.notEqual(r.calls[1]!.flushId, r.calls[0]!.flushId, 'flush ids of a reopened name do not repeat');
  });
});
