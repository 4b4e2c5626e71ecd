/**
 * Window sets with storage (warm restart) and bounded keys (idleMs, maxKeys): what a restarted or churning
 * service sees. Every test on the test clock; a window set given storage is compared with one that never
 * restarted, fed the same observes.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type Engine, MemoryStorage, SqliteStorage, type Storage, TestClock } from '../../../src/index.js';
import { open } from '../../helpers/engines.js';
import { counting } from '../../helpers/storages.js';
import { tempDir } from '../../helpers/temp-files.js';

const SHAPE = { size: 60, unit: 'second' } as const;
const T0 = Date.UTC(2026, 5, 1, 12);

const code = (c: string, name?: string) => (err: unknown) =>
  (err as { code?: string }).code === c && (name === undefined || (err as Error).message.includes(name));

describe('window sets: warm restart', () => {
  test('a restarted engine answers every window as one that never stopped, now and as time moves on', async () => {
    const sqlite = new SqliteStorage(join(await tempDir(), 'windows.db'));
    const clock = new TestClock(T0);
    const first = await open({ clock, shards: 2 });
    const control = await open({ clock, shards: 1 });
    const stored = first.windows(SHAPE, { storage: sqlite });
    const plain = control.windows(SHAPE);
    for (let s = 0; s < 40; s++) {
      for (let i = 0; i < 50; i++) {
        const n = ((i * 7 + s) % 5) + 1;
        stored.observe(`k${i}`, n);
        plain.observe(`k${i}`, n);
      }
      clock.advance(1000);
    }
    await first.close(); // persists
    const second = await open({ clock, shards: 3 });
    const again = second.windows(SHAPE, { storage: sqlite });
    await again.ready();
    for (const step of [0, 10_000, 25_000]) {
      clock.advance(step);
      for (let i = 0; i < 50; i++) {
        assert.deepEqual(await again.buckets(`k${i}`), await plain.buckets(`k${i}`), `k${i} after +${step} ms`);
      }
    }
    assert.ok((await plain.value('k3')) > 0, 'the comparison is of windows that still hold counts');
    // Observed after the restart: the stored counts and the new ones together.
    again.observe('k3', 100);
    plain.observe('k3', 100);
    assert.equal(await again.value('k3'), await plain.value('k3'));
    await sqlite.close();
  });

  test('persist saves only the windows observed since the last persist, in one transaction', async () => {
    const storage = counting(new MemoryStorage());
    const engine = await open({ clock: new TestClock(T0), shards: 2 });
    const set = engine.windows(SHAPE, { storage });
    for (let i = 0; i < 500; i++) set.observe(`u${i}`);
    assert.equal(await set.persist(), 500);
    set.observe('u1');
    set.window('u2').observe(3);
    assert.equal(await set.persist(), 2);
    assert.equal(await set.persist(), 0);
    assert.equal(await set.persistAll(), 500);
    assert.deepEqual(storage.transactions, [500, 2, 500]);
  });

  test('a window observed before the storage was listed gets its stored counts merged in', async () => {
    const storage = new MemoryStorage();
    const clock = new TestClock(T0);
    const a = await open({ clock });
    a.windows(SHAPE, { storage }).observe('early', 5);
    await a.close();
    const b = await open({ clock });
    const set = b.windows(SHAPE, { storage });
    set.observe('early', 2); // before ready()
    assert.equal(await set.value('early'), 7);
  });

  test('a stored window is read without being loaded into memory', async () => {
    const storage = new MemoryStorage();
    const clock = new TestClock(T0);
    const a = await open({ clock });
    a.windows(SHAPE, { storage }).observe('cold', 9);
    await a.close();
    const b = await open({ clock });
    const set = b.windows(SHAPE, { storage });
    clock.advance(30_000);
    assert.equal(await set.value('cold'), 9);
    assert.equal((await set.buckets('cold'))[59 - 30], 9, 'the count sits 30 buckets back');
    assert.equal(set.count, 0);
    clock.advance(30_000);
    assert.equal(await set.value('cold'), 0, 'out of the window after 60 s');
  });

  test('stored bytes of another shape are a TW_STORAGE error, not a wrong answer', async () => {
    const storage = new MemoryStorage();
    const clock = new TestClock(T0);
    const a = await open({ clock });
    a.windows({ size: 10, unit: 'second' }, { storage, name: 'shared' }).observe('k');
    await a.close();
    const b = await open({ clock });
    const set = b.windows(SHAPE, { storage, name: 'shared' });
    await assert.rejects(set.value('k'), code('TW_STORAGE', 'not a window of 60'));
  });
});

describe('window sets: bounded keys', () => {
  test('idleMs lets idle windows go, keeps busy ones, and their shard words are reused (no TW_CAPACITY under churn)', async () => {
    const clock = new TestClock(T0);
    // 1 MiB of shard memory holds about 1,900 windows of 60 buckets: 20,000 distinct ids need reuse.
    const engine = await open({ clock, shards: 1, maxShardMemoryBytes: 1024 * 1024 });
    const set = engine.windows(SHAPE, { idleMs: 60_000 });
    set.observe('busy');
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 1000; i++) set.observe(`r${round}-${i}`);
      // A pass notes what was observed since the one before; a window goes at the first pass that finds
      // it unobserved for idleMs (the set's own timer passes every idleMs / 2).
      assert.equal(await set.evictIdle(), 0, 'nothing is idle yet');
      clock.advance(61_000);
      set.observe('busy');
      const gone = await set.evictIdle();
      assert.equal(gone, 1000, `round ${round}: ${gone} let go`);
      assert.ok(set.has('busy'), 'observed within idleMs: kept');
      assert.equal(set.count, 1);
    }
    assert.equal(set.evictions, 20_000);
    set.observe('busy');
    assert.equal(await set.value('busy'), 2, 'the kept window still counts: the last round\'s observe and this one (older ones left the window)');
    assert.equal(await set.value('r0-1'), 0);
  });

  test('with storage, an idle window is saved before it goes and comes back with its counts', async () => {
    const clock = new TestClock(T0);
    const engine = await open({ clock });
    const set = engine.windows({ size: 10, unit: 'minute' }, { storage: new MemoryStorage(), idleMs: 60_000 });
    const handle = set.window('slow');
    handle.observe(4);
    assert.equal(await set.evictIdle(), 0);
    clock.advance(59_999);
    assert.equal(await set.evictIdle(), 0, 'never before idleMs');
    clock.advance(1);
    assert.equal(await set.evictIdle(), 1);
    assert.equal(set.has('slow'), false);
    assert.equal(await set.value('slow'), 4, 'read from storage');
    handle.observe(1); // an old handle forwards to the set: the window comes back
    assert.equal(set.has('slow'), true);
    assert.equal(await handle.value(), 5);
    assert.equal(await set.value('slow'), 5);
  });

  test("maxKeys with onMaxKeys 'reject' (the default): TW_CAPACITY, a RangeError, and nothing is created", async () => {
    const engine = await open({ clock: new TestClock(T0) });
    const set = engine.windows(SHAPE, { maxKeys: 3 });
    for (const id of ['a', 'b', 'c']) set.observe(id);
    assert.throws(() => set.observe('d'), (err: unknown) => err instanceof RangeError && code('TW_CAPACITY', 'maxKeys (3)')(err));
    assert.equal(set.count, 3);
    assert.equal(set.has('d'), false);
    set.observe('a', 2); // existing windows go on counting
    assert.equal(await set.value('a'), 3);
  });

  test("maxKeys with onMaxKeys 'evict': a window observed since the hand last passed is kept (second chance)", async () => {
    const engine: Engine = await open({ clock: new TestClock(T0) });
    const set = engine.windows(SHAPE, { maxKeys: 3, onMaxKeys: 'evict' });
    for (const id of ['a', 'b', 'c']) set.observe(id);
    set.observe('d'); // the hand clears a, b, c and comes round to a: a goes
    assert.deepEqual(['a', 'b', 'c', 'd'].filter((id) => set.has(id)), ['b', 'c', 'd']);
    set.observe('b');
    set.observe('e'); // b was observed: it gets a second chance; c goes
    assert.deepEqual(['b', 'c', 'd', 'e'].filter((id) => set.has(id)), ['b', 'd', 'e']);
    assert.equal(set.count, 3);
    assert.equal(set.evictions, 2);
    for (let i = 0; i < 1000; i++) set.observe(`x${i}`);
    assert.equal(set.count, 3, 'never more than maxKeys in memory');
  });

  test('set options: typed errors naming the option; given once, by the call that makes the set', async () => {
    const engine = await open({ clock: new TestClock(T0) });
    assert.throws(() => engine.windows(SHAPE, { idleMs: 0 }), code('TW_INVALID_ARGUMENT', 'setOptions.idleMs'));
    assert.throws(() => engine.windows(SHAPE, { maxKeys: 1.5 }), code('TW_INVALID_ARGUMENT', 'setOptions.maxKeys'));
    assert.throws(() => engine.windows(SHAPE, { onMaxKeys: 'drop' as 'evict' }), code('TW_INVALID_ARGUMENT', 'setOptions.onMaxKeys'));
    assert.throws(() => engine.windows(SHAPE, { autoPersistMs: 100 }), code('TW_INVALID_ARGUMENT', 'setOptions.autoPersistMs'));
    assert.throws(() => engine.windows(SHAPE, { storage: {} as Storage }), code('TW_INVALID_ARGUMENT', 'setOptions.storage.save'));
    assert.throws(() => engine.windows(SHAPE, { maxKey: 3 } as object), code('TW_INVALID_ARGUMENT', 'setOptions.maxKey'));
    const set = engine.windows(SHAPE, { maxKeys: 10 });
    assert.equal(engine.windows(SHAPE), set, 'the same set without set options');
    assert.throws(() => engine.windows(SHAPE, { maxKeys: 10 }), code('TW_INVALID_ARGUMENT', 'setOptions'));
    await assert.rejects(engine.windows({ size: 3, unit: 'hour' }).persist(), code('TW_INVALID_ARGUMENT', 'storage option'));
    await assert.rejects(set.evictIdle(), code('TW_INVALID_ARGUMENT', 'idleMs option'));
  });
});
