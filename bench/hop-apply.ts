/**
 * Shard apply: ns per op for a shard applying batches of hopping-window ops in-process (no threads), and
 * with the msgpack envelope encode + decode each batch pays. The question: what does the shard side cost
 * per op, and does it keep up with the producer? Usage: node dist/bench/hop-apply.js [--batches 2000]
 */
import { parseArgs } from 'node:util';
import { decode, encode } from '../common/codec.js';
import { sumHop } from '../common/records/hop.js';
import { ARENA_FIRST_WORD, HEADER_BYTES, hopRecordWords, KIND_HOP } from '../common/layout.js';
import { type BatchEnvelope, INIT_STRIDE } from '../common/messages.js';
import { ShardCore } from '../workers/shard-core.js';
import { describeMachine } from './machine.js';

const { values } = parseArgs({ options: { batches: { type: 'string', default: '2000' } } });
const BATCHES = Number(values.batches);
const KEYS = 10_000;
const SIZE = 4;
const OPS = 8192;
const T = Date.UTC(2024, 5, 17, 10, 30);

const core = new ShardCore(0, new SharedArrayBuffer(HEADER_BYTES), new SharedArrayBuffer(16 << 20, { maxByteLength: 64 << 20 }), new SharedArrayBuffer(8));
const offsetOf = (k: number): number => ARENA_FIRST_WORD + k * hopRecordWords(SIZE);
const inits = Float64Array.from({ length: KEYS * INIT_STRIDE }, (_, i) => [offsetOf(Math.floor(i / INIT_STRIDE)), KIND_HOP, 86_400_000, SIZE][i % INIT_STRIDE]!);
let seq = 1;
core.apply({ seq: seq++, inits, calendars: [], ctrl: [], offsets: new Int32Array(0), deltas: new Float64Array(0), runStarts: Int32Array.of(0), runTimes: Float64Array.of(T) });
const offsets = new Int32Array(OPS).map((_, i) => offsetOf(i % KEYS));
const batch = (): BatchEnvelope => ({ seq: seq++, inits: new Float64Array(0), calendars: [], ctrl: [], offsets, deltas: new Float64Array(OPS).fill(1), runStarts: Int32Array.of(0), runTimes: Float64Array.of(T) });

function measure(name: string, step: () => void): void {
  const start = performance.now();
  for (let b = 0; b < BATCHES; b++) step();
  const ms = performance.now() - start;
  console.log(`${name.padEnd(28)} ${((ms * 1e6) / (BATCHES * OPS)).toFixed(1).padStart(6)} ns/op  ${((BATCHES * OPS) / ms / 1000).toFixed(1)} M ops/s`);
}

console.log(`hop-apply · ${describeMachine()}`);
measure('apply', () => core.apply(batch()));
measure('encode + decode + apply', () => core.apply(decode<BatchEnvelope>(encode(batch()))));
let total = 0;
for (let k = 0; k < KEYS; k++) total += sumHop(core.views.f64, offsetOf(k), T);
if (total !== 2 * BATCHES * OPS) throw new Error(`counted ${total}, expected ${2 * BATCHES * OPS}`);
console.log(`total verified: ${total.toLocaleString('en-US')} ops`);
