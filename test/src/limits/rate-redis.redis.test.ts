/**
 * Sliding-window rate limits, Redis provider, on a private redis-server: the shared scenarios
 * (test/helpers/rate-redis-scenarios.ts), a killed server, and an engine without Redis.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { Redis } from 'ioredis';
import { createEngine, ErrorCode } from '../../../src/index.js';
import { expectError, freshPrefix, it, type Mode, open, privateRedis, until } from '../../helpers/counter-scenarios.js';
import { rateRedisScenarios } from '../../helpers/rate-redis-scenarios.js';
import { startRedisServer } from '../../../bench/redis-server.js';

describe('sliding-window rate limits in Redis', () => {
  let redis: Redis;
  let mode: Mode;
  privateRedis((r) => ({ redis, mode } = r));

  describe('scenarios', () => rateRedisScenarios(() => mode));

  it('the script calls name only keys of the decision\'s partition, each with the entity\'s hash tag', async () => {
    const e = await mode.engine({ prefix: freshPrefix('rlk') });
    const absolute = e.rateLimiter({ windowSeconds: 10 }).redis.absolute;
    const entity = absolute.sliding.entityOf('user1');
    assert.match(entity, /^\{[^}]+:rl:\d+\}:a10000\/100:user1$/);
    await absolute.inc('user1', 1);
    assert.equal(await redis.hget(entity, 't0'), '1');
  });
});

/** Syncs `hybrid` until nothing is pending (bounded): what it decided has reached Redis. */
async function syncedOut(hybrid: { sync(): Promise<void>; stats(): { pending: number } }, what: string): Promise<void> {
  await until(
    async () => {
      await hybrid.sync();
      return hybrid.stats().pending === 0;
    },
    5000,
    what,
    () => hybrid.stats(),
  );
}

