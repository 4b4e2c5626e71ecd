/**
 * Calendar units in an IANA time zone: which unit holds an instant, and where a unit starts.
 *
 * A unit is named by an integer index counted from the calendar epoch 2000-01-01 (so an index fits an
 * Int32 in shared memory: seconds until 2068, every coarser unit for longer than anyone needs):
 *  - second, minute, hour: fixed lengths aligned to :00 of the zone's wall clock. The index counts elapsed
 *    units (`floor((t + (offset mod u) − E) / u)`), so the repeated hour of a DST fall-back is a new hour,
 *    not the same one twice, and the index never goes backwards across a DST change.
 *  - day: the zone's civil date (days since 2000-01-01); DST days are 23 or 25 hours long.
 *  - week: Monday 00:00 local; month: the 1st, 00:00 local; year: 1 January, 00:00 local.
 *
 * Offsets come from `Intl.DateTimeFormat` (slow: microseconds), cached per whole UTC minute: transitions in the
 * tz database since 1970 fall on whole minutes (St. John's changed at hh:31 UTC until 2011), so an offset is
 * constant inside one.
 *
 * Known limits, each from the zone itself: where a fall-back crosses midnight (St. John's until 2011: 00:01 →
 * 23:01), the local date goes back for an hour, and rings never move backwards, so that hour counts in the
 * later day; a 30-minute DST change (Lord Howe) makes the repeated half hour an hour unit of its own.
 * Shards keep a {@link UnitCursor} per unit so that the apply path asks the zone only at unit boundaries.
 *
 * Imported by worker threads: imports nothing main-only.
 */

/** Calendar units, finest first. The numeric value is the code stored in shared memory. */
export const CalUnit = {
  second: 0,
  minute: 1,
  hour: 2,
  day: 3,
  week: 4,
  month: 5,
  year: 6,
} as const;

export type CalUnitName = keyof typeof CalUnit;
export type CalUnitCode = (typeof CalUnit)[CalUnitName];

/** Unit names by code. */
export const CAL_UNIT_NAMES: readonly CalUnitName[] = ['second', 'minute', 'hour', 'day', 'week', 'month', 'year'];

/** Nominal lengths (ms), for ordering rings by span and for estimates; months and years vary. */
export const NOMINAL_UNIT_MS: readonly number[] = [1000, 60_000, 3_600_000, 86_400_000, 604_800_000, 2_629_746_000, 31_556_952_000];

/** 2000-01-01T00:00:00Z: the calendar epoch (unit index 0 of every unit, in UTC). */
export const CAL_EPOCH_MS = 946_684_800_000;

/**
 * The times calendars cover: from 1970-01-01 to 2068-01-01 UTC (not included). A second's index then fits
 * an Int32 (±68 years around the calendar epoch) with a day to spare for any zone offset. Times outside are
 * refused where they enter (`recordAt`, clocks, imports), and a shard skips any that still reach it.
 */
export const CAL_MIN_MS = 0;
export const CAL_MAX_MS = 3_092_601_600_000;

/** True for a time a calendar can index. */
export function inCalendarRange(t: number): boolean {
  return t >= CAL_MIN_MS && t < CAL_MAX_MS;
}
const DAY_MS = 86_400_000;
const BLOCK_MS = 60_000;
/** 2000-01-03 (a Monday) is day 2 of the calendar epoch. */
const FIRST_MONDAY_DAY = 2;

/** Lengths (ms) of the fixed units second, minute and hour, by code. */
export const FIXED_UNIT_MS: readonly number[] = [1000, 60_000, 3_600_000];

const canonical = new Map<string, string>();
/**
 * Throws RangeError for a name `Intl` does not know as a time zone; returns its canonical spelling. Known
 * names are cached (an Intl.DateTimeFormat costs ~100 µs, and every stored counter reloaded names its zone).
 */
export function canonicalTimeZone(timeZone: string): string {
  let name = canonical.get(timeZone);
  if (name === undefined) {
    name = new Intl.DateTimeFormat('en-US', { timeZone }).resolvedOptions().timeZone;
    if (canonical.size < 1024) canonical.set(timeZone, name);
  }
  return name;
}

/** `a` modulo `m`, never negative. */
export function mod(a: number, m: number): number {
  return ((a % m) + m) % m;
}

/** Days since 1970-01-01 of a proleptic Gregorian civil date (month 1–12). */
function daysFromCivil(y: number, m: number, d: number): number {
  return Math.floor(Date.UTC(y, m - 1, d) / DAY_MS);
}

export class ZoneCalendar {
  readonly timeZone: string;
  private readonly utc: boolean;
  private readonly format: Intl.DateTimeFormat | undefined;
  private readonly offsets = new Map<number, number>();

  constructor(timeZone: string) {
    this.timeZone = canonicalTimeZone(timeZone);
    this.utc = this.timeZone === 'UTC' || this.timeZone === 'Etc/UTC';
    this.format = this.utc
      ? undefined
      : new Intl.DateTimeFormat('en-US', {
          timeZone: this.timeZone,
          hourCycle: 'h23',
          year: 'numeric',
          month: 'numeric',
          day: 'numeric',
          hour: 'numeric',
          minute: 'numeric',
          second: 'numeric',
          era: 'short',
        });
  }

