/**
 * Strict and lax counters against a private redis-server: the shared scenarios (test/helpers/
 * counter-scenarios.ts and lax-redis-scenarios.ts) and the single-server ones here (scenario 15: an outage).
 *
 * Every test uses its own prefix, so tests of one describe block share a server without seeing each
 * other's data.
 */
import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { always, ErrorCode } from '../../../src/index.js';
import { type Mode, batchTests, freshPrefix, it, laxValueScenarios, open, privateRedis, strictScenarios, until } from '../../helpers/counter-scenarios.js';
import { laxRedisScenarios } from '../../helpers/lax-redis-scenarios.js';
import { internals } from '../../../src/engine.js';
import { partitionOf } from '../../../common/redis.js';
import { type RedisServer, startRedisServer } from '../../../bench/redis-server.js';

// ── Redis mode ──────────────────────────────────────────────────────────────────────────────────────

describe('counters with Redis', () => {
  let mode: Mode;
  privateRedis((r) => ({ mode } = r));

  describe('strict scenarios 2–8', () => strictScenarios(() => mode));

  describe('lax values (as embedded)', () => laxValueScenarios(() => mode));

  describe('batches, validation, coalescing', () => batchTests(() => mode));

  describe('lax scenarios 9–14 and 16', () => laxRedisScenarios(() => mode));
});

// ── scenario 15: Redis outage (AOF, so a restart keeps what was acknowledged) ───────────────────────

describe('scenario 15: Redis outage', () => {
  let server: RedisServer;
  let redis: Redis;
  before(async () => {
    server = await startRedisServer({ appendOnly: true });
    redis = new Redis(server.url, { maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
  });
  after(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  it('1000 × inc 1 across a Redis outage → exactly +1000 after recovery', async (t) => {
    // The spec's outage is 5 s; 1.5 s exercises the same paths (failed cycles, backoff, reconnect,
    // re-sent calls) and keeps the file fast.
    const OUTAGE_MS = 1500;
    const prefix = freshPrefix('s15');
    const a = await open({ redis: server.url, prefix, flushIntervalMs: 20, allowedLagMs: 20 });
    const field = `{${prefix}:l:${partitionOf('k')}}`;
    assert.equal(await a.lax.set('k', 100), 100);
    let count = 0;
    const incOnce = async (phase: string): Promise<void> => {
      count++;
      const v = await a.lax.inc('k');
      assert.equal(v, 100 + count, `${phase}: inc #${count} returns the local estimate`);
    };
    for (let i = 0; i < 300; i++) await incOnce('before the outage');
    await server.kill();
    const outageStart = Date.now();
    let during = 0;
    while (during < 400) {
      await incOnce('during the outage');
      during++;
      if (during % 10 === 0) await delay(OUTAGE_MS / 50);
    }
    const left = OUTAGE_MS - (Date.now() - outageStart);
    if (left > 0) await delay(left);
    const outageStats = (await a.stats()).flusher!;
    t.diagnostic(`during the outage: ${JSON.stringify(outageStats)}`);
    assert.ok(outageStats.pendingKeys >= 1, 'the increments are buffered during the outage');
    await server.restart();
    for (let i = 0; i < 300; i++) await incOnce('after the restart');
    assert.equal(count, 1000);
    await until(async () => (await redis.hget(field, 'k')) === '1100', 10_000, 'Redis holds exactly 100 + 1000', () => redis.hget(field, 'k'));
    const stats = (await a.stats()).flusher!;
    assert.ok(stats.failures > 0, `the outage was noticed: ${JSON.stringify(stats)}`);
    assert.equal(await a.lax.get('k'), 1100);
    await a.close();
    assert.equal(await redis.hget(field, 'k'), '1100', 'still exact after close()');
  });

  it('a lax op whose reply was lost is never reported "not applied" when it landed', async () => {
    const prefix = freshPrefix('lost');
    // Cycles run only when a request or the test asks for one.
    const a = await open({ redis: server.url, prefix, flushIntervalMs: 60_000, allowedLagMs: 20 });
    const field = `{${prefix}:l:${partitionOf('k')}}`;
    assert.equal(await a.lax.set('k', 1), 1);
    await a[internals].flusher!.loseRepliesForTest(1);
    let outcome: { ok: [number, number] } | { err: unknown } | undefined;
    const settled = a.lax.incIf('k', always, 5).then(
      (ok) => void (outcome = { ok }),
      (err: unknown) => void (outcome = { err }),
    );
    await until(async () => (await a.stats()).flusher!.unresolved === 1, 2000, 'the incIf call lost its reply');
    assert.equal(await redis.hget(field, 'k'), '6', 'the incIf landed in Redis');
    await server.kill();
    // A few cycles while Redis is down, then it comes back.
    for (let i = 0; i < 10; i++) {
      await a.lax.flush();
      await delay(20);
    }
    await server.restart();
    await until(
      async () => {
        await a.lax.flush();
        return outcome !== undefined && (await a.stats()).flusher!.unresolved === 0;
      },
      5000,
      'the lost call is resolved after the restart',
      async () => ({ outcome: outcome === undefined ? 'pending' : String(Object.values(outcome)[0]), stats: (await a.stats()).flusher }),
    );
    await settled;
    assert.equal(await redis.hget(field, 'k'), '6', 'applied exactly once');
    assert.ok(outcome !== undefined);
    if ('err' in outcome) {
      const err = outcome.err as { code?: string; message?: string };
      assert.equal(
        err.code,
        ErrorCode.REDIS_OUTCOME_UNKNOWN,
        `the incIf was applied (Redis holds 6) but the caller was told: ${err.code}: ${err.message}`,
      );
    } else {
      assert.deepEqual(outcome.ok, [6, 1]);
    }
    assert.equal(await a.lax.get('k'), 6);
  });
});

