/**
 * The hybrid provider of the suppressed strategy (`rateLimiter().hybrid.suppressed`): the rate-limits
 * spec's scenarios 3 and 5 decided locally between syncs, what it commits reaching the Redis provider's
 * keys (admitted and declined), the hard limit split between instances, and bad input. Run by
 * rateRedisScenarios (./rate-redis-scenarios.ts) on a private redis-server and on a Redis Cluster; also the
 * engines both hybrid providers' scenarios start.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { type Engine, ErrorCode, type RateDecision } from '../../src/index.js';
import { expectError, freshPrefix, it, type Mode, until } from './counter-scenarios.js';

export type HybridEngines = Array<{ engine: Engine; limiter: ReturnType<Engine['rateLimiter']> }>;

/**
 * `count` engines of `mode` on one prefix (a fresh one unless given) with their own instance ids, each with a rate limiter
 * (windowSeconds 60 unless `options` say otherwise) whose hybrids know the instance count.
 */
export async function hybridEngines(mode: Mode, count: number, options = {}, prefix = freshPrefix('rlh')): Promise<HybridEngines> {
  const out: Engine[] = [];
  for (let i = 0; i < count; i++) out.push(await mode.engine({ prefix, instanceId: `h${i}` }));
  await until(async () => (await out[0]!.instances()).count === count, 5000, `${count} instances are live`);
  const limiters = out.map((e) => ({ engine: e, limiter: e.rateLimiter({ windowSeconds: 60, ...options }) }));
  // Each has read the instance count once its first sync ran.
  const known = (l: HybridEngines[number]): boolean => l.limiter.hybrid.absolute.stats().instances === count && l.limiter.hybrid.suppressed.stats().instances === count;
  await until(() => limiters.every(known), 5000, 'the hybrids know the instance count');
  return limiters;
}

/**
 * Every instance decides 10 calls of `strategy`'s hybrid on one key, in turns, 40 rounds a few ms apart (so
 * across several syncs), then syncs; returns how many were admitted (limit 100 in a minute).
 */
export async function burstInTurns(instances: HybridEngines, strategy: 'absolute' | 'suppressed'): Promise<number> {
  let admitted = 0;
  for (let round = 0; round < 40; round++) {
    for (const { limiter } of instances) for (let i = 0; i < 10; i++) if (limiter.hybrid[strategy].inc('burst', 100 / 60).allowed) admitted++;
    await new Promise((resolve) => setTimeout(resolve, 3));
  }
  await Promise.all(instances.map(({ limiter }) => limiter.hybrid[strategy].sync()));
  return admitted;
}

const ALLOWED = { kind: 'allowed', allowed: true };
const DECLINED = { kind: 'suppressed', allowed: false, suppressionFactor: 1 };

