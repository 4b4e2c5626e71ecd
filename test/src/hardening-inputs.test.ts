/**
 * Inputs that used to wedge a thread, lose an id or leak an untyped error (issue: hardening from a fault
 * and fuzz probe, defects 1, 2, 8, 9, 10). Each test goes through the public API and checks that the
 * engine still answers afterwards.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  createEngine,
  type Engine,
  ErrorCode,
  FileStorage,
  MemoryStorage,
  SPEC_START,
  type Storage,
  TallyworksError,
  TestClock,
} from '../../src/index.js';
import { tempDir } from '../helpers/temp-files.js';
import { withCode } from '../helpers/time.js';

const clock = new TestClock(SPEC_START);
let engine: Engine;
before(async () => {
  engine = await createEngine({ clock, shards: 2 });
});
after(() => engine.close());

/** The engine still counts and answers on every shard (nothing wedged). */
async function healthy(e: Engine = engine): Promise<void> {
  const ids = Array.from({ length: 8 }, (_, i) => `health${i}-${Math.random().toString(36).slice(2)}`);
  for (const id of ids) e.events.record(id, 2);
  for (const id of ids) assert.equal(await e.events.query(id).lastHours(1).sum(), 2);
  await e.flush();
  assert.equal((await e.stats()).shards.length, e.shards);
}

describe('defect 1: times outside the calendar range', () => {
  test('recordAgo / recordAt far in the past are refused with a typed error, and every shard keeps answering', async () => {
    const store = engine.events;
    for (const [call, what] of [
      [() => store.recordAgo('x', 1e18), 'recordAgo 1e18'],
      [() => store.recordAt('x', -1e18), 'recordAt -1e18'],
      [() => store.recordAt('x', -1), 'recordAt before 1970'],
      [() => store.recordAt('x', new Date(-8.64e15)), 'recordAt the earliest Date'],
    ] as const) {
      assert.throws(call, withCode(ErrorCode.INVALID_ARGUMENT, '"when"'), what);
    }
    assert.equal(store.has('x'), false, 'nothing was created');
    await healthy();
  });

  test('a TestClock refuses times a calendar cannot hold, and moves that would leave the range', () => {
    for (const t of [-1, 3_092_601_600_000, 1e18, -1e18]) assert.throws(() => new TestClock(t), withCode(ErrorCode.INVALID_ARGUMENT, '"time"'), String(t));
    const c = new TestClock(SPEC_START);
    assert.throws(() => c.advance(1e18), withCode(ErrorCode.INVALID_ARGUMENT, '"ms"'));
    assert.equal(c.now(), SPEC_START, 'a refused move changes nothing');
    assert.equal(new TestClock(0).now(), 0, '1970-01-01 is in range');
  });

  test('an export stamped outside the range is refused before anything is written', async () => {
    const exp = { format: 'tallyworks.events', version: 1, timeZone: 'UTC', intervals: { hours: 2 }, nowMs: -1e18, counters: { far: [[1, 2]] } };
    const store = engine.eventStore({ intervals: { hours: 2 }, name: 'range' });
    await assert.rejects(store.merge(exp as never), withCode(ErrorCode.INVALID_ARGUMENT, 'nowMs'));
    assert.equal(store.has('far'), false);
    await healthy();
  });
});

describe('defect 2: hopping windows of extreme unit lengths', () => {
  test('unitMs below 1 ms or above 366 days is refused; the bounds themselves work', async () => {
    for (const unitMs of [0.0077, 0.5, 1e15, 366 * 86_400_000 + 1]) {
      assert.throws(() => engine.windows({ size: 3, unitMs }), withCode(ErrorCode.INVALID_ARGUMENT, 'options.unitMs'), String(unitMs));
    }
    const fine = engine.window('tiny-unit', { size: 4, unitMs: 1 });
    const year = engine.window('year-unit', { size: 2, unitMs: 366 * 86_400_000 });
    fine.observe(3);
    year.observe(5);
    assert.equal(await fine.value(), 3);
    assert.equal(await year.value(), 5);
    assert.deepEqual(await year.buckets(), [0, 5]);
  });
});

