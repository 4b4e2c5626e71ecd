/**
 * Stat buffer soak (README, "Stat buffers"): a million increments over ten thousand keys, spread
 * over clock time so that every key flushes many times, through a handler that fails 30 % of its calls at
 * random and sometimes hangs (never settling, or succeeding only after the buffer timed it out). After
 * `close()` the sum delivered per key, deduplicated by flush id, must equal the sum incremented.
 *
 * Everything runs on a TestClock driven in small steps, with a turn of the event loop between steps (work
 * due "now" runs on a setImmediate); nothing sleeps on real time. All randomness — the handler's failures
 * and hangs, the increments, and the buffer's own retry jitter (Math.random is swapped for a seeded PRNG
 * while a run lasts) — comes from one seed, printed by every run: rerun a failure with TW_SOAK_SEED=<seed>.
 *
 * Last, the close() deadline: exactly at closeTimeoutMs of clock time on a TestClock, and on the system
 * clock at closeTimeoutMs of real time (not whenever some unrelated timer of the buffer happens to fire).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import {
  asyncBatchSink,
  asyncSink,
  type BufferEntry,
  type BufferOptions,
  type BufferStats,
  createEngine,
  type DeadLetter,
  type Engine,
  ErrorCode,
  type StatBuffer,
  TallyworksError,
  TestClock,
} from '../../../src/index.js';
import { prng } from '../../helpers/prng.js';

// ---------------------------------------------------------------------------------------------------
// Seeded randomness.


const BASE_SEED = process.env.TW_SOAK_SEED !== undefined ? Number(process.env.TW_SOAK_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;

/** Each run derives its own seed from the base seed, so runs stay reproducible one by one. */
function runSeed(run: number): number {
  return (BASE_SEED + Math.imul(run, 0x9e3779b9)) >>> 0;
}

/** Swaps Math.random for `rng` while `fn` runs (the buffer's jitter and retry spread use Math.random). */
async function withRandom<T>(rng: () => number, fn: () => Promise<T>): Promise<T> {
  const original = Math.random;
  Math.random = rng;
  try {
    return await fn();
  } finally {
    Math.random = original;
  }
}

// ---------------------------------------------------------------------------------------------------
// Harness.

let engine: Engine;
const clock = new TestClock();

before(async () => {
  engine = await createEngine({ clock, shards: 1 });
});

after(async () => {
  // The engine closes every buffer; one a failed test left open (with calls that never settle) gives up at its
  // close deadline, which is on the clock: move it until the engine has closed.
  let done = false;
  const closing = engine.close().finally(() => {
    done = true;
  });
  for (let i = 0; i < 1000 && !done; i++) {
    clock.advance(1000);
    await turn();
  }
  await closing.catch(() => undefined);
});

const STEP_MS = 10;
const FAIL_RATE = 0.3;

type HangKind = 'never' | 'late';

interface SoakConfig {
  /** Handler shape. */
  mode: 'onFlush' | 'onFlushBatch' | 'asyncSink' | 'asyncBatchSink';
  increments: number;
  keys: number;
  /** Clock time the increments are spread over. */
  spanMs: number;
  /** Share of handler calls that hang (on top of the failing 30 %). */
  hangRate: number;
  /** Which hangs may occur (asyncSink joins a hung call instead of repeating it: a call that never settles would block its count for good). */
  hangKinds: HangKind[];
  intervalMs: number;
  jitterMs: number;
  timeoutMs: number;
  backoffMs: number;
  maxBackoffMs: number;
  maxBatch?: number;
  maxAttempts?: number;
  closeTimeoutMs: number;
}

interface Delivered {
  readonly entries: ReadonlyArray<readonly [string, number]>;
  /** Times the sink applied this flush id (more than 1: a duplicate the dedupe absorbed). */
  applied: number;
}

interface SoakResult {
  readonly seed: number;
  readonly incremented: Map<string, number>;
  /** flush id → what the sink applied (once, deduplicated). */
  readonly delivered: Map<string, Delivered>;
  /** Per key, the sum over unique delivered flush ids. */
  readonly deliveredSum: Map<string, number>;
  readonly deadLetters: DeadLetter[];
  readonly stats: BufferStats;
  readonly calls: number;
  readonly rejects: number;
  readonly hangs: number;
  readonly duplicateApplies: number;
  /** Violations seen inside the handler (recorded there, asserted after: a throw there would be a handler failure). */
  readonly violations: string[];
  readonly closeError: unknown;
  readonly buffer: StatBuffer;
  readonly clockMsAtClose: number;
  readonly clockMsToClose: number;
}