export function hybridSuppressedScenarios(mode: () => Mode): void {
  it('hybrid suppressed, scenario 3 (hardLimitFactor 2, window 10 s, rate 1): allowed below soft, 0 < sf < 1 above it, sf 1 from the hard limit on; every call reaches Redis', async () => {
    const [{ limiter }] = await hybridEngines(mode(), 1, { windowSeconds: 10, hardLimitFactor: 2, random: () => 0.5 });
    const hybrid = limiter!.hybrid.suppressed;
    const d: RateDecision[] = [hybrid.inc('s', 1)];
    // A key not synced here yet: one call, then the share its first sync grants (the refusal while the
    // share is spent is this instance's own: not counted).
    assert.deepEqual(hybrid.inc('s', 1), DECLINED, 'the rest waits for the first sync');
    await hybrid.sync();
    for (let i = 1; i < 25; i++) d.push(hybrid.inc('s', 1));
    assert.deepEqual(d.slice(0, 10), Array(10).fill(ALLOWED), 'below the soft limit (the call before the sync counts)');
    let admitted = 10;
    for (const x of d.slice(10, 20)) {
      assert.equal(x.kind, 'suppressed', JSON.stringify(x));
      const sf = (x as { suppressionFactor: number }).suppressionFactor;
      assert.ok(sf > 0 && sf < 1, `0 < sf < 1 between soft and hard: ${sf}`);
      assert.equal(x.allowed, 0.5 >= sf, 'admitted when the draw is at least sf');
      if (x.allowed) admitted++;
    }
    for (const x of d.slice(20)) assert.deepEqual(x, DECLINED, 'past the hard limit at once');
    await hybrid.sync();
    assert.equal(hybrid.stats().pending, 0, 'committed');
    assert.equal(hybrid.count('s'), 25, 'the window in Redis holds every call, admitted or declined');
    // The Redis provider of the same window sees them: at the hard limit, it declines too.
    assert.deepEqual(await limiter!.redis.suppressed.inc('s', 1), DECLINED);
    assert.ok(admitted <= 20, `admitted ${admitted} ≤ the hard limit`);
  });

  it('hybrid suppressed, scenario 5 (hardLimitFactor 1): exactly the soft limit admitted, and past it a declined call is never reported allowed', async () => {
    const [{ limiter }] = await hybridEngines(mode(), 1, { windowSeconds: 10, hardLimitFactor: 1, random: () => 0.99 });
    const hybrid = limiter!.hybrid.suppressed;
    let admitted = 0;
    for (let i = 0; i < 30; i++) {
      const d = hybrid.inc('s', 1);
      if (d.allowed) admitted++;
      else assert.deepEqual(d, DECLINED);
      if (i % 5 === 0) await hybrid.sync();
    }
    assert.equal(admitted, 10);
    // The increment is part of the check: 9 in, 2 more do not fit under 10; declined, they count in the
    // window as the strategy says, so one more does not fit either.
    assert.equal(hybrid.inc('n', 1).allowed, true);
    await hybrid.sync();
    assert.equal(hybrid.inc('n', 1, 8).allowed, true);
    assert.deepEqual(hybrid.inc('n', 1, 2), DECLINED);
    assert.deepEqual(hybrid.inc('n', 1, 1), DECLINED, 'the declined 2 count: 9 + 2 + 1 > 10');
    await hybrid.sync();
    assert.equal(hybrid.count('n'), 12, 'Redis counted the declined calls too');
  });

  for (const n of [2, 4]) {
    it(`hybrid suppressed, ${n} instances (hardLimitFactor 1, limit 100, bursts in turns): admitted ≤ 100 + (N − 1) × ⌈100 / N⌉ + N`, async (t: TestContext) => {
      const instances = await hybridEngines(mode(), n, { hardLimitFactor: 1, random: () => 0.99 });
      const admitted = await burstInTurns(instances, 'suppressed');
      const bound = 100 + (n - 1) * Math.ceil(100 / n) + n;
      t.diagnostic(`${n} instances admitted ${admitted} of ${40 * 10 * n} calls (limit 100, documented bound ${bound})`);
      assert.ok(admitted >= 100, `the limit is reached: ${admitted}`);
      assert.ok(admitted <= bound, `admitted ${admitted} ≤ ${bound}`);
      assert.deepEqual(await instances[0]!.limiter.redis.suppressed.inc('burst', 100 / 60), DECLINED, 'Redis holds every call');
    });
  }

  for (const strategy of ['absolute', 'suppressed'] as const) {
    it(`hybrid ${strategy} (found by a probe): a key idle while an instance joins gets its share split by the new count`, async () => {
      const opts = { hardLimitFactor: 1, random: () => 0.99 };
      const prefix = freshPrefix('rlj');
      const [a] = await hybridEngines(mode(), 1, opts, prefix);
      const ha = a!.limiter.hybrid[strategy];
      ha.inc('k', 100 / 60);
      await ha.sync(); // alone: A's share is the whole room
      const b = await mode().engine({ prefix, instanceId: 'late' });
      const hb = b.rateLimiter({ windowSeconds: 60, ...opts }).hybrid[strategy];
      await until(() => ha.stats().instances === 2 && hb.stats().instances === 2, 5000, 'both count 2 instances');
      let admitted = 1;
      if (hb.inc('k', 100 / 60).allowed) admitted++;
      await hb.sync();
      for (let round = 0; round < 20; round++) {
        for (let i = 0; i < 20; i++) if (hb.inc('k', 100 / 60).allowed) admitted++;
        await hb.sync();
      }
      for (let i = 0; i < 200; i++) if (ha.inc('k', 100 / 60).allowed) admitted++;
      const bound = 100 + Math.ceil(100 / 2) + 2;
      assert.ok(admitted <= bound, `admitted ${admitted} ≤ ${bound} (A kept the share of one instance: up to 199)`);
    });
  }

  for (const strategy of ['absolute', 'suppressed'] as const) {
    it(`hybrid ${strategy} (found by a probe): a key idle while the others leave does not grow its share from its old total`, async () => {
      const opts = { hardLimitFactor: 1, random: () => 0.99 };
      const [a, b] = await hybridEngines(mode(), 2, opts);
      const ha = a!.limiter.hybrid[strategy];
      const hb = b!.limiter.hybrid[strategy];
      let admitted = 0;
      if (ha.inc('k', 100 / 60).allowed) admitted++;
      await ha.sync(); // A's share: half the room
      for (let round = 0; round < 30; round++) {
        for (let i = 0; i < 10; i++) if (hb.inc('k', 100 / 60).allowed) admitted++;
        await hb.sync();
      }
      await b!.engine.close();
      await until(() => ha.stats().instances === 1, 10_000, 'A counts itself alone');
      for (let i = 0; i < 300; i++) if (ha.inc('k', 100 / 60).allowed) admitted++;
      const bound = 100 + Math.ceil(100 / 2) + 2;
      assert.ok(admitted <= bound, `admitted ${admitted} ≤ ${bound} (A's share grown from its stale total: up to 199)`);
    });
  }

  it('hybrid suppressed (found by a probe): limiters of one window share its shares whatever their factor; each decides by its own', async () => {
    const [{ engine }] = await hybridEngines(mode(), 1);
    const one = engine.rateLimiter({ windowSeconds: 60, hardLimitFactor: 1, random: () => 0.99 }).hybrid.suppressed;
    const other = engine.rateLimiter({ windowSeconds: 60, hardLimitFactor: 1.01, suppressionFactorCacheMs: 101, random: () => 0.99 }).hybrid.suppressed;
    assert.equal(one.shared, other.shared, 'one hybrid of the window');
    let admitted = 0;
    for (let round = 0; round < 30; round++) {
      for (let i = 0; i < 5; i++) {
        if (one.inc('k', 100 / 60).allowed) admitted++;
        if (other.inc('k', 100 / 60).allowed) admitted++;
      }
      await one.sync();
    }
    assert.ok(admitted >= 100 && admitted <= 102, `one instance admits its hard limit (100 or 101), not one per limiter: ${admitted}`);
  });

  it('hybrid suppressed (found by a probe): a sync more than a second old says nothing of the last second', async () => {
    const [{ limiter }] = await hybridEngines(mode(), 1, { windowSeconds: 10, hardLimitFactor: 10, random: () => 0.5 });
    const hybrid = limiter!.hybrid.suppressed;
    hybrid.inc('s', 1);
    await hybrid.sync();
    for (let i = 0; i < 19; i++) hybrid.inc('s', 1);
    await hybrid.sync(); // 20 calls, all in the last second
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const d = hybrid.inc('s', 1) as { suppressionFactor: number };
    // perceived = max(21 / 10 s, the last second's 1) = 2.1/s → sf = 1 − 1 / 2.1 (the stale last second gave 0.95)
    assert.ok(Math.abs(d.suppressionFactor - (1 - 1 / 2.1)) < 0.01, `sf ${d.suppressionFactor}`);
  });

  it('hybrid suppressed: bad keys, rates and increments throw typed errors naming the argument; nothing is counted', async () => {
    const [{ limiter }] = await hybridEngines(mode(), 1);
    const hybrid = limiter!.hybrid.suppressed;
    await expectError(async () => hybrid.inc('', 1), ErrorCode.INVALID_KEY, 'an empty key');
    await expectError(async () => hybrid.inc('k', 0), ErrorCode.INVALID_ARGUMENT, 'rate 0');
    await expectError(async () => hybrid.inc('k', 1, 1.5), ErrorCode.INVALID_ARGUMENT, 'a fractional increment');
    assert.equal(hybrid.count('k'), 0);
    assert.equal(hybrid.stats().pending, 0);
  });
}
