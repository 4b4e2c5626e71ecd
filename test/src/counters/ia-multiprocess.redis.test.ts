/**
 * Instance-aware lax counters across processes: three child processes (test/fixtures/ia-child.ts) add to
 * the same 20 keys on a private redis-server; one is SIGKILLed mid-run. Once the dead-instance threshold
 * has passed, every key's cumulative is exactly the survivors' slices (what each reported adding); the
 * killed process restarted with the same instance id takes back exactly the slice Redis kept for it.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { createEngine, type Engine } from '../../../src/index.js';
import { startRedisServer, type RedisServer } from '../../../bench/redis-server.js';
import { until } from '../../helpers/counter-scenarios.js';
import { sliceInRedis } from '../../helpers/ia-scenarios.js';
import { Child as ForkedChild } from '../../helpers/child.js';


const childScript = fileURLToPath(new URL('../../fixtures/ia-child.js', import.meta.url));
const KEYS = Array.from({ length: 20 }, (_, i) => `k${i}`);
const OPS = 60_000;
const THRESHOLD_MS = 1000;
const WAIT_MS = 30_000;

type Reply = { type: 'ready' } | { type: 'progress'; done: number } | { type: 'done'; totals: Record<string, number> } | { type: 'got'; values: Array<[number, number]> };

/** A child of test/fixtures/ia-child.ts as instance `id`. */
class Child extends ForkedChild<Reply> {
  constructor(url: string, prefix: string, id: string) {
    super(childScript, [url, prefix, id, String(THRESHOLD_MS)], id, WAIT_MS);
  }
}

let server: RedisServer;
let redis: Redis;
const children: Child[] = [];
let observer: Engine | undefined;
before(async () => {
  server = await startRedisServer();
  redis = new Redis(server.url);
});
after(async () => {
  for (const c of children) c.proc.kill('SIGKILL');
  await observer?.close().catch(() => undefined);
  await redis?.quit();
  await server?.stop();
});

/** The slice Redis holds for incarnation `inc` of each key. */
async function slicesOf(prefix: string, inc: string): Promise<Record<string, number>> {
  return Object.fromEntries(await Promise.all(KEYS.map(async (k) => [k, await sliceInRedis(redis, prefix, 'il', k, inc)])));
}

test('3 processes, one SIGKILLed mid-run: the cumulative becomes exactly the survivors\' slices; restarted with its id, it re-adds its own', { timeout: 120_000 }, async (t) => {
  const prefix = `iamp${process.pid}`;
  const ids = ['n0', 'n1', 'n2'];
  for (const id of ids) children.push(new Child(server.url, prefix, id));
  await Promise.all(children.map((c) => c.next('ready')));
  for (const c of children) c.send({ type: 'run', ops: OPS, keys: KEYS.length, durationMs: 3000 });
  const victim = children[1]!;
  await until(() => victim.progress >= OPS * 0.3, WAIT_MS, 'n1 is a third through its run');
  victim.proc.kill('SIGKILL');
  t.diagnostic(`n1 killed after ${victim.progress} of ${OPS} adds`);
  assert.ok(victim.progress < OPS, 'killed mid-run');
  const [t0, t2] = await Promise.all([children[0]!.next('done'), children[2]!.next('done')]);
  const survivors = Object.fromEntries(KEYS.map((k) => [k, (t0.totals[k] ?? 0) + (t2.totals[k] ?? 0)]));
  // What Redis kept of n1's slice: whatever its flusher delivered before the kill.
  const kept = await slicesOf(prefix, 'n1#0');
  const keptTotal = Object.values(kept).reduce((a, b) => a + b, 0);
  t.diagnostic(`n1's slice in Redis: ${keptTotal} of its ${victim.progress} adds`);
  assert.ok(keptTotal > 0, 'n1 delivered part of its adds before the kill (the test is meaningful)');

  observer = await createEngine({ redis: server.url, prefix, instanceId: 'observer', deadInstanceThresholdMs: THRESHOLD_MS, shards: 1, allowedLagMs: 0 });
  const cumulative = async (): Promise<Record<string, number>> => Object.fromEntries(await Promise.all(KEYS.map(async (k) => [k, (await observer!.instanceAware.lax.get(k))[0]])));
  const waited = await until(async () => JSON.stringify(await cumulative()) === JSON.stringify(survivors), WAIT_MS, 'the cumulative is the survivors\' slices', cumulative);
  t.diagnostic(`the cumulative equalled the survivors' slices ${waited} ms after the observer started`);
  assert.deepEqual((await observer.instances()).ids, ['n0', 'n2', 'observer']);

  const restarted = new Child(server.url, prefix, 'n1');
  children[1] = restarted;
  await restarted.next('ready');
  const expected = Object.fromEntries(KEYS.map((k) => [k, survivors[k]! + kept[k]!]));
  await until(async () => JSON.stringify(await cumulative()) === JSON.stringify(expected), WAIT_MS, 'n1 re-added its slice', cumulative);
  restarted.send({ type: 'get', keys: KEYS });
  const { values } = await restarted.next('got');
  assert.deepEqual(Object.fromEntries(KEYS.map((k, i) => [k, values[i]![1]])), kept, 'its own slice, key by key');

  // Every process closes: its slices leave with it.
  for (const c of children) c.send({ type: 'close' });
  await Promise.all(children.map((c) => new Promise((resolve) => (c.proc.exitCode !== null ? resolve(undefined) : c.proc.once('exit', resolve)))));
  assert.deepEqual(await cumulative(), Object.fromEntries(KEYS.map((k) => [k, 0])));
});
