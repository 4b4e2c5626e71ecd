/**
 * Stat buffers under a heavy increment load, and how fast they empty into Redis.
 *
 *  (a) Map<string, number> increment                     the ceiling for string-keyed counting
 *  (b) buffer.increment(key)                             a key → position lookup and a Float64 add
 *  (c) the same keys flushing every 50 ms meanwhile      increments racing the flushes they feed
 *  (d) engine.lax.add(key), embedded                     the shard path, which buffers do not take: a
 *                                                        batch op to a shard thread per increment
 *  (e) flush: onFlushBatch into redisSink                entries per second from buffer to a Redis hash
 *
 * (b) and (c) verify that the handler received exactly the ops of every key; (d) verifies every field of
 * the Redis hash. Usage: node dist/bench/buffer.js [--ops 20000000] [--keys 10000] [--flush-keys 200000]
 * [--max-batch 1000] [--redis URL]
 */
import { parseArgs } from 'node:util';
import { createEngine, type BufferEntry, redisSink } from '../src/index.js';
import { describeMachine, mapLoop, mops } from './machine.js';
import { benchRedis } from './redis.js';

const { values } = parseArgs({
  options: {
    ops: { type: 'string', default: '20000000' },
    keys: { type: 'string', default: '10000' },
    'flush-keys': { type: 'string', default: '200000' },
    'max-batch': { type: 'string', default: '1000' },
    redis: { type: 'string' },
  },
});
const OPS = Number(values.ops);
const KEYS = Number(values.keys);
const FLUSH_KEYS = Number(values['flush-keys']);
const MAX_BATCH = Number(values['max-batch']);
const keys = Array.from({ length: KEYS }, (_, i) => `k${i}`);

/** Increments of `keys` into a buffer; the handler's totals are checked against the ops. */
async function bufferRow(intervalMs: number): Promise<{ mops: number; flushes: number }> {
  const engine = await createEngine({ shards: 1 });
  const got = new Map<string, number>();
  let flushes = 0;
  const buffer = engine.buffer({
    name: 'bench',
    intervalMs,
    onFlushBatch: (entries: BufferEntry[]) => {
      flushes++;
      for (const e of entries) got.set(e.key, (got.get(e.key) ?? 0) + e.count);
    },
  });
  const start = performance.now();
  let j = 0;
  for (let i = 0; i < OPS; i++) {
    buffer.increment(keys[j]!);
    if (++j === KEYS) j = 0;
    // Yield now and then, as a service would, so that due flushes run.
    if ((i & 0xffff) === 0xffff) await new Promise((resolve) => setImmediate(resolve));
  }
  const ms = performance.now() - start;
  await engine.close();
  for (let i = 0; i < KEYS; i++) {
    const want = Math.floor(OPS / KEYS) + (i < OPS % KEYS ? 1 : 0);
    if (got.get(keys[i]!) !== want) throw new Error(`buffer: ${keys[i]} delivered ${got.get(keys[i]!)}, expected ${want}`);
  }
  return { mops: mops(OPS, ms), flushes };
}

/** The shard path for comparison: embedded lax counters, verified with getAll. */
async function laxRow(): Promise<number> {
  const engine = await createEngine({ shards: 1 });
  const start = performance.now();
  let j = 0;
  for (let i = 0; i < OPS; i++) {
    engine.lax.add(keys[j]!);
    if (++j === KEYS) j = 0;
    if ((i & 0xffff) === 0xffff) await new Promise((resolve) => setImmediate(resolve));
  }
  await engine.flush();
  const ms = performance.now() - start;
  const totals = await engine.lax.getAll(keys);
  await engine.close();
  totals.forEach(([, v], i) => {
    const want = Math.floor(OPS / KEYS) + (i < OPS % KEYS ? 1 : 0);
    if (v !== want) throw new Error(`lax: ${keys[i]} holds ${v}, expected ${want}`);
  });
  return mops(OPS, ms);
}

/** `n` keys, each with a count, flushed at once through redisSink; returns entries per second. */
async function flushRow(url: string, n: number, maxBatch: number): Promise<{ entriesPerSecond: number; calls: number; seconds: number }> {
  const { Redis } = await import('ioredis');
  const client = new Redis(url);
  const hash = `bench:buffer:${maxBatch}`;
  await client.del(hash);
  const engine = await createEngine({ shards: 1 });
  let calls = 0;
  const sink = redisSink(client, { hash });
  const buffer = engine.buffer({
    name: 'flush',
    intervalMs: 3_600_000,
    maxBatch,
    onFlushBatch: (entries, flushId) => {
      calls++;
      return sink.onFlushBatch(entries, flushId);
    },
  });
  for (let i = 0; i < n; i++) buffer.increment(`f${i}`, (i % 7) + 1);
  const start = performance.now();
  await buffer.flush();
  const ms = performance.now() - start;
  await engine.close();
  const stored = await client.hgetall(hash);
  for (let i = 0; i < n; i++) {
    if (Number(stored[`f${i}`]) !== (i % 7) + 1) throw new Error(`flush: f${i} holds ${stored[`f${i}`]} in Redis, expected ${(i % 7) + 1}`);
  }
  await client.del(hash);
  await client.quit();
  return { entriesPerSecond: n / (ms / 1000), calls, seconds: ms / 1000 };
}

console.log(`buffer · ${describeMachine()}`);
console.log(`${OPS.toLocaleString('en-US')} increments over ${KEYS} keys · main thread`);
const map = mops(OPS, mapLoop(keys, OPS));
const quiet = await bufferRow(3_600_000);
const busy = await bufferRow(50);
console.log(`${'(a) Map<string, number> increment'.padEnd(46)} ${map.toFixed(1).padStart(6)} M ops/s  1.00× Map`);
console.log(`${'(b) buffer.increment(key)'.padEnd(46)} ${quiet.mops.toFixed(1).padStart(6)} M ops/s  ${(quiet.mops / map).toFixed(2)}× Map`);
console.log(`${'(c) the same, flushing every 50 ms'.padEnd(46)} ${busy.mops.toFixed(1).padStart(6)} M ops/s  ${(busy.mops / map).toFixed(2)}× Map  (${busy.flushes} handler calls)`);
const lax = await laxRow();
console.log(`${'(d) engine.lax.add(key), embedded'.padEnd(46)} ${lax.toFixed(1).padStart(6)} M ops/s  ${(lax / map).toFixed(2)}× Map`);
const redis = await benchRedis(values.redis);
try {
  for (const batch of [MAX_BATCH, MAX_BATCH * 10]) {
    const r = await flushRow(redis.url, FLUSH_KEYS, batch);
    console.log(
      `${`(e) flush into redisSink, maxBatch ${batch}`.padEnd(46)} ${(r.entriesPerSecond / 1e3).toFixed(0).padStart(6)} k entries/s  (${FLUSH_KEYS.toLocaleString('en-US')} keys in ${r.calls} script calls, ${r.seconds.toFixed(2)} s)`,
    );
  }
} finally {
  await redis.close();
}
console.log('totals verified: every key delivered exactly its increments (b, c), holds them in the shard (d) and in Redis (e)');
