/**
 * The engine option `maxCounterKeys`: each kind of counter holds at most that many keys in the process; a
 * call that needs one more throws TW_CAPACITY and writes nothing (a batch none of its ops), and the keys
 * held keep working.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createEngine, ErrorCode, MemoryStorage, TallyworksError, TestClock } from '../../../src/index.js';

const capacity = (err: unknown): boolean => err instanceof TallyworksError && err.code === ErrorCode.CAPACITY && err instanceof RangeError && /maxCounterKeys \(3\)/.test(err.message);

test('strict counters: a fourth key is refused, a batch with one new key writes none of its ops', async () => {
  const engine = await createEngine({ clock: new TestClock(), shards: 2, maxCounterKeys: 3 });
  try {
    for (const k of ['a', 'b', 'c']) assert.equal(await engine.strict.inc(k, 2), 2);
    await assert.rejects(engine.strict.inc('d'), capacity);
    await assert.rejects(engine.strict.incAll([['a', 1], ['x', 1]]), capacity);
    assert.deepEqual(await engine.strict.getAll(['a', 'b', 'c', 'd', 'x']), [['a', 2], ['b', 2], ['c', 2], ['d', 0], ['x', 0]], 'nothing written');
    assert.equal(await engine.strict.inc('a', 1), 3, 'the keys held keep working');
  } finally {
    await engine.close();
  }
});

test('lax counters, their handles and instance-aware lax counters are bounded each', async () => {
  const engine = await createEngine({ clock: new TestClock(), shards: 1, maxCounterKeys: 3 });
  try {
    for (const k of ['a', 'b', 'c']) engine.lax.add(k, 1);
    assert.throws(() => engine.lax.add('d', 5), capacity);
    assert.throws(() => engine.lax.handle('d'), capacity);
    assert.deepEqual(await engine.lax.getAll(['a', 'd']), [['a', 1], ['d', 0]]);
    // Each kind has its own bound: strict keys do not count against the lax ones.
    assert.equal(await engine.strict.inc('s1'), 1);
    for (const k of ['a', 'b', 'c']) await engine.instanceAware.lax.inc(k, 1);
    await assert.rejects(engine.instanceAware.lax.inc('d', 1), capacity);
  } finally {
    await engine.close();
  }
});

test('maxCounterKeys must be an integer ≥ 1', async () => {
  for (const bad of [0, 1.5, -1, 'many', Number.NaN]) {
    await assert.rejects(createEngine({ maxCounterKeys: bad as number }), (err: unknown) => err instanceof TallyworksError && err.code === ErrorCode.INVALID_OPTION && /maxCounterKeys/.test(err.message));
  }
});

test('a counter storage holding more keys than maxCounterKeys refuses createEngine with TW_CAPACITY; with room, every key comes back', async () => {
  const storage = new MemoryStorage();
  const a = await createEngine({ clock: new TestClock(), shards: 1, counters: { storage } });
  for (const k of ['a', 'b', 'c', 'd']) await a.strict.inc(k, 1);
  await a.close(); // saves the four
  await assert.rejects(createEngine({ clock: new TestClock(), shards: 1, counters: { storage }, maxCounterKeys: 3 }), capacity);
  const b = await createEngine({ clock: new TestClock(), shards: 1, counters: { storage }, maxCounterKeys: 4 });
  try {
    assert.deepEqual(await b.strict.getAll(['a', 'd']), [['a', 1], ['d', 1]]);
  } finally {
    await b.close();
  }
});
