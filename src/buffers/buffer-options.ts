/** Stat buffer options: validation and defaults (README, "Stat buffers"). */
import { argumentRangeError, argumentTypeError } from '../../common/errors.js';
import { checkStorage, guardStorage, persistErrorReporter, type Storage } from '../storage/storage.js';

/** One key's count in a batch handed to `onFlushBatch`. */
export interface BufferEntry {
  readonly key: string;
  readonly count: number;
}

/** A count the buffer gave up on: past `maxAttempts`, or still undelivered at the `close()` deadline. */
export interface DeadLetter {
  readonly key: string;
  readonly count: number;
  /** The flush id every attempt of this count carried. */
  readonly flushId: string;
  /** Handler calls made for it. */
  readonly attempts: number;
  /** The last failure (an Error, or the handler's rejection reason). */
  readonly error: unknown;
  /**
   * True when an attempt had not settled when the buffer gave up (it timed out, or was still running at
   * the close deadline): the sink may have applied the count anyway. Deduplicate by `flushId` before
   * replaying it.
   */
  readonly unsettled: boolean;
}

/** Called with one key's count; throw or reject to fail (the count is retried with the same flush id). */
export type FlushHandler = (key: string, count: number, flushId: string) => unknown;
/** Called with many keys' counts at once (one round trip to the sink); throw or reject to fail them all. */
export type FlushBatchHandler = (entries: BufferEntry[], flushId: string) => unknown;

export interface BufferOptions {
  /** The buffer's name: unique per engine; it starts every flush id. A non-empty string. */
  name: string;
  /** A key flushes this long after its first increment (default 5000 ms). */
  intervalMs?: number;
  /** Up to this much random delay is added to each key's flush time, in (0, jitterMs] (default 0). */
  jitterMs?: number;
  /** The first retry waits about this long; each later one doubles, up to `maxBackoffMs` (default 1000 ms). */
  backoffMs?: number;
  /** The longest wait between retries (default 30000 ms, at least `backoffMs`). */
  maxBackoffMs?: number;
  /** Handler calls per count before it goes to `onDeadLetter` (default: unlimited; needs `onDeadLetter`). */
  maxAttempts?: number;
  /** A handler call not settled this long after it started counts as failed (default: no timeout). */
  timeoutMs?: number;
  /** At most this many entries per `onFlushBatch` call (default 1000). */
  maxBatch?: number;
  /** How long `close()` keeps retrying before the rest goes to `onDeadLetter` (default 10000 ms). */
  closeTimeoutMs?: number;
  /** The per-key handler. Give exactly one of `onFlush` and `onFlushBatch`. */
  onFlush?: FlushHandler;
  /** The batch handler: every key due in the same turn, in calls of up to `maxBatch` entries. */
  onFlushBatch?: FlushBatchHandler;
  /** Receives what the buffer gave up on. Without it, `close()` rejects with TW_UNDELIVERED listing them. */
  onDeadLetter?: (entries: DeadLetter[]) => unknown;
  /** Opt-in: save the counts not yet delivered here, and deliver them after a restart (see the README). */
  storage?: Storage;
  /** With `storage`: save every this many ms (default `intervalMs`). */
  persistMs?: number;
  /** With `storage`: called with the error of a failed save. Default: a process warning. */
  onPersistError?: (err: Error) => void;
}

export interface ResolvedBufferOptions {
  readonly name: string;
  readonly intervalMs: number;
  readonly jitterMs: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  readonly maxAttempts: number;
  readonly timeoutMs: number;
  readonly maxBatch: number;
  readonly closeTimeoutMs: number;
  readonly onFlush: FlushHandler | undefined;
  readonly onFlushBatch: FlushBatchHandler | undefined;
  readonly onDeadLetter: ((entries: DeadLetter[]) => unknown) | undefined;
  readonly storage: Storage | undefined;
  readonly persistMs: number;
  readonly onPersistError: (err: Error) => void;
}

