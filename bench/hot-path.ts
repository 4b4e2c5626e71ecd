/**
 * Hot path: how fast can a service count by string key through the engine, compared with the plain
 * `Map<string, number>` loop (the ceiling for string-keyed counting on one thread), in one run?
 *
 *  (a) Map loop:                 map.set(key, (map.get(key) ?? 0) + 1)
 *  (b) engine by string key:     set.observe(key)        — key lookup, batch append, shard apply
 *  (c) engine through handles:   windows[i].observe()   — no key lookup
 *
 * Engine rows are timed end to end: from the first observe until every shard has applied every op
 * (`engine.flush()`); then each total is read back and verified. Usage:
 *   node dist/bench/hot-path.js [--ops 20000000] [--keys 10000] [--rounds 3] [--shards N]
 */
import { parseArgs } from 'node:util';
import { createEngine } from '../src/index.js';
import { describeMachine, mapLoop, median, mops } from './machine.js';

const { values } = parseArgs({
  options: {
    ops: { type: 'string', default: '20000000' },
    keys: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '3' },
    shards: { type: 'string' },
  },
});
const OPS = Number(values.ops);
const KEYS = Number(values.keys);
const ROUNDS = Number(values.rounds);

const keys = Array.from({ length: KEYS }, (_, i) => `user:${i}`.replace(':', '-'));


const engine = await createEngine(values.shards === undefined ? {} : { shards: Number(values.shards) });
// Windows long enough that no observation leaves them during the run.
const shape = { size: 2, unit: 'day' } as const;

async function verify(read: (key: string) => Promise<number>, expectedTotal: number): Promise<void> {
  let total = 0;
  for (const key of keys) total += await read(key);
  if (total !== expectedTotal) throw new Error(`engine counted ${total}, expected ${expectedTotal}`);
}

async function byKey(round: number): Promise<number> {
  const set = engine.windows({ ...shape, size: 2 + round });
  for (const key of keys) set.window(key); // create the keys first: the row measures counting, not creation
  await engine.flush();
  const start = performance.now();
  let j = 0;
  for (let i = 0; i < OPS; i++) {
    set.observe(keys[j]!);
    if (++j === KEYS) j = 0;
  }
  await engine.flush();
  const ms = performance.now() - start;
  await verify((k) => set.value(k), OPS);
  return ms;
}

async function byHandle(round: number): Promise<number> {
  const set = engine.windows({ ...shape, size: 100 + round });
  const handles = keys.map((k) => set.window(k));
  await engine.flush();
  const start = performance.now();
  let j = 0;
  for (let i = 0; i < OPS; i++) {
    handles[j]!.observe();
    if (++j === KEYS) j = 0;
  }
  await engine.flush();
  const ms = performance.now() - start;
  await verify((k) => set.value(k), OPS);
  return ms;
}

console.log(`hot-path · ${describeMachine()}`);
console.log(`${OPS.toLocaleString('en-US')} ops over ${KEYS.toLocaleString('en-US')} keys · ${engine.shards} shard thread(s) · ${ROUNDS} rounds, medians`);
const rows: Record<string, number[]> = { map: [], key: [], handle: [] };
for (let round = 0; round < ROUNDS; round++) {
  rows.map!.push(mops(OPS, mapLoop(keys, OPS)));
  rows.key!.push(mops(OPS, await byKey(round)));
  rows.handle!.push(mops(OPS, await byHandle(round)));
}
await engine.close();

const map = median(rows.map!);
const key = median(rows.key!);
const handle = median(rows.handle!);
const line = (name: string, value: number, note: string) =>
  console.log(`${name.padEnd(44)} ${value.toFixed(1).padStart(7)} M ops/s  ${(value / map).toFixed(2).padStart(5)}× Map  ${note}`);
line('(a) Map<string, number> increment', map, 'ceiling');
line('(b) set.observe(key), applied + verified', key, 'target ≥ 10 M/s and ≥ 0.5× Map');
line('(c) handle.observe(), applied + verified', handle, 'target ≥ 30 M/s');
console.log(`totals verified: ${ROUNDS * 2} engine runs of ${OPS.toLocaleString('en-US')} ops each`);
