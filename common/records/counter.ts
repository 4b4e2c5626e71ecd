/**
 * The counter record kind: a shard-held counter (embedded mode's strict and lax counters, and the shard
 * side of a lax counter flushed to Redis). Its init, its add (a lax increment) and its conditional op (an
 * embedded strict inc / set / del that answers through a result cell). See common/layout.ts for the
 * fields; the flusher reads and commits the Redis-side fields (workers/flusher-records.ts).
 *
 * Imported by worker threads: imports nothing main-only.
 */
import { protocolError } from '../errors.js';
import { CNT_LAX, CNTF_COMMITTED, CNTF_REMOTE, CNTF_REMOTE_AT, CNTF_TARGET, CNTF_TOTAL, type ShardViews } from '../layout.js';
import { compare, CounterMode, type CounterOp } from '../messages.js';
import type { Journal } from './journal.js';

/** Writes a fresh record: total 0, nothing committed; `lax` is its lax index (-1 for an embedded counter). */
export function initCounter(views: ShardViews, o: number, lax: number): void {
  const { i32, f64 } = views;
  i32[2 * o + CNT_LAX] = lax;
  f64[o + CNTF_TOTAL] = 0;
  f64[o + CNTF_COMMITTED] = 0;
  f64[o + CNTF_REMOTE] = 0;
  f64[o + CNTF_REMOTE_AT] = Number.NEGATIVE_INFINITY;
  f64[o + CNTF_TARGET] = Number.NaN;
}

/** Adds to the total (the op's only write); returns the counter's lax index, to be marked dirty, or -1. */
export function addCounter(views: ShardViews, journal: Journal, o: number, delta: number): number {
  journal.writeOnly(o + CNTF_TOTAL, views.f64[o + CNTF_TOTAL]! + delta);
  return views.i32[2 * o + CNT_LAX]!;
}

/** The counter's lax index, or -1 (embedded). */
export function laxIndexOf(views: ShardViews, o: number): number {
  return views.i32[2 * o + CNT_LAX]!;
}

/**
 * An in-process counter op. It writes [new, old] to the result cell before the journaled write of the
 * total, so a resumed op whose write was done finds its result already in the cell (and is not run again).
 */
export function counterOp(views: ShardViews, journal: Journal, op: CounterOp, shard: number): void {
  const f64 = views.f64;
  const o = op.offset;
  if (journal.resuming()) {
    journal.write(o + CNTF_TOTAL, f64[o + CNTF_TOTAL]!); // skipped: the thread that died made it
    return;
  }
  const old = f64[o + CNTF_TOTAL]!;
  let next = old;
  if (compare(op.cmp, old, op.x)) {
    if (op.mode === CounterMode.INC) next = old + op.n;
    else if (op.mode === CounterMode.SET) next = op.n;
    else if (op.mode === CounterMode.DEL) next = 0;
    else throw protocolError(`shard ${shard} counter op mode`, op.mode);
  }
  const safe = Math.abs(next) <= Number.MAX_SAFE_INTEGER;
  f64[op.cell] = safe ? next : Number.NaN;
  f64[op.cell + 1] = old;
  if (safe && next !== old) journal.write(o + CNTF_TOTAL, next);
}
