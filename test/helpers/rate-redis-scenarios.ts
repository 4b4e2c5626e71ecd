/**
 * The Redis provider of the sliding-window limiters: the rate-limits spec's scenarios 1–3, 5 and 7 (the
 * Redis part), exactness under concurrent callers and engines, several windows at once, TTLs on every key,
 * bad input, written once against a Redis {@link Mode} and run on a private redis-server
 * (test/src/limits/rate-redis.redis.test.ts) and on a Redis Cluster (test/src/counters/cluster.redis.test.ts).
 *
 * Decisions run on Redis TIME, which no test clock reaches: where a window must pass, windows are short
 * (1 s) and the test polls with a bounded deadline.
 */
import assert from 'node:assert/strict';
import { type Engine, ErrorCode, type RateDecision } from '../../src/index.js';
import { expectError, freshPrefix, it, type Mode, until } from './counter-scenarios.js';
import type { TestContext } from 'node:test';
import { burstInTurns, type HybridEngines, hybridEngines, hybridSuppressedScenarios } from './hybrid-suppressed-scenarios.js';

function rejected(d: RateDecision): Extract<RateDecision, { kind: 'rejected' }> {
  assert.equal(d.kind, 'rejected', `expected a rejection, got ${JSON.stringify(d)}`);
  return d as Extract<RateDecision, { kind: 'rejected' }>;
}

/** The prefix an engine of `mode` was opened on. */
const rlKeys = async (mode: Mode, prefix: string): Promise<string[]> => (await mode.keysOf(prefix)).filter((k) => k.includes(':rl:'));

