/**
 * Calendar event counts, recording: how fast does `store.record(id)` count by string id — every event going
 * into all six default rings (256 buckets) in the shard that owns the id — compared with the plain
 * `Map<string, number>` loop of the same run?
 *
 *  (a) Map loop:                 map.set(id, (map.get(id) ?? 0) + 1)
 *  (b) store.record(id)          id lookup, batch append, shard apply into 6 rings
 *
 * The engine row is timed end to end: from the first record until every shard has applied every op
 * (`engine.flush()`); then every id's `ever()` and `lastMinutes(1)` sums are read back and verified. Usage:
 *   node dist/bench/events-record.js [--ops 20000000] [--ids 10000] [--rounds 3] [--shards N]
 */
import { parseArgs } from 'node:util';
import { createEngine, type EventStore } from '../src/index.js';
import { describeMachine, mapLoop, median, mops } from './machine.js';

const { values } = parseArgs({
  options: {
    ops: { type: 'string', default: '20000000' },
    ids: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '3' },
    shards: { type: 'string' },
  },
});
const OPS = Number(values.ops);
const IDS = Number(values.ids);
const ROUNDS = Number(values.rounds);
const ids = Array.from({ length: IDS }, (_, i) => `event-${i}`);


const engine = await createEngine(values.shards === undefined ? {} : { shards: Number(values.shards) });

async function verify(store: EventStore): Promise<void> {
  let ever = 0;
  let minute = 0;
  for (const id of ids) {
    ever += (await store.query(id).ever().sum()) ?? 0;
    minute += (await store.query(id).lastHours(1).sum()) ?? 0;
  }
  if (ever !== OPS || minute !== OPS) throw new Error(`engine counted ${ever} (ever) and ${minute} (this hour), expected ${OPS}`);
}

async function record(): Promise<number> {
  const store = engine.eventStore();
  for (const id of ids) store.record(id, 0); // create the ids first: the row measures counting, not creation
  await engine.flush();
  const start = performance.now();
  let j = 0;
  for (let i = 0; i < OPS; i++) {
    store.record(ids[j]!);
    if (++j === IDS) j = 0;
  }
  await engine.flush();
  const ms = performance.now() - start;
  await verify(store);
  return ms;
}

console.log(`events-record · ${describeMachine()}`);
console.log(`${OPS.toLocaleString('en-US')} events over ${IDS.toLocaleString('en-US')} ids, default rings (256 buckets) · ${engine.shards} shard thread(s) · ${ROUNDS} rounds, medians`);
const rows: Record<string, number[]> = { map: [], record: [] };
for (let round = 0; round < ROUNDS; round++) {
  rows.map!.push(mops(OPS, mapLoop(ids, OPS)));
  rows.record!.push(mops(OPS, await record()));
}
await engine.close();
const map = median(rows.map!);
const rec = median(rows.record!);
console.log(`${'(a) Map<string, number> increment'.padEnd(44)} ${map.toFixed(1).padStart(7)} M ops/s  1.00× Map  ceiling`);
console.log(`${'(b) store.record(id), applied + verified'.padEnd(44)} ${rec.toFixed(1).padStart(7)} M ops/s  ${(rec / map).toFixed(2).padStart(4)}× Map  target ≥ 10 M/s`);
console.log(`totals verified: ${ROUNDS} engine runs of ${OPS.toLocaleString('en-US')} events each (ever and this hour)`);