  /** The zone's offset from UTC at instant `t`, in ms (local = t + offset). */
  offsetAt(t: number): number {
    if (this.utc) return 0;
    const block = Math.floor(t / BLOCK_MS);
    let off = this.offsets.get(block);
    if (off === undefined) {
      off = this.computeOffset(block * BLOCK_MS);
      if (this.offsets.size >= 4096) this.offsets.clear();
      this.offsets.set(block, off);
    }
    return off;
  }

  private computeOffset(t: number): number {
    let y = 0;
    let mo = 0;
    let d = 0;
    let h = 0;
    let mi = 0;
    let s = 0;
    let bc = false;
    for (const p of this.format!.formatToParts(t)) {
      switch (p.type) {
        case 'year':
          y = Number(p.value);
          break;
        case 'month':
          mo = Number(p.value);
          break;
        case 'day':
          d = Number(p.value);
          break;
        case 'hour':
          h = Number(p.value);
          break;
        case 'minute':
          mi = Number(p.value);
          break;
        case 'second':
          s = Number(p.value);
          break;
        case 'era':
          bc = p.value === 'BC' || p.value === 'B';
          break;
        default:
          break;
      }
    }
    if (bc) y = 1 - y;
    const wall = new Date(0);
    wall.setUTCFullYear(y, mo - 1, d);
    wall.setUTCHours(h, mi, s, 0);
    return wall.getTime() - Math.floor(t / 1000) * 1000;
  }

  /** Index of the unit holding instant `t` (see the module comment). */
  index(unit: CalUnitCode, t: number): number {
    const off = this.offsetAt(t);
    if (unit <= CalUnit.hour) {
      const u = FIXED_UNIT_MS[unit]!;
      return Math.floor((t + mod(off, u) - CAL_EPOCH_MS) / u);
    }
    const local = t + off;
    const day = Math.floor((local - CAL_EPOCH_MS) / DAY_MS);
    if (unit === CalUnit.day) return day;
    if (unit === CalUnit.week) return Math.floor((day - FIRST_MONDAY_DAY) / 7);
    const date = new Date(local);
    const years = date.getUTCFullYear() - 2000;
    return unit === CalUnit.month ? years * 12 + date.getUTCMonth() : years;
  }

  /**
   * First instant (ms) of unit index `k`: the earliest `t` whose index is ≥ k. Found from the wall-clock
   * guess and corrected by bisection, so a midnight skipped by DST starts the day at the transition.
   */
  start(unit: CalUnitCode, k: number): number {
    let guess: number;
    if (unit <= CalUnit.hour) {
      const u = FIXED_UNIT_MS[unit]!;
      const raw = CAL_EPOCH_MS + k * u;
      guess = raw - mod(this.offsetAt(raw), u);
    } else {
      let local: number;
      if (unit === CalUnit.day) local = CAL_EPOCH_MS + k * DAY_MS;
      else if (unit === CalUnit.week) local = CAL_EPOCH_MS + (k * 7 + FIRST_MONDAY_DAY) * DAY_MS;
      else if (unit === CalUnit.month) local = daysFromCivil(2000 + Math.floor(k / 12), mod(k, 12) + 1, 1) * DAY_MS;
      else local = daysFromCivil(2000 + k, 1, 1) * DAY_MS;
      guess = local - this.offsetAt(local - this.offsetAt(local));
    }
    if (this.index(unit, guess) >= k && this.index(unit, guess - 1000) < k) return guess;
    // The guess fell in a DST gap or overlap: bisect for the first instant of index k. Every loop is
    // bounded: a zone's offset moves a unit's start by less than a day, and inside the calendar's range
    // 2 days of whole seconds bisect in 18 steps; outside it (NaN, or too far for whole seconds) the
    // bounds end the search instead of spinning.
    let lo = guess - DAY_MS;
    let hi = guess + DAY_MS;
    for (let i = 0; i < 3 && this.index(unit, lo) >= k; i++) lo -= DAY_MS;
    for (let i = 0; i < 3 && this.index(unit, hi) < k; i++) hi += DAY_MS;
    // Invariant: index(lo) < k ≤ index(hi); both on whole seconds, as every transition is.
    for (let i = 0; i < 64 && hi - lo > 1000; i++) {
      const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
      if (this.index(unit, mid) >= k) hi = mid;
      else lo = mid;
    }
    return hi;
  }
}

/**
 * The unit holding the latest instant asked, with its bounds: answers `index` with two comparisons while
 * instants stay inside one unit, which is every op but the first after a boundary.
 */
export class UnitCursor {
  readonly unit: CalUnitCode;
  private readonly calendar: ZoneCalendar;
  k = 0;
  startMs = Number.POSITIVE_INFINITY;
  endMs = Number.NEGATIVE_INFINITY;

  constructor(calendar: ZoneCalendar, unit: CalUnitCode) {
    this.calendar = calendar;
    this.unit = unit;
  }

  /** Index of the unit holding `t`; moves the cursor there. */
  at(t: number): number {
    if (t >= this.startMs && t < this.endMs) return this.k;
    const k = this.calendar.index(this.unit, t);
    this.k = k;
    this.startMs = this.calendar.start(this.unit, k);
    this.endMs = this.calendar.start(this.unit, k + 1);
    return k;
  }
}
