/** Options of an event store (`engine.events`, `engine.eventStore(options)`), and their validation. */
import type { CalUnitCode } from '../../common/calendar.js';
import { canonicalTimeZone } from '../../common/calendar.js';
import { argumentRangeError, argumentTypeError } from '../../common/errors.js';
import { checkStorage, guardStorage, persistErrorReporter, type Storage } from '../storage/storage.js';
import { DEFAULT_INTERVALS, type Intervals, type IntervalCounts, resolveIntervals } from './intervals.js';

export interface EventStoreOptions {
  /** Rings to keep: an {@link Intervals} builder or counts per unit. Default {@link DEFAULT_INTERVALS}. */
  intervals?: Intervals | IntervalCounts;
  /** IANA time zone the calendar units align to. Default: the engine's `timeZone` (itself `UTC` by default). */
  timeZone?: string;
  /** Where `persist()` saves counters and where compacted counters are reloaded from. */
  storage?: Storage;
  /** Storage keys are `<name>/<id>`. Default `events`. Two stores sharing a storage need different names. */
  name?: string;
  /** Ids not recorded for this many ms are saved and let go from memory (needs `storage`). Default: never. */
  idleMs?: number;
  /** At most this many ids in memory; a new id past it is refused with TW_CAPACITY. Default: no limit. */
  maxKeys?: number;
  /** Persist dirty counters every this many ms (needs `storage`). Default: off. */
  autoPersistMs?: number;
  /**
   * Receives errors of background persists (auto-persist). Default: a process warning. A handler that
   * throws is reported as a process warning too; it never becomes an unhandled rejection.
   */
  onPersistError?: (err: Error) => void;
  /** Stamped into exports so that merging one export twice counts it once. */
  sourceId?: string;
  /**
   * How long a limiter reservation (`reserve(id)`) holds its place unless committed or cancelled, in ms
   * (1000 to 2147483647). Default 60000. Once the newest outstanding hold of an id's window is older than
   * this, that window's holds no longer count.
   */
  reservationTtlMs?: number;
}

export interface ResolvedEventStoreOptions {
  readonly rings: Array<[CalUnitCode, number]>;
  readonly timeZone: string;
  /** The storage, behind a guard that turns its failures into TW_STORAGE errors with the cause. */
  readonly storage: Storage | undefined;
  readonly prefix: string;
  readonly autoPersistMs: number | undefined;
  readonly onPersistError: (err: Error) => void;
  readonly idleMs: number | undefined;
  readonly maxKeys: number;
  readonly sourceId: string | undefined;
  readonly reservationTtlMs: number;
}

const KNOWN_OPTIONS = ['intervals', 'timeZone', 'storage', 'name', 'autoPersistMs', 'onPersistError', 'sourceId', 'reservationTtlMs', 'idleMs', 'maxKeys'];

/**
 * Checks every event store option (named `options.<name>`) and resolves the defaults. Nothing is started,
 * so `createEngine` runs this for its `events` option before any thread exists.
 */
export function resolveEventStoreOptions(options: unknown, defaultZone: string): ResolvedEventStoreOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw argumentTypeError('options', 'an object of event store options', options);
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!KNOWN_OPTIONS.includes(key)) throw argumentTypeError(`options.${key}`, `one of the known options (${KNOWN_OPTIONS.join(', ')})`, o[key]);
  }
  const rings = resolveIntervals(o.intervals ?? DEFAULT_INTERVALS, 'options.intervals');
  const zone = o.timeZone ?? defaultZone;
  if (typeof zone !== 'string') throw argumentTypeError('options.timeZone', 'an IANA time zone name', zone);
  let timeZone: string;
  try {
    timeZone = canonicalTimeZone(zone);
  } catch {
    throw argumentRangeError('options.timeZone', 'an IANA time zone name this Node.js knows, such as "Europe/Berlin"', zone);
  }
  const storage = o.storage;
  if (storage !== undefined) checkStorage(storage, 'options.storage');
  const idle = o.idleMs;
  if (idle !== undefined) {
    if (!(typeof idle === 'number' && Number.isSafeInteger(idle) && idle >= 1)) throw argumentRangeError('options.idleMs', 'an integer number of ms ≥ 1', idle);
    if (storage === undefined) throw argumentTypeError('options.idleMs', 'given only with options.storage (an idle id is saved before it goes)', idle);
  }
  const maxKeys = o.maxKeys;
  if (maxKeys !== undefined && !(typeof maxKeys === 'number' && Number.isSafeInteger(maxKeys) && maxKeys >= 1)) throw argumentRangeError('options.maxKeys', 'an integer ≥ 1', maxKeys);
  const name = o.name ?? 'events';
  if (typeof name !== 'string' || name.length === 0) throw argumentTypeError('options.name', 'a non-empty string', name);
  const sourceId = o.sourceId;
  if (sourceId !== undefined && (typeof sourceId !== 'string' || sourceId.length === 0)) throw argumentTypeError('options.sourceId', 'a non-empty string', sourceId);
  const handler = o.onPersistError;
  if (handler !== undefined && typeof handler !== 'function') throw argumentTypeError('options.onPersistError', 'a function (err) => void', handler);
  const every = o.autoPersistMs;
  if (every !== undefined) {
    if (storage === undefined) throw argumentTypeError('options.autoPersistMs', 'given only with options.storage', every);
    if (typeof every !== 'number' || !Number.isInteger(every) || every < 1 || every > 2 ** 31 - 1) {
      throw argumentRangeError('options.autoPersistMs', 'an integer number of ms from 1 to 2147483647', every);
    }
  }
  const ttl = o.reservationTtlMs ?? 60_000;
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1000 || ttl > 2 ** 31 - 1) {
    throw argumentRangeError('options.reservationTtlMs', 'an integer number of ms from 1000 to 2147483647', ttl);
  }
  return {
    rings,
    timeZone,
    storage: storage === undefined ? undefined : guardStorage(storage as Storage),
    prefix: `${name}/`,
    autoPersistMs: every as number | undefined,
    onPersistError: persistErrorReporter(handler as ((err: Error) => void) | undefined),
    sourceId: sourceId as string | undefined,
    idleMs: idle as number | undefined,
    maxKeys: (maxKeys as number | undefined) ?? Number.POSITIVE_INFINITY,
    reservationTtlMs: ttl,
  };
}
