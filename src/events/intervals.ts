/**
 * Which calendar units a store tracks and how many buckets each ring holds (tiny_counter's builder).
 */
import { CalUnit, type CalUnitCode, type CalUnitName } from '../../common/calendar.js';
import { argumentRangeError, argumentTypeError, codedRangeError, ErrorCode } from '../../common/errors.js';

/** Bucket counts per unit; a unit left out is not tracked. */
export interface IntervalCounts {
  seconds?: number;
  minutes?: number;
  hours?: number;
  days?: number;
  weeks?: number;
  months?: number;
  years?: number;
}

/** The most buckets one ring may hold. */
export const MAX_RING_BUCKETS = 100_000;

/** tiny_counter's defaults: 60 minutes, 72 hours, 56 days, 52 weeks, 12 months, 4 years — 256 buckets. */
export const DEFAULT_INTERVALS: Readonly<IntervalCounts> = Object.freeze({ minutes: 60, hours: 72, days: 56, weeks: 52, months: 12, years: 4 });

const PLURAL: Record<keyof IntervalCounts, CalUnitName> = {
  seconds: 'second',
  minutes: 'minute',
  hours: 'hour',
  days: 'day',
  weeks: 'week',
  months: 'month',
  years: 'year',
};

function checkCount(argument: string, n: unknown): number {
  if (typeof n !== 'number') throw argumentTypeError(argument, `an integer from 1 to ${MAX_RING_BUCKETS}`, n);
  if (!Number.isInteger(n) || n < 1 || n > MAX_RING_BUCKETS) {
    throw codedRangeError(ErrorCode.INVALID_BUCKET_COUNT, argument, `an integer from 1 to ${MAX_RING_BUCKETS}`, n);
  }
  return n;
}

/**
 * A builder of ring counts: `Intervals.builder().trackHours(24).trackDays(7)`. Pass it (or a plain
 * {@link IntervalCounts} object) as a store's `intervals`. Each unit may be tracked once.
 */
export class Intervals {
  private readonly counts: IntervalCounts = {};

  static builder(): Intervals {
    return new Intervals();
  }

  private track(unit: keyof IntervalCounts, n: number): this {
    const argument = `track${unit[0]!.toUpperCase()}${unit.slice(1)}(n)`;
    checkCount(argument, n);
    if (this.counts[unit] !== undefined) throw argumentRangeError(argument, `called once per builder (${unit} are tracked already)`, n);
    this.counts[unit] = n;
    return this;
  }

  trackSeconds(n: number): this {
    return this.track('seconds', n);
  }
  trackMinutes(n: number): this {
    return this.track('minutes', n);
  }
  trackHours(n: number): this {
    return this.track('hours', n);
  }
  trackDays(n: number): this {
    return this.track('days', n);
  }
  trackWeeks(n: number): this {
    return this.track('weeks', n);
  }
  trackMonths(n: number): this {
    return this.track('months', n);
  }
  trackYears(n: number): this {
    return this.track('years', n);
  }

  /** The counts chosen so far. */
  toJSON(): IntervalCounts {
    return { ...this.counts };
  }
}

/** The counts object of rings (the inverse of {@link resolveIntervals}). */
export function countsOf(rings: ReadonlyArray<readonly [CalUnitCode, number]>): IntervalCounts {
  const counts: IntervalCounts = {};
  for (const [unit, n] of rings) {
    const key = (Object.keys(PLURAL) as Array<keyof IntervalCounts>).find((k) => CalUnit[PLURAL[k]] === unit)!;
    counts[key] = n;
  }
  return counts;
}

/** Validates intervals and returns the rings, finest unit first, as [unit code, bucket count]. */
export function resolveIntervals(intervals: unknown, argument = 'intervals'): Array<[CalUnitCode, number]> {
  const counts = intervals instanceof Intervals ? intervals.toJSON() : intervals;
  if (typeof counts !== 'object' || counts === null || Array.isArray(counts)) {
    throw argumentTypeError(argument, 'an Intervals builder or an object such as { hours: 24, days: 7 }', intervals);
  }
  const rings: Array<[CalUnitCode, number]> = [];
  for (const [key, n] of Object.entries(counts)) {
    if (!Object.hasOwn(PLURAL, key)) throw argumentTypeError(`${argument}.${key}`, `one of ${Object.keys(PLURAL).join(', ')}`, n);
    if (n === undefined) continue;
    rings.push([CalUnit[PLURAL[key as keyof IntervalCounts]], checkCount(`${argument}.${key}`, n)]);
  }
  if (rings.length === 0) throw argumentRangeError(argument, 'at least one tracked unit', intervals);
  return rings.sort((a, b) => a[0] - b[0]);
}