function keyName(i: number): string {
  return `key-${i}`;
}

/** `run` numbers the soak runs of this file: each has its own seed derived from the base seed. */
async function soak(t: TestContext, run: number, config: SoakConfig): Promise<SoakResult> {
  const seed = runSeed(run);
  const message = `soak ${config.mode} seed=${seed} (TW_SOAK_SEED=${BASE_SEED}, run ${run})`;
  t.diagnostic(message);
  console.log(message);
  const rng = prng(seed);
  const bufferRng = prng(seed ^ 0x5bd1e995);
  return withRandom(bufferRng, () => soakRun(config, seed, rng));
}

async function soakRun(config: SoakConfig, seed: number, rng: () => number): Promise<SoakResult> {
  const incremented = new Map<string, number>();
  const delivered = new Map<string, Delivered>();
  const deliveredSum = new Map<string, number>();
  /** Every call's entries by flush id (attempts of one flush id must carry the same entries). */
  const attempted = new Map<string, string>();
  const deadLetters: DeadLetter[] = [];
  const violations: string[] = [];
  /** Hung calls that succeed late: each settles (and applies) once the clock reaches `at`. */
  let late: Array<{ at: number; settle: () => void }> = [];
  /** asyncSink: flush ids whose fn call is running now, and flush ids fn already delivered. */
  const running = new Set<string>();
  let calls = 0;
  let rejects = 0;
  let hangs = 0;
  let duplicateApplies = 0;

  const violation = (what: string): void => {
    if (violations.length < 20) violations.push(what);
  };

  const apply = (entries: ReadonlyArray<readonly [string, number]>, flushId: string): void => {
    const seen = delivered.get(flushId);
    if (seen !== undefined) {
      seen.applied++;
      duplicateApplies++;
      if (JSON.stringify(seen.entries) !== JSON.stringify(entries)) {
        violation(`flush id ${flushId} applied with ${JSON.stringify(entries)} after ${JSON.stringify(seen.entries)}`);
      }
      return;
    }
    delivered.set(flushId, { entries, applied: 1 });
    for (const [key, count] of entries) deliveredSum.set(key, (deliveredSum.get(key) ?? 0) + count);
  };

  /** The faulty sink: fails 30 % of calls, hangs some, applies the rest (at once or on the next microtask). */
  const sink = (entries: ReadonlyArray<readonly [string, number]>, flushId: string): unknown => {
    calls++;
    // Once a call of a flush id succeeded (and the buffer saw it: calls only start inside clock moves and
    // close(), never between a success and its settlement), the flush id is done: no call may follow.
    if (delivered.has(flushId) && config.mode !== 'asyncSink' && config.mode !== 'asyncBatchSink') {
      violation(`flush id ${flushId} called again after a call of it had succeeded`);
    }
    const shape = JSON.stringify(entries);
    const first = attempted.get(flushId);
    if (first === undefined) attempted.set(flushId, shape);
    else if (first !== shape) violation(`flush id ${flushId} retried with ${shape}, first called with ${first}`);
    if (entries.length === 0) violation(`flush id ${flushId}: a call with no entries`);
    for (const [key, count] of entries) {
      if (count === 0) violation(`flush id ${flushId}: key ${key} handed a count of 0 (a flush of 0 skips the handler)`);
      if (!Number.isSafeInteger(count)) violation(`flush id ${flushId}: key ${key} handed ${count}`);
    }
    const r = rng();
    if (r < FAIL_RATE) {
      rejects++;
      // Both ways of failing: a synchronous throw and a rejection.
      if (r < FAIL_RATE / 4) throw new Error(`injected failure (flush id ${flushId})`);
      return Promise.reject(new Error(`injected failure (flush id ${flushId})`));
    }
    if (r < FAIL_RATE + config.hangRate) {
      hangs++;
      const kind = config.hangKinds[Math.floor(rng() * config.hangKinds.length)]!;
      if (kind === 'never') return new Promise<void>(() => undefined);
      // Settles successfully (and applies) only after the buffer's timeout for this call has passed.
      const at = clock.now() + config.timeoutMs + 1 + Math.floor(rng() * 4 * config.timeoutMs);
      return new Promise<void>((resolve) => {
        late.push({
          at,
          settle: () => {
            apply(entries, flushId);
            resolve();
          },
        });
      });
    }
    if (rng() < 0.5) {
      apply(entries, flushId);
      return undefined;
    }
    return Promise.resolve().then(() => apply(entries, flushId));
  };

  /** For asyncSink / asyncBatchSink: fn must never run twice at once for one flush id, nor run again once it delivered. */
  const guarded = (entries: ReadonlyArray<readonly [string, number]>, flushId: string): Promise<void> => {
    if (running.has(flushId)) violation(`fn called for flush id ${flushId} while an earlier call of it was still running`);
    if (delivered.has(flushId)) violation(`fn called again for flush id ${flushId} after a call of it had succeeded`);
    running.add(flushId);
    let result: unknown;
    try {
      result = sink(entries, flushId);
    } catch (err) {
      running.delete(flushId);
      return Promise.reject(err);
    }
    return Promise.resolve(result)
      .then(() => undefined)
      .finally(() => running.delete(flushId));
  };

  let handlers: Pick<BufferOptions, 'onFlush' | 'onFlushBatch'>;
  switch (config.mode) {
    case 'onFlush':
      handlers = { onFlush: (key: string, count: number, flushId: string) => sink([[key, count]], flushId) };
      break;
    case 'onFlushBatch':
      handlers = { onFlushBatch: (entries: BufferEntry[], flushId: string) => sink(entries.map((e) => [e.key, e.count] as const), flushId) };
      break;
    case 'asyncSink':
      handlers = asyncSink((key, count, flushId) => guarded([[key, count]], flushId));
      break;
    case 'asyncBatchSink':
      handlers = asyncBatchSink((entries, flushId) => guarded(entries.map((e) => [e.key, e.count] as const), flushId));
      break;
  }

  const buffer = engine.buffer({
    name: `soak-${config.mode}-${seed}`,
    intervalMs: config.intervalMs,
    jitterMs: config.jitterMs,
    timeoutMs: config.timeoutMs,
    backoffMs: config.backoffMs,
    maxBackoffMs: config.maxBackoffMs,
    closeTimeoutMs: config.closeTimeoutMs,
    ...(config.maxBatch !== undefined ? { maxBatch: config.maxBatch } : {}),
    ...(config.maxAttempts !== undefined ? { maxAttempts: config.maxAttempts } : {}),
    ...handlers,
    onDeadLetter: (entries) => {
      deadLetters.push(...entries);
    },
  });

  const settleLate = (): void => {
    if (late.length === 0) return;
    const now = clock.now();
    const due = late.filter((l) => l.at <= now);
    if (due.length === 0) return;
    late = late.filter((l) => l.at > now);
    for (const l of due) l.settle();
  };

  /** One step of clock time: the buffer runs its due work inside advance(), then hung calls due now settle. */
  const step = async (): Promise<void> => {
    clock.advance(STEP_MS);
    settleLate();
    await turn();
  };

  /** Quiescent invariant: count(key) (which includes counts in flight) = incremented − delivered. */
  const checkCounts = (when: string): void => {
    for (let i = 0; i < config.keys; i++) {
      const key = keyName(i);
      const expected = (incremented.get(key) ?? 0) - (deliveredSum.get(key) ?? 0);
      const actual = buffer.count(key) ?? 0;
      if (actual !== expected) {
        assert.fail(`${when}: count(${key}) = ${buffer.count(key)}, expected incremented ${incremented.get(key) ?? 0} − delivered ${deliveredSum.get(key) ?? 0} = ${expected}`);
      }
    }
  };

  const steps = Math.ceil(config.spanMs / STEP_MS);
  let done = 0;
  for (let s = 0; s < steps; s++) {
    const upto = Math.round(((s + 1) * config.increments) / steps);
    for (; done < upto; done++) {
      const key = keyName(Math.floor(rng() * config.keys));
      // Mixed signs, mostly positive; now and then a large one.
      const r = rng();
      const n = r < 0.35 ? -Math.ceil(rng() * 20) : r < 0.999 ? Math.ceil(rng() * 25) : Math.ceil(rng() * 1e9);
      buffer.increment(key, n);
      incremented.set(key, (incremented.get(key) ?? 0) + n);
    }
    await step();
    if (config.maxAttempts === undefined && s % 200 === 199) checkCounts(`at ${s * STEP_MS + STEP_MS} ms of clock time`);
  }

  // close(): the clock keeps moving (in the same small steps) while it retries.
  const closeStart = clock.now();
  let closed = false;
  let closeError: unknown;
  const closing = buffer.close().then(
    () => {
      closed = true;
    },
    (err: unknown) => {
      closed = true;
      closeError = err;
    },
  );
  // Increments are refused from the moment close() is called.
  assert.throws(() => buffer.increment(keyName(0), 1), (err: unknown) => err instanceof TallyworksError && err.code === ErrorCode.CLOSED);
  const limit = closeStart + config.closeTimeoutMs + 50 * config.timeoutMs + 1000;
  await turn();
  while (!closed && clock.now() <= limit) await step();
  assert.ok(closed, `close() did not settle within ${clock.now() - closeStart} ms of clock time (closeTimeoutMs ${config.closeTimeoutMs}); stats ${JSON.stringify(buffer.stats())}`);
  await closing;
  const clockMsToClose = clock.now() - closeStart;
  const stats = buffer.stats();

  // Hung calls still waiting to succeed late do so now: each is a duplicate the dedupe must absorb (or, with
  // dead letters, the late delivery of an unsettled dead letter).
  for (let i = 0; i < 100 && late.length > 0; i++) await step();
  assert.equal(late.length, 0);
  await turn();

  return {
    seed,
    incremented,
    delivered,
    deliveredSum,
    deadLetters,
    stats,
    calls,
    rejects,
    hangs,
    duplicateApplies,
    violations,
    closeError,
    buffer,
    clockMsAtClose: closeStart,
    clockMsToClose,
  };
}

