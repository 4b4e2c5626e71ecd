/**
 * Hopping windows through the public API: every scenario of the hopping-window spec (u = 1 s, W = 5, times in
 * seconds since the Unix epoch, test clock), plus what a user relies on around them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createEngine, type Engine, ErrorCode, TallyworksError, TestClock } from '../../../src/index.js';

const s = (seconds: number): number => Math.round(seconds * 1000);

describe('hopping windows: spec scenarios', () => {
  let engine: Engine;
  const clock = new TestClock(s(100.3));
  let n = 0;
  // Each scenario uses fresh ids so that they can share one engine.
  const fresh = (): string => `w${n++}`;
  const fiveSeconds = { size: 5, unit: 'second' } as const;

  before(async () => {
    engine = await createEngine({ clock, shards: 2 });
  });
  after(() => engine.close());

  test('1. create at 100.3, observe ×3 → value 3', async () => {
    clock.set(s(100.3));
    const w = engine.window(fresh(), fiveSeconds);
    w.observe();
    w.observe();
    w.observe();
    assert.equal(await w.value(), 3);
  });

  test('2. observe at 100.3 → 1 at 104.999, 0 at 105.0', async () => {
    clock.set(s(100.3));
    const w = engine.window(fresh(), fiveSeconds);
    w.observe();
    clock.set(s(104.999));
    assert.equal(await w.value(), 1);
    clock.set(s(105));
    assert.equal(await w.value(), 0);
  });

  test('3. 1 at 100.3, 2 at 101.2, 3 at 103.9 → 6, 5, 3, 3, 0 at 104…108', async () => {
    const w = engine.window(fresh(), fiveSeconds);
    clock.set(s(100.3));
    w.observe(1);
    clock.set(s(101.2));
    w.observe(2);
    clock.set(s(103.9));
    w.observe(3);
    const seen: number[] = [];
    for (const at of [104, 105, 106, 107, 108]) {
      clock.set(s(at));
      seen.push(await w.value());
    }
    assert.deepEqual(seen, [6, 5, 3, 3, 0]);
  });

  test('4. observe ×10 at 100.0 → 0 at 200.0; observe at 200.5 → 1', async () => {
    const w = engine.window(fresh(), fiveSeconds);
    clock.set(s(100));
    for (let i = 0; i < 10; i++) w.observe();
    clock.set(s(200));
    assert.equal(await w.value(), 0);
    clock.set(s(200.5));
    w.observe();
    assert.equal(await w.value(), 1);
  });

  test('5. W = 1, u = 1 min: observe at 12:00:59 → 1 then, 0 at 12:01:00', async () => {
    const w = engine.window(fresh(), { size: 1, unit: 'minute' });
    clock.set(Date.UTC(2024, 5, 17, 12, 0, 59));
    w.observe();
    assert.equal(await w.value(), 1);
    clock.set(Date.UTC(2024, 5, 17, 12, 1, 0));
    assert.equal(await w.value(), 0);
  });

  test('6. observe at 100.5, clock set back to 99.0, observe → 2, still 2 at 100.6', async () => {
    const w = engine.window(fresh(), fiveSeconds);
    clock.set(s(100.5));
    w.observe();
    clock.set(s(99));
    w.observe();
    assert.equal(await w.value(), 2);
    clock.set(s(100.6));
    assert.equal(await w.value(), 2);
  });

  test('7. moving by d units shifts the past buckets left and zero-fills', async () => {
    // Past [1,2,3,4] and current 99, as the seed's internal state; buckets() shows past then current.
    const setUp = () => {
      const w = engine.window(fresh(), fiveSeconds);
      [1, 2, 3, 4, 99].forEach((count, i) => {
        clock.set(s(1000 + i));
        w.observe(count);
      });
      return w;
    };
    const cases: Array<[d: number, expected: number[]]> = [
      [1, [2, 3, 4, 99, 0]],
      [2, [3, 4, 99, 0, 0]],
      [4, [99, 0, 0, 0, 0]],
      [5, [0, 0, 0, 0, 0]],
      [9, [0, 0, 0, 0, 0]],
    ];
    for (const [d, expected] of cases) {
      const w = setUp();
      assert.deepEqual(await w.buckets(), [1, 2, 3, 4, 99]);
      clock.set(s(1004 + d));
      assert.deepEqual(await w.buckets(), expected, `d = ${d}`);
      assert.equal(expected.at(-1), 0, 'current is 0 after every move');
      w.observe(); // and the next observation lands in the new current unit only
      assert.equal((await w.buckets()).at(-1), 1);
    }
  });

  test('8. a 24 h unit turns over at 00:00 UTC; a 7 × 24 h unit on Monday 00:00 UTC', async () => {
    const day = engine.window(fresh(), { size: 1, unit: 'day' });
    clock.set(Date.UTC(2024, 5, 18, 23, 59, 59, 999));
    day.observe();
    assert.equal(await day.value(), 1);
    clock.set(Date.UTC(2024, 5, 19, 0, 0, 0));
    assert.equal(await day.value(), 0);

    const week = engine.window(fresh(), { size: 1, unitMs: 7 * 86_400_000 });
    clock.set(Date.UTC(2024, 5, 17, 0, 0, 0)); // a Monday
    week.observe();
    clock.set(Date.UTC(2024, 5, 23, 23, 59, 59, 999)); // the Sunday after
    assert.equal(await week.value(), 1);
    clock.set(Date.UTC(2024, 5, 24, 0, 0, 0)); // next Monday
    assert.equal(await week.value(), 0);
  });

  test('9. W = 0 → RangeError with a stable code; nothing is created', () => {
    const before = engine.windows(fiveSeconds).count;
    assert.throws(
      () => engine.window('zero', { size: 0, unit: 'second' }),
      (err: unknown) =>
        err instanceof RangeError && err instanceof TallyworksError && err.code === ErrorCode.INVALID_ARGUMENT && /options\.size/.test(err.message),
    );
    assert.equal(engine.windows(fiveSeconds).count, before);
  });
});

describe('hopping windows: API behaviour', () => {
  let engine: Engine;
  const clock = new TestClock(s(100));

  before(async () => {
    engine = await createEngine({ clock, shards: 3 });
  });
  after(() => engine.close());

  test('u ≤ 0, non-finite u, fractional or huge W, unit and unitMs together → typed errors', () => {
    const cases: Array<[unknown, RegExp, ErrorConstructor]> = [
      [{ size: 5, unitMs: 0 }, /options\.unitMs/, RangeError],
      [{ size: 5, unitMs: -1 }, /options\.unitMs/, RangeError],
      [{ size: 5, unitMs: Number.POSITIVE_INFINITY }, /options\.unitMs/, RangeError],
      [{ size: 5, unitMs: Number.NaN }, /options\.unitMs/, RangeError],
      [{ size: 2.5, unit: 'second' }, /options\.size/, RangeError],
      [{ size: 2 ** 21, unit: 'second' }, /options\.size/, RangeError],
      [{ size: '5', unit: 'second' }, /options\.size/, TypeError],
      [{ size: 5, unit: 'fortnight' }, /options\.unit/, TypeError],
      [{ size: 5, unit: 'second', unitMs: 1000 }, /options\.unit/, TypeError],
      [{ size: 5 }, /options\.unit/, TypeError],
      [null, /options/, TypeError],
    ];
    for (const [options, message, kind] of cases) {
      assert.throws(() => engine.windows(options as never), (err: unknown) => err instanceof kind && message.test((err as Error).message), JSON.stringify(options));
    }
  });

  test('observe(n) takes safe integers ≥ 0 and rejects anything else without recording', async () => {
    const set = engine.windows({ size: 3, unit: 'second' });
    const w = set.window('counted');
    w.observe(0);
    w.observe(2 ** 40);
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 53, '3' as unknown as number]) {
      assert.throws(() => w.observe(bad), (err: unknown) => err instanceof RangeError && (err as { code?: string }).code === ErrorCode.INVALID_ARGUMENT);
      assert.throws(() => set.observe('never-created', bad), RangeError);
    }
    assert.equal(set.has('never-created'), false, 'a rejected first observe creates nothing');
    assert.equal(await w.value(), 2 ** 40, 'counts stay exact past 2^32');
  });

  test('ids follow the key rules; unknown ids read 0 without being created', async () => {
    const set = engine.windows({ size: 3, unit: 'second' });
    for (const bad of ['', 'a:b', 'x'.repeat(256), 42 as unknown as string]) {
      assert.throws(() => set.observe(bad), (err: unknown) => (err as { code?: string }).code === ErrorCode.INVALID_KEY);
    }
    assert.equal(await set.value('nobody'), 0);
    assert.deepEqual(await set.buckets('nobody'), [0, 0, 0]);
    assert.throws(() => set.buckets('a:b'), (err: unknown) => (err as { code?: string }).code === ErrorCode.INVALID_KEY);
    assert.equal(set.has('nobody'), false);
    set.observe('é'.repeat(127)); // 254 UTF-8 bytes
    assert.equal(await set.value('é'.repeat(127)), 1);
  });

  test('windows of different shapes with the same id never share counts; the same shape is one set', async () => {
    const a = engine.window('same', { size: 5, unit: 'second' });
    const b = engine.window('same', { size: 5, unit: 'minute' });
    assert.equal(engine.windows({ size: 5, unitMs: 1000 }), engine.windows({ size: 5, unit: 'second' }));
    assert.equal(engine.window('same', { size: 5, unitMs: 1000 }), a, 'the same handle comes back');
    a.observe(3);
    b.observe(4);
    assert.equal(await a.value(), 3);
    assert.equal(await b.value(), 4);
  });

  test('engine.window(id, shape) with a fresh shape object each call: the same window, and the shape still decides', async () => {
    const w = engine.window('per-call', { size: 4, unit: 'second' });
    for (let i = 0; i < 99; i++) engine.window('per-call', { size: 4, unit: 'second' }).observe();
    assert.equal(engine.window('per-call', { size: 4, unit: 'second' }), w, 'the same handle comes back');
    assert.equal(await w.value(), 99);
    // A different shape right after is a different set; bad options after good ones are still refused.
    const other = engine.window('per-call', { size: 4, unit: 'minute' });
    assert.notEqual(other, w);
    other.observe();
    assert.equal(await w.value(), 99);
    assert.equal(await other.value(), 1);
    assert.throws(() => engine.window('per-call', { size: 4, unit: 'minute', unitMs: 1000 } as never), TypeError);
    assert.throws(() => engine.window('per-call', { size: 4.5, unit: 'minute' }), RangeError);
    assert.throws(() => engine.window('per-call', null as never), TypeError);
    assert.equal(engine.window('per-call', { size: 4, unit: 'minute' }), other, 'a refused call does not disturb the next');
  });

  test('by-id and handle observations land in the same window', async () => {
    const set = engine.windows({ size: 10, unit: 'second' });
    const h = set.window('mixed');
    for (let i = 0; i < 1000; i++) {
      set.observe('mixed');
      h.observe(2);
    }
    assert.equal(await set.value('mixed'), 3000);
    assert.equal(await h.value(), 3000);
    assert.deepEqual(await set.buckets('mixed'), [0, 0, 0, 0, 0, 0, 0, 0, 0, 3000], 'by id, the same buckets as the handle');
    assert.deepEqual(await h.buckets(), await set.buckets('mixed'));
  });

  test('a read sees every observation made before it, across many batches and shards', async () => {
    const local = await createEngine({ clock, shards: 2, batchSize: 16, maxInFlight: 1 });
    try {
      const set = local.windows({ size: 4, unit: 'hour' });
      const ids = Array.from({ length: 50 }, (_, i) => `id${i}`);
      for (let i = 0; i < 10_000; i++) set.observe(ids[i % 50]!, 1 + (i % 3));
      let total = 0;
      for (const id of ids) total += await set.value(id);
      let expected = 0;
      for (let i = 0; i < 10_000; i++) expected += 1 + (i % 3);
      assert.equal(total, expected);
    } finally {
      await local.close();
    }
  });
});
