/**
 * The codec's shared-field map encoder (event persists encode the fields every id shares once): its bytes
 * are exactly those of the whole map encoded at once, whatever the value.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decode, encode, sharedMapEncoder } from '../../common/codec.js';

test('sharedMapEncoder gives the bytes of the whole map, for every kind of value', () => {
  const shared = { timeZone: 'Europe/Zürich', intervals: { minute: 60, hour: 24, day: 30 }, nowMs: 1_767_614_400_000 };
  const rings = sharedMapEncoder(shared, 'rings');
  const values: unknown[] = [[], [[1], [2, 3], []], Array.from({ length: 300 }, (_, i) => [i, -i - 1, i / 3]), 'ü'.repeat(100), { a: 1 }, null, 2 ** 53 - 1, -0.5];
  for (const value of values) {
    const bytes = rings(value);
    assert.deepEqual(bytes, encode({ ...shared, rings: value }), JSON.stringify(value).slice(0, 40));
    assert.deepEqual(decode(bytes), { ...shared, rings: value });
  }
  // Each call's bytes are its own (not a view into a buffer the next call reuses).
  const first = rings([[7]]);
  rings([[8, 9, 10]]);
  assert.deepEqual(decode(first), { ...shared, rings: [[7]] });
});

test('sharedMapEncoder refuses a key already shared; many shared fields are fine', () => {
  assert.throws(() => sharedMapEncoder({ rings: 1 }, 'rings'), RangeError);
  const many = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`f${i}`, i]));
  const bytes = sharedMapEncoder(many, 'x')([1, 2]);
  assert.deepEqual(bytes, encode({ ...many, x: [1, 2] }));
  assert.deepEqual(decode(bytes), { ...many, x: [1, 2] });
});
