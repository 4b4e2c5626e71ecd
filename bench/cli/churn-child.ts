/**
 * One side of the `churn` scenario, in a process of its own: `node churn-child.js <tallyworks|map> <keys>`.
 * Observes `keys` distinct keys once each, 1,000 per ms of a test clock, through windows of 10 × 1 s whose
 * idle ones go after idleMs = keys / 10 ms-of-keys (so about a tenth of the keys is live at any time); a pass
 * over the windows runs every idleMs / 4 of the clock (the bench drives it: a set's own timer runs on real
 * time). RSS is read every 1/200 of the keys and each tenth reports its peak: the footprint that tenth
 * needed, whatever phase of garbage collection a single reading would land on. Prints one JSON line:
 * {@link ChurnResult}.
 */
import { createEngine, TestClock } from '../../src/index.js';
import type { ChurnResult } from './storage-scenarios.js';

const [side, keysArg] = process.argv.slice(2);
const keys = Number(keysArg);
if ((side !== 'tallyworks' && side !== 'map') || !Number.isSafeInteger(keys) || keys < 1000) {
  process.stderr.write('usage: churn-child.js <tallyworks|map> <keys ≥ 1000>\n');
  process.exit(2);
}
const PER_MS = 1000;
const idleMs = Math.max(1, Math.round(keys / 10 / PER_MS));
const passEvery = Math.max(1, Math.round((idleMs * PER_MS) / 4));
const sampleEvery = Math.ceil(keys / 200);
const T0 = Date.UTC(2026, 0, 5, 12);
/** The peak RSS of each tenth of the keys. */
const rss: number[] = [];
let peak = 0;
let samples = 0;
function sample(): void {
  peak = Math.max(peak, process.memoryUsage().rss);
  if (++samples % 20 === 0) {
    rss.push(peak);
    peak = 0;
  }
}

async function tallyworks(): Promise<Omit<ChurnResult, 'rss'>> {
  const clock = new TestClock(T0);
  const engine = await createEngine({ clock });
  const set = engine.windows({ size: 10, unit: 'second' }, { idleMs });
  const start = performance.now();
  for (let i = 0; i < keys; i++) {
    set.observe(`key-${i}`);
    if ((i + 1) % PER_MS === 0) clock.advance(1);
    if ((i + 1) % passEvery === 0) await set.evictIdle();
    if ((i + 1) % sampleEvery === 0) sample();
  }
  await engine.flush();
  const ms = performance.now() - start;
  const live = set.count;
  if (set.evictions + live !== keys) throw new Error(`evictions ${set.evictions} + live ${live} ≠ ${keys}`);
  const last = await set.value(`key-${keys - 1}`);
  if (last !== 1) throw new Error(`the last key reads ${last}, not 1`);
  await engine.close();
  return { ms, live, verified: `${keys.toLocaleString('en-US')} keys: ${set.evictions.toLocaleString('en-US')} let go + ${live.toLocaleString('en-US')} live` };
}

async function map(): Promise<Omit<ChurnResult, 'rss'>> {
  interface Entry {
    buckets: Float64Array;
    head: number;
    seenMs: number;
  }
  let now = T0;
  const byKey = new Map<string, Entry>();
  let evicted = 0;
  const start = performance.now();
  for (let i = 0; i < keys; i++) {
    const key = `key-${i}`;
    let e = byKey.get(key);
    if (e === undefined) byKey.set(key, (e = { buckets: new Float64Array(10), head: Math.floor(now / 1000), seenMs: now }));
    e.buckets[Math.floor(now / 1000) % 10]! += 1;
    e.seenMs = now;
    if ((i + 1) % PER_MS === 0) now += 1;
    if ((i + 1) % passEvery === 0) {
      for (const [k, v] of byKey) {
        if (now - v.seenMs >= idleMs) {
          byKey.delete(k);
          evicted++;
        }
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    if ((i + 1) % sampleEvery === 0) sample();
  }
  const ms = performance.now() - start;
  if (evicted + byKey.size !== keys) throw new Error(`evicted ${evicted} + live ${byKey.size} ≠ ${keys}`);
  return { ms, live: byKey.size, verified: `${keys.toLocaleString('en-US')} keys: ${evicted.toLocaleString('en-US')} deleted + ${byKey.size.toLocaleString('en-US')} live` };
}

const result = side === 'tallyworks' ? await tallyworks() : await map();
process.stdout.write(`${JSON.stringify({ ...result, rss } satisfies ChurnResult)}\n`);
