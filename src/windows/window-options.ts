/**
 * Hopping-window options: `size` buckets of one `unit` (a named unit) or `unitMs` (any duration in ms).
 */
import { argumentRangeError, argumentTypeError } from '../../common/errors.js';
import { MAX_HOP_SIZE } from '../../common/layout.js';

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
