/**
 * Schedules for `limit().during(…)` / `outsideOf(…)`: hours of the day and days of the week in a time
 * zone, or any predicate. A schedule without a zone uses its store's.
 */
import { canonicalTimeZone, CalUnit, ZoneCalendar } from '../../common/calendar.js';
import { argumentRangeError, argumentTypeError, codedRangeError, ErrorCode } from '../../common/errors.js';

const HOUR_MS = 3_600_000;
/** How far ahead a retry-after estimate looks for the schedule to open (one week, hour by hour). */
const LOOKAHEAD_HOURS = 7 * 24 + 1;

type Rule = { readonly kind: 'hours'; readonly start: number; readonly end: number } | { readonly kind: 'days'; readonly days: readonly boolean[] } | { readonly kind: 'custom'; readonly test: (at: Date) => boolean };

function zoneOf(timeZone: string | undefined): ZoneCalendar | undefined {
  if (timeZone === undefined) return undefined;
  if (typeof timeZone !== 'string') throw argumentTypeError('timeZone', 'an IANA time zone name', timeZone);
  try {
    canonicalTimeZone(timeZone);
  } catch {
    throw argumentRangeError('timeZone', 'an IANA time zone name this Node.js knows, such as "Europe/Berlin"', timeZone);
  }
  return new ZoneCalendar(timeZone);
}

export class Schedule {
  /** Shown in refusals, e.g. `hours(9, 17)`. */
  readonly label: string;
  private readonly rule: Rule;
  private readonly zone: ZoneCalendar | undefined;

  private constructor(label: string, rule: Rule, zone: ZoneCalendar | undefined) {
    this.label = label;
    this.rule = rule;
    this.zone = zone;
  }

  /**
   * Hours `start` ≤ hour < `end` of the local day. `start` 0–23, `end` 1–24, `start` < `end` (a range across
   * midnight is two schedules: `outsideOf(hours(end, start))`).
   */
  static hours(start: number, end: number, timeZone?: string): Schedule {
    for (const [name, v, max] of [['start', start, 23], ['end', end, 24]] as const) {
      if (typeof v !== 'number') throw argumentTypeError(name, `an integer hour from ${name === 'start' ? 0 : 1} to ${max}`, v);
      if (!Number.isInteger(v) || v < 0 || v > max) throw codedRangeError(ErrorCode.INVALID_HOUR, name, `an integer hour from 0 to ${max}`, v);
    }
    if (start >= end) throw codedRangeError(ErrorCode.INVALID_RANGE, 'start', `before end (${end})`, start);
    return new Schedule(`hours(${start}, ${end}${timeZone === undefined ? '' : `, ${timeZone}`})`, { kind: 'hours', start, end }, zoneOf(timeZone));
  }

  /** Monday to Friday. */
  static weekdays(timeZone?: string): Schedule {
    return new Schedule('weekdays', { kind: 'days', days: [false, true, true, true, true, true, false] }, zoneOf(timeZone));
  }

  /** Saturday and Sunday. */
  static weekends(timeZone?: string): Schedule {
    return new Schedule('weekends', { kind: 'days', days: [true, false, false, false, false, false, true] }, zoneOf(timeZone));
  }

  /** Any predicate of the current time. It runs on the calling thread and must not throw. */
  static custom(test: (at: Date) => boolean, label = 'custom'): Schedule {
    if (typeof test !== 'function') throw argumentTypeError('test', 'a function (at: Date) => boolean', test);
    return new Schedule(label, { kind: 'custom', test }, undefined);
  }

  /** @internal True when instant `t` is inside the schedule. */
  contains(t: number, storeZone: ZoneCalendar): boolean {
    const rule = this.rule;
    if (rule.kind === 'custom') return rule.test(new Date(t)) === true;
    const zone = this.zone ?? storeZone;
    const local = new Date(t + zone.offsetAt(t));
    if (rule.kind === 'hours') {
      const h = local.getUTCHours();
      return h >= rule.start && h < rule.end;
    }
    return rule.days[local.getUTCDay()]!;
  }

  /**
   * @internal Ms from `t` until the schedule is `want` (inside or outside), looking a week ahead at local
   * hour starts; undefined for custom predicates or when it never is.
   */
  msUntil(t: number, want: boolean, storeZone: ZoneCalendar): number | undefined {
    if (this.rule.kind === 'custom') return undefined;
    const zone = this.zone ?? storeZone;
    let k = zone.index(CalUnit.hour, t);
    for (let i = 0; i < LOOKAHEAD_HOURS; i++) {
      k++;
      const at = zone.start(CalUnit.hour, k);
      if (this.contains(at, storeZone) === want) return at - t;
    }
    return undefined;
  }
}

/** Hours as ms, for labels. */
export function describeMs(ms: number): string {
  if (ms % HOUR_MS === 0) return `${ms / HOUR_MS} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${ms} ms`;
}
