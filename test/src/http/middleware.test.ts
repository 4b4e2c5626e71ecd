/**
 * The HTTP middleware on real servers over loopback, the same behaviour on every framework (Express 4,
 * Express 5, Fastify 5, node:http): the headers of each draft, 429 with Retry-After, several policies in
 * one check, IPv6 clients grouped by /64, skip, custom keys and handlers, and a store that fails (open or
 * closed). Engines run on a test clock: the windows only move when a test moves them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createEngine, type Engine, ErrorCode, expressRateLimit, type PolicyOutcome, prefixedKey, type RatePolicy, ratePolicy, requestKey, TestClock, withRateLimit } from '../../../src/index.js';
import { FRAMEWORKS, get, serve } from '../../helpers/http.js';

let engine: Engine;
let clock: TestClock;
before(async () => {
  clock = new TestClock();
  engine = await createEngine({ clock, shards: 1 });
});
after(() => engine.close());

/** The RateLimit headers of a reply (and Retry-After), by lower-case name. */
function limitHeaders(h: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of h) if (k.startsWith('ratelimit') || k === 'retry-after') out[k] = v;
  return out;
}

for (const framework of FRAMEWORKS) {
  describe(`${framework}`, () => {
    test('draft-8 (the default): named policy and remaining, then 429 with Retry-After; the route never runs for a refused request', async () => {
      const rl = engine.rateLimiter({ windowSeconds: 60 });
      const served = await serve(framework, { policy: ratePolicy(rl.local.absolute, { rate: 3 / 60, name: 'permin' }) });
      try {
        const replies = [];
        for (let i = 0; i < 4; i++) replies.push(await get(served.url, '203.0.113.7'));
        assert.deepEqual(replies.map((r) => r.status), [200, 200, 200, 429]);
        assert.deepEqual(replies.map((r) => r.body.slice(0, 2)), ['ok', 'ok', 'ok', 'To']);
        assert.deepEqual(limitHeaders(replies[0]!.headers), { 'ratelimit-policy': '"permin";q=3;w=60', ratelimit: '"permin";r=2;t=60' });
        assert.deepEqual(limitHeaders(replies[2]!.headers), { 'ratelimit-policy': '"permin";q=3;w=60', ratelimit: '"permin";r=0;t=60' });
        // Three events in one 600 ms group: the room comes back when that group leaves the window, 60 s on.
        assert.deepEqual(limitHeaders(replies[3]!.headers), { 'ratelimit-policy': '"permin";q=3;w=60', ratelimit: '"permin";r=0;t=60', 'retry-after': '60' });
        // Another client has its own quota.
        assert.equal((await get(served.url, '203.0.113.8')).status, 200);
        clock.advance(60_000);
        assert.equal((await get(served.url, '203.0.113.7')).status, 200, 'a window later the client is let in again');
      } finally {
        await served.close();
      }
    });

    test('draft-6 and draft-7 shapes; false sends only Retry-After', async () => {
      for (const [headers, first, refused] of [
        ['draft-6', { 'ratelimit-policy': '2;w=10', 'ratelimit-limit': '2', 'ratelimit-remaining': '1', 'ratelimit-reset': '10' }, { 'ratelimit-policy': '2;w=10', 'ratelimit-limit': '2', 'ratelimit-remaining': '0', 'ratelimit-reset': '10', 'retry-after': '10' }],
        ['draft-7', { 'ratelimit-policy': '2;w=10', ratelimit: 'limit=2, remaining=1, reset=10' }, { 'ratelimit-policy': '2;w=10', ratelimit: 'limit=2, remaining=0, reset=10', 'retry-after': '10' }],
        [false, {}, { 'retry-after': '10' }],
      ] as const) {
        const rl = engine.rateLimiter({ windowSeconds: 10 });
        const served = await serve(framework, { policy: ratePolicy(rl.local.absolute, { rate: 0.2 }), headers });
        try {
          const r1 = await get(served.url, '198.51.100.1');
          await get(served.url, '198.51.100.1');
          const r3 = await get(served.url, '198.51.100.1');
          assert.deepEqual(limitHeaders(r1.headers), first, String(headers));
          assert.equal(r3.status, 429);
          assert.deepEqual(limitHeaders(r3.headers), refused, String(headers));
        } finally {
          await served.close();
        }
      }
    });

    test('several policies from one check: rateLimits windows all-or-nothing, each a named item; draft-7 reports the tightest', async () => {
      const limits = engine.rateLimits({ windows: { perSecond: { limit: 2, windowSeconds: 1 }, perMinute: { limit: 3, windowSeconds: 60 } } });
      const served = await serve(framework, { policy: ratePolicy(limits) });
      try {
        const a = await get(served.url, '192.0.2.1');
        assert.equal(a.headers.get('ratelimit-policy'), '"perSecond";q=2;w=1, "perMinute";q=3;w=60');
        assert.equal(a.headers.get('ratelimit'), '"perSecond";r=1;t=1, "perMinute";r=2;t=60');
        await get(served.url, '192.0.2.1');
        const refused = await get(served.url, '192.0.2.1');
        assert.equal(refused.status, 429);
        assert.equal(refused.headers.get('ratelimit'), '"perSecond";r=0;t=1, "perMinute";r=1;t=60', 'perSecond refused; perMinute counted nothing');
        assert.equal(refused.headers.get('retry-after'), '1');
        clock.advance(1000);
        assert.equal((await get(served.url, '192.0.2.1')).status, 200);
        const last = await get(served.url, '192.0.2.1');
        assert.equal(last.status, 429, 'now the minute is used up');
        assert.equal(last.headers.get('ratelimit'), '"perSecond";r=1;t=1, "perMinute";r=0;t=59');
      } finally {
        await served.close();
      }
      const tight = engine.rateLimits({ windows: { burst: { limit: 5, windowSeconds: 1 }, hour: { limit: 2, windowSeconds: 3600 } } });
      const served7 = await serve(framework, { policy: ratePolicy(tight), headers: 'draft-7' });
      try {
        const r = await get(served7.url, '192.0.2.2');
        assert.equal(r.headers.get('ratelimit-policy'), '5;w=1, 2;w=3600');
        assert.equal(r.headers.get('ratelimit'), 'limit=2, remaining=1, reset=3600');
      } finally {
        await served7.close();
      }
    });

    test('an array of policies checks in order: the first refusal answers, with every quota seen so far', async () => {
      const burst = engine.rateLimiter({ windowSeconds: 1 });
      const daily = engine.events.limit().atMost(3, 'day');
      const served = await serve(framework, { policy: [ratePolicy(burst.local.absolute, { rate: 10, name: 'burst' }), ratePolicy(daily, { name: 'daily' })] });
      const ip = `192.0.2.${50 + FRAMEWORKS.indexOf(framework)}`; // one events store for every framework: an id each
      try {
        const statuses = [];
        for (let i = 0; i < 4; i++) statuses.push((await get(served.url, ip)).status);
        assert.deepEqual(statuses, [200, 200, 200, 429]);
        const r = await get(served.url, ip);
        assert.match(r.headers.get('ratelimit-policy')!, /^"burst";q=10;w=1, "daily";q=3;w=86400$/);
        assert.match(r.headers.get('ratelimit')!, /^"burst";r=\d+;t=1, "daily";r=0;t=\d+$/);
        assert.ok(Number(r.headers.get('retry-after')) > 0);
      } finally {
        await served.close();
      }
    });

    test('IPv6 clients are grouped by their /64 (two addresses of one /64 share a quota; another /64 has its own); ipv6Subnet changes it', async () => {
      const rl = engine.rateLimiter({ windowSeconds: 60 });
      const served = await serve(framework, { policy: ratePolicy(rl.local.absolute, { rate: 2 / 60 }) });
      try {
        assert.equal((await get(served.url, '2001:db8:1:2::1')).status, 200);
        assert.equal((await get(served.url, '2001:db8:1:2:ffff:ffff:ffff:ffff')).status, 200);
        assert.equal((await get(served.url, '2001:db8:1:2:abcd::9')).status, 429, 'the third request of one /64');
        assert.equal((await get(served.url, '2001:db8:1:3::1')).status, 200, 'the next /64 is another client');
        assert.equal((await get(served.url, '::ffff:203.0.113.99')).status, 200);
        assert.equal((await get(served.url, '203.0.113.99')).status, 200, 'an IPv4-mapped address is its IPv4 address');
        assert.equal((await get(served.url, '203.0.113.99')).status, 429);
      } finally {
        await served.close();
      }
      const per128 = engine.rateLimiter({ windowSeconds: 60 });
      const exact = await serve(framework, { policy: ratePolicy(per128.local.absolute, { rate: 1 / 60 }), ipv6Subnet: 128 });
      try {
        assert.equal((await get(exact.url, '2001:db8::1')).status, 200);
        assert.equal((await get(exact.url, '2001:db8::2')).status, 200, 'with /128 every address is its own client');
        assert.equal((await get(exact.url, '2001:db8:0:0::1')).status, 429, 'the same address written differently');
      } finally {
        await exact.close();
      }
    });

    test('keys with ":" and keys that differ only by it never share a quota; skip lets requests through without headers', async () => {
      const rl = engine.rateLimiter({ windowSeconds: 60 });
      const served = await serve(framework, {
        policy: ratePolicy(rl.local.absolute, { rate: 1 / 60 }),
        key: (req: { headers: Record<string, string | string[] | undefined> }) => String(req.headers['x-forwarded-for']),
        skip: (req: { headers: Record<string, string | string[] | undefined> }) => req.headers['x-forwarded-for'] === 'health',
      });
      try {
        assert.equal((await get(served.url, 'user:1')).status, 200);
        assert.equal((await get(served.url, 'user1')).status, 200, '"user1" is not "user:1"');
        assert.equal((await get(served.url, 'user%3A1')).status, 200, 'nor is its percent-encoding');
        assert.equal((await get(served.url, 'user:1')).status, 429);
        const long = 'x'.repeat(400);
        assert.equal((await get(served.url, long)).status, 200, 'a key over 255 bytes is hashed, not refused or cut');
        assert.equal((await get(served.url, `${long}y`)).status, 200, 'and two long keys stay two');
        assert.equal((await get(served.url, long)).status, 429);
        for (let i = 0; i < 3; i++) {
          const h = await get(served.url, 'health');
          assert.equal(h.status, 200);
          assert.deepEqual(limitHeaders(h.headers), {});
        }
      } finally {
        await served.close();
      }
    });

    test('a custom status, body or handler answers a refusal', async () => {
      const rl = engine.rateLimiter({ windowSeconds: 60 });
      const served = await serve(framework, { policy: ratePolicy(rl.local.absolute, { rate: 1 / 60 }), statusCode: 503, limited: 'slow down' });
      try {
        await get(served.url, '192.0.2.9');
        const r = await get(served.url, '192.0.2.9');
        assert.equal(r.status, 503);
        assert.equal(r.body, 'slow down');
        assert.equal(r.headers.get('retry-after'), '60');
      } finally {
        await served.close();
      }
    });

    test('a policy that fails: fail-closed (default) answers 503 with Retry-After, fail-open lets it through; onError hears of it', async () => {
      const broken: RatePolicy = {
        check: () => Promise.reject(new Error('store away')),
      };
      const errors: unknown[] = [];
      const closed = await serve(framework, { policy: broken, onError: (err: unknown) => errors.push(err) });
      const open = await serve(framework, { policy: broken, onStoreError: 'fail-open' });
      try {
        const c = await get(closed.url, '192.0.2.10');
        assert.equal(c.status, 503);
        assert.equal(c.headers.get('retry-after'), '1');
        assert.equal((errors[0] as Error).message, 'store away');
        const o = await get(open.url, '192.0.2.10');
        assert.equal(o.status, 200);
        assert.equal(o.body, 'ok');
        assert.deepEqual(limitHeaders(o.headers), {});
      } finally {
        await closed.close();
        await open.close();
      }
    });
  });
}

