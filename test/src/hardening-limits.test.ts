/**
 * Limits that used to be wrong forever or late (issue: hardening from a fault and fuzz probe, defect 7):
 * a reservation that is never committed or cancelled expires, and usage() counts reservations.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createEngine, type Engine, ErrorCode, SPEC_START, TestClock } from '../../src/index.js';
import { withCode } from '../helpers/time.js';

const MINUTE = 60_000;
const DAY = 86_400_000;
const clock = new TestClock(SPEC_START);
let engine: Engine;
before(async () => {
  engine = await createEngine({ clock, shards: 1 });
});
after(() => engine.close());

describe('defect 7: reservations', () => {
  test('a reservation never committed or cancelled stops counting after reservationTtlMs; usage() shows it meanwhile', async () => {
    const store = engine.eventStore({ name: 'res', reservationTtlMs: 2 * MINUTE });
    const limiter = store.limit().atMost(1, 'day');
    const held = await limiter.reserve('alice');
    assert.equal(held.allowed, true);
    assert.deepEqual(await limiter.usage('alice'), { count: 0, reserved: 1, limit: 1, remaining: 0 });
    const refused = await limiter.check('alice');
    assert.equal(refused.allowed, false);
    assert.ok(refused.retryAfterMs !== undefined && refused.retryAfterMs > MINUTE && refused.retryAfterMs <= 2 * MINUTE, `retry after the reservation expires: ${refused.retryAfterMs}`);
    clock.advance(2 * MINUTE);
    assert.equal((await limiter.check('alice')).allowed, true, 'the forgotten reservation no longer counts');
    assert.deepEqual(await limiter.usage('alice'), { count: 0, reserved: 0, limit: 1, remaining: 1 });
    // A late commit of the expired reservation still records its event (it happened), and frees nothing twice.
    await held.commit();
    assert.equal(await store.query('alice').lastDays(1).sum(), 1);
    assert.equal((await limiter.check('alice')).allowed, false, 'the day is now full by the event itself');
  });

  test('30 days later a forgotten reservation blocks nothing (with the default TTL)', async () => {
    const limiter = engine.events.limit().atMost(1, 'hour');
    await limiter.reserve('bob');
    assert.equal((await limiter.checkAndRecord('bob')).allowed, false);
    clock.advance(30 * DAY);
    assert.equal((await limiter.checkAndRecord('bob')).allowed, true);
  });

  test('reservations released by commit or cancel, and new ones after an expiry, count exactly', async () => {
    const store = engine.eventStore({ name: 'res2', reservationTtlMs: MINUTE });
    const limiter = store.limit().atMost(3, 'day');
    const a = await limiter.reserve('c');
    const b = await limiter.reserve('c');
    assert.equal((await limiter.usage('c')).reserved, 2);
    await b.cancel();
    assert.equal((await limiter.usage('c')).reserved, 1);
    clock.advance(MINUTE);
    assert.equal((await limiter.usage('c')).reserved, 0, 'a expired');
    const fresh = await Promise.all([limiter.reserve('c'), limiter.reserve('c'), limiter.reserve('c'), limiter.reserve('c')]);
    assert.equal(fresh.filter((r) => r.allowed).length, 3, 'the limit holds for reservations taken after the expiry');
    await a.cancel(); // late: a's place was given up when it expired
    assert.equal((await limiter.usage('c')).reserved, 3, 'a late cancel of an expired reservation releases none of the new ones');
    assert.equal((await limiter.check('c')).allowed, false);
    await fresh.find((r) => r.allowed)!.cancel();
    assert.equal((await limiter.usage('c')).reserved, 2, 'a cancel of a held one releases it');
  });

  test('reservationTtlMs is validated', () => {
    for (const bad of [0, 999, 1.5, -1, 2 ** 31]) {
      assert.throws(() => engine.eventStore({ name: `bad${bad}`, reservationTtlMs: bad }), withCode(ErrorCode.INVALID_ARGUMENT, 'reservationTtlMs'));
    }
  });
});
