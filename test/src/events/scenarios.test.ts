/**
 * Calendar event counts through the public API: every scenario of the calendar-count spec (tiny_counter parity), on a
 * test clock that starts on Monday 2024-06-17 10:30:00 UTC, plus what a user notices around each of them,
 * and the FIX that buckets follow an explicit IANA time zone.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  createEngine,
  type Engine,
  ErrorCode,
  type EventStore,
  Intervals,
  LimitExceededError,
  MemoryStorage,
  Schedule,
  SPEC_START,
  TallyworksRangeError,
  TestClock,
} from '../../../src/index.js';
import { MINUTE, HOUR, DAY, utc, withCode } from '../../helpers/time.js';




const clock = new TestClock(SPEC_START);
let engine: Engine;
let n = 0;
// Every scenario uses fresh ids so that they can share one engine and its default store.
const fresh = (name = 'e'): string => `${name}${n++}`;

before(async () => {
  engine = await createEngine({ clock, shards: 2 });
});
after(() => engine.close());

/** Today's count (lastDays(1)) of one id. */
const today = (store: EventStore, id: string): Promise<number | undefined> => store.query(id).lastDays(1).sum();
/** This hour's count (lastHours(1)) of one id. */
const thisHour = (store: EventStore, id: string): Promise<number | undefined> => store.query(id).lastHours(1).sum();