/** The per-key totals agree: delivered (unique flush ids) plus unapplied dead letters = incremented. */
function assertExact(result: SoakResult, keys: number): void {
  const deadSum = new Map<string, number>();
  for (const l of result.deadLetters) {
    if (result.delivered.has(l.flushId)) continue; // applied after all (late): counted once, as delivered
    deadSum.set(l.key, (deadSum.get(l.key) ?? 0) + l.count);
  }
  const wrong: string[] = [];
  let total = 0;
  let totalDelivered = 0;
  for (let i = 0; i < keys; i++) {
    const key = keyName(i);
    const inc = result.incremented.get(key) ?? 0;
    const got = result.deliveredSum.get(key) ?? 0;
    const dead = deadSum.get(key) ?? 0;
    total += inc;
    totalDelivered += got + dead;
    if (got + dead !== inc) wrong.push(`${key}: incremented ${inc}, delivered ${got}${dead !== 0 ? ` + dead-lettered ${dead}` : ''}`);
  }
  assert.deepEqual(wrong.slice(0, 10), [], `seed ${result.seed}: ${wrong.length} of ${keys} keys wrong (totals: incremented ${total}, delivered ${totalDelivered})`);
  for (const [key] of result.deliveredSum) assert.ok(result.incremented.has(key), `seed ${result.seed}: delivered a count for ${key}, never incremented`);
}

