/**
 * Shard apply cost of calendar records, in-process (no threads): ns per event for the default six rings
 * (256 buckets), so that the shard's share of `store.record()` is measured on its own. Usage:
 *   node dist/bench/cal-apply.js [--batches 400]
 */
import { parseArgs } from 'node:util';
import { CalShape } from '../common/records/calendar/shape.js';
import { ARENA_FIRST_WORD, H_USED_WORDS, HEADER_BYTES, KIND_CAL } from '../common/layout.js';
import { type BatchEnvelope, type CalConfig, INIT_STRIDE } from '../common/messages.js';
import { ShardCore } from '../workers/shard-core.js';
import { resolveIntervals, DEFAULT_INTERVALS } from '../src/events/intervals.js';
import { describeMachine } from './machine.js';

const { values } = parseArgs({ options: { batches: { type: 'string', default: '400' } } });
const BATCHES = Number(values.batches);
const IDS = 10_000;
const OPS = 8192;
const T = Date.UTC(2024, 5, 17, 10, 30);

const config: CalConfig = { id: 1, timeZone: 'UTC', rings: resolveIntervals(DEFAULT_INTERVALS) };
const words = new CalShape(config).words;
const header = new SharedArrayBuffer(HEADER_BYTES);
new Int32Array(header)[H_USED_WORDS] = ARENA_FIRST_WORD + IDS * words;
const core = new ShardCore(0, header, new SharedArrayBuffer(64 << 20, { maxByteLength: 256 << 20 }), new SharedArrayBuffer(8), [config]);
const offsetOf = (k: number): number => ARENA_FIRST_WORD + k * words;
const inits = Float64Array.from({ length: IDS * INIT_STRIDE }, (_, i) => [offsetOf(Math.floor(i / INIT_STRIDE)), KIND_CAL, 1, 0][i % INIT_STRIDE]!);
let seq = 1;
core.apply({ seq: seq++, inits, calendars: [], ctrl: [], offsets: new Int32Array(0), deltas: new Float64Array(0), runStarts: Int32Array.of(0), runTimes: Float64Array.of(T) });
const offsets = new Int32Array(OPS).map((_, i) => offsetOf(i % IDS));
const deltas = new Float64Array(OPS).fill(1);
const batch = (): BatchEnvelope => ({ seq: seq++, inits: new Float64Array(0), calendars: [], ctrl: [], offsets, deltas, runStarts: Int32Array.of(0), runTimes: Float64Array.of(T) });

console.log(`cal-apply · ${describeMachine()}`);
for (let round = 0; round < 3; round++) {
  const start = performance.now();
  for (let b = 0; b < BATCHES; b++) core.apply(batch());
  const ms = performance.now() - start;
  console.log(`apply, 6 rings / 256 buckets   ${((ms * 1e6) / (BATCHES * OPS)).toFixed(1).padStart(6)} ns/event  ${((BATCHES * OPS) / ms / 1000).toFixed(1)} M events/s`);
}
