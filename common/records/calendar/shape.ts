/**
 * The geometry of a calendar record (tiny_counter parity): which rings it keeps, how many buckets each,
 * and where they sit among the record's buckets, resolved for one thread with its zone calendar and a
 * unit cursor per ring. Part of the calendar record kind (see ./read.ts and ./write.ts).
 *
 * Imported by worker threads: imports nothing main-only.
 */
import { type CalUnitCode, NOMINAL_UNIT_MS, UnitCursor, ZoneCalendar } from '../../calendar.js';
import { calRecordWords } from '../../layout.js';
import type { CalConfig } from '../../messages.js';

export interface CalRing {
  readonly unit: CalUnitCode;
  readonly count: number;
  /** Index of the ring's first bucket among the record's buckets. */
  readonly base: number;
}

/**
 * A calendar config resolved for use on one thread: its zone calendar and a cursor per ring. `seek(t)`
 * leaves in `ks` the unit index of `t` for every ring; while `t` stays in [from, to) that costs two
 * comparisons.
 */
export class CalShape {
  readonly id: number;
  readonly calendar: ZoneCalendar;
  readonly rings: readonly CalRing[];
  readonly buckets: number;
  /** How long a reservation counts against `atMost` limits (the main thread's; 0 on a shard, which has none). */
  readonly reservationTtlMs: number;
  readonly words: number;
  readonly ks: Int32Array;
  private readonly ringByUnit: Int8Array;
  private readonly cursors: UnitCursor[];
  /** Separate cursors for latest counts' units, so that looking one up does not move `ks`'s. */
  private readonly latestCursors: UnitCursor[];
  private lastLatest = Number.NaN;
  private lastLatestStart = 0;
  private from = Number.POSITIVE_INFINITY;
  private to = Number.NEGATIVE_INFINITY;

  constructor(config: CalConfig, reservationTtlMs = 0) {
    this.id = config.id;
    this.reservationTtlMs = reservationTtlMs;
    this.calendar = new ZoneCalendar(config.timeZone);
    let base = 0;
    const rings: CalRing[] = [];
    for (const [unit, count] of config.rings) {
      rings.push({ unit: unit as CalUnitCode, count, base });
      base += count;
    }
    this.rings = rings;
    this.ringByUnit = Int8Array.from({ length: 7 }, (_, u) => rings.findIndex((r) => r.unit === u));
    this.buckets = base;
    this.words = calRecordWords(rings.length, base);
    this.ks = new Int32Array(rings.length);
    this.cursors = rings.map((r) => new UnitCursor(this.calendar, r.unit));
    this.latestCursors = rings.map((r) => new UnitCursor(this.calendar, r.unit));
  }

  /**
   * Unit index in ring `r` of the finest-ring unit `kf` (a latest count's), leaving `ks` alone. Latest
   * counts of active ids share the current unit, so the start of the last one asked is cached.
   */
  latestIndex(r: number, kf: number): number {
    if (kf !== this.lastLatest) {
      this.lastLatestStart = this.calendar.start(this.rings[0]!.unit, kf);
      this.lastLatest = kf;
    }
    return this.latestCursors[r]!.at(this.lastLatestStart);
  }

  /** Sets `ks` to the unit indexes of instant `t`. */
  seek(t: number): void {
    if (t >= this.from && t < this.to) return;
    let from = Number.NEGATIVE_INFINITY;
    let to = Number.POSITIVE_INFINITY;
    for (let r = 0; r < this.cursors.length; r++) {
      const c = this.cursors[r]!;
      this.ks[r] = c.at(t);
      if (c.startMs > from) from = c.startMs;
      if (c.endMs < to) to = c.endMs;
    }
    this.from = from;
    this.to = to;
  }

  /** Index of the ring tracking `unit`, or -1. */
  ringOf(unit: CalUnitCode): number {
    return this.ringByUnit[unit] ?? -1;
  }

  /** The ring spanning the most time (what `ever()` reads). */
  get longestRing(): number {
    let best = 0;
    let span = 0;
    for (let r = 0; r < this.rings.length; r++) {
      const s = spanMs(this.rings[r]!);
      if (s > span) {
        span = s;
        best = r;
      }
    }
    return best;
  }
}

function spanMs(ring: CalRing): number {
  return NOMINAL_UNIT_MS[ring.unit]! * ring.count;
}