function assertStats(result: SoakResult): void {
  const { stats } = result;
  const uniqueEntries = [...result.delivered.values()].reduce((s, d) => s + d.entries.length, 0);
  assert.equal(stats.keys, 0, `seed ${result.seed}: keys left after close`);
  assert.equal(stats.deliveries, 0, `seed ${result.seed}: deliveries pending after close`);
  assert.equal(stats.deadLettered, result.deadLetters.length, `seed ${result.seed}: stats.deadLettered vs entries given to onDeadLetter`);
  assert.ok(stats.timeouts > 0, `seed ${result.seed}: the run never timed out a handler call (the hang path went untested)`);
  assert.ok(stats.failures >= stats.timeouts, `seed ${result.seed}: failures ${stats.failures} < timeouts ${stats.timeouts}`);
  // Every entry the buffer counted as delivered is one the sink applied; an unsettled dead letter applied late is counted as dead-lettered.
  const lateAfterDead = result.deadLetters.filter((l) => result.delivered.has(l.flushId)).length;
  assert.equal(stats.delivered, uniqueEntries - lateAfterDead, `seed ${result.seed}: stats.delivered vs entries applied under unique flush ids`);
}

// ---------------------------------------------------------------------------------------------------

const soakBase = {
  increments: 1_000_000,
  keys: 10_000,
  spanMs: 15_000,
  hangRate: 0.03,
  hangKinds: ['never', 'late'] as HangKind[],
  intervalMs: 1000,
  jitterMs: 100,
  timeoutMs: 50,
  backoffMs: 20,
  maxBackoffMs: 200,
  closeTimeoutMs: 60_000,
};

