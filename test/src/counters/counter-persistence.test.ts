/**
 * Embedded counters with the `counters` option: saved to a storage, restored by the next engine, only
 * changed values written, and the option refused where Redis holds the counters.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createEngine, MemoryStorage, SqliteStorage, TestClock } from '../../../src/index.js';
import { open } from '../../helpers/engines.js';
import { counting } from '../../helpers/storages.js';
import { tempDir } from '../../helpers/temp-files.js';

describe('embedded counters: warm restart', () => {
  test('strict, lax and instance-aware counters come back with their values after a restart', async () => {
    const sqlite = new SqliteStorage(join(await tempDir(), 'counters.db'));
    const a = await createEngine({ clock: new TestClock(), shards: 2, counters: { storage: sqlite } });
    await a.strict.inc('orders', 5);
    await a.strict.dec('refunds', 2);
    a.lax.add('views', 7);
    a.lax.add('views', 3);
    await a.instanceAware.strict.inc('sessions', 4);
    a.instanceAware.lax.add('conns', 9);
    await a.strict.inc('gone', 1);
    await a.strict.del('gone');
    await a.close(); // persists
    const b = await createEngine({ clock: new TestClock(), shards: 3, counters: { storage: sqlite } });
    try {
      assert.equal(await b.strict.get('orders'), 5);
      assert.equal(await b.strict.get('refunds'), -2);
      assert.equal(await b.lax.get('views'), 10);
      assert.deepEqual(await b.instanceAware.strict.get('sessions'), [4, 4]);
      assert.deepEqual(await b.instanceAware.lax.get('conns'), [9, 9]);
      assert.equal(await b.strict.get('gone'), 0);
      assert.deepEqual(await sqlite.keys('counters/strict/'), ['counters/strict/orders', 'counters/strict/refunds'], 'a counter back at 0 is not stored');
      // Counting goes on from the restored values; the kinds never mix.
      assert.equal(await b.strict.inc('orders'), 6);
      assert.equal(await b.lax.get('orders'), 0);
    } finally {
      await b.close();
      await sqlite.close();
    }
  });

  test('persist() writes only the counters whose value changed, in one transaction', async () => {
    const storage = counting(new MemoryStorage());
    const engine = await open({ clock: new TestClock(), counters: { storage } });
    for (let i = 0; i < 100; i++) engine.lax.add(`k${i}`, i + 1);
    assert.equal(await engine.persist(), 100);
    engine.lax.add('k3');
    await engine.strict.inc('s');
    assert.equal(await engine.persist(), 2);
    assert.equal(await engine.persist(), 0);
    engine.lax.add('k5', 1);
    engine.lax.add('k5', -1); // back to the saved value: nothing to write
    assert.equal(await engine.persist(), 0);
    assert.deepEqual(storage.transactions, [100, 2]);
  });

  test('with autoPersistMs, a background persist saves what changed', async () => {
    const storage = new MemoryStorage();
    const engine = await open({ clock: new TestClock(), counters: { storage, autoPersistMs: 5 } });
    engine.lax.add('bg', 3);
    const deadline = Date.now() + 10_000;
    while ((await storage.load('counters/lax/bg')) === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.ok((await storage.load('counters/lax/bg')) !== undefined, 'saved by the timer');
  });

  test('the option is checked: a typed TW_INVALID_OPTION naming it; refused with redis', async () => {
    const storage = new MemoryStorage();
    const bad: Array<[unknown, RegExp]> = [
      [{ storage: {} }, /option "counters\.storage\.save"/],
      [{ storage, name: 'a/b' }, /option "counters\.name"/],
      [{ storage, autoPersistMs: 0 }, /option "counters\.autoPersistMs"/],
      [{ storage, every: 3 }, /option "counters\.every"/],
      [3, /option "counters"/],
    ];
    for (const [counters, message] of bad) {
      await assert.rejects(createEngine({ counters } as never), (err: Error & { code?: string }) => err.code === 'TW_INVALID_OPTION' && message.test(err.message), String(message));
    }
    await assert.rejects(createEngine({ redis: 'redis://127.0.0.1:1', counters: { storage } }), (err: Error & { code?: string }) => err.code === 'TW_INVALID_OPTION' && /Redis holds the counters/.test(err.message));
  });

  test('a stored value that is no counter fails createEngine with TW_STORAGE naming its key', async () => {
    const storage = new MemoryStorage();
    await storage.save('counters/strict/bad', new Uint8Array([0xa1, 0x78])); // msgpack "x"
    await assert.rejects(createEngine({ counters: { storage } }), (err: Error & { code?: string }) => err.code === 'TW_STORAGE' && err.message.includes('counters/strict/bad'));
  });
});
