/**
 * Queries of an event store. `lastX(n)` covers the current, partial unit and the n − 1 whole units before
 * it (calendar-aligned, not a rolling n × unit window); `ever()` is every bucket of the longest ring.
 *
 * `undefined` means "nothing known": an id never recorded, or a unit the store does not track. A known id
 * with nothing in the range gives 0.
 */
import { CalUnit, type CalUnitName } from '../../common/calendar.js';
import { argumentRangeError, argumentTypeError } from '../../common/errors.js';
import { type EventReader, NOT_NOW } from './reader.js';

/** A range: ring `ring` (−1: unit not tracked), newest `n` buckets. */
interface RangeSpec {
  readonly ring: number;
  readonly n: number;
}

/** Resolves `lastX(n)` of `unit` against the store's rings; n from 1 to the ring's bucket count. */
export function rangeOf(store: EventReader, unit: CalUnitName, n: unknown, argument = 'n'): RangeSpec {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw argumentRangeError(argument, 'an integer ≥ 1', n);
  const ring = store.shape.ringOf(CalUnit[unit]);
  if (ring === -1) return { ring: -1, n };
  const count = store.shape.rings[ring]!.count;
  if (n > count) throw argumentRangeError(argument, `at most ${count}, the ${unit}s this store tracks`, n);
  return { ring, n };
}

function everOf(store: EventReader): RangeSpec {
  const ring = store.shape.longestRing;
  return { ring, n: store.shape.rings[ring]!.count };
}

/** The range selectors every query kind shares; `make` turns a range into the query's result. */
abstract class Selector<R> {
  protected readonly store: EventReader;
  constructor(store: EventReader) {
    this.store = store;
  }
  protected abstract make(range: RangeSpec): R;
  lastSeconds(n: number): R {
    return this.make(rangeOf(this.store, 'second', n));
  }
  lastMinutes(n: number): R {
    return this.make(rangeOf(this.store, 'minute', n));
  }
  lastHours(n: number): R {
    return this.make(rangeOf(this.store, 'hour', n));
  }
  lastDays(n: number): R {
    return this.make(rangeOf(this.store, 'day', n));
  }
  lastWeeks(n: number): R {
    return this.make(rangeOf(this.store, 'week', n));
  }
  lastMonths(n: number): R {
    return this.make(rangeOf(this.store, 'month', n));
  }
  lastYears(n: number): R {
    return this.make(rangeOf(this.store, 'year', n));
  }
  /** Every bucket of the longest ring. */
  ever(): R {
    return this.make(everOf(this.store));
  }
}

/** Bucket-wise sum over `ids`, newest first; undefined when no id is known or the unit is not tracked. */
async function bucketsOver(store: EventReader, ids: readonly string[], range: RangeSpec): Promise<number[] | undefined> {
  if (range.ring === -1) return undefined;
  let total: number[] | undefined;
  for (const id of ids) {
    const b = await store.bucketsOf(id, range.ring, range.n);
    if (b === undefined) continue;
    if (total === undefined) total = b;
    else for (let i = 0; i < b.length; i++) total[i]! += b[i]!;
  }
  return total;
}

function sumOf(b: readonly number[]): number {
  let s = 0;
  for (const v of b) s += v;
  return s;
}

/** A range of one or more ids' counters. */
export class EventRange {
  private readonly store: EventReader;
  private readonly ids: readonly string[];
  private readonly range: RangeSpec;

  /** @internal */
  constructor(store: EventReader, ids: readonly string[], range: RangeSpec) {
    this.store = store;
    this.ids = ids;
    this.range = range;
  }

  /** At most the newest `n` buckets of this range. */
  take(n: number): EventRange {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw argumentRangeError('n', 'an integer ≥ 1', n);
    return new EventRange(this.store, this.ids, { ring: this.range.ring, n: Math.min(n, this.range.n) });
  }

  /** Bucket counts, newest first (length n). */
  buckets(): Promise<number[] | undefined> {
    return this.store.admit(() => bucketsOver(this.store, this.ids, this.range));
  }

  /** Events in the range. */
  sum(): Promise<number | undefined> {
    const { ring, n } = this.range;
    if (this.ids.length === 1 && ring !== -1) {
      // The common case, without a promise chain: one id whose shard has applied everything.
      const value = this.store.sumNow(this.ids[0]!, ring, n);
      if (value !== NOT_NOW) return Promise.resolve(value);
    }
    return this.store.admit(() => this.sumOver());
  }

  /** @internal The sum, inside an operation already admitted. */
  async sumOver(): Promise<number | undefined> {
    const b = await bucketsOver(this.store, this.ids, this.range);
    return b === undefined ? undefined : sumOf(b);
  }

  /** Sum ÷ buckets in the range. */
  average(): Promise<number | undefined> {
    return this.store.admit(() => this.averageOver());
  }

  /** @internal The average, inside an operation already admitted. */
  async averageOver(): Promise<number | undefined> {
    const b = await bucketsOver(this.store, this.ids, this.range);
    return b === undefined ? undefined : sumOf(b) / b.length;
  }

