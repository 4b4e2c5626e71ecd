/**
 * Strict and lax counters on a real Redis Cluster (three masters the harness starts on loopback ports and
 * joins with `redis-cli --cluster create`): the shared scenarios of test/helpers/counter-scenarios.ts run
 * against it as they do against one server, and a prefix's partitions spread over every master.
 *
 * The engine gets the app's own ioredis `Cluster` (it opens its own connections from it and never closes
 * it); the test reads what each master holds through the same client.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setImmediate as turn, setTimeout as delay } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import { ErrorCode, redisSink, TallyworksError, TestClock } from '../../../src/index.js';
import { type Mode, batchTests, freshPrefix, it, laxValueScenarios, open, prefixOf, silenceHeartbeats, strictScenarios } from '../../helpers/counter-scenarios.js';
import { laxRedisScenarios } from '../../helpers/lax-redis-scenarios.js';
import { rateRedisScenarios } from '../../helpers/rate-redis-scenarios.js';
import { partitionKey, PARTITIONS, partitionOf } from '../../../common/redis.js';
import { type RedisCluster, startRedisCluster } from '../../../bench/redis-server.js';
import { keySlot } from '../../helpers/key-slot.js';
import { instanceAwareScenarios, sliceInRedis } from '../../helpers/ia-scenarios.js';

/** Commands a cluster client sends on its own (slot refreshes, health checks), left out of the count. */
const HOUSEKEEPING = new Set(['info', 'cluster', 'ping', 'command', 'readonly']);

/** Commands every master served, housekeeping left out. */
async function clusterCommandCount(cluster: Cluster): Promise<number> {
  let total = 0;
  for (const node of cluster.nodes('master')) {
    const info = await node.info('commandstats');
    for (const m of info.matchAll(/^cmdstat_([^:|]+)[^:]*:calls=(\d+)/gm)) if (!HOUSEKEEPING.has(m[1]!)) total += Number(m[2]);
  }
  return total;
}

function clusterMode(getCluster: () => Cluster): Mode {
  return {
    name: 'redis',
    engine: (options = {}) => open({ redis: getCluster(), prefix: freshPrefix('c'), flushIntervalMs: 20, allowedLagMs: 20, ...options }),
    stored: (kind, prefix, key) => getCluster().hget(partitionKey(prefix, kind, partitionOf(key)), key),
    keysOf: async (prefix) => {
      const keys = await Promise.all(getCluster().nodes('master').map((node) => node.keys(`{${prefix}:*`)));
      return keys.flat().sort();
    },
    pttl: (key) => getCluster().pttl(key),
    write: async (kind, prefix, key, value) => void (await getCluster().hset(partitionKey(prefix, kind, partitionOf(key)), key, value)),
    io: async (engine) => {
      await silenceHeartbeats();
      const stats = await engine.stats();
      return { strictCalls: stats.strict!.calls, flusherCommands: stats.flusher!.commands, redisCommands: await clusterCommandCount(getCluster()) };
    },
  };
}