describe('sliding-window rate limits in Redis: outages and embedded engines', () => {
  it('a killed redis-server: decisions reject with TW_REDIS_UNAVAILABLE; they work again after the restart', async () => {
    const server = await startRedisServer();
    try {
      const e = await open({ redis: server.url, prefix: freshPrefix('rlo'), redisCommandTimeoutMs: 200 });
      const absolute = e.rateLimiter({ windowSeconds: 10 }).redis.absolute;
      assert.equal((await absolute.inc('k', 1)).allowed, true);
      await server.kill();
      await expectError(() => absolute.inc('k', 1), ErrorCode.REDIS_UNAVAILABLE, 'Redis is down');
      await server.restart();
      let ok = false;
      for (let i = 0; i < 100 && !ok; i++) {
        ok = await absolute.inc('k2', 1).then(
          (d) => d.allowed,
          () => false,
        );
        if (!ok) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(ok, 'decisions work again once Redis is back');
    } finally {
      await server.stop();
    }
  });

  for (const strategy of ['absolute', 'suppressed'] as const) {
    it(`hybrid ${strategy} with a killed redis-server: it decides on the share it holds, then commits what it decided after the restart`, async () => {
      const server = await startRedisServer({ appendOnly: true }); // the restart keeps what was committed
      try {
        const e = await open({ redis: server.url, prefix: freshPrefix('rlhk'), redisCommandTimeoutMs: 200 });
        const limiter = e.rateLimiter({ windowSeconds: 60, hardLimitFactor: 1, random: () => 0.99 });
        const hybrid = limiter.hybrid[strategy];
        await until(() => hybrid.stats().instances === 1, 5000, 'the instance count is known');
        assert.equal(hybrid.inc('k', 100 / 60).allowed, true); // a key not synced yet: one event
        await hybrid.sync();
        for (let i = 0; i < 9; i++) assert.equal(hybrid.inc('k', 100 / 60).allowed, true);
        await hybrid.sync();
        await server.kill();
        let admitted = 0;
        for (let i = 0; i < 200; i++) if (hybrid.inc('k', 100 / 60).allowed) admitted++;
        assert.equal(admitted, 90, 'the share it held: the room it read (90) with one instance');
        await hybrid.sync();
        // Absolute: the 90 admitted; suppressed: every call, the 110 declined past the hard limit too.
        const pending = strategy === 'absolute' ? 90 : 200;
        assert.ok(hybrid.stats().failedSyncs > 0 && hybrid.stats().pending === pending, JSON.stringify(hybrid.stats()));
        await server.restart();
        await syncedOut(hybrid, 'what it decided is committed after the restart');
        if (strategy === 'absolute') {
          assert.equal((await limiter.redis.absolute.inc('k', 100 / 60)).allowed, false, 'Redis holds all 100');
        } else {
          assert.equal(limiter.hybrid.suppressed.count('k'), 210, 'Redis holds the 10 before, the 90 admitted and the 110 declined');
          assert.deepEqual(await limiter.redis.suppressed.inc('k', 100 / 60), { kind: 'suppressed', allowed: false, suppressionFactor: 1 });
        }
      } finally {
        await server.stop();
      }
    });
  }

  for (const strategy of ['absolute', 'suppressed'] as const) {
    it(`hybrid ${strategy}: a commit whose reply was lost (Redis hung by CLIENT PAUSE past the command timeout) lands exactly once`, async () => {
      const server = await startRedisServer();
      const raw = new Redis(server.url);
      try {
        const e = await open({ redis: server.url, prefix: freshPrefix('rlx'), redisCommandTimeoutMs: 200 });
        const limiter = e.rateLimiter({ windowSeconds: 60, random: () => 0.99 });
        const hybrid = limiter.hybrid[strategy];
        await until(() => hybrid.stats().instances === 1, 5000, 'the instance count is known');
        hybrid.inc('k', 100 / 60);
        await hybrid.sync();
        for (let i = 0; i < 10; i++) assert.equal(hybrid.inc('k', 100 / 60).allowed, true);
        // Writes (scripts included) wait for 1 s: the commit times out, then runs in Redis.
        await raw.client('PAUSE', 1000, 'WRITE');
        await hybrid.sync();
        assert.equal(hybrid.stats().pending, 10, `the 10 are in doubt: ${JSON.stringify(hybrid.stats())}`);
        const entity = limiter.redis[strategy].sliding.entityOf('k');
        await until(async () => (await raw.hget(entity, 't0')) === '11', 5000, 'the hung commit ran once the pause ended');
        for (let i = 0; i < 5; i++) assert.equal(hybrid.inc('k', 100 / 60).allowed, true);
        await syncedOut(hybrid, 'the commit in doubt is answered, then the new calls go');
        assert.equal(await raw.hget(entity, 't0'), '16', 'the commit sent again counted nothing: 1 + 10 + 5');
        await e.close();
        assert.deepEqual(await raw.keys('*:m:*'), [], 'close() dropped its commit markers');
      } finally {
        raw.disconnect();
        await server.stop();
      }
    });
  }

  it("onStoreError 'local' on the suppressed strategy (found by a probe): with Redis killed it decides on the share of what Redis last counted", async () => {
    const server = await startRedisServer();
    try {
      const e = await open({ redis: server.url, prefix: freshPrefix('rlsl'), redisCommandTimeoutMs: 200 });
      const limiter = e.rateLimiter({ windowSeconds: 60, hardLimitFactor: 1, onStoreError: 'local', random: () => 0.99 });
      await until(() => limiter.hybrid.suppressed.stats().instances === 1, 5000, 'the instance count is known');
      for (let i = 0; i < 5; i++) assert.equal((await limiter.redis.suppressed.inc('k', 100 / 60)).allowed, true);
      await server.kill();
      let admitted = 0;
      for (let i = 0; i < 200; i++) if ((await limiter.redis.suppressed.inc('k', 100 / 60)).allowed) admitted++;
      assert.equal(admitted, 95, 'the room Redis last left (it held 5 of 100), with one instance');
    } finally {
      await server.stop();
    }
  });

  it('hybrid (found by a probe): close() commits what waited behind a commit in doubt once Redis answers it', async () => {
    const server = await startRedisServer();
    const raw = new Redis(server.url);
    try {
      const e = await open({ redis: server.url, prefix: freshPrefix('rlxc'), redisCommandTimeoutMs: 200 });
      const limiter = e.rateLimiter({ windowSeconds: 60 });
      const hybrid = limiter.hybrid.absolute;
      await until(() => hybrid.stats().instances === 1, 5000, 'the instance count is known');
      const keys = Array.from({ length: 100 }, (_, i) => `c${i}`);
      for (const k of keys) hybrid.inc(k, 100 / 60);
      await hybrid.sync();
      for (const k of keys) hybrid.inc(k, 100 / 60);
      await raw.client('PAUSE', 1000, 'WRITE');
      await hybrid.sync(); // every partition's commit in doubt
      for (const k of keys) hybrid.inc(k, 100 / 60); // held back behind them
      assert.equal(hybrid.stats().pending, 200);
      await e.close(); // while Redis is still paused: it waits for the answers, then sends the rest
      const totals = await Promise.all(keys.map((k) => raw.hget(limiter.redis.absolute.sliding.entityOf(k), 't0')));
      assert.deepEqual(totals, keys.map(() => '3'), 'every call exactly once');
      assert.deepEqual(await raw.keys('*:m:*'), [], 'close() dropped its commit markers');
    } finally {
      raw.disconnect();
      await server.stop();
    }
  });

  it("onStoreError with a killed redis-server: 'fail-closed' rejects naming the error, 'fail-open' admits, 'local' decides on the share Redis last left and commits it after the restart", async () => {
    const server = await startRedisServer({ appendOnly: true });
    try {
      const prefix = freshPrefix('rlse');
      const e = await open({ redis: server.url, prefix, redisCommandTimeoutMs: 200 });
      const closed = e.rateLimiter({ windowSeconds: 60, onStoreError: 'fail-closed' }).redis;
      const openLimiter = e.rateLimiter({ windowSeconds: 60, onStoreError: 'fail-open' }).redis;
      const localLimiter = e.rateLimiter({ windowSeconds: 60, onStoreError: 'local' });
      await until(() => localLimiter.hybrid.absolute.stats().instances === 1, 5000, 'the instance count is known');
      // Before the outage Redis decides; 'local' learns the room it left (100 − 30).
      for (let i = 0; i < 30; i++) assert.equal((await localLimiter.redis.absolute.inc('k', 100 / 60)).allowed, true);
      await server.kill();
      const c = await closed.absolute.inc('k', 1);
      assert.equal(c.allowed, false);
      assert.equal((c as { storeError?: { code?: string } }).storeError?.code, ErrorCode.REDIS_UNAVAILABLE);
      assert.equal(c.kind === 'rejected' && c.retryAfterMs, 1000);
      assert.deepEqual(await closed.suppressed.inc('k', 1), c.kind === 'rejected' ? { ...c, storeError: (c as { storeError: unknown }).storeError } : c);
      assert.deepEqual(await openLimiter.absolute.inc('k', 1), { kind: 'allowed', allowed: true });
      assert.deepEqual(await openLimiter.suppressed.inc('k', 1), { kind: 'allowed', allowed: true });
      let admitted = 0;
      for (let i = 0; i < 100; i++) if ((await localLimiter.redis.absolute.inc('k', 100 / 60)).allowed) admitted++;
      assert.equal(admitted, 70, 'decided here on the room Redis left');
      await server.restart();
      const hybrid = localLimiter.hybrid.absolute;
      await syncedOut(hybrid, 'what was admitted locally is committed after the restart');
      await until(async () => !(await localLimiter.redis.absolute.inc('probe', 1).then(() => false, () => true)), 5000, 'Redis decides again');
      assert.equal((await localLimiter.redis.absolute.inc('k', 100 / 60)).allowed, false, 'Redis holds 30 + 70: the window is full');
    } finally {
      await server.stop();
    }
  });

  it("onStoreError 'local' on the suppressed strategy (found by a probe): committing after an outage keeps the declined counts sliding with the totals", async () => {
    const server = await startRedisServer({ appendOnly: true });
    try {
      const prefix = freshPrefix('rlsd');
      const e = await open({ redis: server.url, prefix, redisCommandTimeoutMs: 200 });
      const limiter = e.rateLimiter({ windowSeconds: 1, hardLimitFactor: 3, onStoreError: 'local', random: () => 0 });
      const suppressed = limiter.redis.suppressed;
      for (let i = 0; i < 20; i++) await suppressed.inc('s', 10); // soft 10: 10 allowed, then declined
      const entity = suppressed.sliding.entityOf('s');
      await new Promise((resolve) => setTimeout(resolve, 600));
      await suppressed.inc('s', 10); // a later group: the key outlives the first groups
      await server.kill();
      for (let i = 0; i < 3; i++) await suppressed.inc('s', 10); // decided here
      await new Promise((resolve) => setTimeout(resolve, 500)); // the first groups leave the window meanwhile
      await server.restart();
      // The fallback's commit lands first (it slides the window past the declined calls), then Redis decides.
      const fallback = limiter.hybrid.suppressed; // the suppressed strategy's fallback is its hybrid
      await syncedOut(fallback, 'the fallback commits');
      const raw = new Redis(server.url);
      try {
        const [t0, d0] = (await raw.hmget(entity, 't0', 'd0')).map(Number);
        assert.ok(d0! >= 0 && d0! <= t0!, `declined ${d0} ≤ total ${t0}`);
      } finally {
        raw.disconnect();
      }
    } finally {
      await server.stop();
    }
  });

  it('an engine without `redis`: the hybrid providers are the local ones', async () => {
    const e = await createEngine({ shards: 1 });
    try {
      const limiter = e.rateLimiter({ windowSeconds: 10 });
      for (let i = 0; i < 50; i++) assert.equal(limiter.hybrid.absolute.inc('k', 5).allowed, true);
      assert.equal(limiter.hybrid.absolute.inc('k', 5).allowed, false);
      assert.equal(limiter.local.absolute.count('k'), 50, 'on the local records');
      for (let i = 0; i < 50; i++) assert.equal(limiter.hybrid.suppressed.inc('s', 5).allowed, true);
      assert.equal(limiter.hybrid.suppressed.inc('s', 5).kind, 'suppressed');
      assert.equal(limiter.local.suppressed.count('s'), 51, 'the suppressed one too');
    } finally {
      await e.close();
    }
  });

  it('an engine without `redis`: the Redis provider rejects with TW_REDIS_UNAVAILABLE naming the option', async () => {
    const e = await createEngine({ shards: 1 });
    try {
      const limiter = e.rateLimiter();
      let message = '';
      await expectError(
        () =>
          limiter.redis.absolute.inc('k', 1).catch((err: Error) => {
            message = err.message;
            throw err;
          }),
        ErrorCode.REDIS_UNAVAILABLE,
        'embedded',
      );
      assert.match(message, /without the `redis` option/);
      assert.equal(await limiter.cleanupRedis(), 0);
    } finally {
      await e.close();
    }
  });
});