describe('failures on the way', () => {
  test('a limited handler that throws on the awaited path: Express answers 500 (next(err)), node:http answers 500 and hands the error to onError', async () => {
    const rl = engine.rateLimiter({ windowSeconds: 60 });
    const asyncPolicy: RatePolicy = { check: async (key) => ratePolicy(rl.local.absolute, { rate: 1 / 60 }).check(key) };
    const limited = (): never => {
      throw new Error('handler bug');
    };
    const seen: unknown[] = [];
    const express = await serve('express5', { policy: asyncPolicy, limited });
    const node = await serve('node', { policy: asyncPolicy, limited, onError: (err: unknown) => seen.push(err) });
    try {
      await get(express.url, '192.0.2.77');
      assert.equal((await get(express.url, '192.0.2.77')).status, 500);
      await get(node.url, '192.0.2.78');
      assert.equal((await get(node.url, '192.0.2.78')).status, 500);
      for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setImmediate(r));
      assert.equal((seen[0] as Error).message, 'handler bug');
    } finally {
      await express.close();
      await node.close();
    }
  });

  test('a later policy that fails or refuses: the earlier ones take the request back, and their figures say so', async () => {
    const rl = engine.rateLimiter({ windowSeconds: 60 });
    const first = ratePolicy(rl.local.absolute, { rate: 3 / 60, name: 'first' });
    let fail = true;
    const second: RatePolicy = {
      check: async () => {
        if (fail) throw new Error('store away');
        return { allowed: false, quotas: [{ name: 'second', limit: 1, windowSeconds: 60, remaining: 0, resetSeconds: 60 }], retryAfterSeconds: 60 };
      },
    };
    const served = await serve('express5', { policy: [first, second] });
    try {
      for (let i = 0; i < 3; i++) assert.equal((await get(served.url, '192.0.2.90')).status, 503);
      assert.equal(rl.local.absolute.count(requestKey('192.0.2.90')), 0, 'requests that failed were not counted');
      fail = false;
      const r = await get(served.url, '192.0.2.90');
      assert.equal(r.status, 429);
      assert.equal(r.headers.get('ratelimit'), '"first";r=3;t=60, "second";r=0;t=60', 'first took it back: all 3 left');
      assert.equal(rl.local.absolute.count(requestKey('192.0.2.90')), 0);
    } finally {
      await served.close();
    }
  });

  test('a calendar policy while its store reloads waits for it (the awaited terminal), not a 503', async () => {
    const e = await createEngine({ clock: new TestClock(), shards: 1 });
    try {
      const policy = ratePolicy(e.events.limit().atMost(2, 'hour'));
      await policy.check('c');
      void e.events.compact();
      const outcome = (await policy.check('c')) as PolicyOutcome;
      assert.equal(outcome.allowed, true);
      assert.equal(outcome.quotas[0]!.remaining, 0);
    } finally {
      await e.close();
    }
  });
});

