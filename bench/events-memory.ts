/**
 * Calendar event counts, memory: bytes per event id at the default 256 buckets, measured over 1M ids.
 *
 * Counts both homes of an id: its record in a shard's shared memory (the arena words handed out) and its
 * directory entry on the calling thread (V8 heap growth after a full GC, measured with the ids' strings
 * allocated before the baseline, since the caller owns them). Every id is recorded once and then read back.
 *   node dist/bench/events-memory.js [--ids 1000000] [--shards N]
 */
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createEngine } from '../src/index.js';
import { internals } from '../src/engine.js';
import { H_USED_WORDS, ARENA_FIRST_WORD, WORD_BYTES } from '../common/layout.js';
import { describeMachine } from './machine.js';

const { values } = parseArgs({ options: { ids: { type: 'string', default: '1000000' }, shards: { type: 'string' } } });
const IDS = Number(values.ids);
// A full GC without --expose-gc on the command line (worker threads refuse that flag in execArgv).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const ids = Array.from({ length: IDS }, (_, i) => `event-${i}`);
const engine = await createEngine(values.shards === undefined ? {} : { shards: Number(values.shards) });
const store = engine.events;
store.record('warm-up');
await engine.flush();
gc();
const heapBefore = process.memoryUsage().heapUsed;
const rssBefore = process.memoryUsage().rss;
for (const id of ids) store.record(id);
await engine.flush();
gc();
const heapAfter = process.memoryUsage().heapUsed;
const rssAfter = process.memoryUsage().rss;

let sharedBytes = 0;
for (const lane of engine[internals].router.lanes) {
  const header = new Int32Array(lane.header);
  sharedBytes += (Atomics.load(header, H_USED_WORDS) - ARENA_FIRST_WORD) * WORD_BYTES;
}
let total = 0;
for (let i = 0; i < IDS; i += 997) total += (await store.query(ids[i]!).ever().sum()) ?? 0;
const expected = Math.ceil(IDS / 997);
if (total !== expected) throw new Error(`read back ${total}, expected ${expected}`);
await engine.close();

const perId = (bytes: number): string => `${(bytes / IDS).toFixed(0).padStart(6)} B/id`;
console.log(`events-memory · ${describeMachine()}`);
console.log(`${IDS.toLocaleString('en-US')} ids, default rings (256 buckets) · ${engine.shards} shard thread(s)`);
console.log(`shard shared memory (records)          ${perId(sharedBytes)}`);
console.log(`calling-thread directory (heap growth) ${perId(heapAfter - heapBefore)}`);
console.log(`total                                  ${perId(sharedBytes + heapAfter - heapBefore)}   target ≤ 1.2 KB (1229 B)`);
console.log(`process RSS growth, for reference      ${perId(rssAfter - rssBefore)}   (includes the shard thread's own heap and arena pages)`);
