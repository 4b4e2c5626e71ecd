/**
 * A fuzz test over the public entry points (issue: hardening from a fault and fuzz probe): keys, counts,
 * times, options and crafted exports from fast-check, plus the values that broke things before (NaN,
 * ±Infinity, −0, 2^53, 1e18, lone surrogates, "__proto__", ":" and 256-byte keys). For every case a call
 * either succeeds, or throws (or rejects) a typed Tallyworks error with a stable code, writes nothing, and
 * leaves the engine healthy: after each entry point's run, every shard still counts and answers.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import {
  always,
  asyncSink,
  closeOnSignals,
  createEngine,
  type Engine,
  ErrorCode,
  eq,
  FileStorage,
  Intervals,
  redisSink,
  Schedule,
  SPEC_START,
  TallyworksError,
  TestClock,
} from '../../src/index.js';

const CODES = new Set<string>(Object.values(ErrorCode));
const RUNS = 250;
const clock = new TestClock(SPEC_START);
let engine: Engine;
before(async () => {
  engine = await createEngine({ clock, shards: 2 });
});
after(() => engine.close());

/** Values that broke an engine before, mixed into every arbitrary. */
const nasty: unknown[] = [
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  -0,
  2 ** 53,
  -(2 ** 53),
  1e18,
  -1e18,
  0.0077,
  1e15,
  '',
  ':',
  'a:b',
  '__proto__',
  'constructor',
  '\uD800',
  '\uDC00',
  'x'.repeat(256),
  '€'.repeat(86),
  null,
  undefined,
  {},
  [],
  Symbol('s'),
  1n,
  () => 1,
  new Date(Number.NaN),
  new Date(-8.64e15),
  // Objects that cannot become a string: an error message built with String(value) throws instead.
  { toString: 0 },
  [{ toString: 0 }],
  Object.create(null),
];
const value = fc.oneof(fc.constantFrom(...nasty), fc.anything({ withBigInt: true, withDate: true }), fc.integer(), fc.double(), fc.string({ unit: 'binary' }));
const key = fc.oneof(fc.constantFrom(...nasty), fc.string({ unit: 'binary', maxLength: 300 }));

/** Runs `call`; a throw or rejection must be a typed Tallyworks error. True when it succeeded. */
async function typed(call: () => unknown, what: string): Promise<boolean> {
  let err: unknown;
  try {
    await call();
    return true;
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof TallyworksError || (err instanceof Error && 'code' in err && CODES.has((err as { code: string }).code)), `${what}: not a typed error: ${String(err)}`);
  const code = (err as { code: string }).code;
  assert.ok(CODES.has(code), `${what}: unknown code ${code}`);
  assert.ok((err as Error).message.length > 0);
  return false;
}

let healthyRound = 0;
/** Every shard still counts and answers (nothing wedged a thread, nothing broke a lane). */
async function healthy(): Promise<void> {
  healthyRound++;
  const ids = Array.from({ length: 8 }, (_, i) => `healthy${healthyRound}x${i}`);
  for (const id of ids) engine.events.record(id, 3);
  for (const id of ids) assert.equal(await engine.events.query(id).lastHours(1).sum(), 3);
  const w = engine.window(`hw${healthyRound}`, { size: 2, unit: 'second' });
  w.observe(2);
  assert.equal(await w.value(), 2);
  assert.equal(await engine.strict.inc(`hs${healthyRound}`, 1), 1);
  await engine.flush();
}