describe('events: spec scenarios', () => {
  test('1. record ×3 → lastDays(1) 3, lastMinutes(1) 3', async () => {
    clock.set(SPEC_START);
    const id = fresh();
    const store = engine.events;
    store.record(id);
    store.record(id);
    store.record(id);
    assert.equal(await store.query(id).lastDays(1).sum(), 3);
    assert.equal(await store.query(id).lastMinutes(1).sum(), 3);
    assert.equal(await store.query(id).ever().sum(), 3);
    assert.equal(store.has(id), true);
  });

  test('2. id never recorded → sum undefined; ratio undefined; delta sum 0', async () => {
    clock.set(SPEC_START);
    const store = engine.events;
    const ghost = fresh('ghost');
    const other = fresh('ghost');
    assert.equal(await store.query(ghost).lastDays(1).sum(), undefined);
    assert.equal(await store.query(ghost).ever().sum(), undefined);
    assert.equal(await store.ratio(ghost, other).lastDays(1), undefined);
    assert.equal(await store.delta(ghost, other).sum(), 0);
    assert.equal(await store.delta(ghost, other).lastDays(1).sum(), 0);
    assert.equal(store.has(ghost), false, 'reading an unknown id does not create it');
  });

  test('3. trackHours(24): record, +2 h, record → lastHours(1) 1, lastHours(3) 2', async () => {
    clock.set(SPEC_START);
    const store = engine.eventStore({ intervals: Intervals.builder().trackHours(24) });
    const id = fresh();
    store.record(id);
    clock.advance(2 * HOUR);
    store.record(id);
    assert.equal(await store.query(id).lastHours(1).sum(), 1);
    assert.equal(await store.query(id).lastHours(3).sum(), 2);
    assert.equal(await store.query(id).lastDays(1).sum(), undefined, 'days are not tracked by this store');
  });

  test('4. record 10:59:59, +1 s → lastHours(1) 0, lastHours(2) 1', async () => {
    clock.set(utc('2024-06-17T10:59:59Z'));
    const id = fresh();
    engine.events.record(id);
    clock.advance(1000);
    assert.equal(await engine.events.query(id).lastHours(1).sum(), 0);
    assert.equal(await engine.events.query(id).lastHours(2).sum(), 1);
    assert.equal(await today(engine.events, id), 1);
  });

  test('5. record 23:59, +2 min → lastDays(1) 0, lastDays(2) 1', async () => {
    clock.set(utc('2024-06-17T23:59:00Z'));
    const id = fresh();
    engine.events.record(id);
    clock.advance(2 * MINUTE);
    assert.equal(await engine.events.query(id).lastDays(1).sum(), 0);
    assert.equal(await engine.events.query(id).lastDays(2).sum(), 1);
    assert.equal(await engine.events.query(id).lastWeeks(1).sum(), 1, 'Monday and Tuesday are the same week');
  });

  test('6. record(id, 100) → lastDays(7).buckets() = [100,0,0,0,0,0,0]', async () => {
    clock.set(SPEC_START);
    const id = fresh();
    engine.events.record(id, 100);
    assert.deepEqual(await engine.events.query(id).lastDays(7).buckets(), [100, 0, 0, 0, 0, 0, 0]);
    assert.equal(await engine.events.query(id).lastDays(7).sum(), 100);
  });

  test('7. trackDays(7): record, +2 days, record → countNonzero 2, sum 2', async () => {
    clock.set(SPEC_START);
    const store = engine.eventStore({ intervals: { days: 7 } });
    const id = fresh();
    store.record(id);
    clock.advance(2 * DAY);
    store.record(id);
    const week = store.query(id).lastDays(7);
    assert.equal(await week.countNonzero(), 2);
    assert.equal(await week.sum(), 2);
    assert.deepEqual(await week.buckets(), [1, 0, 1, 0, 0, 0, 0]);
  });

  test('8. trackDays(7): record(id, 14) → averageNonzero 14, average 2', async () => {
    clock.set(SPEC_START);
    const store = engine.eventStore({ intervals: Intervals.builder().trackDays(7) });
    const id = fresh();
    store.record(id, 14);
    const week = store.query(id).lastDays(7);
    assert.equal(await week.averageNonzero(), 14);
    assert.equal(await week.average(), 2);
    assert.equal(await week.countNonzero(), 1);
  });

  test('9. trackDays(7): record, +7 days → lastDays(7).sum 0 (not undefined)', async () => {
    clock.set(SPEC_START);
    const store = engine.eventStore({ intervals: { days: 7 } });
    const id = fresh();
    store.record(id);
    clock.advance(7 * DAY);
    assert.equal(await store.query(id).lastDays(7).sum(), 0);
    assert.equal(await store.query(id).lastDays(7).averageNonzero(), undefined, 'no non-zero bucket left');
    assert.equal(store.has(id), true, 'the id is still known');
  });

  test('10. trackHours(24): record, +100 h, record → lastHours(24) 1', async () => {
    clock.set(SPEC_START);
    const store = engine.eventStore({ intervals: Intervals.builder().trackHours(24) });
    const id = fresh();
    store.record(id);
    clock.advance(100 * HOUR);
    store.record(id);
    assert.equal(await store.query(id).lastHours(24).sum(), 1);
    assert.equal(await store.query(id).ever().sum(), 1, 'the old event fell off the only ring');
  });

  test('11. recordAt(now + 1 s) → FutureEvent; the id stays unknown', async () => {
    clock.set(SPEC_START);
    const id = fresh();
    const store = engine.events;
    assert.throws(() => store.recordAt(id, clock.now() + 1000), withCode('TW_FUTURE_EVENT'));
    assert.throws(() => store.recordAt(id, new Date(clock.now() + 1000), 5), withCode('TW_FUTURE_EVENT'));
    assert.equal(store.has(id), false);
    assert.equal(await store.query(id).ever().sum(), undefined);
  });

  test('12. recordAgo(3 h) → lastHours(1) 0, lastHours(4) 1, lastDays(1) 1', async () => {
    clock.set(SPEC_START);
    const id = fresh();
    engine.events.recordAgo(id, 3 * HOUR); // 07:30
    const q = engine.events.query(id);
    assert.equal(await q.lastHours(1).sum(), 0);
    assert.equal(await q.lastHours(4).sum(), 1);
    assert.equal(await q.lastDays(1).sum(), 1);
    assert.equal(await q.lastHours(3).sum(), 0, 'lastHours(3) starts at 08:00');
  });

  test('13. recordAgo(2 h) with defaults → lastMinutes(60) 0, lastHours(3) 1', async () => {
    clock.set(SPEC_START);
    const id = fresh();
    engine.events.recordAgo(id, 2 * HOUR); // 08:30
    const q = engine.events.query(id);
    assert.equal(await q.lastMinutes(60).sum(), 0);
    assert.equal(await q.lastHours(3).sum(), 1);
    assert.equal(await q.lastHours(2).sum(), 0, 'lastHours(2) starts at 09:00');
  });

  test('14. record, +2 days → lastSeen between 1 and 3 days; unknown id → undefined', async () => {
    clock.set(SPEC_START);
    const id = fresh();
    engine.events.record(id);
    clock.advance(2 * DAY);
    const seen = await engine.events.query(id).lastSeen();
    assert.ok(seen !== undefined && seen >= DAY && seen <= 3 * DAY, `lastSeen ${seen}`);
    assert.equal(await engine.events.query(fresh('ghost')).lastSeen(), undefined);
    engine.events.record(id);
    const again = await engine.events.query(id).lastSeen();
    assert.ok(again !== undefined && again < DAY, `lastSeen after a new record ${again}`);
  });

  test('15. queryMany([e1,e2,e3]) with 10/20/30 → lastDays(1).sum 60', async () => {
    clock.set(SPEC_START);
    const ids = [fresh(), fresh(), fresh()];
    ids.forEach((id, i) => engine.events.record(id, 10 * (i + 1)));
    assert.equal(await engine.events.queryMany(ids).lastDays(1).sum(), 60);
    assert.deepEqual(await engine.events.queryMany(ids).lastDays(1).buckets(), [60]);
  });

  test('16. ratio 25/100 → 0.25; missing denominator or numerator → undefined', async () => {
    clock.set(SPEC_START);
    const store = engine.events;
    const a = fresh();
    const b = fresh();
    store.record(a, 25);
    store.record(b, 100);
    assert.equal(await store.ratio(a, b).lastDays(1), 0.25);
    assert.equal(await store.ratio(a, fresh('ghost')).lastDays(1), undefined);
    assert.equal(await store.ratio(fresh('ghost'), b).lastDays(1), undefined);
    const old = fresh();
    store.recordAgo(old, 2 * DAY);
    assert.equal(await store.ratio(a, old).lastDays(1), undefined, 'a denominator of 0 gives undefined');
  });

  test('17. delta 50−30 = 20, 30−50 = −20; balanceDelta of 100 and 30 → both 100', async () => {
    clock.set(SPEC_START);
    const store = engine.events;
    const a = fresh();
    const b = fresh();
    store.record(a, 50);
    store.record(b, 30);
    assert.equal(await store.delta(a, b).lastDays(1).sum(), 20);
    assert.equal(await store.delta(b, a).lastDays(1).sum(), -20);
    assert.equal(await store.delta(a, b).sum(), 20);

    const big = fresh();
    const small = fresh();
    store.record(big, 100);
    store.record(small, 30);
    await store.balanceDelta(big, small);
    assert.equal(await today(store, big), 100);
    assert.equal(await today(store, small), 100);
    assert.equal(await store.delta(big, small).sum(), 0);
  });

  test('18. atMost(10, hour), 9 recorded → checkAndRecord allowed (sum 10); next refused, sum stays 10', async () => {
    clock.set(SPEC_START);
    const store = engine.events;
    const id = fresh();
    store.record(id, 9);
    const limiter = store.limit().atMost(10, 'hour');
    const first = await limiter.checkAndRecord(id);
    assert.equal(first.allowed, true);
    assert.equal(await thisHour(store, id), 10);
    const second = await limiter.checkAndRecord(id);
    assert.equal(second.allowed, false);
    assert.notEqual(second.constraint, undefined);
    assert.match(second.constraint ?? '', /atMost/);
    assert.ok(second.retryAfterMs !== undefined && second.retryAfterMs > 0, `retryAfterMs ${second.retryAfterMs}`);
    assert.equal(await thisHour(store, id), 10);
  });

  test('19. 10 recorded at 10:30 under atMost(10, hour): refused at 10:59, allowed at 11:00', async () => {
    clock.set(SPEC_START);
    const store = engine.events;
    const id = fresh();
    store.record(id, 10);
    const limiter = store.limit().atMost(10, 'hour');
    clock.set(utc('2024-06-17T10:59:00Z'));
    const refused = await limiter.checkAndRecord(id);
    assert.equal(refused.allowed, false);
    assert.equal(refused.retryAfterMs, 60_000, 'the hour resets at 11:00');
    clock.set(utc('2024-06-17T11:00:00Z'));
    const allowed = await limiter.checkAndRecord(id);
    assert.equal(allowed.allowed, true);
    assert.equal(await thisHour(store, id), 1);
    assert.equal(await today(store, id), 11);
  });

  test('20. check() on an empty store → allowed, sum stays undefined', async () => {
    clock.set(SPEC_START);
    const store = engine.eventStore();
    const id = fresh();
    const decision = await store.limit().atMost(1, 'hour').check(id);
    assert.equal(decision.allowed, true);
    assert.equal(await today(store, id), undefined);
    assert.equal(store.size, 0, 'check never records');
  });

  test("21. atMost('action',10,hour).within('auth',1 h) with no 'auth' → refused, 'action' not recorded", async () => {
    clock.set(SPEC_START);
    const store = engine.events;
    const action = fresh('action');
    const auth = fresh('auth');
    const decision = await store.limit().atMost(action, 10, 'hour').within(auth, HOUR).checkAndRecord(action);
    assert.equal(decision.allowed, false);
    assert.match(decision.constraint ?? '', /within/);
    assert.equal(await today(store, action), undefined);
    assert.equal(store.has(action), false);
  });

  test('22. cooldown(1 h): first allowed, immediate second refused, +2 h allowed', async () => {
    clock.set(SPEC_START);
    const store = engine.events;
    const id = fresh();
    const limiter = store.limit().cooldown(HOUR);
    assert.equal((await limiter.checkAndRecord(id)).allowed, true);
    assert.equal((await limiter.checkAndRecord(id)).allowed, false);
    await assert.rejects(
      limiter.checkAndRecordOrThrow(id),
      (err: unknown) => err instanceof LimitExceededError && err.code === 'TW_LIMITED' && err.decision.allowed === false,
    );
    clock.advance(2 * HOUR);
    assert.equal((await limiter.checkAndRecord(id)).allowed, true);
    assert.equal(await today(store, id), 2, 'only the two allowed calls recorded');
  });

  test("23. within('login', 1 h): after recording login allowed; +2 h refused", async () => {
    clock.set(SPEC_START);
    const store = engine.events;
    const login = fresh('login');
    const action = fresh('checkout');
    const limiter = store.limit().within(login, HOUR);
    assert.equal(await limiter.allowed(action), false, 'no login yet');
    store.record(login);
    assert.equal((await limiter.checkAndRecord(action)).allowed, true);
    clock.advance(2 * HOUR);
    assert.equal((await limiter.checkAndRecord(action)).allowed, false);
    assert.equal(await today(store, action), 1);
  });

  test("24. atLeast('p', 10, hour) with 5 → refused; 5 more → allowed", async () => {
    clock.set(SPEC_START);
    const store = engine.events;
    const p = fresh('p');
    const reward = fresh('reward');
    store.record(p, 5);
    const limiter = store.limit().atLeast(p, 10, 'hour');
    const refused = await limiter.check(reward);
    assert.equal(refused.allowed, false);
    assert.match(refused.constraint ?? '', /atLeast/);
    store.record(p, 5);
    assert.equal(await limiter.allowed(reward), true);
    assert.equal(store.has(reward), false, 'check and allowed never record');
  });

  test('25. during(hours(9,17)) at 10:00 allowed, 20:00 refused; hours(17,9) InvalidRange; hours(24,1) InvalidHour', async () => {
    const store = engine.events;
    const id = fresh();
    const office = store.limit().during(Schedule.hours(9, 17));
    clock.set(utc('2024-06-17T10:00:00Z'));
    assert.equal((await office.check(id)).allowed, true);
    clock.set(utc('2024-06-17T20:00:00Z'));
    assert.equal((await office.check(id)).allowed, false);
    assert.equal(await store.limit().outsideOf(Schedule.hours(9, 17)).allowed(id), true, 'outsideOf is the complement');
    assert.throws(() => Schedule.hours(17, 9), withCode('TW_INVALID_RANGE'));
    assert.throws(() => Schedule.hours(24, 1), withCode('TW_INVALID_HOUR'));
  });

  test('26. on Saturday during(weekdays) refused, during(weekends) allowed', async () => {
    clock.set(utc('2024-06-22T12:00:00Z')); // a Saturday
    const store = engine.events;
    const id = fresh();
    assert.equal((await store.limit().during(Schedule.weekdays()).check(id)).allowed, false);
    assert.equal((await store.limit().during(Schedule.weekends()).check(id)).allowed, true);
    const saturdays = Schedule.custom((at: Date) => at.getUTCDay() === 6);
    assert.equal(await store.limit().during(saturdays).allowed(id), true, 'a custom schedule sees the clock time');
  });

  test('27. reserve + commit → sum 1; reserve + cancel → sum 0', async () => {
    clock.set(SPEC_START);
    const store = engine.events;
    const limiter = store.limit().atMost(1, 'hour');

    const kept = fresh();
    const r1 = await limiter.reserve(kept);
    assert.equal(r1.allowed, true);
    await r1.commit();
    assert.equal(await thisHour(store, kept), 1);
    assert.equal((await limiter.reserve(kept)).allowed, false, 'the committed reservation counts');

    const dropped = fresh();
    store.recordAgo(dropped, DAY); // known, but nothing this hour
    const r2 = await limiter.reserve(dropped);
    assert.equal(r2.allowed, true);
    await r2.cancel();
    assert.equal(await thisHour(store, dropped), 0);
  });

  test('28. limit 10 with 9 recorded: reserve ok; second refused while pending; ok again after cancel', async () => {
    clock.set(SPEC_START);
    const store = engine.events;
    const id = fresh();
    store.record(id, 9);
    const limiter = store.limit().atMost(10, 'hour');
    const first = await limiter.reserve(id);
    assert.equal(first.allowed, true);
    const second = await limiter.reserve(id);
    assert.equal(second.allowed, false);
    assert.notEqual(second.constraint, undefined);
    await first.cancel();
    const third = await limiter.reserve(id);
    assert.equal(third.allowed, true);
    assert.equal(await thisHour(store, id), 9, 'reservations record nothing until committed');
    await third.commit();
    assert.equal(await thisHour(store, id), 10);
  });

  test('29. usage with 3 of 10 → {3, 10, 7}; with 10 of 10 → remaining 0', async () => {
    clock.set(SPEC_START);
    const store = engine.events;
    const id = fresh();
    const limiter = store.limit().atMost(10, 'hour');
    store.record(id, 3);
    assert.deepEqual(await limiter.usage(id), { count: 3, reserved: 0, limit: 10, remaining: 7 });
    store.record(id, 7);
    assert.deepEqual(await limiter.usage(id), { count: 10, reserved: 0, limit: 10, remaining: 0 });
    store.record(id, 2);
    assert.equal((await limiter.usage(id)).remaining, 0, 'remaining never goes below 0');
    assert.equal(await thisHour(store, id), 12, 'usage never records');
  });

  test('30. merge 100 + 50 → 150; merge unions ids; import 50 over 100 → 50', async () => {
    clock.set(SPEC_START);
    const shared = fresh();
    const onlyThere = fresh();
    const here = engine.eventStore();
    const there = engine.eventStore();
    here.record(shared, 100);
    there.record(shared, 50);
    there.record(onlyThere, 7);
    const fromThere = await there.export();

    await here.merge(fromThere);
    assert.equal(await today(here, shared), 150);
    assert.equal(await today(here, onlyThere), 7);
    assert.equal(here.has(onlyThere), true);

    const target = engine.eventStore();
    target.record(shared, 100);
    await target.import(fromThere);
    assert.equal(await today(target, shared), 50);
    assert.equal(await today(there, shared), 50, 'the exporting store is unchanged');

    // FIX: an export carrying a source id is merged once however often it arrives.
    const replica = engine.eventStore({ sourceId: fresh('replica') });
    replica.record(shared, 5);
    const once = await replica.export();
    assert.deepEqual(await target.merge(once), { merged: true });
    assert.deepEqual(await target.merge(once), { merged: false });
    assert.equal(await today(target, shared), 55);
  });

  test('31. record e1, e2; reset dirty; record e1 → dirty export holds only e1', async () => {
    clock.set(SPEC_START);
    const store = engine.eventStore();
    const e1 = fresh();
    const e2 = fresh();
    store.record(e1);
    store.record(e2);
    assert.deepEqual([...store.dirtyIds()].sort(), [e1, e2].sort());
    store.clearDirty();
    store.record(e1);
    const exp = await store.exportDirty();
    assert.deepEqual(Object.keys(exp.counters), [e1]);
    assert.deepEqual(store.dirtyIds(), [e1]);
    assert.deepEqual(Object.keys((await store.export()).counters).sort(), [e1, e2].sort(), 'a full export holds both');
  });

  test('32. persist all, compact → memory released; a query still returns 100 (lazy reload)', async () => {
    clock.set(SPEC_START);
    const store = engine.eventStore({ storage: new MemoryStorage() });
    const id = fresh();
    store.record(id, 100);
    assert.equal(store.size, 1);
    assert.equal(await store.persistAll(), 1);
    await store.compact();
    assert.equal(store.size, 0);
    assert.equal(await store.query(id).lastDays(1).sum(), 100);
    assert.equal(await store.query(id).lastHours(1).sum(), 100, 'every ring comes back');
  });

  test('33. trackDays(0) → InvalidBucketCount', () => {
    assert.throws(() => Intervals.builder().trackDays(0), withCode('TW_INVALID_BUCKET_COUNT'));
    assert.throws(() => engine.eventStore({ intervals: { days: 0 } }), withCode('TW_INVALID_BUCKET_COUNT'));
    assert.throws(() => Intervals.builder().trackDays(7).trackDays(3), withCode(ErrorCode.INVALID_ARGUMENT), 'a unit may appear once');
  });

  test('34. record 2024-01-31 23:00, +2 h → lastMonths(1) 0, lastMonths(2) 1', async () => {
    clock.set(utc('2024-01-31T23:00:00Z'));
    const id = fresh();
    engine.events.record(id);
    clock.advance(2 * HOUR);
    assert.equal(await engine.events.query(id).lastMonths(1).sum(), 0);
    assert.equal(await engine.events.query(id).lastMonths(2).sum(), 1);
    assert.equal(await engine.events.query(id).lastYears(1).sum(), 1, 'still the same year');
  });
});