export function rateRedisScenarios(mode: () => Mode): void {
  const engine = (prefix = freshPrefix('rl'), options = {}): Promise<Engine> => mode().engine({ prefix, ...options });

  it('scenario 1 (window 1 s, rate 50): 50 admitted, the 51st rejected with its wait; admitted again once the window passed', async () => {
    const e = await engine();
    const absolute = e.rateLimiter({ windowSeconds: 1 }).redis.absolute;
    const decisions = [];
    for (let i = 0; i < 50; i++) decisions.push(await absolute.inc('api', 50));
    assert.deepEqual(decisions.filter((d) => !d.allowed), [], 'the first 50 are admitted');
    const r = rejected(await absolute.inc('api', 50));
    assert.equal(r.windowSeconds, 1);
    assert.ok(r.retryAfterMs > 0 && r.retryAfterMs <= 1000, `retryAfterMs ${r.retryAfterMs}`);
    assert.ok(r.remainingAfterWaiting >= 1 && r.remainingAfterWaiting <= 50, `remainingAfterWaiting ${r.remainingAfterWaiting}`);
    await until(async () => (await absolute.inc('api', 50)).allowed, 3000, 'admitted again once the oldest groups left');
  });

  it('scenario 2: limit 50, total 49, inc 10 → rejected (the increment is part of the check); inc 1 → admitted', async () => {
    const e = await engine();
    const absolute = e.rateLimiter({ windowSeconds: 10 }).redis.absolute;
    assert.equal((await absolute.inc('k', 5, 49)).allowed, true);
    const r = rejected(await absolute.inc('k', 5, 10));
    assert.equal(r.remainingAfterWaiting, 50, 'once the only group leaves, the whole limit is free');
    assert.ok(r.retryAfterMs > 9000 && r.retryAfterMs <= 10_000, `retryAfterMs ${r.retryAfterMs}`);
    assert.equal((await absolute.inc('k', 5, 1)).allowed, true);
    assert.equal((await absolute.inc('k', 5, 1)).allowed, false, 'exactly 50');
    const big = rejected(await absolute.inc('other', 5, 51));
    assert.equal(big.retryAfterMs, Infinity, 'an increment larger than the limit never fits');
  });

  it('scenario 3 (hardLimitFactor 2, window 10 s, rate 1): allowed below soft, suppressed with 0 < sf < 1 above it, sf 1 from the hard limit on', async () => {
    const e = await engine();
    const suppressed = e.rateLimiter({ windowSeconds: 10, hardLimitFactor: 2, random: () => 0.5 }).redis.suppressed;
    const d: RateDecision[] = [];
    for (let i = 0; i < 25; i++) d.push(await suppressed.inc('s', 1));
    assert.deepEqual(d.slice(0, 10), Array(10).fill({ kind: 'allowed', allowed: true }), 'the first 10 are below the soft limit');
    for (const x of d.slice(10, 20)) {
      assert.equal(x.kind, 'suppressed');
      const sf = (x as { suppressionFactor: number }).suppressionFactor;
      assert.ok(sf > 0 && sf < 1, `0 < sf < 1 between soft and hard: ${sf}`);
      assert.equal(x.allowed, 0.5 >= sf, 'admitted when the draw is at least sf');
    }
    for (const x of d.slice(20)) assert.deepEqual(x, { kind: 'suppressed', allowed: false, suppressionFactor: 1 }, 'past the hard limit at once');
  });

  it('scenario 5: suppressed with hardLimitFactor 1: past the soft limit a declined call is never reported allowed', async () => {
    const e = await engine();
    const suppressed = e.rateLimiter({ windowSeconds: 10, hardLimitFactor: 1, random: () => 0.99 }).redis.suppressed;
    let admitted = 0;
    for (let i = 0; i < 30; i++) {
      const d = await suppressed.inc('s', 1);
      if (d.allowed) admitted++;
      if (i >= 10) assert.deepEqual(d, { kind: 'suppressed', allowed: false, suppressionFactor: 1 });
    }
    assert.equal(admitted, 10);
  });

  it('1000 concurrent decisions on a limit of 100 admit exactly 100, in far fewer script calls; two engines on one prefix share the limit', async () => {
    const prefix = freshPrefix('rlc');
    const [a, b] = [await engine(prefix), await engine(prefix)];
    const la = a.rateLimiter({ windowSeconds: 60 });
    const lb = b.rateLimiter({ windowSeconds: 60 });
    const decided = await Promise.all(Array.from({ length: 1000 }, (_, i) => (i % 2 === 0 ? la : lb).redis.absolute.inc('hot', 100 / 60)));
    assert.equal(decided.filter((d) => d.allowed).length, 100);
    const calls = la.redis.absolute.sliding.calls + lb.redis.absolute.sliding.calls;
    assert.ok(calls <= 20, `decisions issued together share script calls: ${calls} calls for 1000`);
  });

  it('several windows in one Redis call, all-or-nothing: the window that refuses is named, the others count nothing', async () => {
    const e = await engine();
    const limits = e.rateLimits({ windows: { perSecond: { limit: 3, windowSeconds: 1 }, perMinute: { limit: 5, windowSeconds: 60 } } });
    const d: RateDecision[] = [];
    for (let i = 0; i < 4; i++) d.push(await limits.redis.inc('u'));
    assert.deepEqual(d.map((x) => x.allowed), [true, true, true, false]);
    assert.equal(rejected(d[3]!).window, 'perSecond');
    assert.equal(rejected(d[3]!).windowSeconds, 1);
    // The refused call counted nothing in perMinute: 2 more fit there once the second has passed.
    await until(async () => (await limits.redis.inc('u')).allowed, 3000, 'perSecond frees');
    assert.equal((await limits.redis.inc('u')).allowed, true, '5th of the minute');
    const r = rejected(await limits.redis.inc('u'));
    assert.equal(r.window, 'perMinute');
  });

  it('every key the provider writes carries a TTL of at most the window and a group', async () => {
    const prefix = freshPrefix('rlt');
    const e = await engine(prefix);
    const limiter = e.rateLimiter({ windowSeconds: 2, groupMs: 100 });
    for (let i = 0; i < 20; i++) await limiter.redis.absolute.inc(`k${i}`, 1);
    await limiter.redis.suppressed.inc('s', 1);
    await e.rateLimits({ windows: { w: { limit: 1, windowSeconds: 3 } } }).redis.inc('m', 2); // refused: n > limit
    const keys = await rlKeys(mode(), prefix);
    assert.ok(keys.length >= 20, `keys written: ${keys.length}`);
    for (const k of keys) {
      const ttl = await mode().pttl(k);
      assert.ok(ttl > 0 && ttl <= 3100, `${k}: PTTL ${ttl}`);
    }
  });

  it('scenario 7 (staleAfterMs 1000, cleanup every 500 ms): a key idle 2 s is gone from Redis; a key in use stays', async () => {
    const prefix = freshPrefix('rl7');
    const e = await engine(prefix);
    const limiter = e.rateLimiter({ windowSeconds: 60, staleAfterMs: 1000, cleanupIntervalMs: 500 });
    assert.equal((await limiter.redis.absolute.inc('idle', 1)).allowed, true);
    const idleKey = limiter.redis.absolute.sliding.entityOf('idle');
    const busyKey = limiter.redis.absolute.sliding.entityOf('busy');
    assert.ok((await rlKeys(mode(), prefix)).includes(idleKey));
    const start = Date.now();
    await until(
      async () => {
        await limiter.redis.absolute.inc('busy', 1000);
        return !(await rlKeys(mode(), prefix)).includes(idleKey);
      },
      6000,
      'the idle key is deleted by the cleanup',
    );
    assert.ok(Date.now() - start >= 900, 'not before it was idle staleAfterMs');
    assert.ok((await rlKeys(mode(), prefix)).includes(busyKey), 'the key in use is kept');
    assert.equal(await limiter.cleanupRedis(), 0, 'nothing else is stale');
  });

  it('bad keys, rates and increments reject with typed errors naming the argument, and nothing reaches Redis', async () => {
    const prefix = freshPrefix('rlv');
    const e = await engine(prefix);
    const limiter = e.rateLimiter({ windowSeconds: 10 });
    await expectError(() => limiter.redis.absolute.inc('a:b', 1), ErrorCode.INVALID_KEY, 'a key with ":"');
    await expectError(() => limiter.redis.absolute.inc('k', 0), ErrorCode.INVALID_ARGUMENT, 'rate 0', RangeError);
    await expectError(() => limiter.redis.absolute.inc('k', 1, 1.5), ErrorCode.INVALID_ARGUMENT, 'n 1.5', RangeError);
    await expectError(() => limiter.redis.suppressed.inc('k', Number.NaN), ErrorCode.INVALID_ARGUMENT, 'rate NaN', RangeError);
    await expectError(() => e.rateLimits({ windows: { w: { limit: 1, windowSeconds: 1 } } }).redis.inc('k', 0), ErrorCode.INVALID_ARGUMENT, 'n 0', RangeError);
    assert.deepEqual(await rlKeys(mode(), prefix), []);
  });

  it('close() waits for the decisions in flight; later ones reject with TW_CLOSED', async () => {
    const e = await engine();
    const absolute = e.rateLimiter({ windowSeconds: 10 }).redis.absolute;
    const inFlight = Array.from({ length: 200 }, (_, i) => absolute.inc(`c${i % 20}`, 1));
    await e.close();
    const settled = await Promise.allSettled(inFlight);
    assert.deepEqual(settled.filter((s) => s.status === 'rejected'), [], 'every decision issued before close() was answered');
    assert.equal(settled.filter((s) => s.status === 'fulfilled' && s.value.allowed).length, 200);
    await expectError(() => absolute.inc('k', 1), ErrorCode.CLOSED, 'after close');
  });

  const hybrids = (count: number, options = {}): Promise<HybridEngines> => hybridEngines(mode(), count, options);

  it('hybrid, scenario 2: limit 50, total 49, inc 10 → rejected; inc 1 → admitted; what it admitted reaches Redis', async () => {
    const [{ limiter }] = await hybrids(1);
    const hybrid = limiter!.hybrid.absolute;
    // A key this instance has not synced: one event, then its share once a sync read Redis.
    assert.equal(hybrid.inc('k', 50 / 60).allowed, true);
    assert.equal(rejected(hybrid.inc('k', 50 / 60)).retryAfterMs <= 10, true, 'the rest waits for the first sync');
    await hybrid.sync();
    assert.equal(hybrid.inc('k', 50 / 60, 48).allowed, true);
    const r = rejected(hybrid.inc('k', 50 / 60, 10));
    assert.equal(r.windowSeconds, 60);
    assert.equal(hybrid.inc('k', 50 / 60, 1).allowed, true);
    assert.equal(hybrid.inc('k', 50 / 60, 1).allowed, false, 'exactly 50');
    await hybrid.sync();
    assert.equal(hybrid.stats().pending, 0, 'committed');
    // The Redis provider of the same window sees the 50.
    assert.equal((await limiter!.redis.absolute.inc('k', 50 / 60, 1)).allowed, false);
    assert.equal((await limiter!.redis.absolute.inc('fresh', 50 / 60, 50)).allowed, true);
    assert.equal(rejected(hybrid.inc('other', 50 / 60, 51)).retryAfterMs, Infinity, 'larger than the limit: never');
  });

  for (const n of [2, 4]) {
    it(`hybrid, scenario 6 (${n} instances, limit 100, a simultaneous burst): admitted ≤ 100 + (N − 1) × ⌈100 / N⌉ + N`, async (t: TestContext) => {
      const instances = await hybrids(n);
      // Every instance bursts, in turns, across several syncs.
      const admitted = await burstInTurns(instances, 'absolute');
      const bound = 100 + (n - 1) * Math.ceil(100 / n) + n;
      t.diagnostic(`${n} instances admitted ${admitted} (limit 100, documented bound ${bound}; the seed's worst case ${n * 100})`);
      assert.ok(admitted >= 100, `the limit is reached: ${admitted}`);
      assert.ok(admitted <= bound, `admitted ${admitted} ≤ ${bound}`);
      // Redis holds every admission: the window is full for the Redis provider too.
      assert.equal((await instances[0]!.limiter.redis.absolute.inc('burst', 100 / 60)).allowed, false);
    });
  }

  it('hybrid: close() commits what was admitted and not synced yet', async () => {
    const [a, b] = await hybrids(2, { syncIntervalMs: 60_000 });
    const hybrid = a!.limiter.hybrid.absolute;
    assert.equal(hybrid.inc('k', 100 / 60).allowed, true);
    await hybrid.sync(); // 1 committed; the share is ⌈99 / 2⌉
    for (let i = 0; i < 10; i++) assert.equal(hybrid.inc('k', 100 / 60).allowed, true);
    assert.equal(hybrid.stats().pending, 10);
    await a!.engine.close();
    // 11 of 100 are counted in Redis: 89 more fit, not 90.
    assert.equal((await b!.limiter.redis.absolute.inc('k', 100 / 60, 90)).allowed, false);
    assert.equal((await b!.limiter.redis.absolute.inc('k', 100 / 60, 89)).allowed, true);
  });

  it('hybrid (found by a probe): a fractional limit admits its whole part; an increment above any share is never admitted; a refusal reports the room Redis did', async () => {
    const [{ limiter }] = await hybrids(1, { windowSeconds: 15 });
    const hybrid = limiter!.hybrid.absolute;
    let admitted = 0;
    for (let i = 0; i < 5; i++) {
      if (hybrid.inc('frac', 0.1).allowed) admitted++; // limit 1.5
      await hybrid.sync();
    }
    assert.equal(admitted, 1);
    const [x, y] = await hybrids(2, { windowSeconds: 60 });
    x!.limiter.hybrid.absolute.inc('big', 10 / 60);
    await x!.limiter.hybrid.absolute.sync();
    const r = rejected(x!.limiter.hybrid.absolute.inc('big', 10 / 60, 6));
    assert.equal(r.retryAfterMs, Infinity, 'limit 10 over 2 instances: a share holds 5 at most, never 6');
    assert.equal(r.remainingAfterWaiting, 10);
    assert.equal((await y!.limiter.redis.absolute.inc('big', 10 / 60, 6)).allowed, true, 'the Redis provider admits it');
    await x!.limiter.hybrid.absolute.sync();
    const full = rejected(x!.limiter.hybrid.absolute.inc('big', 10 / 60, 4));
    assert.equal(full.remainingAfterWaiting, 3, 'the room Redis reported (10 − 7), not the increment');
  });

  it('hybrid (found by a probe): a key forgotten when idle, or met by a second limiter of the same window, gets no fresh share', async () => {
    const [{ engine: e, limiter }] = await hybrids(1, { staleAfterMs: 200 });
    const hybrid = limiter!.hybrid.absolute;
    assert.equal(e.rateLimiter({ windowSeconds: 60 }).hybrid.absolute, hybrid, 'limiters of one window share the hybrid');
    hybrid.inc('k', 100 / 60);
    await hybrid.sync();
    let admitted = 1;
    for (let i = 0; i < 200; i++) if (hybrid.inc('k', 100 / 60).allowed) admitted++;
    await hybrid.sync();
    assert.equal(admitted, 100);
    // Idle past staleAfterMs (shorter than the window), through several syncs.
    const idleUntil = Date.now() + 400;
    while (Date.now() < idleUntil) {
      await hybrid.sync();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (let i = 0; i < 50; i++) {
      assert.equal(hybrid.inc('k', 100 / 60).allowed, false, 'the window is full in Redis');
      await hybrid.sync();
    }
  });

  it('hybrid (found by a probe): calls of two rates on one key each get their own limit; a lower rate never starves a higher one', async () => {
    const [{ limiter }] = await hybrids(1);
    const hybrid = limiter!.hybrid.absolute;
    hybrid.inc('mix', 100 / 60);
    await hybrid.sync();
    let low = 0;
    let high = 1;
    for (let round = 0; round < 300; round++) {
      if (hybrid.inc('mix', 10 / 60).allowed) low++;
      if (hybrid.inc('mix', 100 / 60).allowed) high++;
      if (round % 5 === 4) await hybrid.sync();
    }
    await hybrid.sync();
    assert.ok(low <= 10, `calls at limit 10 admitted only while the total was under 10: ${low}`);
    assert.ok(low + high <= 101 && low + high >= 95, `the limit-100 calls fill the window: ${low} + ${high}`);
  });

  it('a burst of 100k decisions in one tick is answered in full and exactly (in calls of at most 500, one per partition in Redis at a time)', async () => {
    // A command timeout that a loaded CI machine cannot reach; a window no burst outlasts.
    const e = await engine(freshPrefix('rlb'), { redisCommandTimeoutMs: 5000 });
    const absolute = e.rateLimiter({ windowSeconds: 60 }).redis.absolute;
    const keys = Array.from({ length: 5000 }, (_, i) => `b${i}`);
    const decided = await Promise.allSettled(Array.from({ length: 100_000 }, (_, i) => absolute.inc(keys[i % keys.length]!, 10 / 60)));
    const failed = decided.filter((d) => d.status === 'rejected');
    assert.equal(failed.length, 0, `failed: ${failed.length}, e.g. ${String((failed[0] as PromiseRejectedResult | undefined)?.reason)} (${String(((failed[0] as PromiseRejectedResult | undefined)?.reason as { cause?: unknown } | undefined)?.cause)})`);
    const admitted = decided.filter((d) => d.status === 'fulfilled' && d.value.allowed).length;
    assert.equal(admitted, 5000 * 10, 'each key admits exactly its limit of 10');
    const calls = absolute.sliding.calls;
    assert.ok(calls >= 200 && calls <= 400, `100k decisions in calls of at most 500: ${calls} calls`);
  });

  hybridSuppressedScenarios(mode);
}