describe('counters on a Redis Cluster', () => {
  let nodes: RedisCluster;
  let cluster: Cluster;
  let mode: Mode;
  before(async () => {
    nodes = await startRedisCluster(3);
    cluster = new Cluster([...nodes.nodes]);
    mode = clusterMode(() => cluster);
  });
  after(async () => {
    cluster?.disconnect();
    await nodes?.stop();
  });

  describe('strict scenarios 2–8', () => strictScenarios(() => mode));

  describe('lax values', () => laxValueScenarios(() => mode));

  describe('lax scenarios 9–14 and 16', () => laxRedisScenarios(() => mode));

  describe('batches, validation, coalescing', () => batchTests(() => mode));

  describe('instance-aware scenarios 17–27 and the seed bugs', () => instanceAwareScenarios(() => mode));

  describe('sliding-window rate limits in Redis', () => rateRedisScenarios(() => mode));

  it('a stat buffer flushing through redisSink to several hashes delivers every count once; each marker shares its hash slot', async () => {
    const e = await mode.engine({ clock: new TestClock() });
    // Hashes spread over the masters (one name per slot region), each with its own buffer.
    const hashes = ['views', 'clicks', 'signups', '{tenant7}:daily'];
    const buffers = hashes.map((hash, i) => e.buffer({ name: `b${i}`, intervalMs: 1000, ...redisSink(cluster, { hash }) }));
    const expected = hashes.map(() => new Map<string, number>());
    for (let round = 0; round < 5; round++) {
      buffers.forEach((b, i) => {
        for (let k = 0; k < 50; k++) {
          const key = `k${(k * 7 + round) % 40}`;
          b.increment(key, k + 1);
          expected[i]!.set(key, (expected[i]!.get(key) ?? 0) + k + 1);
        }
      });
      await Promise.all(buffers.map((b) => b.flush()));
    }
    for (const [i, hash] of hashes.entries()) {
      const stored = await cluster.hgetall(hash);
      assert.deepEqual(new Map(Object.entries(stored).map(([k, v]) => [k, Number(v)])), expected[i], `${hash} holds every count once`);
      const tag = hash.startsWith('{') ? hash.slice(1, hash.indexOf('}')) : hash;
      const markers = (await Promise.all(cluster.nodes('master').map((n) => n.keys(`{${tag}}:tw-flush:*`)))).flat();
      assert.equal(markers.length, 5, `${hash}: one marker per flush`);
      for (const m of markers) assert.equal(keySlot(m), keySlot(hash), `${m} is in ${hash}'s slot`);
    }
    await Promise.all(buffers.map((b) => b.close()));
  });

  it("a prefix's 64 partition hashes (strict, lax, instance-aware strict and lax) spread over all three masters, and each holds its keys' values", async (t) => {
    const e = await mode.engine();
    const prefix = prefixOf(e);
    const keys = Array.from({ length: 400 }, (_, i) => `key${i}`);
    await e.strict.incAll(keys.map((k): [string, number] => [k, 1]));
    for (const k of keys) e.lax.add(k, 2);
    await e.lax.flush();
    await e.instanceAware.strict.incAll(keys.map((k): [string, number] => [k, 3]));
    for (const k of keys) e.instanceAware.lax.add(k, 4);
    await e.instanceAware.lax.flush();
    // Which master serves each partition's slot (CLUSTER SLOTS through the client's own map).
    const masters = cluster.nodes('master');
    const byNode = new Map(masters.map((n) => [`${n.options.host}:${n.options.port}`, 0]));
    const ranges = await cluster.cluster('SLOTS');
    for (const kind of ['s', 'l', 'is', 'il'] as const) {
      for (let p = 0; p < PARTITIONS; p++) {
        const slot = keySlot(partitionKey(prefix, kind, p));
        const range = ranges.find(([from, to]) => slot >= from && slot <= to)!;
        const node = `${range[2]![0]}:${range[2]![1]}`;
        byNode.set(node, (byNode.get(node) ?? 0) + 1);
      }
    }
    t.diagnostic(`partition hashes per master: ${JSON.stringify(Object.fromEntries(byNode))}`);
    assert.equal([...byNode.values()].reduce((a, b) => a + b, 0), 4 * PARTITIONS);
    assert.ok([...byNode.values()].every((n) => n > 0), `every master holds some of the prefix: ${JSON.stringify(Object.fromEntries(byNode))}`);
    // Every key's values, read back from the master that holds its partition.
    for (const k of ['key0', 'key199', 'key399']) {
      assert.equal(await mode.stored('s', prefix, k), '1');
      assert.equal(await mode.stored('l', prefix, k), '2');
      assert.equal(await sliceInRedis(cluster, prefix, 'is', k, `${e.instanceId}#0`), 3);
      assert.equal(await sliceInRedis(cluster, prefix, 'il', k, `${e.instanceId}#0`), 4);
    }
    assert.deepEqual(await e.strict.getAll(['key7', 'key8']), [['key7', 1], ['key8', 1]]);
    const hashes = (await mode.keysOf(prefix)).filter((key) => /^\{[^}]*\}$/.test(key));
    assert.equal(hashes.length, 4 * PARTITIONS, `one hash per partition and kind: ${hashes.join(' ')}`);
  });
});

