/**
 * What queries (./query.ts) and the limiter (./limiter.ts) read of an event store: the interface between
 * the store (./store.ts, which implements it) and its readers, so that neither imports the other's module.
 */
import type { DecisionTally } from '../limits/tally.js';
import type { CalShape } from '../../common/records/calendar/shape.js';
import type { Clock } from '../clock/clock.js';
import type { Lane } from '../router/lane.js';
import type { ShardViews } from '../../common/layout.js';
import type { Gate, GatedCounter, Gates, GateWindow } from './gates.js';
import type { IntervalCounts } from './intervals.js';

/** What {@link EventReader.sumNow} returns when the caller must take the asynchronous path. */
export const NOT_NOW: unique symbol = Symbol('not-now');

/** One id's counter: where its record lives, and its limit gates (./gates.ts). */
export interface EventCounter extends GatedCounter {
  readonly id: string;
  readonly lane: Lane;
  /** Recorded since the last persist (or clearDirty). */
  dirty: boolean;
  /** Set while the id's persisted counts are being merged back in after compact(). */
  loading: Promise<void> | undefined;
  /** Recorded since the last idle pass (idleMs). */
  touched?: boolean;
  /** When the last idle pass found it recorded (its creation at first). */
  seenMs?: number;
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
  /** Age of the newest (or oldest) event, bucket precision (undefined: never seen). */
  seenAgeOf(id: string, oldest: boolean): Promise<number | undefined>;
  /** The id's counter once the storage is listed and the id's stored counts are loaded (undefined: unknown id). */
  loadedCounter(id: string): Promise<EventCounter | undefined>;
  /** Counters in memory, by id. */
  readonly counters: ReadonlyMap<string, EventCounter>;
  /** Limiter decisions that record or reserve, made on this thread (the metrics read them). */
  readonly decisions: DecisionTally;
  readonly gates: Gates;
  readonly isClosed: boolean;
  /** The clock's time for decisions. */
  decisionNow(): number;
  /** The gate of window `w` for `id` (made and seeded when new; undefined for an unknown id). */
  gateFor(id: string, w: GateWindow): Gate | undefined;
  /** Makes the missing gates of `limits` (each on its own id, or on `id`) for counted ids, all or none. */
  seedGates(id: string, limits: ReadonlyArray<{ readonly id: string | undefined; readonly window: GateWindow }>): void;
  /** The counter of a valid id for a decision that writes, created if new (with empty gates for `windows`). */
  counterWith(id: string, windows: readonly GateWindow[]): EventCounter;
  /** Outstanding holds of a gate at `t`. */
  holdsOf(g: Gate, t: number): number;
  /** The counter of `id` for a synchronous read (undefined: unknown; TW_NOT_READY while it loads). */
  counterNow(id: string): EventCounter | undefined;
  /** A synchronous read of the counter's record once its shard applied what this thread sent. */
  readNow<T>(c: EventCounter, read: (views: ShardViews, now: number) => T): T;
  /** Before a decision counts anything at `t`: sends deferred adds of an earlier unit, checks the pipeline (may throw). */
  readyToAdd(c: EventCounter, t: number): void;
  /** Counts one event a limit admitted at `t`: to the counter's gates but window index `skip`, and to its record coalesced with the id's other admitted events of the same finest unit (see CounterLimits.unsent). */
  addDecided(c: EventCounter, t: number, skip: number): void;
  /** Appends `n` events at `t` to the counter and adds them to its gates (but the one of window index `skip`). */
  addEvents(c: EventCounter, n: number, t: number, now?: number, skip?: number): void;
  /** Waits until the ids' counters are loaded and their shards applied what this thread sent. */
  settle(ids: readonly string[]): Promise<void>;
  /** Marks the counter recorded since the last persist. */
  markDirty(c: EventCounter): void;
}
