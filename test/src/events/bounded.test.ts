/**
 * Event stores with bounded memory: idleMs (ids not recorded for idleMs are saved and let go, and come
 * back with their counts) and maxKeys (TW_CAPACITY past it, nothing created).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryStorage, TestClock } from '../../../src/index.js';
import { open } from '../../helpers/engines.js';

const T0 = Date.UTC(2026, 3, 1, 12);
const code = (c: string, text?: string) => (err: unknown) => (err as { code?: string }).code === c && (text === undefined || (err as Error).message.includes(text));

describe('event stores: bounded keys', () => {
  test('idleMs: an idle id is saved and let go, its shard words reused; it comes back with its counts', async () => {
    const clock = new TestClock(T0);
    const storage = new MemoryStorage();
    // 1 MiB of shard memory does not hold 3,000 calendar counters at once: without reuse this would fail.
    const engine = await open({ clock, shards: 1, maxShardMemoryBytes: 1024 * 1024, events: { storage, idleMs: 60_000 } });
    const events = engine.events;
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 500; i++) events.record(`r${round}-${i}`, 2);
      events.record('busy');
      assert.equal(await events.evictIdle(), 0, 'a pass notes what was recorded: nothing is idle yet');
      clock.advance(60_000);
      events.record('busy');
      assert.equal(await events.evictIdle(), 500, `round ${round}`);
      assert.equal(events.size, 1, 'only the busy id in memory');
    }
    assert.equal(await events.query('r0-7').lastDays(1).sum(), 2, 'reloaded from storage');
    assert.equal(await events.query('busy').lastDays(1).sum(), 12);
    assert.equal(events.has('r3-1'), true, 'stored ids are still ids of the store');
  });

  test('idleMs never lets an id go before idleMs after its last record', async () => {
    const clock = new TestClock(T0);
    const engine = await open({ clock, events: { storage: new MemoryStorage(), idleMs: 10_000 } });
    engine.events.record('a');
    await engine.events.evictIdle();
    clock.advance(9_999);
    assert.equal(await engine.events.evictIdle(), 0);
    clock.advance(1);
    assert.equal(await engine.events.evictIdle(), 1);
  });

  test('maxKeys: a new id past it is a TW_CAPACITY RangeError and nothing is recorded; known ids go on', async () => {
    const engine = await open({ clock: new TestClock(T0), events: { maxKeys: 2 } });
    engine.events.record('a');
    engine.events.record('b');
    assert.throws(() => engine.events.record('c'), (err: unknown) => err instanceof RangeError && code('TW_CAPACITY', 'maxKeys (2)')(err));
    engine.events.record('a', 4);
    assert.equal(await engine.events.query('a').lastDays(1).sum(), 5);
    assert.equal(await engine.events.query('c').lastDays(1).sum(), undefined);
  });

  test('options are checked: idleMs needs storage; bad values name the option', async () => {
    const engine = await open({ clock: new TestClock(T0) });
    assert.throws(() => engine.eventStore({ idleMs: 1000 }), code('TW_INVALID_ARGUMENT', 'options.idleMs'));
    assert.throws(() => engine.eventStore({ storage: new MemoryStorage(), idleMs: 0 }), code('TW_INVALID_ARGUMENT', 'options.idleMs'));
    assert.throws(() => engine.eventStore({ maxKeys: -1 }), code('TW_INVALID_ARGUMENT', 'options.maxKeys'));
    await assert.rejects(engine.events.evictIdle(), code('TW_INVALID_ARGUMENT'));
  });
});
