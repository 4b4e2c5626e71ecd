/**
 * Typed-array views over a growable SharedArrayBuffer: length-tracking views against fixed-length views of
 * the same buffer, and a plain SharedArrayBuffer as baseline. Decides that shards use fixed-length views
 * rebuilt when the arena grows. Usage: node dist/bench/typed-array-views.js [--ops 50000000]
 */
import { parseArgs } from 'node:util';
import { describeMachine } from './machine.js';

const { values } = parseArgs({ options: { ops: { type: 'string', default: '50000000' } } });
const OPS = Number(values.ops);
const BYTES = 1 << 20;
const growable = new SharedArrayBuffer(BYTES, { maxByteLength: 1 << 30 });
const views: Array<[string, Float64Array]> = [
  ['plain SAB, fixed view', new Float64Array(new SharedArrayBuffer(BYTES))],
  ['growable SAB, length-tracking', new Float64Array(growable)],
  ['growable SAB, fixed-length view', new Float64Array(growable, 0, BYTES / 8)],
];

console.log(`typed-array-views · ${describeMachine()}`);
for (const [name, a] of views) {
  const mask = a.length - 1;
  const run = (n: number) => {
    for (let i = 0; i < n; i++) a[(i * 7) & mask]! += 1;
  };
  run(1e6);
  a.fill(0);
  const start = performance.now();
  run(OPS);
  const ns = ((performance.now() - start) * 1e6) / OPS;
  let total = 0;
  for (let i = 0; i < a.length; i++) total += a[i]!;
  if (total !== OPS) throw new Error(`${name}: counted ${total}, expected ${OPS}`);
  console.log(`${name.padEnd(34)} ${ns.toFixed(2).padStart(6)} ns/increment (total verified)`);
}
