/**
 * Calendar units in IANA time zones (spec windows.md §1): property tests of ZoneCalendar and UnitCursor
 * against an independent model of the zone's wall clock built directly on Intl.DateTimeFormat.
 *
 * Random instants are drawn from 1990–2060; half of them are placed within ±3 h of one of the zone's offset
 * transitions in the drawn year (found by the model, not by the code under test), so DST edges are hit often.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  CAL_EPOCH_MS,
  CAL_UNIT_NAMES,
  CalUnit,
  NOMINAL_UNIT_MS,
  UnitCursor,
  ZoneCalendar,
  type CalUnitCode,
} from '../../common/calendar.js';

fc.configureGlobal({ includeErrorInReport: true }); // this file runs in its own process: show assertion messages

const SEC = 1000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

const ZONES = [
  'UTC',
  'Europe/Berlin',
  'America/New_York',
  'America/Sao_Paulo',
  'Australia/Lord_Howe', // 30-minute DST
  'Asia/Kolkata', // +5:30
  'Pacific/Chatham', // +12:45 / +13:45
  'America/St_Johns', // −3:30 / −2:30
  'Asia/Tokyo',
] as const;

/**
 * St. John's changed its clocks at 00:01 local time until 2011 (tzdata: "Rule StJohns … 0:01"), i.e. at
 * hh:31 UTC — not on a quarter hour. Those years have their own tests at the end of this file; the
 * properties sample St. John's from 2012 on.
 */
const FIRST_YEAR: Readonly<Record<string, number>> = { 'America/St_Johns': 2012 };
const firstYear = (zone: string): number => FIRST_YEAR[zone] ?? 1990;

const UNITS: readonly CalUnitCode[] = CAL_UNIT_NAMES.map((n) => CalUnit[n]);

function mod(a: number, m: number): number {
  return ((a % m) + m) % m;
}

/** Days since 2000-01-01 of a civil date (month 1–12). */
function civilDay(y: number, m: number, d: number): number {
  return (Date.UTC(y, m - 1, d) - CAL_EPOCH_MS) / DAY;
}

const iso = (t: number): string => new Date(t).toISOString();

// ---------------------------------------------------------------------------------------------------------
// Independent model: the zone's wall clock, straight from Intl.

interface Local {
  y: number;
  mo: number;
  d: number;
  h: number;
  mi: number;
  s: number;
  /** The local civil date as days since 2000-01-01. */
  day: number;
  /** 0 = Sunday … 1 = Monday. */
  weekday: number;
  /** The wall clock read as if it were UTC (whole seconds). */
  wall: number;
}

const formats = new Map<string, Intl.DateTimeFormat>();

function local(zone: string, t: number): Local {
  let f = formats.get(zone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formats.set(zone, f);
  }
  const v: Record<string, number> = {};
  for (const p of f.formatToParts(t)) if (p.type !== 'literal') v[p.type] = Number(p.value);
  const y = v['year']!;
  const mo = v['month']!;
  const d = v['day']!;
  const h = v['hour']!;
  const mi = v['minute']!;
  const s = v['second']!;
  const date = Date.UTC(y, mo - 1, d);
  return { y, mo, d, h, mi, s, day: (date - CAL_EPOCH_MS) / DAY, weekday: new Date(date).getUTCDay(), wall: date + ((h * 60 + mi) * 60 + s) * SEC };
}

function modelOffset(zone: string, t: number): number {
  return local(zone, t).wall - Math.floor(t / SEC) * SEC;
}

const transitionCache = new Map<string, number[]>();

