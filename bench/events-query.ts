/**
 * Calendar event counts, querying: how many `query(id).lastDays(7).sum()` per second over 100k ids, with
 * every id's answer checked against what was recorded? Compared in the same run with the cost of the same
 * sum over a plain `Map<string, number[]>` of day buckets (the in-process floor for this query).
 *
 * Queries are awaited one by one, as a request handler would. Usage:
 *   node dist/bench/events-query.js [--ids 100000] [--rounds 3] [--shards N]
 */
import { parseArgs } from 'node:util';
import { createEngine, TestClock, SPEC_START } from '../src/index.js';
import { describeMachine, median, mops } from './machine.js';

const { values } = parseArgs({
  options: {
    ids: { type: 'string', default: '100000' },
    rounds: { type: 'string', default: '3' },
    shards: { type: 'string' },
  },
});
const IDS = Number(values.ids);
const ROUNDS = Number(values.rounds);
const DAY = 86_400_000;
const ids = Array.from({ length: IDS }, (_, i) => `event-${i}`);
// id i has i % 7 + 1 events on each of the last 9 days: lastDays(7) = 7 × (i % 7 + 1).
const expected = (i: number): number => 7 * ((i % 7) + 1);

const clock = new TestClock(SPEC_START);
const engine = await createEngine({ clock, ...(values.shards === undefined ? {} : { shards: Number(values.shards) }) });
const store = engine.events;
const days = new Map<string, number[]>();
for (let d = 8; d >= 0; d--) {
  for (let i = 0; i < IDS; i++) store.recordAgo(ids[i]!, d * DAY, (i % 7) + 1);
}
for (let i = 0; i < IDS; i++) days.set(ids[i]!, new Array<number>(9).fill((i % 7) + 1));
await engine.flush();

async function engineQueries(): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < IDS; i++) {
    const sum = await store.query(ids[i]!).lastDays(7).sum();
    if (sum !== expected(i)) throw new Error(`${ids[i]}: lastDays(7) = ${sum}, expected ${expected(i)}`);
  }
  return performance.now() - start;
}

async function mapQueries(): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < IDS; i++) {
    const b = days.get(ids[i]!)!;
    let sum = 0;
    for (let d = 0; d < 7; d++) sum += b[d]!;
    if ((await Promise.resolve(sum)) !== expected(i)) throw new Error('map sum');
  }
  return performance.now() - start;
}

console.log(`events-query · ${describeMachine()}`);
console.log(`${IDS.toLocaleString('en-US')} ids, 9 days of events each, default rings · ${engine.shards} shard thread(s) · ${ROUNDS} rounds, medians`);
const rows: Record<string, number[]> = { map: [], engine: [] };
for (let r = 0; r < ROUNDS; r++) {
  rows.map!.push(mops(IDS, await mapQueries()));
  rows.engine!.push(mops(IDS, await engineQueries()));
}
await engine.close();
const map = median(rows.map!);
const eng = median(rows.engine!);
console.log(`${'(a) Map of day arrays, sum of 7, awaited'.padEnd(48)} ${map.toFixed(2).padStart(7)} M queries/s`);
console.log(`${'(b) query(id).lastDays(7).sum(), verified'.padEnd(48)} ${eng.toFixed(2).padStart(7)} M queries/s  target ≥ 1 M/s`);
