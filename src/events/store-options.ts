/** Options of an event store (`engine.events`, `engine.eventStore(options)`). */
import type { Storage } from '../storage/storage.js';
import type { Intervals, IntervalCounts } from './intervals.js';

export interface EventStoreOptions {
  /** Rings to keep: an {@link Intervals} builder or counts per unit. Default {@link DEFAULT_INTERVALS}. */
  intervals?: Intervals | IntervalCounts;
  /** IANA time zone the calendar units align to. Default: the engine's `timeZone` (itself `UTC` by default). */
  timeZone?: string;
  /** Where `persist()` saves counters and where compacted counters are reloaded from. */
  storage?: Storage;
  /** Storage keys are `<name>/<id>`. Default `events`. Two stores sharing a storage need different names. */
  name?: string;
  /** Persist dirty counters every this many ms (needs `storage`). Default: off. */
  autoPersistMs?: number;
  /** Receives errors of background persists. Default: a process warning. */
  onPersistError?: (err: Error) => void;
  /** Stamped into exports so that merging one export twice counts it once. */
  sourceId?: string;
}
