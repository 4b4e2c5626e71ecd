/** Prints what a benchmark ran on, so its numbers can be compared. */
import { availableParallelism, cpus, totalmem } from 'node:os';

export function describeMachine(): string {
  const cpu = cpus()[0]?.model.trim() ?? 'unknown cpu';
  return `${cpu} · ${availableParallelism()} cores · ${Math.round(totalmem() / 2 ** 30)} GiB · Node ${process.version} · ${process.platform}/${process.arch}`;
}

/** Millions of ops per second. */
export function mops(ops: number, ms: number): number {
  return ops / ms / 1000;
}

/** Median of a list of numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * The baseline every string-keyed row is compared with: `ops` increments of a `Map<string, number>`,
 * cycling through `keys`. Returns the elapsed ms; throws if the total is wrong. `keep` sees the map before
 * it is dropped (to measure its memory).
 */
export function mapLoop(keys: readonly string[], ops: number, keep?: (map: Map<string, number>) => void): number {
  const map = new Map<string, number>();
  const start = performance.now();
  let j = 0;
  for (let i = 0; i < ops; i++) {
    const key = keys[j]!;
    map.set(key, (map.get(key) ?? 0) + 1);
    if (++j === keys.length) j = 0;
  }
  const ms = performance.now() - start;
  let total = 0;
  for (const v of map.values()) total += v;
  if (total !== ops) throw new Error(`Map loop counted ${total}, expected ${ops}`);
  keep?.(map);
  return ms;
}