describe('fuzz: every call succeeds or throws a typed error, writes nothing when it throws, and the engine stays healthy', () => {
  test('events.record / recordAt / recordAgo with any id, count and time', async () => {
    await fc.assert(
      fc.asyncProperty(key, value, value, async (id, n, when) => {
        const known = typeof id === 'string' && engine.events.has(id);
        const before = known ? await engine.events.query(id as string).ever().sum() : undefined;
        for (const [what, call] of [
          ['record', () => engine.events.record(id as string, n as number)],
          ['recordAt', () => engine.events.recordAt(id as string, when as number, n as number)],
          ['recordAgo', () => engine.events.recordAgo(id as string, when as number, n as number)],
        ] as const) {
          const existed = typeof id === 'string' && engine.events.has(id);
          const ok = await typed(call, what);
          if (!ok && typeof id === 'string' && !existed) assert.equal(engine.events.has(id), false, `${what} created ${JSON.stringify(id)} though it threw`);
        }
        if (known) assert.ok((await engine.events.query(id as string).ever().sum())! >= before!);
      }),
      { numRuns: RUNS },
    );
    await healthy();
  });

  test('queries, limits and schedules with any id and arguments', async () => {
    await fc.assert(
      fc.asyncProperty(key, value, value, async (id, a, b) => {
        const ev = engine.events;
        await typed(() => ev.query(id as string).lastDays(a as number).sum(), 'lastDays');
        await typed(() => ev.query(id as string).lastHours(1).take(a as number).buckets(), 'take');
        await typed(() => ev.queryMany([id as string, 'x']).ever().sum(), 'queryMany');
        await typed(() => ev.ratio(id as string, 'x').lastHours(b as number), 'ratio');
        await typed(() => ev.limit().atMost(a as number, b as never).check('lim'), 'atMost');
        await typed(() => ev.limit().cooldown(a as number).check(id as string), 'cooldown');
        await typed(() => ev.limit().within(id as string, b as number).check('lim'), 'within');
        await typed(() => ev.limit().during(Schedule.hours(a as number, b as number)).check('lim'), 'Schedule.hours');
        await typed(() => ev.limit().atMost(3, 'hour').usage(id as string), 'usage');
      }),
      { numRuns: RUNS },
    );
    await healthy();
  });

  test('hopping windows with any shape, id and count', async () => {
    await fc.assert(
      fc.asyncProperty(value, value, key, value, async (size, unitMs, id, n) => {
        let ok = await typed(() => engine.windows({ size: size as number, unitMs: unitMs as number }), 'windows(unitMs)');
        if (ok) {
          const set = engine.windows({ size: size as number, unitMs: unitMs as number });
          const existed = typeof id === 'string' && set.has(id);
          ok = await typed(() => set.observe(id as string, n as number), 'observe');
          if (!ok && typeof id === 'string' && !existed) assert.equal(set.has(id), false, 'a refused observe created the window');
          await typed(() => set.value(id as string), 'value');
          await typed(() => set.buckets(id as string), 'buckets');
        }
        await typed(() => engine.windows({ size: size as number, unit: unitMs as never }), 'windows(unit)');
      }),
      { numRuns: RUNS },
    );
    await healthy();
  });

  test('strict and lax counters with any key, delta and comparison', async () => {
    await fc.assert(
      fc.asyncProperty(key, value, value, async (k, n, x) => {
        for (const kind of ['strict', 'lax'] as const) {
          const c = engine[kind];
          const before = typeof k === 'string' ? await c.get(k).catch(() => undefined) : undefined;
          const incOk = await typed(() => c.inc(k as string, n as number), `${kind}.inc`);
          if (!incOk && before !== undefined) assert.equal(await c.get(k as string), before, `${kind}.inc threw but wrote`);
          await typed(() => c.set(k as string, x as number), `${kind}.set`);
          await typed(() => c.incIf(k as string, eq(x as number), n as number), `${kind}.incIf`);
          await typed(() => c.incAll([[k as string, n as number]]), `${kind}.incAll`);
          await typed(() => c.setIf(k as string, always, x as number), `${kind}.setIf`);
        }
        await typed(() => engine.lax.add(k as string, n as number), 'lax.add');
      }),
      { numRuns: RUNS },
    );
    await healthy();
  });

  test('stat buffers with any options, key and count', async () => {
    let i = 0;
    await fc.assert(
      fc.asyncProperty(value, value, key, value, async (intervalMs, maxBatch, k, n) => {
        const name = `fz${i++}`;
        const made = await typed(() => engine.buffer({ name, intervalMs: intervalMs as number, maxBatch: maxBatch as number, onFlush: () => {} }), 'buffer(options)');
        const b = made ? engine.buffer({ name: `${name}b`, intervalMs: 1000, onFlush: () => {} }) : engine.buffer({ name, intervalMs: 1000, ...asyncSink(async () => {}) });
        const ok = await typed(() => b.increment(k as string, n as number), 'increment');
        if (!ok) assert.equal(b.stats().keys, 0, 'a refused increment counted something');
        await b.close();
      }),
      { numRuns: RUNS },
    );
    await healthy();
  });

  test('import and merge of crafted exports write nothing when refused', async () => {
    const store = engine.eventStore({ name: 'fz-import', intervals: { hours: 3, days: 2 } });
    const counters = fc.dictionary(key.filter((k): k is string => typeof k === 'string'), fc.oneof(value, fc.array(fc.array(value, { maxLength: 4 }), { maxLength: 3 })), { maxKeys: 3 });
    const exp = fc.record({
      format: fc.oneof(fc.constant('tallyworks.events'), value),
      version: fc.oneof(fc.constant(1), value),
      timeZone: fc.oneof(fc.constantFrom('UTC', 'Europe/Berlin', 'Mars/Olympus'), value),
      intervals: fc.oneof(fc.constant({ hours: 3, days: 2 }), fc.constant({ hours: 2 }), value),
      nowMs: fc.oneof(fc.constant(SPEC_START), value),
      counters: fc.oneof(counters, value),
    });
    await fc.assert(
      fc.asyncProperty(exp, fc.boolean(), async (e, merge) => {
        const before = (await store.export()).counters;
        const ok = await typed(() => (merge ? store.merge(e as never) : store.import(e as never)), merge ? 'merge' : 'import');
        if (!ok) assert.deepEqual((await store.export()).counters, before, 'a refused export changed the store');
      }),
      { numRuns: RUNS },
    );
    await healthy();
  });

  test('createEngine, eventStore, Intervals, FileStorage, redisSink and closeOnSignals with any options', async () => {
    // (Not `redis`: a valid value would connect to a server this test does not own.)
    const names = ['shards', 'batchSize', 'maxInFlight', 'stallTimeoutMs', 'maxShardMemoryBytes', 'timeZone', 'prefix', 'flushIntervalMs', 'events', 'clock', 'nope'];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...names), value, async (name, v) => {
        // A valid engine is closed at once (and none with many shard threads is started).
        if (!(name === 'shards' && typeof v === 'number' && v > 4)) {
          let made: Engine | undefined;
          const ok = await typed(async () => {
            made = await createEngine({ [name]: v } as never);
          }, `createEngine({ ${name} })`);
          if (ok) await made!.close();
        }
        await typed(() => engine.eventStore({ [name === 'nope' ? 'nope' : 'intervals']: v } as never), 'eventStore');
        await typed(() => Intervals.builder().trackHours(v as number), 'Intervals');
        await typed(() => new FileStorage(v as string), 'FileStorage');
        await typed(() => redisSink(v as never, { hash: 'h' }), 'redisSink');
        await typed(() => closeOnSignals(v as never)(), 'closeOnSignals');
      }),
      { numRuns: 120 },
    );
    await healthy();
  });
});