const MAX_MS = 2 ** 31 - 1;
const known = ['name', 'intervalMs', 'jitterMs', 'backoffMs', 'maxBackoffMs', 'maxAttempts', 'timeoutMs', 'maxBatch', 'closeTimeoutMs', 'onFlush', 'onFlushBatch', 'onDeadLetter', 'storage', 'persistMs', 'onPersistError'];

function integer(o: Record<string, unknown>, name: string, min: number, max: number, fallback: number): number {
  const value = o[name];
  if (value === undefined) return fallback;
  const rule = `an integer from ${min} to ${max}`;
  if (typeof value !== 'number') throw argumentTypeError(`options.${name}`, rule, value);
  if (!Number.isInteger(value) || value < min || value > max) throw argumentRangeError(`options.${name}`, rule, value);
  return value;
}

function handler<T>(o: Record<string, unknown>, name: string): T | undefined {
  const value = o[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw argumentTypeError(`options.${name}`, 'a function', value);
  return value as T;
}

export function resolveBufferOptions(options: unknown): ResolvedBufferOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw argumentTypeError('options', 'an object with a name and onFlush or onFlushBatch', options);
  }
  const o = options as Record<string, unknown>;
  for (const name of Object.keys(o)) {
    if (!known.includes(name)) throw argumentTypeError(`options.${name}`, `one of the known options (${known.join(', ')})`, o[name]);
  }
  if (typeof o.name !== 'string') throw argumentTypeError('options.name', 'a non-empty string', o.name);
  if (o.name.length === 0 || o.name.length > 200) throw argumentRangeError('options.name', 'a non-empty string of at most 200 characters', o.name);
  const onFlush = handler<FlushHandler>(o, 'onFlush');
  const onFlushBatch = handler<FlushBatchHandler>(o, 'onFlushBatch');
  if ((onFlush === undefined) === (onFlushBatch === undefined)) {
    throw argumentTypeError('options.onFlush', 'given, or options.onFlushBatch given, but not both', onFlush ?? onFlushBatch);
  }
  const onDeadLetter = handler<(entries: DeadLetter[]) => unknown>(o, 'onDeadLetter');
  const maxAttempts = integer(o, 'maxAttempts', 1, MAX_MS, 0) || Infinity;
  if (maxAttempts !== Infinity && onDeadLetter === undefined) {
    throw argumentTypeError('options.onDeadLetter', 'a function when options.maxAttempts is set (counts past it go there, never dropped)', undefined);
  }
  const backoffMs = integer(o, 'backoffMs', 0, MAX_MS, 1000);
  const maxBackoffMs = integer(o, 'maxBackoffMs', 0, MAX_MS, Math.max(30_000, backoffMs));
  if (maxBackoffMs < backoffMs) throw argumentRangeError('options.maxBackoffMs', `at least options.backoffMs (${backoffMs})`, maxBackoffMs);
  const intervalMs = integer(o, 'intervalMs', 1, MAX_MS, 5000);
  if (o.storage !== undefined) checkStorage(o.storage, 'options.storage');
  else if (o.persistMs !== undefined) throw argumentTypeError('options.persistMs', 'given only with options.storage', o.persistMs);
  const onPersistError = handler<(err: Error) => void>(o, 'onPersistError');
  return {
    name: o.name,
    intervalMs,
    jitterMs: integer(o, 'jitterMs', 0, MAX_MS, 0),
    backoffMs,
    maxBackoffMs,
    maxAttempts,
    timeoutMs: integer(o, 'timeoutMs', 1, MAX_MS, 0) || Infinity,
    maxBatch: integer(o, 'maxBatch', 1, 1_000_000, 1000),
    closeTimeoutMs: integer(o, 'closeTimeoutMs', 0, MAX_MS, 10_000),
    onFlush,
    onFlushBatch,
    onDeadLetter,
    storage: o.storage === undefined ? undefined : guardStorage(o.storage as Storage),
    persistMs: integer(o, 'persistMs', 1, MAX_MS, intervalMs),
    onPersistError: persistErrorReporter(onPersistError),
  };
}
