/**
 * Stat buffers incremented from the app's worker threads (src/buffers/link.ts; spec scenario 10).
 *
 * Each test runs an engine on a TestClock (so the buffer's flushes happen only when the test advances
 * it) and real worker threads (test/fixtures/buffer-worker.ts) that connect to `buffer.link()` and run
 * step lists. Only the thread round trips take real time: the tests await the workers' answers, the
 * `sync()`s, the buffer's `close()` and worker exits, never a fixed sleep. `within` only bounds how long
 * such a wait may take, so that a hang fails the test instead of stalling the run.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';
import { type BufferLink, connectBuffer, createEngine, type Engine, type StatBuffer, TestClock } from '../../../src/index.js';
import { withCode } from '../../helpers/time.js';
import { manyDelta, manyKey, type Step, type StepResult, type WorkerInput, type WorkerOutput } from '../../fixtures/buffer-worker.js';

const workerScript = fileURLToPath(new URL('../../fixtures/buffer-worker.js', import.meta.url));

const INTERVAL = 1000;
/** Bound on any single thread round trip (worker start, a step list, a sync, an exit). */
const ROUND_TRIP_MS = 10_000;

/** `promise`, or a rejection naming `what` if it has not settled within `ms` of real time. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits (yielding to the event loop) until `condition()` holds; fails with `describe()` after `ms`. */
async function until(condition: () => boolean, ms: number, describeState: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not reached within ${ms} ms: ${describeState()}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** One worker thread running buffer-worker.js on a link of `buffer`. */
class BufferWorker {
  readonly worker: Worker;
  readonly errors: Error[] = [];
  /** The thread's exit code once it ended. */
  readonly exited: Promise<number>;
  exitCode: number | undefined;
  private readonly queue: WorkerOutput[] = [];
  private waiting: (() => void) | undefined;

  constructor(buffer: StatBuffer, steps: readonly Step[], listen: boolean) {
    const link = buffer.link();
    const workerData: WorkerInput = { link, steps, listen };
    this.worker = new Worker(workerScript, { workerData, transferList: [link.port] });
    this.worker.on('message', (m: WorkerOutput) => {
      this.queue.push(m);
      this.waiting?.();
    });
    this.worker.on('error', (err) => this.errors.push(err));
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', (code) => {
        this.exitCode = code;
        this.waiting?.();
        resolve(code);
      }),
    );
  }

  /** The next message of kind `t` (earlier ones of other kinds are skipped); fails if the thread ends first. */
  async next<T extends WorkerOutput['t']>(t: T, what: string): Promise<Extract<WorkerOutput, { t: T }>> {
    const wait = async (): Promise<Extract<WorkerOutput, { t: T }>> => {
      for (;;) {
        const i = this.queue.findIndex((m) => m.t === t);
        if (i >= 0) return this.queue.splice(i, 1)[0] as Extract<WorkerOutput, { t: T }>;
        if (this.exitCode !== undefined) {
          throw new Error(`${what}: the worker exited (code ${this.exitCode}) before posting '${t}'; errors: ${this.errors.map((e) => e.message).join('; ')}`);
        }
        await new Promise<void>((resolve) => (this.waiting = resolve));
        this.waiting = undefined;
      }
    };
    return within(wait(), ROUND_TRIP_MS, what);
  }

  /** The results of the step list given at start. */
  async started(what = 'initial steps'): Promise<StepResult[]> {
    return (await this.next('done', what)).results;
  }

  /** Runs another step list (the worker must listen) and returns its results. */
  async run(steps: readonly Step[], what = 'steps'): Promise<StepResult[]> {
    this.worker.postMessage(steps);
    return (await this.next('done', what)).results;
  }

  async terminate(): Promise<void> {
    if (this.exitCode === undefined) await this.worker.terminate();
  }
}

interface Harness {
  readonly clock: TestClock;
  readonly engine: Engine;
  readonly buffer: StatBuffer;
  /** Every (key, count) the flush handler received, in order. */
  readonly calls: Array<[string, number]>;
  spawn(steps: readonly Step[], listen?: boolean): BufferWorker;
  /** Sum of the counts delivered per key. */
  delivered(): Map<string, number>;
}

