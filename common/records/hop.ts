/**
 * The hopping-window record kind (hops parity): its init, write and read algorithms over a record in a
 * shard's arena.
 *
 * A window has W buckets of `unitMs` each. Unit boundaries follow Go's `time.Truncate`, counted from
 * 0001-01-01 UTC: unit index k = floor((t + GO_EPOCH_OFFSET_MS) / unitMs). Units that divide a day align
 * with the Unix epoch; 7-day units start on Monday 00:00 UTC.
 *
 * Instead of shifting buckets (the seed's representation), bucket k lives at position k mod W and the
 * record remembers the newest unit index it holds (the head). Moving the window zeroes the positions of
 * the units passed and then advances the head: re-running a half-done move zeroes the same positions again,
 * so a shard thread killed mid-move leaves nothing a replay cannot repair.
 *
 * Linearizable reads (the seed can count a boundary event twice for a moment). A move changes many fields
 * at once, so the shard brackets it with the record's seqlock (odd while moving) and readers retry until
 * they see the same even value before and after: a read never mixes an old head with new buckets. An add
 * inside the head unit is not bracketed: it is one aligned 8-byte store to the head bucket, the only bucket
 * that can change between moves, so a reader's sum is the window's value at the moment it read that bucket.
 * (Bracketing every add too took bench/hop-apply from ~12 to ~28 ns per op when this was measured.)
 */
import { HOP_BUCKETS, HOP_HEAD, HOP_HEAD_POS, HOP_HEAD_START, HOP_SIZE, HOP_UNIT_MS } from '../layout.js';
import type { Journal } from './journal.js';

/** Milliseconds from 0001-01-01T00:00:00Z to the Unix epoch. */
export const GO_EPOCH_OFFSET_MS = 62135596800000;

/** Index of the unit holding time `t` (ms since the Unix epoch). */
export function unitIndex(t: number, unitMs: number): number {
  return Math.floor((t + GO_EPOCH_OFFSET_MS) / unitMs);
}

/** Start (ms since the Unix epoch) of unit index `k`. */
export function unitStart(k: number, unitMs: number): number {
  return k * unitMs - GO_EPOCH_OFFSET_MS;
}

/** Writes a fresh record's fields (the shard does this when the batch that creates the key arrives). */
export function initHop(f64: Float64Array, o: number, unitMs: number, size: number): void {
  f64[o + HOP_UNIT_MS] = unitMs;
  f64[o + HOP_SIZE] = size;
  f64[o + HOP_HEAD] = -Infinity;
  f64[o + HOP_HEAD_START] = Number.NaN;
  f64[o + HOP_HEAD_POS] = 0;
}

/**
 * The Float64 index of the bucket for time `t` if the window need not move (`t` in the head unit, or
 * before it: a clock that went backwards lands in the head bucket, as in the seed), else -1. No division:
 * the head unit's start and position are cached in the record.
 */
export function hopFastPos(f64: Float64Array, o: number, t: number): number {
  return t - f64[o + HOP_HEAD_START]! < f64[o + HOP_UNIT_MS]! ? o + HOP_BUCKETS + f64[o + HOP_HEAD_POS]! : -1;
}

/**
 * Moves the window so that its head is the unit of `t` (never backwards) and returns the Float64 index of
 * the bucket that `t` falls in. The caller holds the record's seqlock. Writes head, position and start in
 * that order, so a thread killed between them leaves a stale start that sends the replay here again.
 */
export function moveHop(f64: Float64Array, o: number, t: number): number {
  const unitMs = f64[o + HOP_UNIT_MS]!;
  const size = f64[o + HOP_SIZE]!;
  const head = f64[o + HOP_HEAD]!;
  let k = Math.floor((t + GO_EPOCH_OFFSET_MS) / unitMs);
  if (k > head) {
    const passed = k - head;
    const base = o + HOP_BUCKETS;
    if (passed >= size) {
      f64.fill(0, base, base + size);
    } else {
      // Counted by steps, not by j ≤ k: a loop on unit indexes would stop advancing past 2^53.
      for (let step = 1; step <= passed; step++) f64[base + ((head + step) % size)] = 0;
    }
    f64[o + HOP_HEAD] = k;
  } else {
    k = head;
  }
  const pos = k % size;
  f64[o + HOP_HEAD_POS] = pos;
  f64[o + HOP_HEAD_START] = k * unitMs - GO_EPOCH_OFFSET_MS;
  return o + HOP_BUCKETS + pos;
}

