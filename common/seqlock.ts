/**
 * Per-record seqlock: an Int32 at i32[2o] that a record's single writer (its shard) makes odd before a
 * change and even after it. A reader takes a snapshot with {@link readBegin}, reads the fields, and keeps
 * the result only if {@link readValid} says no write overlapped.
 *
 * Why this is enough on the memory model: Atomics operations are sequentially consistent and V8 does not
 * move plain typed-array accesses across them, so the reads sit between the two sequence loads.
 *
 * Imported by worker threads: imports nothing main-only.
 */

/** Starts a write: the sequence becomes odd. */
export function writeBegin(i32: Int32Array, o: number): void {
  Atomics.add(i32, 2 * o, 1);
}

/** Ends a write: the sequence becomes even again. */
export function writeEnd(i32: Int32Array, o: number): void {
  Atomics.add(i32, 2 * o, 1);
}

/** The record's sequence if no write is in progress, else -1. */
export function readBegin(i32: Int32Array, o: number): number {
  const s = Atomics.load(i32, 2 * o);
  return (s & 1) === 0 ? s : -1;
}

/** True when no write started since `readBegin` returned `s`. */
export function readValid(i32: Int32Array, o: number, s: number): boolean {
  return s !== -1 && Atomics.load(i32, 2 * o) === s;
}