describe('stat buffer soak: 1M increments, 10k keys, a handler failing 30 % of calls and hanging some', () => {
  for (const mode of ['onFlush', 'onFlushBatch'] as const) {
    test(`${mode}: after close, the sum delivered per key (deduplicated by flush id) equals the sum incremented`, async (t) => {
      const result = await soak(t, mode === 'onFlush' ? 1 : 2, { ...soakBase, mode, ...(mode === 'onFlushBatch' ? { maxBatch: 64 } : {}) });
      const { stats } = result;
      t.diagnostic(
        `calls ${result.calls}, rejects ${result.rejects}, hangs ${result.hangs}, duplicates absorbed ${result.duplicateApplies}, stats ${JSON.stringify(stats)}, close took ${result.clockMsToClose} ms of clock time`,
      );
      assert.deepEqual(result.violations, [], `seed ${result.seed}`);
      assert.equal(result.closeError, undefined, `seed ${result.seed}: close() rejected`);
      assert.deepEqual(result.deadLetters, [], `seed ${result.seed}: nothing should be dead-lettered (unlimited attempts, a long close deadline)`);
      assertExact(result, soakBase.keys);
      assertStats(result);
      assert.equal(stats.handlerCalls, result.calls, `seed ${result.seed}: stats.handlerCalls vs calls the handler saw`);
      assert.equal(stats.failures, result.rejects + stats.timeouts, `seed ${result.seed}: failures = rejections + timeouts`);
      assert.ok(stats.timeouts <= result.hangs, `seed ${result.seed}: more timeouts (${stats.timeouts}) than hung calls (${result.hangs})`);
      assert.ok(result.duplicateApplies > 0, `seed ${result.seed}: no duplicate was applied (the dedupe went untested)`);
      // Keys flushed many times each.
      const flushesPerKey = (mode === 'onFlush' ? result.delivered.size : stats.delivered) / soakBase.keys;
      assert.ok(flushesPerKey >= 5, `seed ${result.seed}: only ${flushesPerKey} flushes per key`);
      for (let i = 0; i < soakBase.keys; i += 997) assert.equal(result.buffer.count(keyName(i)), undefined);
      // The close deadline was never needed: everything was delivered well before it.
      assert.ok(result.clockMsToClose < soakBase.closeTimeoutMs, `seed ${result.seed}`);
    });
  }

  test('onFlush with maxAttempts 3: delivered + dead-lettered (deduplicated by flush id) equals incremented', async (t) => {
    const result = await soak(t, 3, { ...soakBase, mode: 'onFlush', increments: 300_000, keys: 5_000, spanMs: 4_000, maxAttempts: 3 });
    t.diagnostic(`calls ${result.calls}, dead letters ${result.deadLetters.length}, stats ${JSON.stringify(result.stats)}`);
    assert.deepEqual(result.violations, [], `seed ${result.seed}`);
    assert.equal(result.closeError, undefined, `seed ${result.seed}: close() rejected`);
    assert.ok(result.deadLetters.length > 0, `seed ${result.seed}: with a 30 % failure rate and 3 attempts, some counts must be dead-lettered`);
    for (const l of result.deadLetters) {
      assert.ok(l.attempts <= 3, `seed ${result.seed}: dead letter ${l.flushId} after ${l.attempts} attempts`);
      assert.notEqual(l.count, 0);
      // A dead letter whose every attempt settled as a failure was never applied, not even later.
      if (!l.unsettled) assert.ok(!result.delivered.has(l.flushId), `seed ${result.seed}: dead letter ${l.flushId} is marked settled but the sink applied it`);
    }
    assertExact(result, 5_000);
    assertStats(result);
    assert.equal(result.stats.handlerCalls, result.calls);
  });
});

