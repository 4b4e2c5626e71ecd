/**
 * The middleware on a Redis-backed limiter, against a private redis-server: the Redis provider's remaining
 * count in the headers, shared by two engines; then the server is killed and the middleware fails closed
 * (503, Retry-After) or open (the request passes), as chosen.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RedisServer, startRedisServer } from '../../../bench/redis-server.js';
import { createEngine, type Engine, ratePolicy } from '../../../src/index.js';
import { FRAMEWORKS, get, serve } from '../../helpers/http.js';

let server: RedisServer;
let a: Engine;
let b: Engine;
before(async () => {
  server = await startRedisServer();
  a = await createEngine({ redis: server.url, prefix: 'http', shards: 1, redisCommandTimeoutMs: 500 });
  b = await createEngine({ redis: server.url, prefix: 'http', shards: 1, redisCommandTimeoutMs: 500 });
});
after(async () => {
  await Promise.allSettled([a?.close(), b?.close()]);
  await server?.stop();
});

describe('a Redis rate limit behind the middleware', () => {
  test('the suppressed hybrid: a new key waits for its first sync, then the soft limit holds (hardLimitFactor 1)', async () => {
    // An engine alone on its prefix: its share is the whole room (with a and b it would be half).
    const alone = await createEngine({ redis: server.url, prefix: 'http-alone', shards: 1, redisCommandTimeoutMs: 500 });
    const limiter = alone.rateLimiter({ windowSeconds: 60, hardLimitFactor: 1 });
    const s = await serve('express5', { policy: ratePolicy(limiter.hybrid.suppressed, { rate: 3 / 60, name: 'soft' }) });
    try {
      const answers = [];
      for (let i = 0; i < 4; i++) answers.push(await get(s.url, '198.51.100.77'));
      assert.deepEqual(answers.map((r) => r.status), [200, 200, 200, 429]);
      assert.deepEqual(answers.slice(0, 3).map((r) => r.headers.get('ratelimit')), ['"soft";r=2;t=60', '"soft";r=1;t=60', '"soft";r=0;t=60']);
      assert.equal(answers[3]!.headers.get('retry-after'), '1');
    } finally {
      await s.close();
      await alone.close();
    }
  });

  test('two engines share the quota; the headers carry the count Redis answered', async () => {
    const pa = ratePolicy(a.rateLimiter({ windowSeconds: 60 }).redis.absolute, { rate: 3 / 60, name: 'shared' });
    const pb = ratePolicy(b.rateLimiter({ windowSeconds: 60 }).redis.absolute, { rate: 3 / 60, name: 'shared' });
    const sa = await serve('express5', { policy: pa });
    const sb = await serve('fastify', { policy: pb });
    try {
      const r1 = await get(sa.url, '198.51.100.20');
      const r2 = await get(sb.url, '198.51.100.20');
      const r3 = await get(sa.url, '198.51.100.20');
      const r4 = await get(sb.url, '198.51.100.20');
      assert.deepEqual([r1, r2, r3, r4].map((r) => r.status), [200, 200, 200, 429]);
      assert.deepEqual([r1, r2, r3].map((r) => r.headers.get('ratelimit')), ['"shared";r=2;t=60', '"shared";r=1;t=60', '"shared";r=0;t=60']);
      assert.ok(Number(r4.headers.get('retry-after')) >= 59);
    } finally {
      await sa.close();
      await sb.close();
    }
  });

  test('Redis killed: fail-closed answers 503 with Retry-After, fail-open lets the request through (every framework)', { timeout: 60_000 }, async () => {
    const rl = a.rateLimiter({ windowSeconds: 10 });
    const policy = ratePolicy(rl.redis.absolute, { rate: 100 });
    const errors: unknown[] = [];
    const servers = await Promise.all(
      FRAMEWORKS.flatMap((f) => [serve(f, { policy, onError: (err: unknown) => errors.push(err) }), serve(f, { policy, onStoreError: 'fail-open' })]),
    );
    try {
      for (const s of servers) assert.equal((await get(s.url, '198.51.100.30')).status, 200, 'Redis up');
      await server.kill();
      for (let i = 0; i < servers.length; i += 2) {
        const closed = await get(servers[i]!.url, '198.51.100.30');
        assert.equal(closed.status, 503, `${FRAMEWORKS[i / 2]} fail-closed`);
        assert.equal(closed.headers.get('retry-after'), '1');
        const open = await get(servers[i + 1]!.url, '198.51.100.30');
        assert.equal(open.status, 200, `${FRAMEWORKS[i / 2]} fail-open`);
        assert.equal(open.body, 'ok');
      }
      assert.equal(errors.length, FRAMEWORKS.length);
      assert.ok(errors.every((e) => (e as { code?: string }).code?.startsWith('TW_REDIS') || (e as { code?: string }).code === 'TW_NOT_READY'), String(errors[0]));
    } finally {
      await Promise.all(servers.map((s) => s.close()));
      await server.restart();
    }
  });
});
