/**
 * Lax Redis counters under a heavy increment load: how many `engine.lax.add(key)` per second, compared
 * with the plain `Map` loop of the same run, and how many Redis commands per second the run caused — a
 * figure the flush interval should set, not the increment rate.
 *
 *  (a) Map<string, number> increment                      the ceiling for string-keyed counting
 *  (b) engine.lax.add(key), flushIntervalMs 20            buffered in shard memory, delivered by the flusher
 *  (c) the same with flushIntervalMs 100
 *  (d) engine.lax.handle(key).add(), flushIntervalMs 20   no key lookup
 *
 * Engine rows are timed from the first add until every shard applied every op; then `lax.flush()` delivers
 * what is left and every key's total is verified in Redis. Redis commands are counted by the server
 * (INFO commandstats) over the timed part of the run.
 * Usage: node dist/bench/lax-inc.js [--ops 10000000] [--keys 1000] [--redis URL]
 */
import { parseArgs } from 'node:util';
import { createEngine, type LaxHandle } from '../src/index.js';
import { partitionKey, partitionOf } from '../common/redis.js';
import { describeMachine, mapLoop, mops } from './machine.js';
import { benchRedis } from './redis.js';

const { values } = parseArgs({
  options: {
    ops: { type: 'string', default: '10000000' },
    keys: { type: 'string', default: '1000' },
    redis: { type: 'string' },
  },
});
const OPS = Number(values.ops);
const KEYS = Number(values.keys);
const keys = Array.from({ length: KEYS }, (_, i) => `k${i}`);
const redis = await benchRedis(values.redis);

interface Row {
  readonly mops: number;
  /** Script calls (round trips) per second, and every command Redis ran per second (the script's own included). */
  readonly callsPerSecond: number;
  readonly commandsPerSecond: number;
  readonly seconds: number;
}

async function laxRow(name: string, flushIntervalMs: number, byHandle: boolean): Promise<Row> {
  const prefix = `bench-lax-${name}`;
  const engine = await createEngine({ shards: 1, redis: redis.url, prefix, flushIntervalMs });
  const handles: LaxHandle[] = keys.map((k) => engine.lax.handle(k));
  await engine.lax.flush();
  const before = await redis.commandCalls();
  const start = performance.now();
  let j = 0;
  // Yield now and then, as a service would: the flusher is a thread of its own, but the main thread's
  // event loop sends the open batch at the end of each turn.
  for (let i = 0; i < OPS; i++) {
    if (byHandle) handles[j]!.add();
    else engine.lax.add(keys[j]!);
    if (++j === KEYS) j = 0;
    if ((i & 0xffff) === 0xffff) await new Promise((resolve) => setImmediate(resolve));
  }
  await engine.flush();
  const ms = performance.now() - start;
  const after = await redis.commandCalls();
  let commands = 0;
  for (const [name, n] of after) commands += n - (before.get(name) ?? 0);
  commands -= 1; // the INFO that read the figures
  const calls = (after.get('evalsha') ?? 0) - (before.get('evalsha') ?? 0);
  await engine.lax.flush();
  await engine.close();
  for (let i = 0; i < KEYS; i++) {
    const v = Number(await redis.client.hget(partitionKey(prefix, 'l', partitionOf(keys[i]!)), keys[i]!));
    const want = Math.floor(OPS / KEYS) + (i < OPS % KEYS ? 1 : 0);
    if (v !== want) throw new Error(`${name}: ${keys[i]} holds ${v} in Redis, expected ${want}`);
  }
  return { mops: mops(OPS, ms), callsPerSecond: calls / (ms / 1000), commandsPerSecond: commands / (ms / 1000), seconds: ms / 1000 };
}

console.log(`lax-inc · ${describeMachine()}`);
console.log(`${OPS.toLocaleString('en-US')} increments over ${KEYS} keys · 1 shard thread + the flusher thread · loopback redis-server`);
const map = mops(OPS, mapLoop(keys, OPS));
const rows: Array<[string, Row]> = [
  ['(b) lax.add(key), flush every 20 ms', await laxRow('b', 20, false)],
  ['(c) lax.add(key), flush every 100 ms', await laxRow('c', 100, false)],
  ['(d) lax.handle(key).add(), flush every 20 ms', await laxRow('d', 20, true)],
];
await redis.close();
console.log(`${'(a) Map<string, number> increment'.padEnd(46)} ${map.toFixed(1).padStart(6)} M ops/s  1.00× Map`);
for (const [name, r] of rows) {
  console.log(
    `${name.padEnd(46)} ${r.mops.toFixed(1).padStart(6)} M ops/s  ${(r.mops / map).toFixed(2).padStart(4)}× Map  ${r.callsPerSecond.toFixed(0).padStart(4)} script calls/s  ${r.commandsPerSecond.toFixed(0).padStart(6)} commands/s (over ${r.seconds.toFixed(1)} s)`,
  );
}
console.log(`totals verified in Redis: ${rows.length} runs × ${KEYS} keys; commands/s counts every command Redis ran, the ones inside the script included`);
