/**
 * TallyworksStore under express-rate-limit 8 itself, on a real Express server over loopback: the limit
 * holds, its draft-8 headers carry our counts, IPv6 keys (its ipKeyGenerator) and `user:123` keys work
 * without collisions, skipFailedRequests takes a hit back (decrement), resetKey and get work, and a bad
 * configuration is an error that names the option.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import { createEngine, type Engine, TallyworksStore, TestClock } from '../../../src/index.js';
import { get, listening, type Served } from '../../helpers/http.js';

let engine: Engine;
let clock: TestClock;
before(async () => {
  clock = new TestClock();
  engine = await createEngine({ clock, shards: 1 });
});
after(() => engine.close());

async function app(limiter: express.RequestHandler, route: express.RequestHandler = (_req, res) => void res.send('ok')): Promise<Served> {
  const a = express();
  a.set('trust proxy', true);
  a.use(limiter);
  a.get('/', route);
  return listening(createServer(a));
}

describe('express-rate-limit with TallyworksStore', () => {
  test('the limit holds per client, with our counts in its draft-8 headers; refused hits count, as in its own stores', async () => {
    const store = new TallyworksStore(engine);
    const served = await app(rateLimit({ windowMs: 60_000, limit: 3, store, standardHeaders: 'draft-8', legacyHeaders: false, validate: { trustProxy: false } }));
    try {
      const statuses = [];
      for (let i = 0; i < 5; i++) statuses.push((await get(served.url, '203.0.113.1')).status);
      assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
      assert.equal((await get(served.url, '203.0.113.2')).status, 200, 'another client');
      const r = await get(served.url, '203.0.113.2');
      assert.match(r.headers.get('ratelimit')!, /; r=1; t=60$/);
      const info = store.get('203.0.113.1')!;
      assert.equal(info.totalHits, 5, 'every hit counted');
      assert.ok(Math.abs(info.resetTime!.getTime() - (Date.now() + 60_000)) < 10_000, 'resetTime is wall-clock time, as express-rate-limit reads it');
      clock.advance(60_000);
      assert.equal((await get(served.url, '203.0.113.1')).status, 200, 'the window slid past the hits');
    } finally {
      await served.close();
    }
  });

  test("IPv6 clients through express-rate-limit's own ipKeyGenerator (keys with ':'), and user:123 keys that differ only by ':'", async () => {
    const store = new TallyworksStore(engine);
    const served = await app(rateLimit({ validate: { trustProxy: false }, windowMs: 60_000, limit: 1, store, keyGenerator: (req) => ipKeyGenerator(req.ip!, 56) }));
    try {
      assert.equal((await get(served.url, '2001:db8:1:2::1')).status, 200);
      assert.equal((await get(served.url, '2001:db8:1:3::1')).status, 429, 'one /56');
      assert.equal((await get(served.url, '2001:db8:2::1')).status, 200, 'another /56');
    } finally {
      await served.close();
    }
    const users = new TallyworksStore(engine, { prefix: 'u|' });
    const byUser = await app(rateLimit({ validate: { trustProxy: false }, windowMs: 60_000, limit: 1, store: users, keyGenerator: (req) => String(req.headers['x-forwarded-for']) }));
    try {
      for (const key of ['user:123', 'user123', 'user:12:3', 'user%3A123']) assert.equal((await get(byUser.url, key)).status, 200, key);
      assert.equal((await get(byUser.url, 'user:123')).status, 429);
    } finally {
      await byUser.close();
    }
  });

  test('skipFailedRequests takes the hit back (decrement); resetKey forgets a client; get reads it', async () => {
    const store = new TallyworksStore(engine);
    const served = await app(rateLimit({ validate: { trustProxy: false }, windowMs: 10_000, limit: 2, store, skipFailedRequests: true }), (req, res) => void res.status(req.headers['x-forwarded-for'] === '192.0.2.99' ? 500 : 200).send('x'));
    try {
      for (let i = 0; i < 5; i++) assert.equal((await get(served.url, '192.0.2.99')).status, 500, 'failed requests never use the quota');
      // express-rate-limit decrements once the response has finished: wait for the store to show it.
      for (let i = 0; i < 100 && store.get('192.0.2.99') !== undefined; i++) await new Promise((r) => setImmediate(r));
      assert.equal(store.get('192.0.2.99'), undefined);
      assert.equal((await get(served.url, '192.0.2.5')).status, 200);
      assert.equal((await get(served.url, '192.0.2.5')).status, 200);
      assert.equal((await get(served.url, '192.0.2.5')).status, 429);
      for (let i = 0; i < 100 && store.get('192.0.2.5')!.totalHits !== 2; i++) await new Promise((r) => setImmediate(r));
      assert.equal(store.get('192.0.2.5')!.totalHits, 2, 'its own 429 was a failed request too: taken back');
      store.resetKey('192.0.2.5');
      assert.equal(store.get('192.0.2.5'), undefined);
      assert.equal((await get(served.url, '192.0.2.5')).status, 200);
    } finally {
      await served.close();
    }
  });

  test('a window that is not whole seconds is refused naming the option; a limit function is express-rate-limit\'s to apply', async () => {
    const store = new TallyworksStore(engine);
    assert.throws(() => store.init({ windowMs: 1500 }), /windowMs/);
    assert.throws(() => store.increment('k'), /init\(\)/);
    const served = await app(rateLimit({ validate: { trustProxy: false }, windowMs: 60_000, limit: (req) => (req.headers['x-forwarded-for'] === 'vip' ? 3 : 1), store: new TallyworksStore(engine) }));
    try {
      assert.deepEqual([await get(served.url, 'vip'), await get(served.url, 'vip'), await get(served.url, 'vip'), await get(served.url, 'vip')].map((r) => r.status), [200, 200, 200, 429]);
      assert.deepEqual([await get(served.url, 'other'), await get(served.url, 'other')].map((r) => r.status), [200, 429]);
    } finally {
      await served.close();
    }
    assert.throws(() => new TallyworksStore(engine, { prefix: 3 as never }), /options\.prefix/);
  });
});

describe('LocalAbsolute.release and reset', () => {
  test('release takes back the newest events first and never below zero; reset empties the window', () => {
    const rl = engine.rateLimiter({ windowSeconds: 10, groupMs: 1000 });
    const a = rl.local.absolute;
    for (let i = 0; i < 3; i++) a.inc('k', 0.5);
    clock.advance(5000);
    a.inc('k', 0.5);
    a.inc('k', 0.5);
    assert.equal(a.inc('k', 0.5).allowed, false, 'limit 5 reached');
    assert.equal(a.release('k', 3), 3);
    assert.equal(a.count('k'), 2);
    // Newest first: both events of the 5 s group, then one of the first group (two left there).
    clock.advance(5000);
    assert.equal(a.count('k'), 0, 'the old group left; the newer one was released whole');
    assert.equal(a.release('k', 2), 0, 'nothing left to take back');
    assert.equal(a.release('never-seen'), 0);
    for (let i = 0; i < 5; i++) assert.equal(a.inc('k', 0.5).allowed, true);
    a.reset('k');
    assert.equal(a.count('k'), 0);
    assert.equal(a.inc('k', 0.5).allowed, true);
    assert.throws(() => a.release('k', 0), /"n"/);
  });
});