async function setup(t: TestContext, options: { closeTimeoutMs?: number } = {}): Promise<Harness> {
  const clock = new TestClock();
  const engine = await createEngine({ shards: 1, clock });
  const calls: Array<[string, number]> = [];
  const buffer = engine.buffer({
    name: 'threads',
    intervalMs: INTERVAL,
    closeTimeoutMs: options.closeTimeoutMs ?? 8000,
    onFlush: (key, count) => {
      calls.push([key, count]);
    },
  });
  const workers: BufferWorker[] = [];
  t.after(async () => {
    await Promise.all(workers.map((w) => w.terminate()));
    await engine.close();
  });
  return {
    clock,
    engine,
    buffer,
    calls,
    spawn(steps, listen = false) {
      const w = new BufferWorker(buffer, steps, listen);
      workers.push(w);
      return w;
    },
    delivered() {
      const sums = new Map<string, number>();
      for (const [key, count] of calls) sums.set(key, (sums.get(key) ?? 0) + count);
      return sums;
    },
  };
}

const OK: StepResult = { ok: true };
const closedCode = (r: StepResult | undefined): string | undefined => (r !== undefined && !r.ok ? r.code : undefined);

describe('stat buffer links: counting from worker threads', () => {
  test('scenario 10: 4 threads × 2,500 increments of one key → count 10,000, one flush of (key, 10000)', async (t) => {
    const h = await setup(t);
    const workers = Array.from({ length: 4 }, () => h.spawn([{ op: 'inc', key: 'hits', times: 2500 }, { op: 'sync' }]));
    const results = await Promise.all(workers.map((w, i) => w.started(`worker ${i}`)));
    for (const r of results) assert.deepEqual(r, [OK, OK]);
    assert.equal(h.buffer.count('hits'), 10_000, 'after every worker synced, the buffer holds all 10,000');
    assert.deepEqual(h.calls, [], 'nothing is flushed before intervalMs has passed on the clock');

    h.clock.advance(INTERVAL);
    assert.deepEqual(h.calls, [['hits', 10_000]], 'one flush hands the handler the whole total once');
    assert.equal(h.buffer.count('hits'), undefined, 'the flush took the count out');
    h.clock.advance(10 * INTERVAL);
    assert.equal(h.calls.length, 1, 'no second delivery');
  });

  test('4 threads × 20,000 increments over 5,000 keys, mixed n with negatives → every key exact', async (t) => {
    const h = await setup(t);
    const THREADS = 4;
    const OPS = 20_000;
    const KEYS = 5_000;
    const expected = new Map<string, number>();
    for (let w = 0; w < THREADS; w++) {
      for (let i = 0; i < OPS; i++) {
        const key = manyKey(i, w, KEYS);
        expected.set(key, (expected.get(key) ?? 0) + manyDelta(i, w, KEYS));
      }
    }
    assert.equal(expected.size, KEYS, 'the schedule touches every key');
    assert.ok([...expected.values()].some((v) => v < 0), 'the schedule gives some keys a negative total');

    const workers = Array.from({ length: THREADS }, (_, w) => h.spawn([{ op: 'many', worker: w, ops: OPS, keys: KEYS }, { op: 'sync' }]));
    for (const r of await Promise.all(workers.map((w, i) => w.started(`worker ${i}`)))) assert.deepEqual(r, [OK, OK]);

    const wrongCounts: string[] = [];
    for (const [key, total] of expected) if (h.buffer.count(key) !== total) wrongCounts.push(`${key}: count ${h.buffer.count(key)}, expected ${total}`);
    assert.deepEqual(wrongCounts.slice(0, 10), [], `${wrongCounts.length} keys hold a wrong count after sync`);

    h.clock.advance(INTERVAL);
    const delivered = h.delivered();
    const wrong: string[] = [];
    for (const [key, total] of expected) {
      if ((delivered.get(key) ?? 0) !== total) wrong.push(`${key}: delivered ${delivered.get(key)}, expected ${total}`);
    }
    for (const key of delivered.keys()) if (!expected.has(key)) wrong.push(`${key}: delivered but never incremented`);
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} keys delivered a wrong total`);
    const perKey = new Set(h.calls.map(([key]) => key));
    assert.equal(perKey.size, h.calls.length, 'one flush delivers each key once');
  });

  test('a client ships as soon as 4,096 keys are waiting, without waiting for the end of its turn', async (t) => {
    const h = await setup(t);
    const KEYS = 5000;
    const cell = new SharedArrayBuffer(4);
    const w = h.spawn([{ op: 'many', worker: 1, ops: KEYS, keys: KEYS }, { op: 'report', tag: 'blocked' }, { op: 'block', cell }, { op: 'sync' }], true);
    await w.next('report', 'the worker reaching its block');
    // The worker is still in the turn that incremented 5,000 keys: only the early shipment can be here.
    await until(
      () => h.buffer.stats().keys >= 4096,
      ROUND_TRIP_MS,
      () => `the buffer holds ${h.buffer.stats().keys} keys while the worker is blocked`,
    );
    const view = new Int32Array(cell);
    Atomics.store(view, 0, 1);
    Atomics.notify(view, 0);
    assert.deepEqual(await w.started(), [OK, OK, OK, OK]);
    assert.equal(h.buffer.stats().keys, KEYS);
    const wrong: string[] = [];
    for (let i = 0; i < KEYS; i++) {
      const key = manyKey(i, 1, KEYS);
      if (h.buffer.count(key) !== manyDelta(i, 1, KEYS)) wrong.push(`${key}: ${h.buffer.count(key)} ≠ ${manyDelta(i, 1, KEYS)}`);
    }
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} keys wrong`);
  });

  test('a client past 65,536 keys forgets its key map and still counts every key exactly', async (t) => {
    const h = await setup(t);
    const KEYS = 70_000;
    const w = h.spawn([
      { op: 'many', worker: 0, ops: KEYS, keys: KEYS },
      // after the forget: keys it knew before, again
      { op: 'inc', key: manyKey(0, 0, KEYS), n: 1000 },
      { op: 'inc', key: manyKey(KEYS - 1, 0, KEYS), n: -1000 },
      { op: 'sync' },
    ]);
    assert.deepEqual(await w.started(), [OK, OK, OK, OK]);
    const expected = new Map<string, number>();
    for (let i = 0; i < KEYS; i++) expected.set(manyKey(i, 0, KEYS), (expected.get(manyKey(i, 0, KEYS)) ?? 0) + manyDelta(i, 0, KEYS));
    expected.set(manyKey(0, 0, KEYS), expected.get(manyKey(0, 0, KEYS))! + 1000);
    expected.set(manyKey(KEYS - 1, 0, KEYS), expected.get(manyKey(KEYS - 1, 0, KEYS))! - 1000);
    h.clock.advance(INTERVAL);
    const delivered = h.delivered();
    const wrong = [...expected].filter(([key, total]) => (delivered.get(key) ?? 0) !== total).map(([key, total]) => `${key}: ${delivered.get(key)} ≠ ${total}`);
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} keys wrong`);
    assert.equal(delivered.size, expected.size);
  });

  test('counts near 2^53 from a thread are shipped early and delivered exactly, never rounded', async (t) => {
    const h = await setup(t);
    const MAX = Number.MAX_SAFE_INTEGER;
    const w = h.spawn([{ op: 'inc', key: 'big', n: MAX, times: 2 }, { op: 'inc', key: 'big', n: 3 }, { op: 'inc', key: 'neg', n: -MAX, times: 2 }, { op: 'sync' }]);
    assert.deepEqual(await w.started(), [OK, OK, OK, OK]);
    h.clock.advance(INTERVAL);
    const sum = (key: string): bigint => h.calls.filter(([k]) => k === key).reduce((s, [, c]) => s + BigInt(c), 0n);
    for (const [, c] of h.calls) assert.ok(Number.isSafeInteger(c), `every delivered count is exact (got ${c})`);
    assert.equal(sum('big'), 2n * BigInt(MAX) + 3n);
    assert.equal(sum('neg'), -2n * BigInt(MAX));
  });

  test('a worker that increments and ends without sync() or close() still delivers (its last turn ships)', async (t) => {
    const h = await setup(t);
    const w = h.spawn([
      { op: 'inc', key: 'gone', times: 3000 },
      { op: 'inc', key: 'gone-neg', n: -4, times: 10 },
    ]);
    assert.deepEqual(await w.started(), [OK, OK]);
    assert.equal(await within(w.exited, ROUND_TRIP_MS, 'the worker ending on its own'), 0);
    await until(
      () => h.buffer.count('gone') === 3000 && h.buffer.count('gone-neg') === -40,
      ROUND_TRIP_MS,
      () => `count(gone) = ${h.buffer.count('gone')}, count(gone-neg) = ${h.buffer.count('gone-neg')}`,
    );
    h.clock.advance(INTERVAL);
    assert.deepEqual(new Map(h.calls), new Map([['gone', 3000], ['gone-neg', -40]]));
    assert.equal(h.calls.length, 2);
  });

  test("the buffer's close() collects a live, idle worker's counts (never synced) before it resolves; later increments there throw TW_CLOSED", async (t) => {
    const h = await setup(t);
    const w = h.spawn([{ op: 'inc', key: 'idle', times: 1234 }, { op: 'inc', key: 'idle2', n: 5 }], true);
    assert.deepEqual(await w.started(), [OK, OK]);
    // Closed right away, in the turn the worker's answer arrived: nothing was synced.
    const started = Date.now();
    await within(h.buffer.close(), 4000, "the buffer's close() (closeTimeoutMs 8000: it must not wait for the deadline)");
    assert.ok(Date.now() - started < 4000);
    assert.deepEqual(new Map(h.calls), new Map([['idle', 1234], ['idle2', 5]]), 'close() delivered what the thread held');
    assert.equal(w.exitCode, undefined, 'the worker is still alive');

    const after = await w.run([{ op: 'inc', key: 'idle' }, { op: 'inc', key: 'fresh', n: 2 }, { op: 'sync' }], 'increments after the close');
    assert.equal(closedCode(after[0]), 'TW_CLOSED', `increment of a known key after the buffer closed: ${JSON.stringify(after[0])}`);
    assert.equal(closedCode(after[1]), 'TW_CLOSED', `increment of a new key after the buffer closed: ${JSON.stringify(after[1])}`);
    assert.equal(closedCode(after[2]), 'TW_CLOSED', `sync() after the buffer closed: ${JSON.stringify(after[2])}`);
  });

  test("close() waits for a worker busy across it: increments made in that turn reach the handler before close resolves", async (t) => {
    const h = await setup(t);
    const cell = new SharedArrayBuffer(4);
    const w = h.spawn([{ op: 'inc', key: 'busy', times: 100 }, { op: 'report', tag: 'blocked' }, { op: 'block', cell }, { op: 'inc', key: 'busy', times: 50 }], true);
    await w.next('report', 'the worker reaching its block');
    const closing = h.buffer.close();
    let closed = false;
    void closing.then(() => (closed = true), () => (closed = true));
    // Let the close message reach the (blocked) worker's port; close() cannot be done: the worker holds 100.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(closed, false);
    const view = new Int32Array(cell);
    Atomics.store(view, 0, 1);
    Atomics.notify(view, 0);
    assert.deepEqual(await w.started(), [OK, OK, OK, OK]);
    await within(closing, 4000, "the buffer's close()");
    assert.deepEqual(h.calls, [['busy', 150]]);
  });

  test('client close() ships what it holds; then increment and sync throw TW_CLOSED; bad n and bad links throw TW_INVALID_ARGUMENT, bad keys TW_INVALID_KEY', async (t) => {
    const h = await setup(t);
    const badN: unknown[] = [1.5, '2', NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 53), null, 1n];
    const badKeys: unknown[] = ['', 7, null, undefined, {}, ['k'], '\uDFFF', 'y'.repeat(256)];
    const steps: Step[] = [
      ...badN.map((n): Step => ({ op: 'inc', key: 'c', n })),
      ...badKeys.map((key): Step => ({ op: 'inc', key })),
      { op: 'inc', key: 'c', n: 2 },
      { op: 'inc', key: 'c', n: 2.5 }, // bad n on a key the client knows
      { op: 'connect-bad', kind: 'null' },
      { op: 'connect-bad', kind: 'no-port' },
      { op: 'connect-bad', kind: 'fake-port' },
      { op: 'connect-bad', kind: 'number-name' },
      { op: 'close' },
      { op: 'inc', key: 'c' },
      { op: 'inc', key: 'new-key' },
      { op: 'sync' },
      { op: 'close' },
    ];
    const w = h.spawn(steps, true);
    const results = await w.started();
    const codes = results.map((r) => (r.ok ? 'ok' : r.code));
    const nb = badN.length;
    const kb = badKeys.length;
    assert.deepEqual(codes.slice(0, nb), badN.map(() => 'TW_INVALID_ARGUMENT'), 'bad n');
    assert.deepEqual(codes.slice(nb, nb + kb), badKeys.map(() => 'TW_INVALID_KEY'), 'bad key');
    assert.deepEqual(codes.slice(nb + kb), [
      'ok',
      'TW_INVALID_ARGUMENT',
      'TW_INVALID_ARGUMENT',
      'TW_INVALID_ARGUMENT',
      'TW_INVALID_ARGUMENT',
      'TW_INVALID_ARGUMENT',
      'ok', // close
      'TW_CLOSED',
      'TW_CLOSED',
      'TW_CLOSED', // sync after close
      'ok', // close again: idempotent
    ]);
    assert.equal(h.buffer.count('c'), 2, 'the valid increment arrived (client close ships), the bad ones changed nothing');
    assert.equal(w.exitCode, undefined);

    // On this thread too: connectBuffer refuses anything but a link with a MessagePort.
    const { port1, port2 } = new MessageChannel();
    try {
      const bad: unknown[] = [undefined, null, 'threads', {}, { buffer: 'threads' }, { buffer: 'threads', port: {} }, { buffer: 3, port: port1 }, { port: port2 }];
      for (const link of bad) assert.throws(() => connectBuffer(link as BufferLink), withCode('TW_INVALID_ARGUMENT'), JSON.stringify(String(link)));
    } finally {
      port1.close();
    }
    h.clock.advance(INTERVAL);
    assert.deepEqual(h.calls, [['c', 2]]);
  });

  for (const crash of ['exit', 'throw'] as const) {
    test(`a worker that crashes (${crash === 'exit' ? 'process.exit' : 'uncaught throw'}) does not hang the buffer's close(); its synced counts are delivered`, async (t) => {
      const h = await setup(t, { closeTimeoutMs: 8000 });
      const w = h.spawn([{ op: 'inc', key: 'crash', times: 10 }, { op: 'sync' }], true);
      assert.deepEqual(await w.started(), [OK, OK]);
      w.worker.postMessage([{ op: 'inc', key: 'crash', times: 5 }, crash === 'exit' ? { op: 'exit', code: 3 } : { op: 'throw', message: 'boom' }] satisfies Step[]);
      const code = await within(w.exited, ROUND_TRIP_MS, 'the crashing worker ending');
      assert.notEqual(code, 0);
      if (crash === 'throw') assert.ok(w.errors.some((e) => e.message === 'boom'), `the worker's error: ${w.errors.map((e) => e.message).join('; ')}`);

      const started = Date.now();
      await within(h.buffer.close(), 4000, "the buffer's close() after a linked worker crashed (closeTimeoutMs 8000)");
      assert.ok(Date.now() - started < 4000);
      const total = h.delivered().get('crash') ?? 0;
      assert.ok(total >= 10 && total <= 15, `the 10 synced increments are delivered (got ${total})`);
    });
  }

  test("a worker that crashes while the buffer's close() waits for it does not hang close()", async (t) => {
    const h = await setup(t, { closeTimeoutMs: 8000 });
    const cell = new SharedArrayBuffer(4);
    const w = h.spawn(
      [{ op: 'inc', key: 'x', times: 10 }, { op: 'sync' }, { op: 'inc', key: 'x', times: 5 }, { op: 'report', tag: 'blocked' }, { op: 'block', cell }, { op: 'exit', code: 4 }],
      true,
    );
    await w.next('report', 'the worker reaching its block');
    const started = Date.now();
    const closing = h.buffer.close();
    await new Promise((resolve) => setImmediate(resolve));
    const view = new Int32Array(cell);
    Atomics.store(view, 0, 1);
    Atomics.notify(view, 0);
    assert.equal(await within(w.exited, ROUND_TRIP_MS, 'the worker exiting'), 4);
    await within(closing, 4000, "the buffer's close() whose linked worker died without answering (closeTimeoutMs 8000)");
    assert.ok(Date.now() - started < 4000);
    const total = h.delivered().get('x') ?? 0;
    assert.ok(total >= 10 && total <= 15, `the synced increments are delivered (got ${total})`);
  });

  test('the same buffer incremented on this thread and from workers sums correctly', async (t) => {
    const h = await setup(t);
    h.buffer.increment('mix', 7);
    h.buffer.increment('local-only', 3);
    const workers = Array.from({ length: 3 }, (_, i) =>
      h.spawn([{ op: 'inc', key: 'mix', times: 1000 }, { op: 'inc', key: 'mix', n: -(i + 1) }, { op: 'inc', key: `w${i}`, n: 11 }, { op: 'sync' }]),
    );
    for (let i = 0; i < 500; i++) h.buffer.increment('mix');
    const results = await Promise.all(workers.map((w, i) => w.started(`worker ${i}`)));
    for (const r of results) assert.deepEqual(r, [OK, OK, OK, OK]);
    h.buffer.increment('mix', -2);
    const total = 7 + 3 * 1000 - (1 + 2 + 3) + 500 - 2;
    assert.equal(h.buffer.count('mix'), total);
    h.clock.advance(INTERVAL);
    assert.deepEqual(
      new Map(h.calls),
      new Map([
        ['mix', total],
        ['local-only', 3],
        ['w0', 11],
        ['w1', 11],
        ['w2', 11],
      ]),
    );
    assert.equal(h.calls.length, 5, 'each key delivered once');
  });

  test("sync() does not resolve as delivered when the buffer's close() gave up on the link before the counts arrived", async (t) => {
    // closeTimeoutMs 300: the worker is blocked through the whole close, which gives up on it and closes the link.
    const h = await setup(t, { closeTimeoutMs: 300 });
    const cell = new SharedArrayBuffer(4);
    const w = h.spawn([{ op: 'inc', key: 'late', times: 10 }, { op: 'sync' }], true);
    assert.deepEqual(await w.started(), [OK, OK]);
    w.worker.postMessage([{ op: 'report', tag: 'blocked' }, { op: 'block', cell }, { op: 'inc', key: 'late', times: 5 }, { op: 'sync' }] satisfies Step[]);
    await w.next('report', 'the worker reaching its block');
    await within(h.buffer.close(), 4000, "the buffer's close()");
    assert.deepEqual(h.calls, [['late', 10]]);
    const view = new Int32Array(cell);
    Atomics.store(view, 0, 1);
    Atomics.notify(view, 0);
    const results = (await w.next('done', 'the worker after its block')).results;
    const sync = results[3]!;
    // Its increments may not know yet that the link is gone, but sync() promises the buffer holds them.
    if (sync.ok) {
      assert.fail(
        `sync() resolved although the buffer never received the 5 increments made before it (delivered ${JSON.stringify(h.calls)}): ` +
          'it should reject with TW_CLOSED when the link closes before the buffer acknowledged',
      );
    }
    assert.equal(sync.code, 'TW_CLOSED');
  });
});
