/** Hopping-window arithmetic: alignment, and a property test against a naive event-list model. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { addHop, bucketsHop, GO_EPOCH_OFFSET_MS, initHop, moveHop, sumHop, unitIndex, unitStart } from '../../../common/records/hop.js';
import { HEADER_BYTES, hopRecordWords, shardViews } from '../../../common/layout.js';
import { DirectJournal } from '../../../common/records/journal.js';

test('units that divide a day align with the Unix epoch; 7-day units start on Monday 00:00 UTC', () => {
  for (const unit of [1, 1000, 60_000, 3_600_000, 86_400_000]) {
    assert.equal(unitStart(unitIndex(0, unit), unit), 0, `unit ${unit}`);
  }
  const week = 7 * 86_400_000;
  const start = unitStart(unitIndex(Date.UTC(2024, 5, 20, 15), week), week); // a Thursday
  assert.equal(new Date(start).toISOString(), '2024-06-17T00:00:00.000Z');
  assert.equal(new Date(start).getUTCDay(), 1);
  assert.equal(new Date(-GO_EPOCH_OFFSET_MS).toISOString(), '0001-01-01T00:00:00.000Z');
});

/** The spec's semantics stated directly: an event counts in units (k(t') − W, k(t')] where t' never goes behind the newest unit seen. */
function naiveValue(events: Array<{ unit: number; n: number }>, nowUnit: number, size: number): number {
  return events.filter((e) => e.unit > nowUnit - size && e.unit <= nowUnit).reduce((s, e) => s + e.n, 0);
}

test('property: ring value and buckets equal the naive model for any observation sequence (addHop through a direct journal)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 8 }),
      fc.constantFrom(1, 7, 1000, 86_400_000),
      fc.array(
        fc.record({ dt: fc.integer({ min: -3, max: 12 }), n: fc.integer({ min: 0, max: 1000 }), read: fc.boolean() }),
        { maxLength: 60 },
      ),
      (size, unitMs, steps) => {
        const views = shardViews(new SharedArrayBuffer(HEADER_BYTES), new SharedArrayBuffer((8 + hopRecordWords(size)) * 8));
        const journal = new DirectJournal(views);
        const f64 = views.f64;
        const o = 8;
        initHop(f64, o, unitMs, size);
        const events: Array<{ unit: number; n: number }> = [];
        let t = Date.UTC(2024, 5, 17, 10, 30);
        let head = Number.NEGATIVE_INFINITY;
        for (const step of steps) {
          t += step.dt * Math.ceil(unitMs / 2);
          const unit = Math.max(unitIndex(t, unitMs), head);
          if (step.read) {
            const expected = naiveValue(events, unit, size);
            assert.equal(sumHop(f64, o, t), expected);
            const buckets = bucketsHop(f64, o, t, []);
            assert.equal(buckets.length, size);
            assert.equal(buckets.reduce((a, b) => a + b, 0), expected);
            for (let i = 0; i < size; i++) {
              const k = unit - (size - 1 - i);
              assert.equal(buckets[i], naiveValue(events.filter((e) => e.unit === k), k, 1));
            }
          } else {
            addHop(f64, journal, o, t, step.n);
            assert.equal(views.i32[2 * o]! % 2, 0, 'the seqlock is released');
            head = unit;
            events.push({ unit, n: step.n });
          }
        }
      },
    ),
    { numRuns: 500 },
  );
});

test('a half-done move re-run gives the same state (what makes replay after a thread death safe)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 6 }), fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 20 }), (size, gaps) => {
      const a = new Float64Array(8 + hopRecordWords(size));
      initHop(a, 8, 1000, size);
      let t = 1_000_000;
      for (const gap of gaps) {
        t += gap * 1000;
        const pos = moveHop(a, 8, t);
        a[pos] = a[pos]! + 1;
      }
      const once = Float64Array.from(a);
      moveHop(a, 8, t); // the replay of the last op's move
      assert.deepEqual(a, once);
    }),
  );
});
