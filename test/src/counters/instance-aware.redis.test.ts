/**
 * Instance-aware counters against a private redis-server: scenarios 17–27 and the seed bugs (shared with
 * the cluster tier, test/helpers/ia-scenarios.ts), then what only a single server shows cheaply: what one
 * op costs Redis while many instances are dead, the sweep after instances leave, the registry, the
 * heartbeat period, and the options.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { pack } from 'msgpackr';
import { partitionKey, partitionOf } from '../../../common/redis.js';
import { internals } from '../../../src/engine.js';
import { freshPrefix, it, type Mode, privateRedis, until } from '../../helpers/counter-scenarios.js';
import { instanceAwareScenarios, sliceInRedis } from '../../helpers/ia-scenarios.js';

describe('instance-aware counters with Redis', () => {
  let redis: Redis;
  let mode: Mode;
  privateRedis((r) => ({ redis, mode } = r));

  describe('scenarios 17–27 and the seed bugs', () => instanceAwareScenarios(() => mode));

  /** Commands Redis ran (scripts' own commands included), by name, from INFO commandstats. */
  async function commandCalls(): Promise<Map<string, number>> {
    const info = await redis.info('commandstats');
    return new Map([...info.matchAll(/cmdstat_([a-z|]+):calls=(\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
  }
  async function callsDuring(run: () => Promise<unknown>): Promise<number> {
    const before = await commandCalls();
    await run();
    const after = await commandCalls();
    let total = 0;
    for (const [name, n] of after) if (name !== 'info' && name !== 'evalsha' && name !== 'eval') total += n - (before.get(name) ?? 0);
    return total;
  }

  it('incremental reaping: 40 dead instances with slices on 300 keys cost an op on another key nothing, and an op on one of those keys O(its slices)', async (t) => {
    const prefix = freshPrefix('reap');
    const b = await mode.engine({ prefix, instanceId: 'b' });
    // 40 instances that died long ago (registered, last seen an hour back), each with a slice of 300 keys of one partition.
    const p = partitionOf('probe');
    const keys = Array.from({ length: 8000 }, (_, i) => `key${i}`).filter((k) => partitionOf(k) === p).slice(0, 300);
    const dead = Array.from({ length: 40 }, (_, i) => `dead${i}#0`);
    const base = partitionKey(prefix, 'is', p);
    const past = Date.now() - 3_600_000 + 120_000;
    await redis.zadd(`${base}:r`, ...dead.flatMap((inc) => [past, inc]));
    for (const k of keys) await redis.hset(base, k, pack(dead.flatMap((inc) => [inc, 5])));
    assert.equal(keys.length, 300);
    const onOther = await callsDuring(() => b.instanceAware.strict.inc('probe', 1));
    const onLoaded = await callsDuring(() => b.instanceAware.strict.inc(keys[0]!, 1));
    t.diagnostic(`commands run by one op: ${onOther} on a key no dead instance holds, ${onLoaded} on a key all 40 hold`);
    assert.ok(onOther <= 10, `an op on another key touched ${onOther} commands`);
    assert.ok(onLoaded <= 10 + dead.length, `an op on a loaded key touched ${onLoaded} commands (its slices: ${dead.length})`);
    assert.deepEqual(await b.instanceAware.strict.get(keys[1]!), [0, 0], 'dead slices do not count');
  });

  it('the sweep: once an instance left, heartbeats drop its slices from every key, a bounded step at a time', async () => {
    const prefix = freshPrefix('sweep');
    const [a, b] = await Promise.all([mode.engine({ prefix, instanceId: 'a', deadInstanceThresholdMs: 300 }), mode.engine({ prefix, instanceId: 'b', deadInstanceThresholdMs: 300 })]);
    const keys = Array.from({ length: 200 }, (_, i) => `key${i}`);
    await a.instanceAware.strict.incAll(keys.map((k): [string, number] => [k, 1]));
    await b.instanceAware.strict.incAll(keys.map((k): [string, number] => [k, 2]));
    assert.equal(await sliceInRedis(redis, prefix, 'is', 'key7', 'a#0'), 1);
    await a.close();
    // B's heartbeats (every 100 ms) sweep every partition; A's slices go, B's stay.
    await until(async () => (await Promise.all(keys.map((k) => sliceInRedis(redis, prefix, 'is', k, 'a#0')))).every((v) => v === 0), 10_000, "A's slices swept");
    assert.ok((await Promise.all(keys.map((k) => sliceInRedis(redis, prefix, 'is', k, 'b#0')))).every((v) => v === 2), "B's slices untouched");
  });

  it('past instanceRetentionMs a silent instance is forgotten: it returns with a new generation and none of its old slices', async () => {
    const prefix = freshPrefix('ret');
    const [a, b] = await Promise.all([
      mode.engine({ prefix, instanceId: 'a', deadInstanceThresholdMs: 50, instanceRetentionMs: 200 }),
      mode.engine({ prefix, instanceId: 'b', deadInstanceThresholdMs: 50, instanceRetentionMs: 200 }),
    ]);
    await a.instanceAware.strict.inc('k', 9);
    await a[internals].flusher!.pauseHeartbeatsForTest(true);
    const registry = `${partitionKey(prefix, 'is', partitionOf('k'))}:r`;
    await until(async () => (await redis.zscore(registry, 'a#0')) === null, 10_000, "B's heartbeats forget A");
    // A's next generation, or none once the sweep finished its pass (no slice of A is left then).
    assert.ok(['1', null].includes(await redis.hget(`${partitionKey(prefix, 'is', partitionOf('k'))}:g`, 'a')), "A's next generation");
    assert.deepEqual(await a.instanceAware.strict.get('k'), [0, 0], 'A returns empty');
    assert.deepEqual(await b.instanceAware.strict.get('k'), [0, 0]);
  });

  it('nothing lives forever: the generations forget instances whose slices are swept, and every key of a partition has a TTL', async () => {
    const prefix = freshPrefix('gen');
    const options = { prefix, deadInstanceThresholdMs: 300, instanceRetentionMs: 600 };
    const b = await mode.engine({ ...options, instanceId: 'b' });
    // Ten short-lived processes with ids of their own (a random id per start is the default).
    for (let i = 0; i < 10; i++) {
      const e = await mode.engine({ ...options, instanceId: `tmp${i}` });
      await e.instanceAware.strict.inc('k', 1);
      await e.close();
    }
    const gens = `${partitionKey(prefix, 'is', partitionOf('k'))}:g`;
    await until(async () => (await redis.hkeys(gens)).every((id) => id === 'b'), 10_000, 'the generations keep only ids with an incarnation', () => redis.hkeys(gens));
    assert.deepEqual(await b.instanceAware.strict.get('k'), [0, 0]);
    for (const key of await mode.keysOf(prefix)) {
      if (key.includes(':m:')) continue; // markers: 24 h, tested elsewhere
      const ttl = await redis.pttl(key);
      assert.ok(ttl > 0 && ttl <= 1200, `${key}: PTTL ${ttl} (twice the retention)`);
    }
  });

  it('engine.instances(): every live engine of the prefix, an idle one kept live by its heartbeats', async () => {
    const prefix = freshPrefix('reg');
    const [a, b] = await Promise.all([mode.engine({ prefix, instanceId: 'a', deadInstanceThresholdMs: 2000 }), mode.engine({ prefix, instanceId: 'b', deadInstanceThresholdMs: 2000 })]);
    assert.deepEqual(await a.instances(), { count: 2, ids: ['a', 'b'] });
    // Neither does anything for longer than the threshold: the flusher's heartbeats (every 666 ms) keep both live.
    for (let i = 0; i < 5; i++) {
      await delay(600);
      assert.deepEqual((await b.instances()).ids, ['a', 'b'], `idle ${(i + 1) * 600} ms`);
    }
    assert.ok((await a.stats()).flusher!.heartbeats >= 3, 'the flusher heartbeat');
    await a.close();
    assert.deepEqual(await b.instances(), { count: 1, ids: ['b'] }, 'close() leaves at once');
  });
});