describe('a coordinated failover under load (3 masters, 3 replicas)', () => {
  let nodes: RedisCluster;
  let cluster: Cluster;
  before(async () => {
    nodes = await startRedisCluster(3, 1);
    cluster = new Cluster([...nodes.nodes]);
  });
  after(async () => {
    cluster?.disconnect();
    await nodes?.stop();
  });

  test('CLUSTER FAILOVER on a replica while lax, strict and instance-aware (lax and strict) counters run: nothing lost, nothing doubled', { timeout: 60_000 }, async (t) => {
    const e = await open({ redis: cluster, prefix: freshPrefix('fo'), flushIntervalMs: 20, shards: 1 });
    const prefix = prefixOf(e);
    const keys = Array.from({ length: 300 }, (_, i) => `key${i}`);
    const laxAdded = new Map<string, number>();
    const strictAcked = new Map<string, number>();
    const strictUnknown = new Map<string, number>();
    const iaAdded = new Map<string, number>();
    const iaAcked = new Map<string, number>();
    const iaUnknown = new Map<string, number>();
    let refused = 0;
    // The replica to promote: one that serves a master holding some of the prefix's partitions.
    const replicaPort = await replicaOfPartition(nodes, cluster, partitionKey(prefix, 'l', 0));
    const replica = new Redis(replicaPort, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
    replica.on('error', () => undefined);
    await replica.connect();
    t.after(() => replica.disconnect());
    let promoted = false;
    let roundsAfter = 0;
    let rounds = 0;
    const started = Date.now();
    while (roundsAfter < 30) {
      rounds++;
      for (const k of keys) {
        e.lax.add(k, 1);
        laxAdded.set(k, (laxAdded.get(k) ?? 0) + 1);
        e.instanceAware.lax.add(k, 2);
        iaAdded.set(k, (iaAdded.get(k) ?? 0) + 2);
      }
      const iaIncs = keys.slice(100, 130).map((k) =>
        e.instanceAware.strict.inc(k).then(
          () => iaAcked.set(k, (iaAcked.get(k) ?? 0) + 1),
          (err: unknown) => {
            if (err instanceof TallyworksError && err.code === ErrorCode.REDIS_OUTCOME_UNKNOWN) iaUnknown.set(k, (iaUnknown.get(k) ?? 0) + 1);
            else refused++;
          },
        ),
      );
      const incs = keys.slice(0, 60).map((k) =>
        e.strict.inc(k).then(
          () => strictAcked.set(k, (strictAcked.get(k) ?? 0) + 1),
          (err: unknown) => {
            if (err instanceof TallyworksError && err.code === ErrorCode.REDIS_OUTCOME_UNKNOWN) strictUnknown.set(k, (strictUnknown.get(k) ?? 0) + 1);
            else refused++; // reported as not applied: it must not be in Redis
          },
        ),
      );
      await Promise.all([...incs, ...iaIncs]);
      if (rounds === 10) await replica.cluster('FAILOVER');
      if (!promoted && rounds > 10) promoted = /role:master/.test(await replica.info('replication'));
      if (promoted) roundsAfter++;
      assert.ok(Date.now() - started < 60_000, 'the failover completed within a minute');
      await turn();
    }
    await e.lax.flush();
    await e.instanceAware.lax.flush();
    // Instance-aware slices are read before close(), which removes them.
    const me = `${e.instanceId}#0`;
    const iaStored = new Map(await Promise.all(keys.map(async (k): Promise<[string, [number, number]]> => [k, [await sliceInRedis(cluster, prefix, 'il', k, me), await sliceInRedis(cluster, prefix, 'is', k, me)]])));
    await e.close();
    t.diagnostic(`${rounds} rounds; strict: ${[...strictAcked.values()].reduce((a, b) => a + b, 0)} acknowledged, ${refused} refused, ${[...strictUnknown.values()].reduce((a, b) => a + b, 0)} unknown`);
    let lost = 0;
    let doubled = 0;
    for (const k of keys) {
      const lax = Number((await cluster.hget(partitionKey(prefix, 'l', partitionOf(k)), k)) ?? 0);
      if (lax < laxAdded.get(k)!) lost += laxAdded.get(k)! - lax;
      if (lax > laxAdded.get(k)!) doubled += lax - laxAdded.get(k)!;
      const strict = Number((await cluster.hget(partitionKey(prefix, 's', partitionOf(k)), k)) ?? 0);
      const acked = strictAcked.get(k) ?? 0;
      const unknown = strictUnknown.get(k) ?? 0;
      if (strict < acked) lost += acked - strict;
      if (strict > acked + unknown) doubled += strict - acked - unknown;
      const [iaLax, iaStrict] = iaStored.get(k)!;
      if (iaLax < iaAdded.get(k)!) lost += iaAdded.get(k)! - iaLax;
      if (iaLax > iaAdded.get(k)!) doubled += iaLax - iaAdded.get(k)!;
      const iaOk = iaAcked.get(k) ?? 0;
      if (iaStrict < iaOk) lost += iaOk - iaStrict;
      if (iaStrict > iaOk + (iaUnknown.get(k) ?? 0)) doubled += iaStrict - iaOk - (iaUnknown.get(k) ?? 0);
    }
    assert.deepEqual({ lost, doubled }, { lost: 0, doubled: 0 });
  });
});

/** The port of a replica whose master serves `key`'s slot. */
async function replicaOfPartition(nodes: RedisCluster, cluster: Cluster, key: string): Promise<number> {
  const slot = keySlot(key);
  // Replicas join the slot map by gossip, a moment after their links are up.
  let replica: [host: string, port: number, ...rest: unknown[]] | undefined;
  for (const deadline = Date.now() + 15_000; replica === undefined; await delay(100)) {
    const ranges = await cluster.cluster('SLOTS');
    replica = ranges.find(([from, to]) => slot >= from && slot <= to)?.[3];
    assert.ok(replica !== undefined || Date.now() < deadline, `slot ${slot} has a replica within 15 s`);
  }
  assert.ok(nodes.servers.some((s) => s.port === replica[1]));
  return replica[1];
}