describe('policies', () => {
  test('the calendar limiter: its atMost quota, reset at the end of the calendar unit', async () => {
    const c = new TestClock(Date.UTC(2026, 0, 1, 10, 59, 30));
    const e = await createEngine({ clock: c, shards: 1 });
    try {
      const policy = ratePolicy(e.events.limit().atMost(2, 'hour'), { name: 'hourly' });
      const a = (await policy.check('u')) as PolicyOutcome;
      assert.deepEqual(a, { allowed: true, quotas: [{ name: 'hourly', limit: 2, windowSeconds: 3600, remaining: 1, resetSeconds: 30 }] });
      await policy.check('u');
      const refused = (await policy.check('u')) as PolicyOutcome;
      assert.equal(refused.allowed, false);
      assert.equal(refused.retryAfterSeconds, 30);
      c.advance(30_000);
      assert.equal(((await policy.check('u')) as PolicyOutcome).allowed, true, 'a new hour');
    } finally {
      await e.close();
    }
  });

  test('the suppressed strategy: a declined request is a 429 with Retry-After: 1', async () => {
    const rl = engine.rateLimiter({ windowSeconds: 10, random: () => 0.999999 });
    const policy = ratePolicy(rl.local.suppressed, { rate: 0.2 });
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push((await policy.check('s')) as PolicyOutcome);
    assert.deepEqual(outcomes.map((o) => o.allowed), [true, true, false, false]);
    assert.equal(outcomes[3]!.retryAfterSeconds, 1);
  });

  test('keyPrefix: two policies on one limiter count apart; the key reaches the limiter prefixed', () => {
    const rl = engine.rateLimiter({ windowSeconds: 60 });
    const login = ratePolicy(rl.local.absolute, { rate: 1 / 60, keyPrefix: 'login/' });
    const api = ratePolicy(rl.local.absolute, { rate: 1 / 60, keyPrefix: 'api/' });
    assert.equal((login.check('1.2.3.4') as PolicyOutcome).allowed, true);
    assert.equal((api.check('1.2.3.4') as PolicyOutcome).allowed, true, 'its own count');
    assert.equal((login.check('1.2.3.4') as PolicyOutcome).allowed, false);
    assert.equal(rl.local.absolute.count(prefixedKey('login/', '1.2.3.4')), 1);
    login.undo!('1.2.3.4');
    assert.equal(rl.local.absolute.count(prefixedKey('login/', '1.2.3.4')), 0, 'undo takes it back under the same prefix');
    // A prefixed key is never an unprefixed one: a client called "login/1.2.3.4" on a route without a
    // prefix is not the client 1.2.3.4 of the login route.
    const plain = ratePolicy(rl.local.absolute, { rate: 1 / 60 });
    assert.equal((plain.check('login/1.2.3.4') as PolicyOutcome).allowed, true);
    assert.equal((login.check('1.2.3.4') as PolicyOutcome).allowed, true);
    assert.equal((plain.check('login/1.2.3.4') as PolicyOutcome).allowed, false);
  });

  test('bad arguments are typed errors naming the argument', () => {
    const rl = engine.rateLimiter({ windowSeconds: 10 });
    const invalid = (fn: () => unknown, name: RegExp): void => {
      assert.throws(fn, (err: { code?: string; message: string }) => err.code?.startsWith('TW_INVALID') === true && name.test(err.message));
    };
    invalid(() => ratePolicy(rl.local.absolute), /options\.rate/);
    invalid(() => ratePolicy(rl.local.absolute, { rate: -1 }), /rate/);
    invalid(() => ratePolicy(rl.local.absolute, { rate: 1, name: 'two words' }), /options\.name/);
    invalid(() => ratePolicy({} as never), /limiter/);
    invalid(() => ratePolicy(rl.local.absolute, { rate: 1, keyPrefix: 7 as never }), /options\.keyPrefix/);
    invalid(() => ratePolicy(engine.rateLimits({ windows: { a: { limit: 1, windowSeconds: 1 } } }), { rate: 1 }), /options\.rate/);
    invalid(() => expressRateLimit({} as never), /options\.policy/);
    invalid(() => expressRateLimit({ policy: [] }), /options\.policy/);
    invalid(() => expressRateLimit({ policy: ratePolicy(rl.local.absolute, { rate: 1 }), headers: 'draft-9' as never }), /options\.headers/);
    invalid(() => expressRateLimit({ policy: ratePolicy(rl.local.absolute, { rate: 1 }), statusCode: 200 }), /options\.statusCode/);
    invalid(() => expressRateLimit({ policy: ratePolicy(rl.local.absolute, { rate: 1 }), onStoreError: 'open' as never }), /options\.onStoreError/);
    invalid(() => withRateLimit(() => undefined, { policy: ratePolicy(rl.local.absolute, { rate: 1 }), ipv6Subnet: 129 }), /ipv6Subnet/);
    assert.equal(ErrorCode.INVALID_ARGUMENT.startsWith('TW_'), true);
  });
});
