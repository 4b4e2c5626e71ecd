/**
 * Calendar limits decided on the calling thread (issue: decisions on the caller's thread, deliverable 2):
 * the synchronous terminals, the Promise ones resolving from the same path, exactness, the decision's copy
 * of the id's events (its gate) kept in step with every write of the id (record, recordAt, merge, import,
 * compaction and reload, a shard restart), each admitted event reaching the calendar record exactly once,
 * and reservations as holds that expire. All on the test clock.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createEngine, ErrorCode, MemoryStorage, TestClock } from '../../../src/index.js';
import { internals } from '../../../src/engine.js';
import { withTestEngine } from '../../helpers/engines.js';
import { DAY, MINUTE, SECOND, utc, withCode } from '../../helpers/time.js';

describe('calendar limits: synchronous terminals', () => {
  test('checkAndRecordSync admits exactly the limit and records each admitted event once; checkSync and allowedSync never record', () =>
    withTestEngine(async (engine) => {
      const store = engine.events;
      const limiter = store.limit().atMost(3, 'hour');
      const decisions = Array.from({ length: 5 }, () => limiter.checkAndRecordSync('api'));
      assert.deepEqual(decisions.map((d) => d.allowed), [true, true, true, false, false]);
      assert.equal(decisions[3]!.constraint, 'atMost(3, 1 hour)');
      assert.ok(Object.isFrozen(decisions[0]) && Object.isFrozen(decisions[3]), 'decisions are immutable values');
      assert.equal(limiter.checkSync('api').allowed, false);
      assert.equal(limiter.allowedSync('api'), false);
      assert.equal(limiter.allowedSync('other'), true);
      assert.equal(store.has('other'), false, 'a check creates nothing');
      // Read at once, with no await: the synchronous sum sees the three admitted events, once.
      assert.equal(store.sumSync('api', 'hour', 1), 3);
      assert.equal(await store.query('api').lastHours(1).sum(), 3);
      assert.deepEqual(limiter.usageSync('api'), { count: 3, reserved: 0, limit: 3, remaining: 0 });
    }));

  test('the Promise terminals resolve at once with the same decisions', () =>
    withTestEngine(async (engine) => {
      const limiter = engine.events.limit().atMost(2, 'minute');
      const pending = [limiter.checkAndRecord('p'), limiter.checkAndRecord('p'), limiter.checkAndRecord('p')];
      // Decided before any await: the third call already sees the first two.
      assert.equal(limiter.checkAndRecordSync('p').allowed, false);
      assert.deepEqual((await Promise.all(pending)).map((d) => d.allowed), [true, true, false]);
      assert.deepEqual(await limiter.usage('p'), limiter.usageSync('p'));
      assert.equal(await limiter.allowed('p'), false);
    }));

  test('1000 concurrent checkAndRecord on a limit of 100 admit exactly 100; queries, export and dirty export see 100', () =>
    withTestEngine(async (engine) => {
      const store = engine.events;
      const limiter = store.limit().atMost(100, 'day');
      const results = await Promise.all(Array.from({ length: 1000 }, () => limiter.checkAndRecord('burst')));
      assert.equal(results.filter((d) => d.allowed).length, 100);
      assert.equal(await store.query('burst').lastDays(1).sum(), 100);
      const exp = await store.export();
      const rings = exp.counters['burst']!;
      assert.equal(rings.length, Object.keys(store.intervals).length);
      assert.deepEqual(rings.map((r) => r.reduce((a, b) => a + b, 0)), rings.map(() => 100), 'every ring holds the 100 once');
      assert.deepEqual(store.dirtyIds(), ['burst']);
    }));

  test('a refusal says when a retry may pass: the calendar unit ends', () =>
    withTestEngine(async (engine, clock) => {
      clock.set(utc('2024-06-17T10:59:30Z'));
      const limiter = engine.events.limit().atMost(2, 'hour');
      limiter.checkAndRecordSync('edge');
      limiter.checkAndRecordSync('edge');
      const refused = limiter.checkAndRecordSync('edge');
      assert.equal(refused.allowed, false);
      assert.equal(refused.retryAfterMs, 30 * SECOND);
      clock.set(utc('2024-06-17T11:00:00Z'));
      assert.equal(limiter.checkAndRecordSync('edge').allowed, true, 'a new hour: the count starts again');
      assert.equal(engine.events.sumSync('edge', 'hour', 2), 3);
    }));

  test('refusals in one ms: a refusal made while a hold counted is not reused once it ended; another id\'s is', () =>
    withTestEngine(async (engine, clock) => {
      clock.set(utc('2024-06-17T10:59:30Z')); // the hour ends in 30 s; the clock stays in this ms
      const limiter = engine.eventStore({ reservationTtlMs: 10 * SECOND }).limit().atMost(2, 'hour');
      assert.equal(limiter.checkAndRecordSync('a').allowed, true);
      const hold = await limiter.reserve('a');
      const whileHeld = limiter.checkAndRecordSync('a');
      assert.equal(whileHeld.retryAfterMs, 10 * SECOND, 'the hold expires first: then one more fits');
      await hold.cancel();
      assert.equal(limiter.checkAndRecordSync('a').allowed, true);
      const full = limiter.checkAndRecordSync('a');
      assert.equal(full.allowed, false);
      assert.equal(full.retryAfterMs, 30 * SECOND, 'no hold now: the events leave when the hour ends');
      limiter.checkAndRecordSync('b');
      limiter.checkAndRecordSync('b');
      assert.equal(limiter.checkAndRecordSync('b').retryAfterMs, 30 * SECOND);
      clock.advance(10 * SECOND);
      assert.equal(limiter.checkAndRecordSync('b').retryAfterMs, 20 * SECOND, 'a later ms: figured again');
    }));

  test('a window of several units slides by whole units; two atMost windows decide all-or-nothing', () =>
    withTestEngine(async (engine, clock) => {
      clock.set(utc('2024-06-17T10:00:00Z'));
      const limiter = engine.events.limit().atMost(3, [2, 'hour']).atMost(2, 'minute');
      const allowed = (): boolean[] => Array.from({ length: 3 }, () => limiter.checkAndRecordSync('w').allowed);
      assert.deepEqual(allowed(), [true, true, false], 'the minute refuses the third');
      clock.advance(MINUTE);
      assert.deepEqual(allowed(), [true, false, false], 'the two hours refuse the fourth');
      assert.deepEqual(limiter.usageSync('w'), { count: 3, reserved: 0, limit: 3, remaining: 0 });
      clock.set(utc('2024-06-17T11:30:00Z'));
      assert.equal(limiter.checkAndRecordSync('w').allowed, false, '10:00 and 11:00 are both in the window');
      clock.set(utc('2024-06-17T12:00:00Z'));
      assert.deepEqual(allowed(), [true, true, false], 'the 10:00 events left the window');
      assert.equal(engine.events.sumSync('w', 'hour', 3), 5, 'a refusal by one window recorded nothing');
    }));

  test('bad ids are typed errors that create nothing; a closed store refuses with TW_CLOSED', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 1 });
    const limiter = engine.events.limit().atMost(1, 'hour');
    for (const bad of [123, '', 'a:b', undefined]) {
      assert.throws(() => limiter.checkAndRecordSync(bad as string), withCode(ErrorCode.INVALID_KEY));
      await assert.rejects(limiter.checkAndRecord(bad as string), withCode(ErrorCode.INVALID_KEY));
    }
    assert.equal(engine.events.size, 0);
    assert.throws(() => engine.events.limit().atLeast(1, 'day').usageSync('x'), withCode(ErrorCode.INVALID_ARGUMENT, 'atMost'));
    await engine.close();
    assert.throws(() => limiter.checkAndRecordSync('late'), withCode(ErrorCode.CLOSED));
    await assert.rejects(limiter.check('late'), withCode(ErrorCode.CLOSED));
  });
});

describe("calendar limits: the decision's copy stays in step with every write of the id", () => {
  test('events recorded before the first decision seed it; record and recordAt after it count in it', () =>
    withTestEngine(async (engine, clock) => {
      clock.set(utc('2024-06-17T10:30:00Z'));
      const store = engine.events;
      store.record('seed', 7);
      const limiter = store.limit().atMost(10, 'hour');
      assert.equal(limiter.checkAndRecordSync('seed').allowed, true, '7 recorded before: the 8th');
      store.record('seed', 1); // 9
      store.recordAt('seed', utc('2024-06-17T10:05:00Z')); // 10, inside the hour
      store.recordAt('seed', utc('2024-06-17T09:59:00Z'), 50); // the hour before: not the limit's
      assert.equal(limiter.checkAndRecordSync('seed').allowed, false);
      assert.deepEqual(limiter.usageSync('seed'), { count: 10, reserved: 0, limit: 10, remaining: 0 });
      assert.equal(await store.query('seed').lastHours(1).sum(), 10);
      assert.equal(await store.query('seed').lastHours(2).sum(), 60);
    }));

  test('an import overwrites and a merge adds: the next decision sees the new counts', () =>
    withTestEngine(async (engine) => {
      const store = engine.events;
      const limiter = store.limit().atMost(5, 'day');
      for (let i = 0; i < 5; i++) limiter.checkAndRecordSync('m');
      assert.equal(limiter.allowedSync('m'), false);
      const other = engine.eventStore();
      other.record('m', 2);
      await store.import(await other.export());
      assert.deepEqual(limiter.usageSync('m'), { count: 2, reserved: 0, limit: 5, remaining: 3 });
      await store.merge(await other.export());
      assert.equal(limiter.usageSync('m').count, 4);
      assert.deepEqual([limiter.checkAndRecordSync('m').allowed, limiter.checkAndRecordSync('m').allowed], [true, false]);
      assert.equal(await store.query('m').lastDays(1).sum(), 5);
    }));

  test('compaction lets the id go; a synchronous decision on it says TW_NOT_READY and starts the reload, the awaited one waits for it', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 1 });
    try {
      const store = engine.eventStore({ storage: new MemoryStorage() });
      const limiter = store.limit().atMost(4, 'day');
      assert.throws(() => limiter.checkAndRecordSync('c'), withCode(ErrorCode.NOT_READY), 'the storage is still being listed');
      await store.ready();
      for (let i = 0; i < 3; i++) limiter.checkAndRecordSync('c');
      await store.compact();
      assert.equal(store.size, 0);
      assert.throws(() => limiter.checkAndRecordSync('c'), withCode(ErrorCode.NOT_READY));
      assert.equal((await limiter.checkAndRecord('c')).allowed, true, 'the stored 3 seed the decision: the 4th');
      assert.equal((await limiter.checkAndRecord('c')).allowed, false);
      assert.equal(await store.query('c').lastDays(1).sum(), 4);
    } finally {
      await engine.close();
    }
  });

  test('a shard thread killed and replaced: decisions stay exact and every admitted event is recorded once', async () => {
    const clock = new TestClock();
    const engine = await createEngine({ clock, shards: 1 });
    try {
      const store = engine.events;
      const limiter = store.limit().atMost(50, 'hour');
      const ids = Array.from({ length: 20 }, (_, i) => `k${i}`);
      let admitted = 0;
      for (let round = 0; round < 120; round++) {
        for (const id of ids) if (limiter.checkAndRecordSync(id).allowed) admitted++;
        if (round % 40 === 20) await engine[internals].router.lanes[0]!.killThreadForTest();
        await new Promise((resolve) => setImmediate(resolve));
      }
      assert.equal(admitted, 50 * ids.length);
      await engine.flush();
      for (const id of ids) assert.equal(store.sumSync(id, 'hour', 1), 50, id);
      assert.ok((await engine.stats()).shards[0]!.restarts >= 2);
    } finally {
      await engine.close();
    }
  });

  test('admitted events land in the buckets recorded ones do, for any finest ring (coalesced per unit or per ms)', () =>
    withTestEngine(async (engine, clock) => {
      for (const intervals of [{ weeks: 4, months: 3 }, { minutes: 5, hours: 3, days: 2 }, { seconds: 90, minutes: 3 }]) {
        const decided = engine.eventStore({ intervals });
        const recorded = engine.eventStore({ intervals });
        const limiter = decided.limit().atMost(1000, 'months' in intervals ? 'week' : 'minute');
        // Across a month boundary (Tue 30 July .. Fri 2 August 2024), minutes, seconds and milliseconds.
        for (const t of ['2024-07-30T12:00:00Z', '2024-08-02T12:00:00Z', '2024-08-02T12:00:00.400Z', '2024-08-02T12:00:59.999Z', '2024-08-02T12:01:00Z']) {
          clock.set(utc(t));
          assert.equal(limiter.checkAndRecordSync('x').allowed, true);
          recorded.record('x');
        }
        const a = await decided.export();
        const b = await recorded.export();
        assert.deepEqual(a.counters, b.counters, JSON.stringify(intervals));
      }
    }));
});

describe('calendar limits: admitted events held as deferred adds', () => {
  test('with tiny batches and one batch in flight, thousands of held adds all reach their records, through reads, turns and close', async () => {
    const clock = new TestClock();
    const storage = new MemoryStorage();
    const engine = await createEngine({ clock, shards: 2, batchSize: 16, maxInFlight: 1 });
    const store = engine.eventStore({ storage });
    await store.ready();
    const limiter = store.limit().atMost(3, 'hour');
    const ids = Array.from({ length: 3000 }, (_, i) => `d${i}`);
    for (const id of ids) limiter.checkAndRecordSync(id);
    // A synchronous read now: every held add of that shard goes out first, in batches of 16.
    assert.equal(store.sumSync(ids[2999]!, 'hour', 1), 1);
    for (const id of ids) limiter.checkAndRecordSync(id);
    await new Promise((resolve) => setImmediate(resolve)); // the end of a turn sends what has room
    for (const id of ids) limiter.checkAndRecordSync(id);
    assert.equal(limiter.checkAndRecordSync(ids[0]!).allowed, false);
    const exp = await store.export();
    assert.equal(Object.values(exp.counters).filter((rings) => rings[0]!.reduce((a, b) => a + b, 0) === 3).length, ids.length, 'every id holds its 3 admitted events once');
    // Held adds made just before close() reach the final persist.
    for (const id of ids.slice(0, 50)) limiter.checkAndRecordSync(`late-${id}`);
    await engine.close();
    const again = await createEngine({ clock, shards: 1 });
    try {
      const reloaded = again.eventStore({ storage });
      for (const id of ids.slice(0, 50)) assert.equal(await reloaded.query(`late-${id}`).lastHours(1).sum(), 1, id);
      assert.equal(await reloaded.query(ids[1500]!).lastHours(1).sum(), 3);
    } finally {
      await again.close();
    }
  });
});

describe('calendar limits: reservations are holds that expire', () => {
  test('a hold counts against the limit until committed, cancelled or expired', () =>
    withTestEngine(async (engine, clock) => {
      const store = engine.eventStore({ reservationTtlMs: 2 * MINUTE });
      const limiter = store.limit().atMost(2, 'day');
      const a = await limiter.reserve('r');
      const b = await limiter.reserve('r');
      assert.equal((await limiter.reserve('r')).allowed, false, 'two holds fill the day');
      assert.equal(limiter.checkAndRecordSync('r').allowed, false);
      assert.deepEqual(limiter.usageSync('r'), { count: 0, reserved: 2, limit: 2, remaining: 0 });
      await a.commit();
      assert.deepEqual(limiter.usageSync('r'), { count: 1, reserved: 1, limit: 2, remaining: 0 });
      await b.cancel();
      await assert.rejects(b.cancel(), withCode(ErrorCode.RESERVATION));
      assert.equal(limiter.checkAndRecordSync('r').allowed, true);
      assert.equal(store.sumSync('r', 'day', 1), 2);
      clock.advance(DAY);
      const forgotten = await limiter.reserve('r');
      assert.equal(forgotten.allowed, true);
      assert.equal(limiter.usageSync('r').reserved, 1);
      clock.advance(2 * MINUTE);
      assert.equal(limiter.usageSync('r').reserved, 0, 'expired');
      assert.deepEqual([limiter.checkAndRecordSync('r').allowed, limiter.checkAndRecordSync('r').allowed, limiter.checkAndRecordSync('r').allowed], [true, true, false]);
    }));
});

// ── defects a hostile probe found (each fixed; the probe's recipe in each test) ───────────────────────

describe('calendar limits: probe regressions', () => {
  test('an admitted event held while a shard restarts with its batch full never throws from the end of a turn', async () => {
    const clock = new TestClock();
    const engine = await createEngine({ clock, shards: 1, batchSize: 16, maxInFlight: 1, restartBacklogBatches: 1, stallTimeoutMs: 3000 });
    try {
      const store = engine.events;
      const lane = engine[internals].router.lanes[0]!;
      const supervisor = (lane as unknown as { supervisor: { restarting: boolean } }).supervisor;
      const limiter = store.limit().atMost(100, 'hour');
      limiter.checkAndRecordSync('x');
      await engine.flush();
      void lane.killThreadForTest();
      await new Promise<void>((resolve, reject) => {
        const deadline = Date.now() + 30_000; // a bound, not a sleep: the restart normally begins in a few turns
        const tick = (): void => {
          if (!supervisor.restarting) {
            if (Date.now() > deadline) reject(new Error('the shard restart never began'));
            else setImmediate(tick);
            return;
          }
          limiter.checkAndRecordSync('x'); // held
          for (let n = 0; n < 32; n++) store.record(`y${n % 5}`); // fills the open batch and the backlog
          resolve();
        };
        setImmediate(tick);
      });
      await engine.flush(); // an uncaught throw from the end of a turn would end the test process first
      assert.equal(await store.query('x').lastHours(1).sum(), 2);
      assert.equal(limiter.usageSync('x').count, 2);
    } finally {
      await engine.close();
    }
  });

  test('decisions wait for the storage listing even on an id recorded before it ended; the stored events count', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 2 });
    try {
      const storage = new MemoryStorage();
      const first = engine.eventStore({ storage });
      first.record('x', 50);
      await first.persist();
      const store = engine.eventStore({ storage });
      store.record('x', 0); // known before the listing finished
      const limiter = store.limit().atMost(100, 'hour');
      assert.throws(() => limiter.checkAndRecordSync('x'), withCode(ErrorCode.NOT_READY));
      assert.throws(() => store.sumSync('x', 'hour', 1), withCode(ErrorCode.NOT_READY));
      const results = await Promise.all(Array.from({ length: 1000 }, () => limiter.checkAndRecord('x')));
      assert.equal(results.filter((d) => d.allowed).length, 50);
      assert.equal(await store.query('x').lastHours(1).sum(), 100);
    } finally {
      await engine.close();
    }
  });

  test('a gate seeded while the clock is set back keeps the newest unit: the limit holds when the clock returns', () =>
    withTestEngine(async (engine, clock) => {
      clock.set(utc('2024-06-17T10:30:00Z'));
      const store = engine.events;
      store.record('x', 3);
      const limiter = store.limit().atMost(3, 'hour');
      clock.set(utc('2024-06-17T09:30:00Z'));
      assert.equal(limiter.checkSync('x').allowed, false);
      clock.set(utc('2024-06-17T10:40:00Z'));
      assert.equal(limiter.checkAndRecordSync('x').allowed, false);
      assert.equal(store.sumSync('x', 'hour', 1), 3);
    }));

  test('holds expire ttl after the newest one, and a cancel after the clock was set back releases its hold', () =>
    withTestEngine(async (engine, clock) => {
      clock.set(utc('2024-06-17T10:30:00Z'));
      const store = engine.eventStore({ reservationTtlMs: MINUTE });
      const limiter = store.limit().atMost(2, 'hour');
      const h1 = await limiter.reserve('x');
      clock.advance(50 * SECOND);
      const h2 = await limiter.reserve('x');
      await h1.cancel();
      clock.advance(11 * SECOND); // h2 is 11 s old: still held
      assert.equal(limiter.usageSync('x').reserved, 1);
      assert.deepEqual([limiter.checkAndRecordSync('x').allowed, limiter.checkAndRecordSync('x').allowed], [true, false]);
      await h2.commit();
      assert.equal(store.sumSync('x', 'hour', 1), 2);

      clock.set(utc('2024-06-17T11:30:00Z'));
      const a = await limiter.reserve('z');
      clock.set(utc('2024-06-17T11:29:59Z'));
      const b = await limiter.reserve('z');
      await b.cancel();
      assert.equal(limiter.usageSync('z').reserved, 1, 'the cancel released its own hold');
      await a.cancel();
      assert.equal(limiter.usageSync('z').reserved, 0);
    }));

  test('a merge or an import keeps the holds of the id; an import overwrites an event admitted just before it', () =>
    withTestEngine(async (engine) => {
      const store = engine.events;
      const limiter = store.limit().atMost(1, 'hour');
      const held = await limiter.reserve('x');
      const empty = engine.eventStore();
      empty.record('other');
      await store.merge(await empty.export());
      assert.equal(limiter.usageSync('x').reserved, 1);
      assert.equal(limiter.checkAndRecordSync('x').allowed, false, 'the hold still fills the hour');
      await held.commit();
      assert.deepEqual(limiter.usageSync('x'), { count: 1, reserved: 0, limit: 1, remaining: 0 });

      assert.equal(limiter.checkAndRecordSync('d').allowed, true);
      const zero = engine.eventStore();
      zero.record('d', 0);
      await store.import(await zero.export());
      assert.equal(await store.query('d').lastHours(1).sum(), 0, 'the import overwrote the admitted event');
      assert.equal(limiter.usageSync('d').count, 0);
    }));

  test('a decision that runs out of decision memory leaves no counter and no gate; a window is a unit or [count, unit]', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 1, maxShardMemoryBytes: 1 << 20 });
    try {
      const store = engine.eventStore({ intervals: { seconds: 100000, minutes: 60 } });
      const limiter = store.limit().atMost(5, 'minute').atMost(5, [100000, 'second']).atMost(5, [99999, 'second']);
      assert.throws(() => limiter.checkAndRecordSync('x'), withCode(ErrorCode.CAPACITY));
      assert.equal(store.has('x'), false);
      const small = store.limit().atMost(2, 'minute');
      assert.deepEqual([small.checkAndRecordSync('x').allowed, small.checkAndRecordSync('x').allowed, small.checkAndRecordSync('x').allowed], [true, true, false]);
      assert.throws(() => store.limit().atMost(5, [2, 'hour', 'x'] as unknown as [number, 'hour']), withCode(ErrorCode.INVALID_ARGUMENT, 'window'));
    } finally {
      await engine.close();
    }
  });
});

describe('calendar limits: review regressions', () => {
  test('a late cancel of an expired reservation never releases a live one, whatever the clock did since', () =>
    withTestEngine(async (engine, clock) => {
      clock.set(utc('2024-06-17T10:00:00Z'));
      const store = engine.eventStore({ reservationTtlMs: MINUTE });
      const limiter = store.limit().atMost(5, 'day');
      const old = await limiter.reserve('x'); // held at 10:00, expired by 10:01
      clock.set(utc('2024-06-17T10:10:00Z'));
      const a = await limiter.reserve('x');
      clock.set(utc('2024-06-17T10:09:50Z')); // set back: a is still held
      const b = await limiter.reserve('x');
      clock.set(utc('2024-06-17T09:59:00Z')); // set back before the expired one was taken
      assert.equal(limiter.usageSync('x').reserved, 2);
      await old.cancel();
      assert.equal(limiter.usageSync('x').reserved, 2, 'the expired reservation released nothing');
      await a.cancel();
      await b.commit();
      assert.deepEqual(limiter.usageSync('x'), { count: 1, reserved: 0, limit: 5, remaining: 4 });

      // Across a merge that retires the gate with no live hold: the next gate's holds are a new series too.
      const stale = await limiter.reserve('y');
      await (await limiter.reserve('y')).cancel();
      clock.advance(2 * MINUTE); // stale expired
      const other = engine.eventStore();
      other.record('y');
      await store.merge(await other.export());
      const live = await limiter.reserve('y');
      await stale.cancel();
      assert.equal(limiter.usageSync('y').reserved, 1, 'the live hold on the new gate stays');
      await live.cancel();
      assert.equal(limiter.usageSync('y').reserved, 0);
    }));

  test('cooldown and within see events admitted earlier in the same turn (still deferred adds), with no await', () =>
    withTestEngine(async (engine, clock) => {
      clock.set(utc('2024-06-17T10:00:00Z'));
      const store = engine.events;
      store.recordAt('c', utc('2024-06-17T08:00:00Z'));
      store.recordAt('login-u', utc('2024-06-17T08:00:00Z'));
      await engine.flush(); // nothing in flight: only the deferred adds can tell the reads what was admitted
      const once = store.limit().cooldown(MINUTE);
      assert.equal(once.checkAndRecordSync('c').allowed, true, 'seen two hours ago');
      const again = once.checkAndRecordSync('c');
      assert.equal(again.allowed, false, 'seen 0 ms ago, in this turn');
      assert.ok(again.retryAfterMs! > 0 && again.retryAfterMs! <= MINUTE);

      const login = store.limit().atMost(5, 'hour');
      const action = store.limit().within('login-u', MINUTE);
      assert.equal(action.checkSync('login-u').allowed, false, 'no login within the minute');
      assert.equal(login.checkAndRecordSync('login-u').allowed, true);
      assert.equal(action.checkSync('login-u').allowed, true, 'the login admitted just now counts');
      assert.equal(store.sumSync('c', 'hour', 1), 1);
      assert.equal(store.sumSync('c', 'day', 1), 2);
    }));

  test('a check that runs out of decision memory on a known id makes no gate; the next one that fits decides', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 1, maxShardMemoryBytes: 1 << 20 });
    try {
      const store = engine.eventStore({ intervals: { seconds: 100000, minutes: 60 } });
      store.record('k', 2);
      await engine.flush();
      const big = store.limit().atMost(5, 'minute').atMost(5, [100000, 'second']).atMost(5, [99999, 'second']);
      assert.throws(() => big.checkSync('k'), withCode(ErrorCode.CAPACITY));
      assert.throws(() => big.checkAndRecordSync('k'), withCode(ErrorCode.CAPACITY));
      assert.equal(store.counters.get('k')!.limits?.gateCount ?? 0, 0, 'no gate made (the first window fitted: it was given back)');
      assert.equal(store.sumSync('k', 'minute', 1), 2, 'nothing recorded');
      const small = store.limit().atMost(3, 'minute');
      assert.deepEqual([small.checkAndRecordSync('k').allowed, small.checkAndRecordSync('k').allowed], [true, false], 'seeded with the 2 recorded');
    } finally {
      await engine.close();
    }
  });

  test('admitted events a full batch window left out go out as the shard applies, with no further call', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 1, batchSize: 16, maxInFlight: 1 });
    try {
      const limiter = engine.events.limit().atMost(3, 'hour');
      const ids = Array.from({ length: 2000 }, (_, i) => `l${i}`);
      for (const id of ids) limiter.checkAndRecordSync(id);
      const pipeline = engine[internals].router.lanes[0]!.batches as unknown as { deferred: unknown[] };
      await new Promise((resolve) => setImmediate(resolve)); // the end of the turn: one batch goes out
      assert.ok(pipeline.deferred.length > 0, 'the window was full: adds are still deferred');
      // Nothing else is called: only the shard's replies move them (a deadline, not a sleep: it ends as soon as they are out).
      const deadline = Date.now() + 30_000;
      while (pipeline.deferred.length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
      assert.equal(pipeline.deferred.length, 0, 'every deferred add was taken after the replies');
      await engine.flush();
      for (const id of [ids[0]!, ids[999]!, ids[1999]!]) assert.equal(engine.events.sumSync(id, 'hour', 1), 1, id);
    } finally {
      await engine.close();
    }
  });

  test('compaction keeps an id whose admitted events are not yet in a batch (even with its dirty mark cleared)', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 1 });
    try {
      const memory = new MemoryStorage();
      let hook: (() => void) | undefined;
      const storage = {
        save: (k: string, v: Uint8Array) => memory.save(k, v),
        load: (k: string) => memory.load(k),
        delete: (k: string) => memory.delete(k),
        keys: (prefix: string) => memory.keys(prefix),
        transaction: async (ops: Parameters<MemoryStorage['transaction']>[0]) => {
          await memory.transaction(ops);
          const h = hook;
          hook = undefined;
          h?.();
        },
      };
      const store = engine.eventStore({ storage });
      await store.ready();
      const limiter = store.limit().atMost(10, 'hour');
      limiter.checkAndRecordSync('x');
      hook = () => {
        limiter.checkAndRecordSync('x'); // admitted during the compaction's persist
        store.clearDirty();
      };
      await store.compact();
      await engine.flush();
      assert.equal(await store.query('x').lastHours(1).sum(), 2);
      assert.equal((await engine.stats()).shards[0]!.restarts, 0, 'no shard thread died');
    } finally {
      await engine.close();
    }
  });
});
