/**
 * The export format of an event store, and its conversion to another store's rings.
 *
 * Buckets are exported newest first per ring, with the instant they were read at (`nowMs`) and the zone
 * and intervals they were kept in, so that the receiving store can align them by absolute unit index (a
 * merge adds "the bucket of 10:00–11:00" to the same bucket, whatever the two stores' now).
 */
import { CAL_MAX_MS, CAL_MIN_MS, CAL_UNIT_NAMES, CalUnit, type CalUnitCode, canonicalTimeZone, FIXED_UNIT_MS, inCalendarRange, mod, ZoneCalendar } from '../../common/calendar.js';
import { argumentRangeError, argumentTypeError, ErrorCode, TallyworksError } from '../../common/errors.js';
import type { LoadOp } from '../../common/messages.js';
import { type IntervalCounts, resolveIntervals } from './intervals.js';

export const EXPORT_FORMAT = 'tallyworks.events';
export const EXPORT_VERSION = 1;

export interface EventsExport {
  readonly format: typeof EXPORT_FORMAT;
  readonly version: typeof EXPORT_VERSION;
  /** Set when the exporting store has a `sourceId`: merging the same export twice counts it once. */
  readonly source?: { readonly id: string; readonly exportId: string };
  readonly timeZone: string;
  readonly intervals: IntervalCounts;
  /** When the buckets were read (ms since the Unix epoch). */
  readonly nowMs: number;
  /** Per id: per tracked unit (finest first, as in `intervals`), counts newest first. */
  readonly counters: Record<string, number[][]>;
}

/** How an export's rings map onto a store's rings: for each store ring, the export's head and ring. */
export interface RingMapping {
  /** Per store ring: unit index of the source ring's newest bucket, or null (not in the source). */
  readonly heads: ReadonlyArray<number | null>;
  /** Per store ring: index of the source ring, or -1. */
  readonly sourceRing: readonly number[];
}

/** Checks an export's shape; throws TW_INVALID_ARGUMENT naming what is wrong. */
export function validateExport(value: unknown, argument = 'export'): EventsExport {
  const e = value as EventsExport;
  if (typeof value !== 'object' || value === null) throw argumentTypeError(argument, 'an export from EventStore.export()', value);
  if (e.format !== EXPORT_FORMAT || e.version !== EXPORT_VERSION) {
    throw argumentTypeError(`${argument}.format`, `"${EXPORT_FORMAT}" version ${EXPORT_VERSION}`, e.format);
  }
  if (typeof e.nowMs !== 'number') throw argumentTypeError(`${argument}.nowMs`, 'a time in ms', e.nowMs);
  if (!inCalendarRange(e.nowMs)) throw argumentRangeError(`${argument}.nowMs`, `a time from ${new Date(CAL_MIN_MS).toISOString()} to before ${new Date(CAL_MAX_MS).toISOString()}`, e.nowMs);
  if (typeof e.counters !== 'object' || e.counters === null || Array.isArray(e.counters)) throw argumentTypeError(`${argument}.counters`, 'an object of id → buckets', e.counters);
  if (typeof e.timeZone !== 'string') throw argumentTypeError(`${argument}.timeZone`, 'a time zone name', e.timeZone);
  try {
    canonicalTimeZone(e.timeZone);
  } catch {
    throw argumentRangeError(`${argument}.timeZone`, 'an IANA time zone name this Node.js knows', e.timeZone);
  }
  resolveIntervals(e.intervals, `${argument}.intervals`);
  return e;
}

/**
 * Maps an export's rings onto a store's. A unit both track is converted (the shorter ring decides how much
 * history carries over); units only the export tracks are dropped. Refused with TW_INCOMPATIBLE: a unit
 * the store tracks and the export does not (its ring would disagree with the others), or units whose buckets
 * start at other instants in the two zones: day-or-coarser units of another zone, and seconds, minutes or
 * hours when the zones' offsets differ by other than whole units (UTC hours vs +05:30 hours).
 */
export function mapRings(exp: EventsExport, storeRings: ReadonlyArray<readonly [CalUnitCode, number]>, storeZone: ZoneCalendar): RingMapping {
  const sourceRings = resolveIntervals(exp.intervals);
  const sourceZone = new ZoneCalendar(exp.timeZone);
  const heads: Array<number | null> = [];
  const sourceRing: number[] = [];
  for (const [unit] of storeRings) {
    const s = sourceRings.findIndex(([u]) => u === unit);
    if (s === -1) {
      throw new TallyworksError(
        ErrorCode.INCOMPATIBLE,
        `the export does not track ${CAL_UNIT_NAMES[unit]}s, which this store does; export from a store that tracks every unit this one does`,
      );
    }
    const offsetsDiffer =
      unit < CalUnit.day && mod(sourceZone.offsetAt(exp.nowMs), FIXED_UNIT_MS[unit]!) !== mod(storeZone.offsetAt(exp.nowMs), FIXED_UNIT_MS[unit]!);
    if ((unit >= CalUnit.day && sourceZone.timeZone !== storeZone.timeZone) || offsetsDiffer) {
      throw new TallyworksError(
        ErrorCode.INCOMPATIBLE,
        `the export's ${CAL_UNIT_NAMES[unit]}s are kept in ${sourceZone.timeZone} and this store's in ${storeZone.timeZone}; their buckets start at different instants`,
      );
    }
    heads.push(sourceZone.index(unit, exp.nowMs));
    sourceRing.push(s);
  }
  return { heads, sourceRing };
}

/** The load op for one id of an export. */
export function loadOp(type: 'merge' | 'import', offset: number, t: number, mapping: RingMapping, rings: readonly number[][], id: string): LoadOp {
  if (!Array.isArray(rings)) throw argumentTypeError(`export.counters[${JSON.stringify(id)}]`, 'an array of rings', rings);
  const values = mapping.sourceRing.map((s) => {
    const ring = rings[s] ?? [];
    if (!Array.isArray(ring)) throw argumentTypeError(`export.counters[${JSON.stringify(id)}][${s}]`, 'an array of counts', ring);
    for (const v of ring) {
      if (!(typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)) {
        throw argumentTypeError(`export.counters[${JSON.stringify(id)}]`, 'rings of safe integers ≥ 0', v);
      }
    }
    return ring;
  });
  return { type, offset, t, heads: mapping.heads, values };
}
