/**
 * Strict Redis counters under concurrency: how many `engine.strict.inc` calls per second do 1000
 * concurrent callers get, compared with the same callers on ioredis auto-pipelined INCRBY (the fastest
 * plain-client way) in the same run, against the same Redis?
 *
 *  (a) ioredis INCRBY, enableAutoPipelining       1000 callers, each awaiting its own command
 *  (b) engine.strict.inc                            1000 callers; one tick's calls share one script call per partition
 *
 * Both rows count `--ops` increments over `--keys` keys and verify every key's total in Redis afterwards.
 * Usage: node dist/bench/strict-inc.js [--ops 300000] [--keys 1000] [--callers 1000] [--rounds 3] [--redis URL]
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { createEngine } from '../src/index.js';
import { partitionKey, partitionOf } from '../common/redis.js';
import { describeMachine, median, mops } from './machine.js';
import { benchRedis } from './redis.js';

const { values } = parseArgs({
  options: {
    ops: { type: 'string', default: '300000' },
    keys: { type: 'string', default: '1000' },
    callers: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
    redis: { type: 'string' },
  },
});
const OPS = Number(values.ops);
const KEYS = Number(values.keys);
const CALLERS = Number(values.callers);
const ROUNDS = Number(values.rounds);
const keys = Array.from({ length: KEYS }, (_, i) => `k${i}`);

const redis = await benchRedis(values.redis);

/** Runs `CALLERS` loops that together issue OPS calls of `inc(key)`; returns elapsed ms. */
async function callers(inc: (key: string) => Promise<unknown>): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CALLERS }, async () => {
      for (let i = next++; i < OPS; i = next++) await inc(keys[i % KEYS]!);
    }),
  );
  return performance.now() - start;
}

function expected(key: number): number {
  return Math.floor(OPS / KEYS) + (key < OPS % KEYS ? 1 : 0);
}

async function ioredisRow(round: number): Promise<number> {
  const client = new Redis(redis.url, { enableAutoPipelining: true });
  const prefix = `bench-io-${round}`;
  const ms = await callers((k) => client.incrby(`${prefix}:${k}`, 1));
  const got = await client.mget(keys.map((k) => `${prefix}:${k}`));
  got.forEach((v, i) => {
    if (Number(v) !== expected(i)) throw new Error(`ioredis row: ${keys[i]} holds ${v}, expected ${expected(i)}`);
  });
  await client.quit();
  return ms;
}

async function strictRow(round: number): Promise<{ ms: number; calls: number }> {
  const prefix = `bench-strict-${round}`;
  const engine = await createEngine({ shards: 1, redis: redis.url, prefix });
  const ms = await callers((k) => engine.strict.inc(k));
  const calls = (await engine.stats()).strict!.calls;
  await engine.close();
  for (let i = 0; i < KEYS; i++) {
    const v = await redis.client.hget(partitionKey(prefix, 's', partitionOf(keys[i]!)), keys[i]!);
    if (Number(v) !== expected(i)) throw new Error(`strict row: ${keys[i]} holds ${v}, expected ${expected(i)}`);
  }
  return { ms, calls };
}

console.log(`strict-inc · ${describeMachine()}`);
console.log(`${OPS.toLocaleString('en-US')} increments over ${KEYS} keys by ${CALLERS} concurrent callers · loopback redis-server · ${ROUNDS} rounds, medians`);
const io: number[] = [];
const strict: number[] = [];
const calls: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  io.push(mops(OPS, await ioredisRow(round)) * 1000);
  const s = await strictRow(round);
  strict.push(mops(OPS, s.ms) * 1000);
  calls.push(s.calls);
}
await redis.close();
const a = median(io);
const b = median(strict);
console.log(`${'(a) ioredis INCRBY, auto-pipelined'.padEnd(44)} ${a.toFixed(0).padStart(7)} k ops/s  1.00×`);
console.log(`${'(b) engine.strict.inc, coalesced'.padEnd(44)} ${b.toFixed(0).padStart(7)} k ops/s  ${(b / a).toFixed(2).padStart(5)}×  target ≥ 3×`);
console.log(`script calls per round: ${calls.join(', ')} (${(OPS / median(calls)).toFixed(0)} ops per call)`);
console.log(`totals verified in Redis: ${ROUNDS} rounds × 2 rows × ${KEYS} keys`);