/**
 * Adds `delta` at time `t`: moves the window first when `t` is past the head unit (inside the record's
 * seqlock; the move is idempotent, so not journaled), then one journaled add to the bucket.
 */
export function addHop(f64: Float64Array, journal: Journal, o: number, t: number, delta: number): void {
  let pos = hopFastPos(f64, o, t);
  if (pos === -1) {
    journal.lock(o);
    pos = moveHop(f64, o, t);
    journal.unlock(o);
  }
  journal.writeOnly(pos, f64[pos]! + delta);
}

/**
 * Sum of the buckets visible at time `now`: units in (kNow − W, kNow], where kNow never goes behind the
 * head (a clock set back does not move the window). Not synchronised: call inside a seqlock read.
 */
export function sumHop(f64: Float64Array, o: number, now: number): number {
  const unitMs = f64[o + HOP_UNIT_MS]!;
  const size = f64[o + HOP_SIZE]!;
  const head = f64[o + HOP_HEAD]!;
  if (head === -Infinity) return 0;
  const kNow = Math.max(Math.floor((now + GO_EPOCH_OFFSET_MS) / unitMs), head);
  // Units head, head − 1, … back to kNow − W + 1: at most W of them (a count, never a walk on indexes).
  const n = Math.min(size, head - (kNow - size + 1) + 1);
  let sum = 0;
  const base = o + HOP_BUCKETS;
  for (let i = 0; i < n; i++) sum += f64[base + ((head - i) % size)]!;
  return sum;
}

/**
 * The W bucket counts visible at `now`, oldest first (the last element is the current unit). Not
 * synchronised: call inside a seqlock read.
 */
export function bucketsHop(f64: Float64Array, o: number, now: number, out: number[]): number[] {
  const unitMs = f64[o + HOP_UNIT_MS]!;
  const size = f64[o + HOP_SIZE]!;
  const head = f64[o + HOP_HEAD]!;
  out.length = size;
  out.fill(0);
  if (head === -Infinity) return out;
  const kNow = Math.max(Math.floor((now + GO_EPOCH_OFFSET_MS) / unitMs), head);
  const base = o + HOP_BUCKETS;
  const n = Math.min(size, head - (kNow - size + 1) + 1);
  for (let i = 0; i < n; i++) out[size - 1 - (kNow - head) - i] = f64[base + ((head - i) % size)]!;
  return out;
}

/**
 * Adds stored bucket counts into the record (a window's warm restart): `head` is the unit index of
 * `values[0]`, the values go newest first. The window moves forward to `head` first when it is behind
 * (never backwards); units already out of the window are skipped. As one change for readers. Adds commute,
 * so counts observed in the new record before the load arrives are kept.
 */
export function loadHop(f64: Float64Array, journal: Journal, o: number, head: number, values: readonly number[]): void {
  const unitMs = f64[o + HOP_UNIT_MS]!;
  const size = f64[o + HOP_SIZE]!;
  journal.lock(o);
  if (head > f64[o + HOP_HEAD]!) moveHop(f64, o, unitStart(head, unitMs));
  const now = f64[o + HOP_HEAD]!;
  const base = o + HOP_BUCKETS;
  for (let j = 0; j < values.length && j < size; j++) {
    const k = head - j;
    if (k <= now - size) break;
    const v = values[j]!;
    if (k > now || v === 0) continue;
    const pos = base + (k % size);
    journal.write(pos, f64[pos]! + v);
  }
  journal.unlock(o);
}
