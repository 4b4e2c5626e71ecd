/**
 * Clock read: what does stamping an op with the time cost? Date.now() and performance.now() against a read
 * of a shared time cell (what the engine's clocks provide, refreshed by a ticker thread). Decides that the
 * hot path reads the cell. Usage: node dist/bench/clock-read.js [--ops 20000000]
 */
import { parseArgs } from 'node:util';
import { describeMachine } from './machine.js';

const { values } = parseArgs({ options: { ops: { type: 'string', default: '20000000' } } });
const OPS = Number(values.ops);
const cell = new Float64Array(new SharedArrayBuffer(8));
cell[0] = Date.now();

function time(name: string, read: () => number): number {
  let sum = 0;
  for (let i = 0; i < 1e5; i++) sum += read(); // warm up
  const start = performance.now();
  for (let i = 0; i < OPS; i++) sum += read();
  const ns = ((performance.now() - start) * 1e6) / OPS;
  if (!(sum > 0)) throw new Error('no reads');
  console.log(`${name.padEnd(28)} ${ns.toFixed(2).padStart(6)} ns/read`);
  return ns;
}

console.log(`clock-read · ${describeMachine()}`);
const dateNow = time('Date.now()', () => Date.now());
time('performance.now()', () => performance.now());
const shared = time('shared time cell', () => cell[0]!);
console.log(`the cell is ${(dateNow / shared).toFixed(1)}× cheaper than Date.now()`);
