/**
 * What queries (./query.ts) and the limiter (./limiter.ts) read of an event store: the interface between
 * the store (./store.ts, which implements it) and its readers, so that neither imports the other's module.
 */
import type { CalShape } from '../../common/records/calendar/shape.js';
import type { Clock } from '../clock/clock.js';
import type { Lane } from '../router/lane.js';
import type { IntervalCounts } from './intervals.js';

/** What {@link EventReader.sumNow} returns when the caller must take the asynchronous path. */
export const NOT_NOW: unique symbol = Symbol('not-now');

/** One id's counter: where its record lives. */
export interface EventCounter {
  readonly id: string;
  readonly lane: Lane;
  /** The record's arena offset. */
  readonly offset: number;
  /** Recorded since the last persist (or clearDirty). */
  dirty: boolean;
  /** Set while the id's persisted counts are being merged back in after compact(). */
  loading: Promise<void> | undefined;
}

export interface EventReader {
  /** The rings kept, as bucket counts per unit. */
  readonly intervals: Readonly<IntervalCounts>;
  readonly shape: CalShape;
  readonly clock: Clock;
  /** Runs one public operation (refused once close() began; close() waits for it). */
  admit<T>(operation: () => Promise<T>): Promise<T>;
  /** Sum of ring `r`'s newest `n` buckets, synchronously when nothing is in flight to the id's shard. */
  sumNow(id: string, r: number, n: number): number | undefined | typeof NOT_NOW;
  /** Ring `r`'s newest `n` buckets, newest first (undefined: unknown id). */
  bucketsOf(id: string, r: number, n: number): Promise<number[] | undefined>;
  /** The count over ring `r`'s newest `n` buckets and the reservations outstanding. */
  usageOf(id: string, r: number, n: number): Promise<{ count: number; reserved: number } | undefined>;
  /** Age of the newest (or oldest) event, bucket precision (undefined: never seen). */
  seenAgeOf(id: string, oldest: boolean): Promise<number | undefined>;
  /** The id's counter once the storage is listed and the id's stored counts are loaded (undefined: unknown id). */
  loadedCounter(id: string): Promise<EventCounter | undefined>;
  /** Evaluates checks against the counter from this thread: the first failing one, or index −1. */
  evaluateOwn(c: EventCounter, checks: readonly number[]): Promise<{ index: number; retryAfterMs: number | undefined }>;
  /** A decision taken by the id's shard, atomic with its other ops: [outcome, retry-after ms, time]. */
  decideInShard(id: string, checks: readonly number[], action: number): Promise<[outcome: number, retryAfterMs: number, t: number]>;
  /** Ends a reservation granted at `reservedAt`: commit records the event, cancel only releases it. */
  endReservation(id: string, type: 'commit' | 'cancel', reservedAt: number): Promise<void>;
}
