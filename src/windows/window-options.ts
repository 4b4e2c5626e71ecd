/**
 * Hopping-window options: `size` buckets of one `unit` (a named unit) or `unitMs` (any duration in ms).
 */
import { argumentRangeError, argumentTypeError } from '../../common/errors.js';
import { MAX_HOP_SIZE } from '../../common/layout.js';
import { checkStorage, guardStorage, persistErrorReporter, type Storage } from '../storage/storage.js';

/** Named units and their length in ms. A week is 7 × 24 h (it starts on Monday 00:00 UTC). */
export const WINDOW_UNITS = {
  millisecond: 1,
  second: 1000,
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
  week: 604_800_000,
} as const;

export type WindowUnit = keyof typeof WINDOW_UNITS;

/**
 * The bucket lengths a window takes: 1 ms to 366 days. Unit indexes count from year 1 (as Go's time does),
 * so at 1 ms they stay far below 2^53 (about 6.4e13 until 2068), and a unit's start is exact in a double;
 * below 1 ms or above a year neither holds for long, and a window would answer nonsense.
 */
export const MIN_UNIT_MS = 1;
export const MAX_UNIT_MS = 366 * 86_400_000;
const UNIT_MS_RULE = `a number of milliseconds from ${MIN_UNIT_MS} to ${MAX_UNIT_MS} (366 days)`;

export interface WindowOptions {
  /** Buckets in the window (W): an integer from 1 to 1048576. */
  size: number;
  /** Length of one bucket as a named unit … */
  unit?: WindowUnit;
  /** … or in milliseconds, from 1 to 366 days' worth. Give exactly one of `unit` and `unitMs`. */
  unitMs?: number;
}

export interface WindowShape {
  readonly size: number;
  readonly unitMs: number;
}

export function resolveWindowOptions(options: unknown): WindowShape {
  if (typeof options !== 'object' || options === null) throw argumentTypeError('options', 'an object with size and unit or unitMs', options);
  const { size, unit, unitMs } = options as Record<string, unknown>;
  if (typeof size !== 'number') throw argumentTypeError('options.size', `an integer from 1 to ${MAX_HOP_SIZE}`, size);
  if (!Number.isInteger(size) || size < 1 || size > MAX_HOP_SIZE) {
    throw argumentRangeError('options.size', `an integer from 1 to ${MAX_HOP_SIZE}`, size);
  }
  if ((unit === undefined) === (unitMs === undefined)) {
    throw argumentTypeError('options.unit', 'given, or options.unitMs given, but not both', unit ?? unitMs);
  }
  if (unit !== undefined) {
    if (typeof unit !== 'string' || !Object.hasOwn(WINDOW_UNITS, unit)) {
      throw argumentTypeError('options.unit', `one of ${Object.keys(WINDOW_UNITS).join(', ')}`, unit);
    }
    return { size, unitMs: WINDOW_UNITS[unit as WindowUnit] };
  }
  if (typeof unitMs !== 'number') throw argumentTypeError('options.unitMs', UNIT_MS_RULE, unitMs);
  if (!(unitMs >= MIN_UNIT_MS && unitMs <= MAX_UNIT_MS)) throw argumentRangeError('options.unitMs', UNIT_MS_RULE, unitMs);
  return { size, unitMs };
}

/** What happens when a set holding `maxKeys` windows is asked for a new one. */
export type MaxKeysPolicy = 'reject' | 'evict';

/** Options of a window set beyond its shape: storage (warm restart) and bounded keys. */
export interface WindowSetOptions {
  /** Where the set saves its windows (see the README, "Warm restart"). Default: none. */
  storage?: Storage;
  /** Storage keys are `<name>/<id>`. Default `windows-<size>x<unitMs>`. */
  name?: string;
  /** Persist the windows observed since the last persist every this many ms (needs `storage`). Default: off. */
  autoPersistMs?: number;
  /** Called with the error of a failed background persist (or eviction save). Default: a process warning. */
  onPersistError?: (err: Error) => void;
  /** Windows with no observe for this many ms are let go (saved first when the set has storage). Default: never. */
  idleMs?: number;
  /** At most this many windows in memory. Default: no limit (shard memory still bounds it). */
  maxKeys?: number;
  /** At `maxKeys`: `reject` (TW_CAPACITY, nothing created; the default) or `evict` a window not observed lately. */
  onMaxKeys?: MaxKeysPolicy;
}

export interface ResolvedSetOptions {
  readonly storage: Storage | undefined;
  readonly name: string;
  readonly autoPersistMs: number | undefined;
  readonly onPersistError: (err: Error) => void;
  readonly idleMs: number | undefined;
  readonly maxKeys: number;
  readonly onMaxKeys: MaxKeysPolicy;
}

const SET_OPTIONS = ['storage', 'name', 'autoPersistMs', 'onPersistError', 'idleMs', 'maxKeys', 'onMaxKeys'];

function positiveMs(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!(typeof value === 'number' && Number.isSafeInteger(value) && value >= 1)) throw argumentRangeError(name, 'an integer number of ms ≥ 1', value);
  return value;
}

/** Validates the set options (the second argument of `engine.windows`) of a set of shape `shape`. */
export function resolveSetOptions(setOptions: unknown, shape: WindowShape): ResolvedSetOptions {
  if (typeof setOptions !== 'object' || setOptions === null) throw argumentTypeError('setOptions', 'an object of window set options', setOptions);
  const options = setOptions as Record<string, unknown>;
  for (const key of Object.keys(options)) {
    if (!SET_OPTIONS.includes(key)) throw argumentTypeError(`setOptions.${key}`, `a known option (${SET_OPTIONS.join(', ')})`, options[key]);
  }
  const { storage, name, onPersistError, maxKeys, onMaxKeys } = options;
  if (storage !== undefined) checkStorage(storage, 'setOptions.storage');
  const resolvedName = name ?? `windows-${shape.size}x${shape.unitMs}`;
  if (typeof resolvedName !== 'string' || resolvedName.length === 0 || resolvedName.includes('/')) throw argumentTypeError('setOptions.name', 'a non-empty string without "/"', name);
  const autoPersistMs = positiveMs(options.autoPersistMs, 'setOptions.autoPersistMs');
  if (autoPersistMs !== undefined && storage === undefined) throw argumentTypeError('setOptions.autoPersistMs', 'given only with setOptions.storage', autoPersistMs);
  if (onPersistError !== undefined && typeof onPersistError !== 'function') throw argumentTypeError('setOptions.onPersistError', 'a function', onPersistError);
  const idleMs = positiveMs(options.idleMs, 'setOptions.idleMs');
  if (maxKeys !== undefined && !(typeof maxKeys === 'number' && Number.isSafeInteger(maxKeys) && maxKeys >= 1)) throw argumentRangeError('setOptions.maxKeys', 'an integer ≥ 1', maxKeys);
  const policy = onMaxKeys ?? 'reject';
  if (policy !== 'reject' && policy !== 'evict') throw argumentTypeError('setOptions.onMaxKeys', "'reject' or 'evict'", onMaxKeys);
  return {
    storage: storage === undefined ? undefined : guardStorage(storage as Storage),
    name: resolvedName,
    autoPersistMs,
    onPersistError: persistErrorReporter(onPersistError as ((err: Error) => void) | undefined),
    idleMs,
    maxKeys: (maxKeys as number | undefined) ?? Number.POSITIVE_INFINITY,
    onMaxKeys: policy,
  };
}