describe('defect 8: onPersistError', () => {
  test('a handler that is not a function is refused when the store is made', () => {
    assert.throws(() => engine.eventStore({ storage: new MemoryStorage(), name: 'h1', onPersistError: 5 as never }), withCode(ErrorCode.INVALID_ARGUMENT, 'onPersistError'));
  });

  test('a handler that throws is contained (a process warning), never an unhandled rejection', async () => {
    const failing: Storage = {
      save: async () => Promise.reject(new Error('disk gone')),
      load: async () => undefined,
      delete: async () => undefined,
      keys: async () => [],
    };
    const warnings: Error[] = [];
    const unhandled: unknown[] = [];
    const onWarning = (w: Error): number => warnings.push(w);
    const onUnhandled = (r: unknown): number => unhandled.push(r);
    process.on('warning', onWarning);
    process.on('unhandledRejection', onUnhandled);
    const e2 = await createEngine({ clock, shards: 1 });
    try {
      const store = e2.eventStore({
        storage: failing,
        name: 'h2',
        autoPersistMs: 5,
        onPersistError: () => {
          throw new Error('handler bug');
        },
      });
      store.record('p');
      const deadline = Date.now() + 10_000;
      while (!warnings.some((w) => /handler bug/.test(w.message)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      assert.ok(warnings.some((w) => /onPersistError threw.*disk gone.*handler bug/.test(w.message)), warnings.map((w) => w.message).join('; '));
      assert.deepEqual(unhandled, []);
    } finally {
      await e2.close().catch(() => undefined);
      process.off('warning', onWarning);
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('defect 9: ids exact end to end', () => {
  test('"__proto__" is an id like any other: recorded, exported, merged, persisted and reloaded', async () => {
    const storage = new MemoryStorage();
    const store = engine.eventStore({ storage, name: 'proto' });
    store.record('__proto__', 4);
    store.record('constructor', 1);
    const exp = await store.export();
    assert.ok(Object.hasOwn(exp.counters, '__proto__'), 'an own property of the export');
    assert.equal(Object.getPrototypeOf(exp.counters), Object.prototype);
    assert.deepEqual(Object.keys(exp.counters).sort(), ['__proto__', 'constructor']);
    const copy = engine.eventStore({ name: 'proto-copy' });
    await copy.merge(JSON.parse(JSON.stringify(exp)));
    assert.equal(await copy.query('__proto__').lastHours(1).sum(), 4);
    assert.equal(await store.persist(), 2);
    const reopened = engine.eventStore({ storage, name: 'proto' });
    assert.equal(await reopened.query('__proto__').lastHours(1).sum(), 4);
  });

  test('ill-formed ids (lone surrogates) are refused everywhere, so two of them can never become one', async () => {
    const path = `${await tempDir()}/surrogates.tw`;
    const e2 = await createEngine({ clock, shards: 1, events: { storage: new FileStorage(path) } });
    try {
      for (const id of ['\uD800', '\uDC00', 'a\uD800b']) {
        assert.throws(() => e2.events.record(id), withCode(ErrorCode.INVALID_KEY), JSON.stringify(id));
        assert.throws(() => e2.windows({ size: 1, unit: 'second' }).observe(id), withCode(ErrorCode.INVALID_KEY));
        assert.throws(() => e2.lax.add(id), withCode(ErrorCode.INVALID_KEY));
        await assert.rejects(async () => e2.strict.inc(id), withCode(ErrorCode.INVALID_KEY));
      }
      e2.events.record('\uD83D\uDE00', 2); // a well-formed pair (an emoji) is fine
      assert.equal(await e2.events.query('😀').lastHours(1).sum(), 2);
    } finally {
      await e2.close();
    }
    const e3 = await createEngine({ clock, shards: 1, events: { storage: new FileStorage(path) } });
    assert.equal(await e3.events.query('😀').lastHours(1).sum(), 2, 'the emoji id survived the file');
    await e3.close();
  });
});

describe('defect 10: the error contract', () => {
  test('bad `events` options are TW_INVALID_OPTION from createEngine, before any thread starts', async () => {
    for (const [events, name] of [
      [{ intervals: { hours: 0 } }, 'events.intervals.hours'],
      [{ intervals: 'lots' }, 'events.intervals'],
      [{ timeZone: 'Mars/Olympus' }, 'events.timeZone'],
      [{ storage: { save: async () => undefined } }, 'events.storage.load'],
      [{ onPersistError: 'log' }, 'events.onPersistError'],
      [{ autoPersistMs: 10 }, 'events.autoPersistMs'],
      [{ nope: true }, 'events.nope'],
    ] as const) {
      await assert.rejects(createEngine({ events: events as never }), (err: unknown) => {
        assert.ok(err instanceof TallyworksError || err instanceof TypeError || err instanceof RangeError);
        assert.equal((err as TallyworksError).code, ErrorCode.INVALID_OPTION, `${name}: ${(err as Error).message}`);
        assert.match((err as Error).message, new RegExp(`option "${name.replaceAll('.', '\\.')}"`));
        return true;
      });
    }
  });

  test('a storage without load is a typed error; an import from an unknown zone is TW_INVALID_ARGUMENT', async () => {
    assert.throws(() => engine.eventStore({ storage: { save: async () => undefined } as never }), withCode(ErrorCode.INVALID_ARGUMENT, 'options.storage.load'));
    const exp = { format: 'tallyworks.events', version: 1, timeZone: 'Mars/Olympus', intervals: { hours: 2 }, nowMs: SPEC_START, counters: {} };
    await assert.rejects(engine.eventStore({ intervals: { hours: 2 }, name: 'tz' }).import(exp as never), withCode(ErrorCode.INVALID_ARGUMENT, 'export.timeZone'));
  });

  test("a custom storage's own failures reach persist() and close() as TW_STORAGE, with the cause", async () => {
    const boom = new Error('quota exceeded');
    const storage: Storage = {
      save: async () => Promise.reject(boom),
      load: async () => undefined,
      delete: async () => undefined,
      keys: async () => [],
      transaction: () => {
        throw boom; // a synchronous throw counts as a failure too
      },
    };
    const e2 = await createEngine({ clock, shards: 1, events: { storage } });
    e2.events.record('q');
    await assert.rejects(e2.events.persist(), (err: unknown) => err instanceof TallyworksError && err.code === ErrorCode.STORAGE && err.cause === boom);
    await assert.rejects(e2.close(), (err: unknown) => err instanceof TallyworksError && err.code === ErrorCode.STORAGE && err.cause === boom);
  });
});

describe('a shard memory cap that is not a whole number of 8-byte words', () => {
  test('the arena still grows to the cap: new ids end in TW_CAPACITY, never a RangeError, and the engine answers', async () => {
    const capped = await createEngine({ clock: new TestClock(SPEC_START), shards: 1, maxShardMemoryBytes: 1.5 * 2 ** 20 + 4 });
    try {
      let recorded = 0;
      let failure: unknown;
      for (; recorded < 100_000; recorded++) {
        try {
          capped.events.record(`id${recorded}`);
        } catch (err) {
          failure = err;
          break;
        }
      }
      assert.ok(failure instanceof TallyworksError && failure.code === ErrorCode.CAPACITY, `the first refusal: ${String(failure)}`);
      // As many ids as under the cap's last whole word (1.5 MiB): the arena grew past its first MiB.
      const even = await createEngine({ clock: new TestClock(SPEC_START), shards: 1, maxShardMemoryBytes: 1.5 * 2 ** 20 });
      try {
        let n = 0;
        for (; n < 100_000; n++) {
          try {
            even.events.record(`id${n}`);
          } catch {
            break;
          }
        }
        assert.equal(recorded, n);
      } finally {
        await even.close();
      }
      await capped.flush();
      assert.equal(capped.events.sumSync('id0', 'day', 1), 1);
    } finally {
      await capped.close();
    }
  });
});
