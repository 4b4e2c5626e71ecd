/**
 * Sliding-window rate limits, local provider: the scenarios of the rate-limits spec (1–5 and the local
 * part of 7) on the test clock, the FIX lines, several windows at once, and bad input.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createEngine, type RateDecision, TestClock } from '../../../src/index.js';
import { prng } from '../../helpers/prng.js';
import { withTestEngine } from '../../helpers/engines.js';
import { withCode } from '../../helpers/time.js';


function rejected(d: RateDecision): Extract<RateDecision, { kind: 'rejected' }> {
  assert.equal(d.kind, 'rejected', `expected a rejection, got ${JSON.stringify(d)}`);
  return d as Extract<RateDecision, { kind: 'rejected' }>;
}

describe('local absolute', () => {
  test('scenario 1: window 10 s, rate 5: 50 admitted, the 51st rejected until the window has passed', () =>
    withTestEngine((engine, clock) => {
      const absolute = engine.rateLimiter({ windowSeconds: 10 }).local.absolute;
      const t0 = clock.now();
      for (let i = 0; i < 50; i++) {
        clock.set(t0 + i * 20);
        assert.deepEqual(absolute.inc('api', 5), { kind: 'allowed', allowed: true }, `inc ${i + 1}`);
      }
      const elapsed = 49 * 20;
      const r = rejected(absolute.inc('api', 5));
      assert.equal(r.allowed, false);
      assert.equal(r.windowSeconds, 10);
      // The oldest group (100 ms wide) holds the first 5 incs; it leaves the window 10 s after it began.
      assert.ok(Math.abs(r.retryAfterMs - (10_000 - elapsed)) <= 100, `retryAfterMs ${r.retryAfterMs}`);
      assert.equal(r.remainingAfterWaiting, 5);
      assert.equal(absolute.count('api'), 50, 'a rejection counts nothing');
      clock.set(t0 + elapsed + r.retryAfterMs - 1);
      assert.equal(absolute.inc('api', 5).allowed, false, 'still rejected a millisecond before');
      clock.set(t0 + elapsed + r.retryAfterMs);
      assert.equal(absolute.inc('api', 5).allowed, true, 'admitted once the oldest group left');
      clock.set(t0 + 20_000);
      assert.equal(absolute.count('api'), 0);
      for (let i = 0; i < 50; i++) assert.equal(absolute.inc('api', 5).allowed, true);
    }));

  test('scenario 2 (FIX): limit 50, total 49, inc 10 is rejected; the increment size is part of the check', () =>
    withTestEngine((engine) => {
      const absolute = engine.rateLimiter({ windowSeconds: 10 }).local.absolute;
      for (let i = 0; i < 49; i++) absolute.inc('k', 5);
      const r = rejected(absolute.inc('k', 5, 10));
      assert.equal(r.remainingAfterWaiting, 50, 'everything counted now is in one group: all of it frees at once');
      assert.equal(absolute.count('k'), 49);
      assert.equal(absolute.inc('k', 5, 1).allowed, true, 'the 50th still fits');
      assert.equal(absolute.inc('k', 5, 51).allowed, false);
      const never = rejected(absolute.inc('fresh', 5, 51));
      assert.equal(never.retryAfterMs, Infinity, 'an increment above the limit can never pass');
      assert.equal(absolute.count('fresh'), 0);
    }));

  test('a rate given as limit / window means that limit exactly (no rounding error lets one more through or one fewer)', () =>
    withTestEngine((engine) => {
      const absolute = engine.rateLimiter({ windowSeconds: 3600, groupMs: 60_000 }).local.absolute;
      const rate = 250 / 3600;
      let admitted = 0;
      for (let i = 0; i < 300; i++) if (absolute.inc('k', rate).allowed) admitted++;
      assert.equal(admitted, 250);
    }));

  test('1000 callers of one turn on a limit of 100 admit exactly 100 (decisions are synchronous: no await between check and count)', () =>
    withTestEngine(async (engine, clock) => {
      const absolute = engine.rateLimiter({ windowSeconds: 1, groupMs: 100 }).local.absolute;
      const results = await Promise.all(Array.from({ length: 1000 }, async () => {
        await Promise.resolve();
        return absolute.inc(`shared`, 100, 1).allowed ? 1 : 0;
      }));
      assert.equal(results.reduce<number>((a, b) => a + b, 0), 100);
      clock.advance(1000);
      assert.equal(absolute.count('shared'), 0);
    }));

  test('a clock set back adds to the newest group and never reopens the window', () =>
    withTestEngine((engine, clock) => {
      const absolute = engine.rateLimiter({ windowSeconds: 1, groupMs: 100 }).local.absolute;
      for (let i = 0; i < 3; i++) absolute.inc('k', 3);
      clock.advance(-5000);
      assert.equal(absolute.inc('k', 3).allowed, false);
      assert.equal(absolute.count('k'), 3);
    }));

  test('a randomized run agrees with a model that keeps every event', () =>
    withTestEngine((engine, clock) => {
      const absolute = engine.rateLimiter({ windowSeconds: 2, groupMs: 250 }).local.absolute;
      const random = prng(7);
      const events: Array<{ t: number; n: number }> = [];
      const gm = 250;
      for (let i = 0; i < 5000; i++) {
        clock.advance(Math.floor(random() * 120));
        const now = clock.now();
        const n = 1 + Math.floor(random() * 3);
        const rate = 5;
        // Model: an event of group g counts while the current group is below g + G.
        const g = Math.floor(now / gm);
        const inWindow = events.filter((e) => Math.floor(e.t / gm) > g - 8).reduce((a, e) => a + e.n, 0);
        const want = inWindow + n <= rate * 2;
        const got = absolute.inc('m', rate, n).allowed;
        assert.equal(got, want, `step ${i}: ${inWindow} in the window, inc ${n}`);
        if (got) events.push({ t: now, n });
        assert.equal(absolute.count('m'), want ? inWindow + n : inWindow);
      }
    }));
});

describe('local suppressed', () => {
  test('scenario 3: hardLimitFactor 2, window 10 s, rate 1: allowed below soft, suppressed above, all declined from 20', () =>
    withTestEngine((engine) => {
      const suppressed = engine.rateLimiter({ windowSeconds: 10, hardLimitFactor: 2, random: prng(3) }).local.suppressed;
      for (let i = 0; i < 10; i++) assert.deepEqual(suppressed.inc('s', 1), { kind: 'allowed', allowed: true }, `call ${i + 1}`);
      let calls = 10;
      while (calls < 20) {
        const d = suppressed.inc('s', 1);
        calls++;
        assert.equal(d.kind, 'suppressed');
        if (d.kind === 'suppressed') assert.ok(d.suppressionFactor > 0 && d.suppressionFactor < 1, `sf ${d.suppressionFactor}`);
      }
      for (let i = 0; i < 10; i++) {
        const d = suppressed.inc('s', 1);
        assert.deepEqual(d, { kind: 'suppressed', allowed: false, suppressionFactor: 1 });
      }
      assert.equal(suppressed.count('s'), 30, 'declined calls still count');
    }));

  test('scenario 4: the suppression factor from the average and the last second', () =>
    withTestEngine((engine, clock) => {
      const suppressed = engine.rateLimiter({ windowSeconds: 10, hardLimitFactor: 10, random: prng(4) }).local.suppressed;
      const t0 = clock.now();
      for (let i = 0; i < 10; i++) suppressed.inc('a', 1);
      clock.set(t0 + 1000);
      for (let i = 0; i < 20; i++) suppressed.inc('a', 1);
      assert.ok(Math.abs(suppressed.suppressionFactor('a', 1) - (1 - 1 / 20)) < 1e-12, `${suppressed.suppressionFactor('a', 1)}`);

      const t1 = t0 + 60_000;
      for (let i = 0; i < 20; i++) {
        clock.set(t1 + i * 150);
        suppressed.inc('b', 1);
      }
      clock.set(t1 + 19 * 150 + 1200);
      assert.ok(Math.abs(suppressed.suppressionFactor('b', 1) - 0.5) < 1e-12, `${suppressed.suppressionFactor('b', 1)}`);
    }));

  test('scenario 5 (FIX): with hardLimitFactor 1, past the soft limit no call is reported allowed', () =>
    withTestEngine((engine) => {
      const suppressed = engine.rateLimiter({ windowSeconds: 10, hardLimitFactor: 1, random: () => 0 }).local.suppressed;
      for (let i = 0; i < 10; i++) assert.equal(suppressed.inc('h', 1).kind, 'allowed');
      for (let i = 0; i < 50; i++) {
        const d = suppressed.inc('h', 1);
        assert.equal(d.allowed, false, `call ${11 + i}`);
        assert.equal(d.kind, 'suppressed');
      }
    }));

  test('the hard limit is enforced at once, not one cache period late, and the increment is part of it', () =>
    withTestEngine((engine) => {
      const suppressed = engine.rateLimiter({ windowSeconds: 10, hardLimitFactor: 2, suppressionFactorCacheMs: 60_000, random: () => 0.999 }).local.suppressed;
      for (let i = 0; i < 19; i++) assert.equal(suppressed.inc('c', 1).allowed, true);
      // 19 + 2 would pass the hard limit (20): declined at once, though the cached factor says admit.
      assert.deepEqual(suppressed.inc('c', 1, 2), { kind: 'suppressed', allowed: false, suppressionFactor: 1 });
      // Declined calls count too: the window now holds 21, so nothing passes any more.
      assert.deepEqual(suppressed.inc('c', 1), { kind: 'suppressed', allowed: false, suppressionFactor: 1 });
      assert.equal(suppressed.count('c'), 22);
    }));

  test('admitted with probability 1 − sf: a draw below sf declines, at or above it admits', () =>
    withTestEngine((engine) => {
      let draw = 0;
      const suppressed = engine.rateLimiter({ windowSeconds: 10, hardLimitFactor: 100, random: () => draw }).local.suppressed;
      for (let i = 0; i < 10; i++) suppressed.inc('p', 1);
      draw = 0.999_999;
      const d = suppressed.inc('p', 1);
      assert.equal(d.kind, 'suppressed');
      if (d.kind !== 'suppressed') return;
      assert.equal(d.allowed, true);
      draw = d.suppressionFactor / 2;
      assert.equal(suppressed.inc('p', 1).allowed, false, 'the factor is cached: the same sf applies');
    }));
});

describe('edges', () => {
  test('suppressed: a large increment just under the soft limit is forecast, not admitted for certain', () =>
    withTestEngine((engine) => {
      const suppressed = engine.rateLimiter({ windowSeconds: 10, hardLimitFactor: 1000, random: () => 0.5 }).local.suppressed;
      for (let i = 0; i < 9; i++) suppressed.inc('n', 1);
      const d = suppressed.inc('n', 1, 1000);
      assert.equal(d.kind, 'suppressed');
      if (d.kind === 'suppressed') assert.ok(Math.abs(d.suppressionFactor - (1 - 1 / 1009)) < 1e-9, `sf ${d.suppressionFactor}`);
      assert.equal(d.allowed, false);
    }));

  test('totals stay exact: nothing that would take a window past 2^53 is counted', () =>
    withTestEngine((engine) => {
      const absolute = engine.rateLimiter({ windowSeconds: 1 }).local.absolute;
      const big = Number.MAX_SAFE_INTEGER - 5;
      assert.equal(absolute.inc('k', 1e300, big).allowed, true);
      assert.equal(absolute.inc('k', 1e300, 10).allowed, false);
      assert.equal(absolute.inc('k', 1e300, 5).allowed, true);
      assert.equal(absolute.count('k'), Number.MAX_SAFE_INTEGER);
      const suppressed = engine.rateLimiter({ windowSeconds: 1 }).local.suppressed;
      suppressed.inc('s', 1e300, big);
      assert.equal(suppressed.inc('s', 1e300, 10).allowed, false);
      assert.equal(suppressed.count('s'), big);
    }));

  test('options: null random is refused like any other null; inherited properties are not options', () =>
    withTestEngine((engine) => {
      assert.throws(() => engine.rateLimiter({ random: null } as never), withCode('TW_INVALID_ARGUMENT', 'options.random'));
      const inherited = Object.create({ windowSeconds: 0 }) as object;
      assert.equal(engine.rateLimiter(inherited).windowSeconds, 10);
    }));

  test('reads and cleanup after close throw TW_CLOSED', async () => {
    const engine = await createEngine({ clock: new TestClock() });
    const limiter = engine.rateLimiter();
    limiter.local.absolute.inc('k', 1);
    await engine.close();
    assert.throws(() => limiter.local.absolute.count('k'), withCode('TW_CLOSED'));
    assert.throws(() => limiter.local.suppressed.suppressionFactor('k', 1), withCode('TW_CLOSED'));
    assert.throws(() => limiter.cleanup(), withCode('TW_CLOSED'));
  });
});

describe('several windows at once', () => {
  test('10 a second and 15 an hour: all-or-nothing, and the refusal names the window that frees last', () =>
    withTestEngine((engine, clock) => {
      const limits = engine.rateLimits({ windows: { perSecond: { limit: 10, windowSeconds: 1 }, perHour: { limit: 15, windowSeconds: 3600, groupMs: 60_000 } } });
      assert.deepEqual(limits.windows, ['perSecond', 'perHour']);
      let admitted = 0;
      for (let i = 0; i < 12; i++) if (limits.inc('k').allowed) admitted++;
      assert.equal(admitted, 10);
      const r = rejected(limits.inc('k'));
      assert.equal(r.window, 'perSecond');
      assert.equal(limits.count('k', 'perHour'), 10, 'a refusal by one window counts in none');
      clock.advance(1000);
      admitted = 0;
      for (let i = 0; i < 12; i++) if (limits.inc('k').allowed) admitted++;
      assert.equal(admitted, 5);
      const hour = rejected(limits.inc('k'));
      assert.equal(hour.window, 'perHour');
      assert.equal(hour.windowSeconds, 3600);
      assert.equal(limits.count('k', 'perSecond'), 5);
      assert.equal(limits.count('k', 'perHour'), 15);
      const both = rejected(limits.inc('k', 20));
      assert.equal(both.retryAfterMs, Infinity);
    }));
});

describe('cleanup', () => {
  test('scenario 7 (local): staleAfterMs 1000 every 500 ms: a key idle 2 s is gone, and its memory is reused', () =>
    withTestEngine(async (engine, clock) => {
      const limiter = engine.rateLimiter({ windowSeconds: 1, staleAfterMs: 1000, cleanupIntervalMs: 500 });
      const absolute = limiter.local.absolute;
      absolute.inc('idle', 1);
      absolute.inc('busy', 1);
      for (let t = 0; t < 4; t++) {
        clock.advance(500);
        absolute.inc('busy', 1);
      }
      assert.equal(absolute.directory.get('idle'), undefined, 'the idle key was dropped by the timed cleanup');
      assert.notEqual(absolute.directory.get('busy'), undefined);
      // Memory is reused: keys come and go without the decision memory growing.
      const decisionBytes = async (): Promise<number> => (await engine.stats()).shards.reduce((sum, sh) => sum + sh.decisionBytes, 0);
      const rounds: number[] = [];
      for (let round = 0; round < 12; round++) {
        for (let i = 0; i < 4000; i++) absolute.inc(`k${round}-${i}`, 1);
        clock.advance(1500);
        limiter.cleanup(); // (the timed cleanup may have run already, on the clock's move)
        assert.equal(absolute.directory.size, 0, 'every key of the round was idle');
        rounds.push(await decisionBytes());
      }
      assert.ok(rounds.every((b) => b === rounds[0]), `decision memory stayed at ${rounds[0]} bytes: ${rounds.join(', ')}`);
      assert.ok(rounds[0]! < 12 * 4000 * 100, 'far less than 48,000 records would take without reuse');
      assert.equal(absolute.count('k0-0'), 0);
    }));
});

describe('bad input', () => {
  test('options, rate, n and keys are typed errors naming them, and a bad call creates nothing', () =>
    withTestEngine((engine) => {
      assert.throws(() => engine.rateLimiter({ windowSeconds: 0 }), withCode('TW_INVALID_ARGUMENT', 'options.windowSeconds'));
      assert.throws(() => engine.rateLimiter({ windowSeconds: 10, groupMs: 3 }), withCode('TW_INVALID_ARGUMENT', 'options.groupMs'));
      assert.throws(() => engine.rateLimiter({ windowSeconds: 100, groupMs: 1 }), withCode('TW_INVALID_ARGUMENT', 'options.groupMs'));
      assert.throws(() => engine.rateLimiter({ hardLimitFactor: 0.5 }), withCode('TW_INVALID_ARGUMENT', 'options.hardLimitFactor'));
      assert.throws(() => engine.rateLimiter({ nope: 1 } as never), withCode('TW_INVALID_ARGUMENT', 'options.nope'));
      assert.throws(() => engine.rateLimiter({ syncIntervalMs: 0 }), withCode('TW_INVALID_ARGUMENT', 'options.syncIntervalMs'));
      assert.throws(() => engine.rateLimiter({ onStoreError: 'ignore' as never }), withCode('TW_INVALID_ARGUMENT', 'options.onStoreError'));
      assert.throws(() => engine.rateLimiter({ onStoreError: 1 as never }), withCode('TW_INVALID_ARGUMENT', 'options.onStoreError'));
      assert.throws(() => engine.rateLimits({ windows: {} }), withCode('TW_INVALID_ARGUMENT', 'options.windows'));
      assert.throws(() => engine.rateLimits({ windows: { a: { limit: -1, windowSeconds: 1 } } }), withCode('TW_INVALID_ARGUMENT', 'options.windows.a.limit'));
      const absolute = engine.rateLimiter().local.absolute;
      for (const rate of [0, -1, NaN, Infinity, '5']) assert.throws(() => absolute.inc('k', rate as number), withCode('TW_INVALID_ARGUMENT', 'rate'));
      for (const n of [0, -1, 1.5, NaN, 2 ** 53]) assert.throws(() => absolute.inc('k', 1, n), withCode('TW_INVALID_ARGUMENT', '"n"'));
      for (const key of ['', 'a:b', 7, '\uD800']) assert.throws(() => absolute.inc(key as string, 1), withCode('TW_INVALID_KEY'));
      assert.equal(absolute.directory.get('k'), undefined, 'nothing was created by the bad calls');
      const bad = engine.rateLimiter({ random: () => 1 }).local.suppressed;
      assert.throws(() => bad.inc('k', 1), withCode('TW_INVALID_OPTION', 'options.random'));
    }));

  test('after close, decisions throw TW_CLOSED', async () => {
    const engine = await createEngine({ clock: new TestClock() });
    const limiter = engine.rateLimiter();
    limiter.local.absolute.inc('k', 1);
    await engine.close();
    assert.throws(() => limiter.local.absolute.inc('k', 1), withCode('TW_CLOSED'));
    assert.throws(() => limiter.link(), withCode('TW_CLOSED'));
  });
});