describe('asyncSink under a slow, failing fn: one call per flush id at a time', () => {
  for (const mode of ['asyncSink', 'asyncBatchSink'] as const) {
    test(`${mode}: fn never runs twice at once for one flush id, never again after it succeeded, and totals are exact`, async (t) => {
      const keys = 2_000;
      const result = await soak(t, mode === 'asyncSink' ? 4 : 5, {
        ...soakBase,
        mode,
        increments: 200_000,
        keys,
        spanMs: 4_000,
        hangRate: 0.1,
        hangKinds: ['late'],
        ...(mode === 'asyncBatchSink' ? { maxBatch: 32 } : {}),
      });
      t.diagnostic(`fn calls ${result.calls}, hangs ${result.hangs}, stats ${JSON.stringify(result.stats)}`);
      assert.deepEqual(result.violations, [], `seed ${result.seed}`);
      assert.equal(result.closeError, undefined, `seed ${result.seed}: close() rejected`);
      assert.deepEqual(result.deadLetters, [], `seed ${result.seed}`);
      assertExact(result, keys);
      assertStats(result);
      // Joined retries do not reach fn: the buffer made more handler calls than fn saw.
      assert.ok(result.stats.handlerCalls > result.calls, `seed ${result.seed}: handler calls ${result.stats.handlerCalls}, fn calls ${result.calls}`);
      assert.equal(result.duplicateApplies, 0, `seed ${result.seed}: fn applied a flush id twice`);
    });
  }
});

describe('the close() deadline', () => {
  test('on a TestClock: a handler that never settles is dead-lettered (unsettled) exactly when closeTimeoutMs of clock time has passed', async () => {
    const letters: DeadLetter[] = [];
    let calls = 0;
    const buffer = engine.buffer({
      name: 'deadline-test-clock',
      intervalMs: 1000,
      closeTimeoutMs: 500,
      onFlush: () => {
        calls++;
        return new Promise<void>(() => undefined);
      },
      onDeadLetter: (entries) => {
        letters.push(...entries);
      },
    });
    buffer.increment('a', 2);
    buffer.increment('b', -3);
    let closed = false;
    const closing = buffer.close().then(() => {
      closed = true;
    });
    await turn();
    assert.equal(calls, 2, 'close() flushed both keys at once');
    assert.equal(buffer.count('a'), 2, 'count() includes the count in flight');
    for (let i = 0; i < 49; i++) {
      clock.advance(10);
      await turn();
    }
    clock.advance(9);
    await turn();
    assert.equal(closed, false, 'close() settled before its deadline');
    assert.equal(letters.length, 0, 'dead-lettered before the deadline');
    clock.advance(1);
    await turn();
    await closing;
    assert.deepEqual(
      letters.map((l) => [l.key, l.count, l.unsettled, l.attempts]).sort(),
      [
        ['a', 2, true, 1],
        ['b', -3, true, 1],
      ],
    );
    assert.equal(buffer.stats().deadLettered, 2);
    assert.equal(buffer.count('a'), undefined);
  });

  test('on the system clock: close() with a handler that never settles (no timeoutMs) settles at closeTimeoutMs, not at the next unrelated timer', { timeout: 60_000 }, async () => {
    // The only other timer of the buffer, the key's flush, is 24 days away: if close() did not arm its own
    // deadline it would never settle, and the test would end at its timeout. No race against a wall timer,
    // so a loaded machine can only make close() later, never fail the test.
    const wall = await createEngine({ shards: 1 });
    try {
      const letters: DeadLetter[] = [];
      const buffer = wall.buffer({
        name: 'deadline-system-clock',
        intervalMs: 2_147_483_647,
        closeTimeoutMs: 200,
        onFlush: () => new Promise<void>(() => undefined),
        onDeadLetter: (entries) => {
          letters.push(...entries);
        },
      });
      buffer.increment('a', 1);
      const t0 = performance.now();
      await buffer.close();
      const ms = Math.round(performance.now() - t0);
      assert.ok(ms >= 190, `close() settled after ${ms} ms, before its deadline`);
      assert.deepEqual(
        letters.map((l) => [l.key, l.count, l.unsettled]),
        [['a', 1, true]],
      );
    } finally {
      await wall.close().catch(() => undefined);
    }
  });

});
