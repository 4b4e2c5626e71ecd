/**
 * The fixed-window decision record kind (common/records/fixed-window.ts) against a naive model: a list of
 * events by unit index and a list of holds. For any sequence of decisions, adds (in the window, before it,
 * after a clock set back), holds and releases at any times, every decision, count and total agrees with
 * the model, and a refusal's retry-after is the first instant at which the same decision would pass (a
 * unit's start, or the holds' expiry, ttl after the newest hold). Units are 1000 ms here, unit k starting at k · 1000.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { countFixed, decideFixed, FixedWindowShape, holdFixed, holdsAt, initFixed, loadFixed, addFixed, releaseFixed, retryFixed } from '../../../common/records/fixed-window.js';

const UNIT = 1000;
const startOf = (k: number): number => k * UNIT;

type Op =
  | { kind: 'decide'; dk: number; limit: number }
  | { kind: 'add'; dk: number; back: number; delta: number }
  | { kind: 'hold' }
  | { kind: 'release'; which: number }
  | { kind: 'wait'; ms: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('decide' as const), dk: fc.integer({ min: 0, max: 2 }), limit: fc.integer({ min: 0, max: 6 }) }),
  fc.record({ kind: fc.constant('add' as const), dk: fc.integer({ min: 0, max: 2 }), back: fc.integer({ min: -1, max: 6 }), delta: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ kind: fc.constant('hold' as const) }),
  fc.record({ kind: fc.constant('release' as const), which: fc.nat(5) }),
  fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: -1500, max: 4000 }) }), // < 0: a clock set back
);

test('property: decisions, counts and retry-after agree with a naive model of events and holds', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1000, max: 5000 }), fc.array(fc.nat(3), { maxLength: 5 }), fc.array(op, { maxLength: 60 }), (n, ttl, seed, ops) => {
      const shape = new FixedWindowShape(n);
      const o = 8;
      const f64 = new Float64Array(o + shape.words + 8).fill(Number.NaN);
      let t = 100 * UNIT + 250;
      let k = Math.floor(t / UNIT);
      initFixed(f64, o, shape, k, seed.length === 0 ? undefined : Array.from({ length: n }, (_, i) => seed[i] ?? 0));
      // The model: events by unit, the head (the newest unit seen), the holds.
      const events: Array<[number, number]> = seed.length === 0 ? [] : Array.from({ length: n }, (_, i) => [k - i, seed[i] ?? 0] as [number, number]);
      let head = k;
      // Each hold by itself: the series it joined and whether it was released. A series is live until ttl
      // after its newest hold; only the current series' unreleased holds count, and only while it is live.
      const taken: Array<{ series: number; released: boolean; ended: boolean }> = [];
      let series = 0;
      let last = Number.NEGATIVE_INFINITY;
      let fresh = 1000;
      const inWindow = (h: number): number => events.reduce((sum, [u, c]) => (u > h - n && u <= h ? sum + c : sum), 0);
      const liveHolds = (at: number): number => (at - last >= ttl ? 0 : taken.filter((h) => h.series === series && !h.released).length);
      for (const step of ops) {
        if (step.kind === 'wait') {
          t = Math.max(100 * UNIT, t + step.ms);
          k = Math.floor(t / UNIT);
          continue;
        }
        if (step.kind === 'hold') {
          fresh += 1 + (fresh % 3); // any numbers, each new
          if (liveHolds(t) === 0) {
            series = fresh;
            last = t;
          } else {
            last = Math.max(last, t);
          }
          const got = holdFixed(f64, o, t, ttl, fresh);
          assert.equal(got, series, 'the series the hold joined');
          taken.push({ series, released: false, ended: false });
          continue;
        }
        if (step.kind === 'release') {
          // A hold not released yet (the caller releases each at most once), of any series.
          // A release of an expired hold changes nothing (a clock set back far enough revives its series).
          const open = taken.filter((h) => !h.ended);
          const h = open[step.which % Math.max(1, open.length)];
          if (h === undefined) continue;
          const want = h.series === series && liveHolds(t) > 0;
          h.ended = true;
          if (want) h.released = true;
          assert.equal(releaseFixed(f64, o, t, ttl, h.series), want);
          continue;
        }
        // The unit of t, or a later one seen before (a clock set back: the record keeps its newer head).
        const at = k + step.dk;
        head = Math.max(head, at);
        if (step.kind === 'add') {
          const kEvent = at - step.back;
          addFixed(f64, o, shape, at, kEvent, step.delta);
          const u = Math.min(kEvent, head);
          if (head - u < n) events.push([u, step.delta]);
          assert.equal(countFixed(f64, o, shape, at), inWindow(head));
          continue;
        }
        const before = inWindow(head);
        const want = before + liveHolds(t) < step.limit;
        assert.equal(decideFixed(f64, o, shape, at, t, ttl, step.limit), want, `decide at unit ${at}`);
        if (want) events.push([head, 1]);
        assert.equal(loadFixed(f64, o, shape, at, t, ttl), inWindow(head) + liveHolds(t));
        assert.equal(holdsAt(f64, o, t, ttl), liveHolds(t));
        if (!want) {
          // The first instant from t on at which the same decision passes: events leave the window only at
          // unit starts, holds only at their expiry, so those are the candidates.
          const live = liveHolds(t);
          const candidates = Array.from({ length: n }, (_, i) => startOf(head + 1 + i));
          if (live > 0) candidates.push(last + ttl);
          candidates.sort((a, b) => a - b);
          const best = candidates.find((at2) => inWindow(Math.max(head, Math.floor(at2 / UNIT))) + (at2 - last >= ttl ? 0 : live) < step.limit);
          const retry = retryFixed(f64, o, shape, t, ttl, step.limit, startOf);
          if (best === undefined) assert.ok(Number.isNaN(retry) && step.limit === 0, `no retry can pass, got ${retry}`);
          else assert.equal(retry, Math.max(0, best - t), `retry after at unit ${head}, t ${t}`);
        }
      }
      assert.ok(Number.isNaN(f64[o - 1]!) && Number.isNaN(f64[o + shape.words]!), 'nothing written outside the record');
    }),
    { numRuns: 500 },
  );
});

test('a limit of 0 refuses with no retry estimate; a fresh record counts nothing', () => {
  const shape = new FixedWindowShape(3);
  const f64 = new Float64Array(shape.words);
  initFixed(f64, 0, shape, 50, undefined);
  assert.equal(countFixed(f64, 0, shape, 50), 0);
  assert.equal(decideFixed(f64, 0, shape, 50, 50 * UNIT, 1000, 0), false);
  assert.ok(Number.isNaN(retryFixed(f64, 0, shape, 50 * UNIT, 1000, 0, startOf)));
  assert.equal(decideFixed(f64, 0, shape, 50, 50 * UNIT, 1000, 1), true);
  assert.equal(countFixed(f64, 0, shape, 53), 0, 'three units later the event has left a window of three');
});
