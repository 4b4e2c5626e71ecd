/**
 * `store.sumSync(id, unit, n)`: the synchronous 7-day sum. It agrees with the awaited query, sees every
 * record issued before it in the same turn, answers undefined where the query does, refuses bad input
 * with typed errors, and says TW_NOT_READY instead of guessing while the store is still loading.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createEngine, MemoryStorage, TestClock } from '../../../src/index.js';
import { withTestEngine } from '../../helpers/engines.js';
import { DAY, HOUR, withCode } from '../../helpers/time.js';


describe('sumSync', () => {
  test('agrees with the awaited query for every id, unit and length', () =>
    withTestEngine(async (engine) => {
      const events = engine.events;
      for (let i = 0; i < 50; i++) for (let d = 0; d < 10; d++) events.recordAgo(`id${i}`, d * DAY + (i % 5) * HOUR, (i % 7) + d);
      await engine.flush();
      for (let i = 0; i < 50; i++) {
        const id = `id${i}`;
        assert.equal(events.sumSync(id, 'day', 7), await events.query(id).lastDays(7).sum(), `${id} days`);
        assert.equal(events.sumSync(id, 'hour', 24), await events.query(id).lastHours(24).sum(), `${id} hours`);
        assert.equal(events.sumSync(id, 'day', 1), await events.query(id).lastDays(1).sum(), `${id} today`);
      }
    }));

  test('sees records issued just before it, in the same turn (it sends them and waits for the shard)', () =>
    withTestEngine(async (engine) => {
      const events = engine.events;
      for (let i = 1; i <= 1000; i++) {
        events.record('hot');
        events.record(`other${i % 10}`, 2);
        assert.equal(events.sumSync('hot', 'day', 7), i);
      }
      assert.equal(events.sumSync('other3', 'day', 1), 200);
    }));

  test('moves with the clock like the query: yesterday leaves lastDays(1) at midnight', () =>
    withTestEngine(async (engine, clock) => {
      engine.events.record('k', 5);
      assert.equal(engine.events.sumSync('k', 'day', 1), 5);
      clock.advance(DAY);
      assert.equal(engine.events.sumSync('k', 'day', 1), 0);
      assert.equal(engine.events.sumSync('k', 'day', 2), 5);
    }));

  test('undefined where the query says undefined; typed errors for bad input; TW_CLOSED after close', async () => {
    const clock = new TestClock();
    const engine = await createEngine({ clock });
    const events = engine.events;
    assert.equal(events.sumSync('never', 'day', 7), undefined);
    assert.equal(await events.query('never').lastDays(7).sum(), undefined);
    events.record('k');
    assert.throws(() => events.sumSync('k', 'fortnight' as never, 1), withCode('TW_INVALID_ARGUMENT', 'unit'));
    assert.throws(() => events.sumSync('k', 'day', 0), withCode('TW_INVALID_ARGUMENT', '"n"'));
    assert.throws(() => events.sumSync('k', 'day', 1.5), withCode('TW_INVALID_ARGUMENT', '"n"'));
    assert.throws(() => events.sumSync('k', 'day', 10_000), withCode('TW_INVALID_ARGUMENT', '"n"'));
    assert.throws(() => events.sumSync('a:b', 'day', 1), withCode('TW_INVALID_KEY'));
    await engine.close();
    assert.throws(() => events.sumSync('k', 'day', 1), withCode('TW_CLOSED'));
  });

  test('TW_NOT_READY while the store is still listing its storage, and the answer once it is ready', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    class SlowStorage extends MemoryStorage {
      override async keys(prefix?: string): Promise<string[]> {
        await gate;
        return super.keys(prefix);
      }
    }
    const storage = new SlowStorage();
    const clock = new TestClock();
    const engine = await createEngine({ clock });
    try {
      const slow = engine.eventStore({ storage });
      assert.throws(() => slow.sumSync('k', 'day', 1), withCode('TW_NOT_READY'));
      release();
      await slow.ready();
      assert.equal(slow.sumSync('k', 'day', 1), undefined);
    } finally {
      await engine.close();
    }
  });

  test('an id still in storage: TW_NOT_READY, and the call starts its reload, so a later call answers', async () => {
    const clock = new TestClock();
    const storage = new MemoryStorage();
    const first = await createEngine({ clock });
    const before = first.eventStore({ storage });
    before.record('stored', 3);
    await first.close();
    const engine = await createEngine({ clock });
    try {
      const store = engine.eventStore({ storage });
      await store.ready();
      assert.throws(() => store.sumSync('stored', 'day', 1), withCode('TW_NOT_READY', 'reloading'));
      for (let i = 0; i < 1000; i++) {
        await new Promise((resolve) => setImmediate(resolve));
        try {
          assert.equal(store.sumSync('stored', 'day', 1), 3);
          return;
        } catch (err) {
          if (!withCode('TW_NOT_READY')(err)) throw err;
        }
      }
      assert.fail('the reload the first call started never finished');
    } finally {
      await engine.close();
    }
  });
});
