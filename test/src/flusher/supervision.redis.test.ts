/**
 * The flusher thread supervised like the shards (issue: hardening, defect 4): a flusher that crashes or is
 * terminated is replaced, lax adds keep being accepted meanwhile, every delta lands in Redis exactly once
 * (a call in flight when it died is settled from its marker), and one that keeps dying is given up with
 * close() listing what Redis never confirmed. Against a private redis-server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { type RedisServer, startRedisServer } from '../../../bench/redis-server.js';
import { PARTITIONS, partitionKey, partitionOf } from '../../../common/redis.js';
import { internals } from '../../../src/engine.js';
import { type Engine, ErrorCode, TallyworksError, UndeliveredError } from '../../../src/index.js';
import { open } from '../../helpers/engines.js';

let server: RedisServer;
let redis: Redis;
before(async () => {
  server = await startRedisServer();
  redis = new Redis(server.url);
});
after(async () => {
  await redis?.quit();
  await server?.stop();
});

async function totals(prefix: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (let p = 0; p < PARTITIONS; p++) for (const [k, v] of Object.entries(await redis.hgetall(partitionKey(prefix, 'l', p)))) out.set(k, Number(v));
  return out;
}

/** Adds to 200 keys on every turn until stopped; returns what it added per key. */
function producer(engine: Engine): { stop: () => Promise<Map<string, number>> } {
  const added = new Map<string, number>();
  let running = true;
  const done = (async () => {
    for (let t = 0; running; t++) {
      for (let i = 0; i < 200; i++) {
        const key = `k${(t * 7 + i) % 500}`;
        const n = 1 + (i % 4);
        engine.lax.add(key, n);
        added.set(key, (added.get(key) ?? 0) + n);
      }
      await turn();
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return added;
    },
  };
}

describe('the flusher thread is supervised', () => {
  for (const how of ['terminate', 'crash'] as const) {
    test(`${how}d three times under lax load: replaced each time, ops keep working, every delta lands exactly once`, { timeout: 60_000 }, async () => {
      const prefix = `sup${how}`;
      const engine = await open({ redis: server.url, prefix, shards: 2 });
      const flusher = engine[internals].flusher!;
      const load = producer(engine);
      for (let i = 0; i < 3; i++) {
        await engine.stats(); // the current thread answers, so each kill hits a running flusher
        for (let k = 0; k < 20; k++) await turn();
        if (how === 'terminate') await flusher.terminateForTest();
        else flusher.crashForTest();
        // While the replacement starts: adds are accepted, reads and stats wait for it and answer.
        engine.lax.add('during', 1);
        assert.equal(typeof (await engine.lax.get('during')), 'number');
      }
      const added = await load.stop();
      added.set('during', 3);
      const stats = await engine.stats();
      assert.ok(stats.flusher!.restarts >= 3, `restarts: ${stats.flusher!.restarts}`);
      await engine.close();
      assert.deepEqual(await totals(prefix), added);
    });
  }

  test('a flush call in flight when the thread died is settled from its marker: landed, it is not sent again', { timeout: 30_000 }, async () => {
    const prefix = 'supmarker';
    const engine = await open({ redis: server.url, prefix });
    const flusher = engine[internals].flusher!;
    // The calls land in Redis but their replies are lost: x's delta sits in a call in flight.
    await flusher.loseRepliesForTest(1_000_000);
    engine.lax.add('x', 5);
    await engine.lax.flush();
    assert.equal(await redis.hget(partitionKey(prefix, 'l', partitionOf('x')), 'x'), '5', 'the call landed');
    assert.equal((await engine.stats()).flusher!.unresolved, 1);
    await flusher.terminateForTest();
    engine.lax.add('x', 2);
    await engine.lax.flush();
    assert.equal(await engine.lax.get('x'), 7);
    await engine.close();
    assert.equal(await redis.hget(partitionKey(prefix, 'l', partitionOf('x')), 'x'), '7', '5 once, then 2: the landed call was not doubled');
  });

  test('a flusher that keeps dying before it finishes a cycle is given up: adds and ops reject TW_FLUSHER_FAILED, close() lists what Redis never got', { timeout: 30_000 }, async () => {
    const prefix = 'supgiveup';
    // No cycle for a minute: each thread dies before it finishes one.
    const engine = await open({ redis: server.url, prefix, maxRestarts: 2, flushIntervalMs: 60_000 });
    const flusher = engine[internals].flusher!;
    engine.lax.add('a', 4);
    engine.lax.add('b', -1);
    await engine.flush();
    for (let i = 0; i < 3; i++) {
      await flusher.stats().catch(() => undefined);
      flusher.crashForTest();
      await new Promise((r) => setTimeout(r, 50));
    }
    const failed = (err: unknown): boolean => err instanceof TallyworksError && err.code === ErrorCode.FLUSHER_FAILED;
    const deadline = Date.now() + 10_000;
    while (flusher.failed === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.throws(() => engine.lax.add('c', 1), failed);
    await assert.rejects(engine.lax.set('a', 1), failed);
    await assert.rejects(engine.stats(), failed);
    await assert.rejects(engine.close(), (err: unknown) => {
      assert.ok(err instanceof UndeliveredError, String(err));
      assert.deepEqual([...err.undelivered].sort(), [['a', 4], ['b', -1]]);
      assert.ok(failed(err.cause));
      return true;
    });
    assert.deepEqual(await totals(prefix), new Map());
  });
});