  /** Sum ÷ non-zero buckets; undefined when every bucket is 0. */
  averageNonzero(): Promise<number | undefined> {
    return this.store.admit(async () => {
      const b = await bucketsOver(this.store, this.ids, this.range);
      if (b === undefined) return undefined;
      const nz = b.filter((v) => v !== 0).length;
      return nz === 0 ? undefined : sumOf(b) / nz;
    });
  }

  /** Buckets with at least one event. */
  countNonzero(): Promise<number | undefined> {
    return this.store.admit(async () => {
      const b = await bucketsOver(this.store, this.ids, this.range);
      return b === undefined ? undefined : b.filter((v) => v !== 0).length;
    });
  }
}

/** `store.query(id)` / `store.queryMany(ids)`. */
export class EventQuery extends Selector<EventRange> {
  private readonly ids: readonly string[];

  /** @internal */
  constructor(store: EventReader, ids: readonly string[]) {
    super(store);
    this.ids = ids;
  }

  protected make(range: RangeSpec): EventRange {
    return new EventRange(this.store, this.ids, range);
  }

  /** Age (ms) of the newest non-zero bucket, measured from its start; undefined when never recorded. */
  lastSeen(): Promise<number | undefined> {
    return this.seen(false);
  }

  /** Age (ms) of the oldest non-zero bucket still held, measured from its start. */
  firstSeen(): Promise<number | undefined> {
    return this.seen(true);
  }

  private seen(oldest: boolean): Promise<number | undefined> {
    return this.store.admit(async () => {
      let best: number | undefined;
      for (const id of this.ids) {
        const age = await this.store.seenAgeOf(id, oldest);
        if (age !== undefined && (best === undefined || (oldest ? age > best : age < best))) best = age;
      }
      return best;
    });
  }
}

/** `store.ratio(a, b).lastX(n)` → a ÷ b. */
export class RatioQuery extends Selector<Promise<number | undefined>> {
  private readonly a: string;
  private readonly b: string;

  /** @internal */
  constructor(store: EventReader, a: string, b: string) {
    super(store);
    this.a = a;
    this.b = b;
  }

  protected make(range: RangeSpec): Promise<number | undefined> {
    return this.store.admit(async () => {
      const a = await new EventRange(this.store, [this.a], range).sumOver();
      const b = await new EventRange(this.store, [this.b], range).sumOver();
      return a === undefined || b === undefined || b === 0 ? undefined : a / b;
    });
  }
}

/** The difference a − b over a range. */
export class DeltaRange {
  private readonly store: EventReader;
  private readonly a: EventRange;
  private readonly b: EventRange;

  /** @internal */
  constructor(store: EventReader, a: string, b: string, range: RangeSpec) {
    this.store = store;
    this.a = new EventRange(store, [a], range);
    this.b = new EventRange(store, [b], range);
  }

  /** a − b (an unknown id counts as 0). */
  sum(): Promise<number> {
    return this.store.admit(() => this.compute());
  }

  /** @internal a − b, inside an operation already admitted. */
  async compute(): Promise<number> {
    return ((await this.a.sumOver()) ?? 0) - ((await this.b.sumOver()) ?? 0);
  }

  /** Average of a − b per bucket. */
  average(): Promise<number> {
    return this.store.admit(async () => ((await this.a.averageOver()) ?? 0) - ((await this.b.averageOver()) ?? 0));
  }
}

/** `store.delta(a, b)`: `.lastX(n).sum()`, or `.sum()` / `.average()` over `ever()`. */
export class DeltaQuery extends Selector<DeltaRange> {
  private readonly a: string;
  private readonly b: string;

  /** @internal */
  constructor(store: EventReader, a: string, b: string) {
    super(store);
    this.a = a;
    this.b = b;
  }

  protected make(range: RangeSpec): DeltaRange {
    return new DeltaRange(this.store, this.a, this.b, range);
  }

  sum(): Promise<number> {
    return this.ever().sum();
  }

  average(): Promise<number> {
    return this.ever().average();
  }
}

/** Validates a limiter window: a unit name, or [count, unit]. */
export function windowOf(store: EventReader, window: unknown): { unit: CalUnitName; range: RangeSpec; label: string } {
  let count: unknown = 1;
  let unit: unknown = window;
  if (Array.isArray(window)) {
    if (window.length !== 2) throw argumentTypeError('window', 'a unit or [count, unit]', window);
    [count, unit] = window;
  }
  if (typeof unit !== 'string' || !Object.hasOwn(CalUnit, unit)) {
    throw argumentTypeError('window', `a unit (${Object.keys(CalUnit).join(', ')}) or [count, unit]`, window);
  }
  const range = rangeOf(store, unit as CalUnitName, count, 'window count');
  if (range.ring === -1) throw argumentRangeError('window', `a unit this store tracks (${Object.keys(store.intervals).join(', ')})`, unit);
  return { unit: unit as CalUnitName, range, label: `${range.n} ${unit}${range.n === 1 ? '' : 's'}` };
}