/** Instants in UTC year `year` at which the zone's offset changes (first instant of the new offset). */
function transitions(zone: string, year: number): number[] {
  const key = `${zone} ${year}`;
  const cached = transitionCache.get(key);
  if (cached !== undefined) return cached;
  const out: number[] = [];
  const end = Date.UTC(year + 1, 0, 1);
  let a = Date.UTC(year, 0, 1);
  let oa = modelOffset(zone, a);
  while (a < end) {
    const b = Math.min(a + 2 * DAY, end);
    const ob = modelOffset(zone, b);
    if (ob !== oa) {
      let lo = a;
      let hi = b;
      while (hi - lo > SEC) {
        const mid = lo + Math.floor((hi - lo) / (2 * SEC)) * SEC;
        if (modelOffset(zone, mid) === oa) lo = mid;
        else hi = mid;
      }
      out.push(hi);
    }
    a = b;
    oa = ob;
  }
  transitionCache.set(key, out);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Arbitraries.

const calendars = new Map<string, ZoneCalendar>();
function cal(zone: string): ZoneCalendar {
  let c = calendars.get(zone);
  if (c === undefined) {
    c = new ZoneCalendar(zone);
    calendars.set(zone, c);
  }
  return c;
}

interface ZoneInstant {
  zone: string;
  t: number;
}

/** A zone and an instant in [firstYear(zone), 2060): uniform, or within ±3 h of an offset transition. */
function zoneInstant(zones: readonly string[], lastYear = 2059, from: (zone: string) => number = firstYear): fc.Arbitrary<ZoneInstant> {
  return fc.constantFrom(...zones).chain((zone) =>
    fc
      .record({
        year: fc.integer({ min: from(zone), max: lastYear }),
        ms: fc.integer({ min: 0, max: 365 * DAY - 1 }),
        near: fc.boolean(),
        pick: fc.nat(),
        delta: fc.oneof(fc.integer({ min: -3 * HOUR, max: 3 * HOUR }), fc.constantFrom(-SEC, -1, 0, 1, SEC)),
      })
      .map(({ year, ms, near, pick, delta }) => {
        if (near) {
          const tr = transitions(zone, year);
          if (tr.length > 0) return { zone, t: tr[pick % tr.length]! + delta };
        }
        return { zone, t: Date.UTC(year, 0, 1) + ms };
      }),
  );
}

// ---------------------------------------------------------------------------------------------------------
// 1. Bracket.

test('property: start(u, index(u, t)) ≤ t < start(u, index(u, t) + 1), and start(u, k) is in unit k, for every unit', () => {
  fc.assert(
    fc.property(zoneInstant(ZONES), ({ zone, t }) => {
      const c = cal(zone);
      for (const u of UNITS) {
        const k = c.index(u, t);
        const where = `${zone} ${CAL_UNIT_NAMES[u]} t=${iso(t)} k=${k}`;
        assert.ok(Number.isSafeInteger(k), where);
        const s0 = c.start(u, k);
        const s1 = c.start(u, k + 1);
        assert.ok(s0 <= t, `${where}: start ${iso(s0)} > t`);
        assert.ok(t < s1, `${where}: next start ${iso(s1)} ≤ t`);
        assert.equal(c.index(u, s0), k, `${where}: index(start) ≠ k`);
        assert.equal(c.index(u, s0 - 1), k - 1, `${where}: the instant before start ${iso(s0)} is not in unit k−1`);
      }
    }),
    { numRuns: 250 },
  );
});

// ---------------------------------------------------------------------------------------------------------
// 2. Monotonic.

test('property: index is non-decreasing in t and start(u, k) < start(u, k + 1)', () => {
  const fine: readonly CalUnitCode[] = [CalUnit.second, CalUnit.minute, CalUnit.hour];
  const coarse: readonly CalUnitCode[] = [CalUnit.day, CalUnit.week, CalUnit.month, CalUnit.year];
  // America/Sao_Paulo changed clocks at midnight until 2019 (00:00 → 01:00, and 00:00 → 23:00 of the previous
  // day): the civil date still never goes backwards there, so it stays in. St. John's before 2012 is excluded
  // by zoneInstant (00:01 → 23:01 of the previous day does take the civil date backwards; see the tests at the end).
  fc.assert(
    fc.property(
      zoneInstant(ZONES),
      fc.oneof(fc.integer({ min: 0, max: 2 * HOUR }), fc.integer({ min: 0, max: 400 * DAY }), fc.constantFrom(0, 1, SEC)),
      ({ zone, t }, d) => {
        const c = cal(zone);
        const t2 = t + d;
        for (const u of [...fine, ...coarse]) {
          const where = `${zone} ${CAL_UNIT_NAMES[u]} t1=${iso(t)} t2=${iso(t2)}`;
          const k1 = c.index(u, t);
          const k2 = c.index(u, t2);
          assert.ok(k1 <= k2, `${where}: index ${k1} > ${k2}`);
          assert.ok(c.start(u, k1) < c.start(u, k1 + 1), `${where}: start(k) ≥ start(k+1) at k=${k1}`);
          assert.ok(c.start(u, k2) < c.start(u, k2 + 1), `${where}: start(k) ≥ start(k+1) at k=${k2}`);
        }
      },
    ),
    { numRuns: 250 },
  );
});

// ---------------------------------------------------------------------------------------------------------
// 3. Alignment to the zone's wall clock.

/** `s` is the first instant of local date `day`: midnight, or, when midnight was skipped, the end of the gap. */
function assertFirstInstantOfDate(zone: string, s: number, day: number, where: string): void {
  const at = local(zone, s);
  const before = local(zone, s - SEC);
  assert.equal(mod(s, SEC), 0, `${where}: ${iso(s)} not on a whole second`);
  assert.equal(at.day, day, `${where}: local date at start ${iso(s)} is ${at.y}-${at.mo}-${at.d}`);
  assert.equal(before.day, day - 1, `${where}: 1 s before start ${iso(s)} the local date is not the previous one`);
  if (at.h !== 0 || at.mi !== 0 || at.s !== 0) {
    // Only allowed when midnight did not exist: the wall clock jumped forward over it.
    assert.notEqual(at.wall - before.wall, SEC, `${where}: start ${iso(s)} is at local ${at.h}:${at.mi}:${at.s}, yet midnight existed`);
  }
}

/** Lord Howe's 30-minute fall-back repeats local 01:30–01:59: that repeated half hour starts a unit at :30. */
function isLordHoweFallBack(zone: string, s: number): boolean {
  return zone === 'Australia/Lord_Howe' && local(zone, s - SEC).wall >= local(zone, s).wall;
}

test('property: unit starts fall on the local wall clock: :00, midnight, Monday, the 1st, 1 January', () => {
  fc.assert(
    fc.property(zoneInstant(ZONES), fc.integer({ min: -1, max: 1 }), ({ zone, t }, j) => {
      const c = cal(zone);
      for (const u of UNITS) {
        const k = c.index(u, t) + j;
        const s = c.start(u, k);
        const at = local(zone, s);
        const where = `${zone} ${CAL_UNIT_NAMES[u]} k=${k} (from t=${iso(t)})`;
        switch (u) {
          case CalUnit.second:
            assert.equal(mod(s, SEC), 0, where);
            break;
          case CalUnit.minute:
            assert.equal(mod(s, SEC), 0, where);
            assert.equal(at.s, 0, `${where}: start ${iso(s)} local seconds ${at.s}`);
            break;
          case CalUnit.hour:
            assert.equal(mod(s, SEC), 0, where);
            assert.equal(at.s, 0, `${where}: start ${iso(s)} local seconds ${at.s}`);
            if (!isLordHoweFallBack(zone, s)) assert.equal(at.mi, 0, `${where}: start ${iso(s)} local minutes ${at.mi}`);
            break;
          case CalUnit.day:
            assertFirstInstantOfDate(zone, s, k, where);
            break;
          case CalUnit.week:
            assertFirstInstantOfDate(zone, s, 2 + 7 * k, where); // 2000-01-03 is a Monday
            assert.equal(at.weekday, 1, `${where}: start ${iso(s)} is not a Monday`);
            break;
          case CalUnit.month: {
            const y = 2000 + Math.floor(k / 12);
            const m = mod(k, 12) + 1;
            assertFirstInstantOfDate(zone, s, civilDay(y, m, 1), where);
            assert.equal(at.d, 1, where);
            break;
          }
          case CalUnit.year:
            assertFirstInstantOfDate(zone, s, civilDay(2000 + k, 1, 1), where);
            assert.ok(at.mo === 1 && at.d === 1 && at.y === 2000 + k, `${where}: start ${iso(s)} is not 1 January ${2000 + k}`);
            break;
          default:
            assert.fail(`unknown unit ${String(u)}`);
        }
      }
    }),
    { numRuns: 200 },
  );
});

// ---------------------------------------------------------------------------------------------------------
// 4. DST day lengths.

test('property: Berlin and New York days are 23, 24 or 25 h, with exactly one 23 h (spring) and one 25 h (autumn) day a year', () => {
  fc.assert(
    fc.property(fc.constantFrom('Europe/Berlin', 'America/New_York'), fc.integer({ min: 2000, max: 2040 }), (zone, year) => {
      const c = cal(zone);
      const first = civilDay(year, 1, 1);
      const last = civilDay(year + 1, 1, 1);
      const byLength = new Map<number, number[]>();
      let prev = c.start(CalUnit.day, first);
      for (let k = first; k < last; k++) {
        const next = c.start(CalUnit.day, k + 1);
        const hours = (next - prev) / HOUR;
        assert.ok(hours === 23 || hours === 24 || hours === 25, `${zone} day ${k} of ${year}: ${hours} h`);
        byLength.set(hours, [...(byLength.get(hours) ?? []), k]);
        prev = next;
      }
      const short = byLength.get(23) ?? [];
      const long = byLength.get(25) ?? [];
      assert.equal(short.length, 1, `${zone} ${year}: 23 h days ${short}`);
      assert.equal(long.length, 1, `${zone} ${year}: 25 h days ${long}`);
      // Spring forward in March (April in New York before 2007); fall back in October or November.
      assert.ok([2, 3].includes(new Date(CAL_EPOCH_MS + short[0]! * DAY).getUTCMonth()), `${zone} ${year}: the 23 h day is not in Mar/Apr`);
      assert.ok([9, 10].includes(new Date(CAL_EPOCH_MS + long[0]! * DAY).getUTCMonth()), `${zone} ${year}: the 25 h day is not in Oct/Nov`);
    }),
    { numRuns: 6 },
  );
  fc.assert(
    fc.property(fc.integer({ min: civilDay(1990, 1, 1), max: civilDay(2060, 1, 1) }), (k) => {
      const c = cal('UTC');
      assert.equal(c.start(CalUnit.day, k), CAL_EPOCH_MS + k * DAY);
      assert.equal(c.start(CalUnit.day, k + 1) - c.start(CalUnit.day, k), 24 * HOUR, `UTC day ${k}`);
    }),
    { numRuns: 200 },
  );
});

// ---------------------------------------------------------------------------------------------------------
// 5. Month ends and leap years.

const isLeap = (y: number): boolean => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;

test('property: February has 28 or 29 days by the Gregorian rule; years have 365/366 days; months their lengths (UTC)', () => {
  fc.assert(
    fc.property(
      fc.constantFrom('UTC', 'Europe/Berlin'),
      fc.oneof(fc.integer({ min: 1990, max: 2060 }), fc.constantFrom(1900, 2000, 2100, 2400)),
      (zone, year) => {
        const c = cal(zone);
        const feb = (year - 2000) * 12 + 1;
        const len = c.start(CalUnit.month, feb + 1) - c.start(CalUnit.month, feb);
        assert.equal(len, (isLeap(year) ? 29 : 28) * DAY, `${zone} February ${year}`);
      },
    ),
    { numRuns: 100 },
  );
  fc.assert(
    fc.property(fc.integer({ min: 1990, max: 2060 }), fc.integer({ min: 0, max: 11 }), (year, m) => {
      const c = cal('UTC');
      const y = year - 2000;
      assert.equal(c.start(CalUnit.year, y + 1) - c.start(CalUnit.year, y), (isLeap(year) ? 366 : 365) * DAY, `UTC year ${year}`);
      assert.equal(c.start(CalUnit.year, y), Date.UTC(year, 0, 1));
      const k = y * 12 + m;
      assert.equal(c.start(CalUnit.month, k), Date.UTC(year, m, 1));
      assert.equal(c.start(CalUnit.month, k + 1) - c.start(CalUnit.month, k), Date.UTC(year, m + 1, 1) - Date.UTC(year, m, 1));
    }),
    { numRuns: 100 },
  );
});

// ---------------------------------------------------------------------------------------------------------
// 6. The repeated hour of a fall-back.

test('Berlin 2024-10-27: the repeated local 02:xx hour is a new hour on the same day', () => {
  const c = new ZoneCalendar('Europe/Berlin');
  const first = Date.parse('2024-10-27T00:30:00Z'); // 02:30 CEST
  const second = Date.parse('2024-10-27T01:30:00Z'); // 02:30 CET
  assert.equal(local('Europe/Berlin', first).wall, local('Europe/Berlin', second).wall); // the model agrees it repeats
  const h1 = c.index(CalUnit.hour, first);
  const h2 = c.index(CalUnit.hour, second);
  assert.equal(h2 - h1, 1);
  assert.equal(c.start(CalUnit.hour, h1), Date.parse('2024-10-27T00:00:00Z'));
  assert.equal(c.start(CalUnit.hour, h2), Date.parse('2024-10-27T01:00:00Z'));
  assert.equal(c.index(CalUnit.day, first), c.index(CalUnit.day, second));
  assert.equal(c.index(CalUnit.day, first), civilDay(2024, 10, 27));
  assert.equal(c.offsetAt(first), 2 * HOUR);
  assert.equal(c.offsetAt(second), HOUR);
});

// ---------------------------------------------------------------------------------------------------------
// 7. UnitCursor.

type Step = { kind: 'frac'; permille: number } | { kind: 'ms'; ms: number } | { kind: 'edge'; end: boolean; d: number };

test('property: UnitCursor.at(t) equals calendar.index(unit, t) along a walk that mostly goes forward', () => {
  const step: fc.Arbitrary<Step> = fc.oneof(
    // forward by up to 1.5 nominal units
    { arbitrary: fc.integer({ min: 0, max: 1500 }).map((permille): Step => ({ kind: 'frac', permille })), weight: 4 },
    // forward by up to 2 h (crosses DST edges of coarse units when the walk starts near one)
    { arbitrary: fc.integer({ min: 0, max: 2 * HOUR }).map((ms): Step => ({ kind: 'ms', ms })), weight: 2 },
    { arbitrary: fc.constantFrom(0, 1, SEC - 1, SEC).map((ms): Step => ({ kind: 'ms', ms })), weight: 1 },
    // exactly onto (or 1 ms before) the cursor's current end or start
    { arbitrary: fc.record({ end: fc.boolean(), d: fc.constantFrom(-1, 0) }).map(({ end, d }): Step => ({ kind: 'edge', end, d })), weight: 2 },
    // backwards by up to one nominal unit
    { arbitrary: fc.integer({ min: -1000, max: -1 }).map((permille): Step => ({ kind: 'frac', permille })), weight: 1 },
  );
  fc.assert(
    fc.property(zoneInstant(ZONES, 2040), fc.constantFrom(...UNITS), fc.array(step, { minLength: 1, maxLength: 40 }), ({ zone, t }, unit, steps) => {
      const c = new ZoneCalendar(zone);
      const cursor = new UnitCursor(c, unit);
      const floor = Date.UTC(firstYear(zone), 0, 1);
      let now = t;
      for (const s of steps) {
        if (s.kind === 'frac') now += Math.round((s.permille / 1000) * NOMINAL_UNIT_MS[unit]!);
        else if (s.kind === 'ms') now += s.ms;
        else if (Number.isFinite(cursor.endMs)) now = (s.end ? cursor.endMs : cursor.startMs) + s.d;
        now = Math.max(floor, now);
        const expected = cal(zone).index(unit, now);
        const where = `${zone} ${CAL_UNIT_NAMES[unit]} at ${iso(now)}`;
        assert.equal(cursor.at(now), expected, where);
        assert.equal(cursor.k, expected, where);
        assert.ok(cursor.startMs <= now && now < cursor.endMs, `${where}: cursor bounds [${iso(cursor.startMs)}, ${iso(cursor.endMs)})`);
      }
    }),
    { numRuns: 150 },
  );
});

// ---------------------------------------------------------------------------------------------------------
// Extra: the cached offset agrees with the zone.

test('property: offsetAt(t) is the zone offset Intl reports', () => {
  fc.assert(
    fc.property(zoneInstant(ZONES), ({ zone, t }) => {
      assert.equal(cal(zone).offsetAt(t), modelOffset(zone, t), `${zone} at ${iso(t)}`);
    }),
    { numRuns: 300 },
  );
});

// ---------------------------------------------------------------------------------------------------------
// Documented limits (common/calendar.ts): behaviour the zone itself forces, pinned so that it cannot drift.

test("St. John's 1990–2011 (clock changes at 00:01 local, hh:31 UTC): exact offsets; sub-day units bracket", () => {
  fc.assert(
    fc.property(
      zoneInstant(['America/St_Johns'], 2011, () => 1990),
      fc.integer({ min: 0, max: 2 * HOUR }),
      ({ zone, t }, d) => {
        const c = cal(zone);
        assert.equal(c.offsetAt(t), modelOffset(zone, t), `offset at ${iso(t)}`);
        for (const u of [CalUnit.second, CalUnit.minute, CalUnit.hour] as const) {
          const k = c.index(u, t);
          assert.ok(c.start(u, k) <= t && t < c.start(u, k + 1), `${CAL_UNIT_NAMES[u]} bracket at ${iso(t)}`);
          assert.ok(k <= c.index(u, t + d), `${CAL_UNIT_NAMES[u]} index decreases from ${iso(t)} to ${iso(t + d)}`);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test("St. John's 1990-10-28 fall-back from 00:00:59 to 23:01: the local date, and so the day index, goes back", () => {
  const c = cal('America/St_Johns');
  const before = Date.parse('1990-10-28T02:30:00Z'); // 00:00 local, Sunday
  const after = Date.parse('1990-10-28T02:31:00Z'); // 23:01 local, Saturday again
  assert.equal(c.index(CalUnit.day, after), c.index(CalUnit.day, before) - 1);
});

test('Lord Howe 2020-04-05 fall-back (+11 → +10:30): the repeated half hour is an hour unit of its own', () => {
  const c = cal('Australia/Lord_Howe');
  const t = Date.parse('2020-04-04T15:00:00Z'); // first instant after the fall-back: local 01:30 (+10:30)
  const k = c.index(CalUnit.hour, t);
  assert.equal(c.start(CalUnit.hour, k), t);
  assert.equal(c.start(CalUnit.hour, k + 1) - t, 30 * 60_000);
});