describe('events: time zones', () => {
  test('Europe/Berlin: 23:30 local Saturday, +1 h → lastDays(1) 0, lastDays(2) 1 (UTC still sees today)', async () => {
    const berlin = engine.eventStore({ timeZone: 'Europe/Berlin' });
    const id = fresh();
    clock.set(utc('2024-03-30T22:30:00Z')); // Saturday 23:30 CET
    berlin.record(id);
    engine.events.record(id);
    clock.advance(HOUR); // Sunday 00:30 CET, still Saturday 23:30 UTC
    assert.equal(await berlin.query(id).lastDays(1).sum(), 0);
    assert.equal(await berlin.query(id).lastDays(2).sum(), 1);
    assert.equal(await engine.events.query(id).lastDays(1).sum(), 1, 'the UTC store has not turned the day');
  });

  test('Europe/Berlin: the 23-hour day of 2024-03-31 holds local 00:30 and 23:30', async () => {
    const berlin = engine.eventStore({ timeZone: 'Europe/Berlin' });
    const id = fresh();
    clock.set(utc('2024-03-30T23:30:00Z')); // 00:30 CET
    berlin.record(id);
    clock.set(utc('2024-03-31T21:30:00Z')); // 23:30 CEST
    berlin.record(id);
    clock.set(utc('2024-03-31T21:45:00Z'));
    assert.equal(await berlin.query(id).lastDays(1).sum(), 2);
    clock.set(utc('2024-03-31T22:00:00Z')); // 00:00 CEST on 1 April: the day had 23 hours
    assert.equal(await berlin.query(id).lastDays(1).sum(), 0);
    assert.equal(await berlin.query(id).lastDays(2).sum(), 2);
  });

  test('Europe/Berlin: weeks start on Monday 00:00 local', async () => {
    const berlin = engine.eventStore({ timeZone: 'Europe/Berlin' });
    const id = fresh();
    clock.set(utc('2024-06-16T21:30:00Z')); // Sunday 23:30 CEST
    berlin.record(id);
    engine.events.record(id);
    clock.set(utc('2024-06-16T22:30:00Z')); // Monday 00:30 CEST, still Sunday in UTC
    berlin.record(id);
    engine.events.record(id);
    assert.equal(await berlin.query(id).lastWeeks(1).sum(), 1);
    assert.equal(await berlin.query(id).lastWeeks(2).sum(), 2);
    assert.equal(await engine.events.query(id).lastWeeks(1).sum(), 2, 'both are in the same UTC week');
  });

  test('an unknown time zone is a RangeError: TW_INVALID_ARGUMENT from eventStore, TW_INVALID_OPTION from createEngine', async () => {
    assert.throws(
      () => engine.eventStore({ timeZone: 'Mars/Olympus' }),
      (err: unknown) => err instanceof TallyworksRangeError && err.code === ErrorCode.INVALID_ARGUMENT,
    );
    await assert.rejects(
      async () => {
        const wrong = await createEngine({ clock, shards: 2, timeZone: 'Mars/Olympus' });
        await wrong.close(); // only reached if the option was wrongly accepted
      },
      (err: unknown) => err instanceof TallyworksRangeError && err.code === ErrorCode.INVALID_OPTION,
    );
  });
});
