/** Measuring helpers of the benchmark CLI: latency samples, percentiles, heap use. */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Per-op latencies of an awaited loop, in a preallocated array (recording allocates nothing). */
export class Latencies {
  private readonly samples: Float64Array;
  private n = 0;
  constructor(capacity: number) {
    this.samples = new Float64Array(capacity);
  }
  add(ms: number): void {
    if (this.n < this.samples.length) this.samples[this.n++] = ms;
  }
  /** p50 and p99 in ms. */
  percentiles(): { p50: number; p99: number } {
    const sorted = this.samples.subarray(0, this.n).sort();
    const at = (q: number): number => sorted[Math.min(this.n - 1, Math.floor(q * this.n))] ?? 0;
    return { p50: at(0.5), p99: at(0.99) };
  }
}

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap and array-buffer bytes in use after a full collection. */
export function heapBytes(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** Yields to the event loop (a service would, and the engine sends its open batches then). */
export function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The expected total of key `i` when `ops` ops cycle through `keys` keys. */
export function share(ops: number, keys: number, i: number): number {
  return Math.floor(ops / keys) + (i < ops % keys ? 1 : 0);
}

/** Throws a verification error naming the scenario side. */
export function expectEqual(what: string, got: unknown, want: unknown): void {
  if (got !== want) throw new Error(`verification failed: ${what} is ${String(got)}, expected ${String(want)}`);
}
