/**
 * Lax counter scenarios 9–14 and 16 of the spec (Redis only: warm reads without I/O, the lag, buffered
 * deletes and sets, two instances, lost replies, close), written once against a Redis {@link Mode} and run
 * on a private redis-server (test/src/counters/scenarios.redis.test.ts) and on a Redis Cluster
 * (test/src/counters/cluster.redis.test.ts). Scenario 15 (an outage) kills a server: it stays with the
 * single-server tests.
 */
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { TestClock } from '../../src/index.js';
import { internals } from '../../src/engine.js';
import { partitionOf } from '../../common/redis.js';
import { freshPrefix, it, type Mode, until } from './counter-scenarios.js';

export function laxRedisScenarios(mode: () => Mode): void {
  /** The lax field of `key` under `prefix`, as Redis holds it. */
  const laxStored = (prefix: string, key: string): Promise<string | null> => mode().stored('l', prefix, key) as Promise<string | null>;

  it('scenario 9: inc 7 → get 7 with no Redis command; a fresh instance reads 7', async () => {
    const prefix = freshPrefix('s9');
    const clock = new TestClock();
    const a = await mode().engine({ prefix, clock });
    assert.equal(await a.lax.inc('k', 7), 7);
    // Nothing dirty any more, and the key's Redis value is fresh on the (frozen) engine clock.
    await a.lax.flush();
    const before = (await a.stats()).flusher!;
    const redisBefore = (await mode().io(a)).redisCommands;
    assert.equal(await a.lax.get('k'), 7);
    assert.equal(await a.lax.inc('k', 0), 7);
    const afterStats = (await a.stats()).flusher!;
    assert.equal(afterStats.commands, before.commands, 'a warm lax read sends the flusher no Redis command');
    assert.equal((await mode().io(a)).redisCommands, redisBefore, 'a warm lax read sends Redis no command at all');
    // Once the value is older than allowedLag on the engine clock, the next read refreshes it.
    await mode().write('l', prefix, 'k', '100');
    assert.equal(await a.lax.get('k'), 7, 'still warm: the local estimate, not Redis');
    clock.advance(21);
    assert.equal(await a.lax.get('k'), 100, 'stale after allowedLag: refreshed from Redis');
    await mode().write('l', prefix, 'k', '7');

    const b = await mode().engine({ prefix });
    const waited = await until(async () => (await b.lax.get('k')) === 7, 1000, 'a fresh instance reads 7', () => b.lax.get('k'));
    assert.ok(waited < 1000);
    assert.equal(await laxStored(prefix, 'k'), '7');
  });

  it('scenario 10: inc 10, del before the flush → 10; get 0; Redis holds nothing afterwards', async () => {
    const prefix = freshPrefix('s10');
    const clock = new TestClock();
    // A long flush interval: only this test's calls make the flusher talk to Redis.
    const a = await mode().engine({ prefix, clock, flushIntervalMs: 60_000 });
    assert.equal(await a.lax.get('k'), 0); // warm the key: the inc below stays local
    assert.equal(await a.lax.inc('k', 10), 10);
    assert.equal(await laxStored(prefix, 'k'), null, 'the inc is still buffered (the test is meaningful)');
    assert.equal(await a.lax.del('k'), 10);
    assert.equal(await a.lax.get('k'), 0, 'a read right after del reads 0');
    await a.lax.flush();
    await a.lax.flush();
    assert.equal(await laxStored(prefix, 'k'), null, 'no field after del, even after later flushes');
    assert.equal(await laxStored(prefix, 'k'), null);
    assert.equal(await a.lax.get('k'), 0);
    clock.advance(100);
    assert.equal(await a.lax.get('k'), 0, 'refreshed from Redis: still 0');
    await a.close();
    assert.equal(await laxStored(prefix, 'k'), null, 'close() delivers nothing for the deleted key');
  });

  it('scenario 11: inc 1000; set 850 → 850; a fresh instance reads 850', async () => {
    const prefix = freshPrefix('s11');
    const clock = new TestClock();
    const a = await mode().engine({ prefix, clock, flushIntervalMs: 60_000 });
    assert.equal(await a.lax.get('k'), 0);
    assert.equal(await a.lax.inc('k', 1000), 1000);
    assert.equal(await laxStored(prefix, 'k'), null, 'the inc is still buffered');
    assert.equal(await a.lax.set('k', 850), 850);
    assert.equal(await laxStored(prefix, 'k'), '850', 'set is absolute in Redis, not a buffered delta');
    assert.equal(await a.lax.get('k'), 850, 'a read right after set reads 850');
    await a.lax.flush();
    assert.equal(await laxStored(prefix, 'k'), '850', 'the delivered 1000 is not applied again');
    const b = await mode().engine({ prefix });
    await until(async () => (await b.lax.get('k')) === 850, 1000, 'a fresh instance reads 850', () => b.lax.get('k'));
    await a.close();
    assert.equal(await laxStored(prefix, 'k'), '850', 'close() adds nothing');
  });

  it("scenario 12: A and B each inc; each sees the other's writes within ≈ 2 × lag, also under steady load", async (t) => {
    const prefix = freshPrefix('s12');
    const a = await mode().engine({ prefix });
    const b = await mode().engine({ prefix });
    const BOUND = 500; // generous: the spec's figure is ≈ 2 × 20 ms
    assert.equal(await a.lax.get('k'), 0);
    assert.equal(await b.lax.get('k'), 0);
    const start = Date.now();
    await a.lax.inc('k', 1);
    await b.lax.inc('k', 2);
    const seenByA = await until(async () => (await a.lax.get('k')) === 3, 2000, 'A sees B', () => a.lax.get('k'));
    const seenByB = await until(async () => (await b.lax.get('k')) === 3, 2000, 'B sees A', () => b.lax.get('k'));
    const quiet = Date.now() - start;
    t.diagnostic(`idle: both see 3 after ${quiet} ms (A waited ${seenByA} ms, B ${seenByB} ms)`);
    assert.ok(quiet <= BOUND, `both instances see 3 within ${BOUND} ms; took ${quiet} ms`);

    // Steady load: both instances keep adding while each checks it sees the other's adds.
    let sentA = 0;
    let sentB = 0;
    const load = setInterval(() => {
      a.lax.add('load', 1);
      sentA++;
      b.lax.add('load', 1);
      sentB++;
    }, 1);
    const lags: number[] = [];
    try {
      const end = Date.now() + 1000;
      while (Date.now() < end) {
        const target = sentA + sentB;
        const t0 = Date.now();
        await until(async () => (await a.lax.get('load')) >= target, 3000, `A sees ≥ ${target} under load`, () => a.lax.get('load'));
        await until(async () => (await b.lax.get('load')) >= target, 3000, `B sees ≥ ${target} under load`, () => b.lax.get('load'));
        lags.push(Date.now() - t0);
        await delay(20);
      }
    } finally {
      clearInterval(load);
    }
    const worst = Math.max(...lags);
    t.diagnostic(`under load: ${lags.length} samples, worst ${worst} ms, lags ${lags.join(',')}`);
    assert.ok(lags.length >= 5, `enough samples: ${lags.length}`);
    assert.ok(worst <= BOUND, `under steady load each instance sees the other's adds within ${BOUND} ms; worst ${worst} ms (${lags.join(',')})`);
    const total = sentA + sentB;
    await until(
      async () => (await a.lax.get('load')) === total && (await b.lax.get('load')) === total && (await laxStored(prefix, 'load')) === String(total),
      2000,
      `both instances and Redis settle on exactly ${total}`,
      async () => [await a.lax.get('load'), await b.lax.get('load'), await laxStored(prefix, 'load')],
    );
  });

  it('scenario 13: B puts 9 in Redis; A never touched the key; A del → 9 and the key is gone', async () => {
    const prefix = freshPrefix('s13');
    const a = await mode().engine({ prefix });
    const b = await mode().engine({ prefix });
    assert.equal(await b.lax.set('k', 9), 9);
    assert.equal(await laxStored(prefix, 'k'), '9');
    assert.equal(await a.lax.del('k'), 9, 'del returns the Redis value even though A never touched the key');
    assert.equal(await laxStored(prefix, 'k'), null, 'the field is gone');
    assert.equal(await a.lax.get('k'), 0);
    await until(async () => (await b.lax.get('k')) === 0, 1000, 'B sees the delete', () => b.lax.get('k'));
    // Written straight into Redis by someone else: same story.
    await mode().write('l', prefix, 'j', '4');
    assert.equal(await a.lax.del('j'), 4);
    assert.equal(await laxStored(prefix, 'j'), null);
  });

  it('scenario 14: 150 dirty keys, half the commits lose their reply → every delta applied exactly once', async (t) => {
    const prefix = freshPrefix('s14');
    // Cycles run only when the test asks (lax.flush), so "halfway" is deterministic.
    const a = await mode().engine({ prefix, flushIntervalMs: 60_000 });
    const flusher = a[internals].flusher!;
    const keys = Array.from({ length: 150 }, (_, i) => `d${i}`);
    const partitions = new Set(keys.map(partitionOf)).size;
    await flusher.loseRepliesForTest(8);
    keys.forEach((k, i) => a.lax.add(k, i + 1));
    await a.lax.flush();
    const first = (await a.stats()).flusher!;
    t.diagnostic(`after the failing cycle: ${JSON.stringify(first)} (${partitions} partitions)`);
    assert.equal(first.unresolved, Math.min(8, partitions), 'the lost replies left calls unresolved');
    // More adds while calls are unresolved: they must go in later calls, not change the re-sent ones.
    keys.forEach((k) => a.lax.add(k, 1000));
    for (let i = 0; i < 20; i++) {
      await a.lax.flush();
      const s = (await a.stats()).flusher!;
      if (s.unresolved === 0 && s.pendingKeys === 0) break;
    }
    const stats = (await a.stats()).flusher!;
    assert.equal(stats.unresolved, 0);
    assert.equal(stats.pendingKeys, 0);
    assert.ok(stats.failures > 0, `the failures are reported: ${JSON.stringify(stats)}`);
    const stored = await Promise.all(keys.map((k) => laxStored(prefix, k)));
    const wrong = keys.flatMap((k, i) => (stored[i] === String(i + 1001) ? [] : [`${k}=${stored[i]} (want ${i + 1001})`]));
    assert.deepEqual(wrong, [], 'every delta applied exactly once (no doubles, none lost)');
    const local = await a.lax.getAll(keys);
    assert.deepEqual(local, keys.map((k, i) => [k, i + 1001]), 'the local estimates agree');
    await a.close();
    const afterClose = await Promise.all(keys.map((k) => laxStored(prefix, k)));
    assert.deepEqual(afterClose, stored, 'close() re-sends nothing');
  });

  it('scenario 16: inc 5; close() → Redis holds 5', async () => {
    const prefix = freshPrefix('s16');
    const clock = new TestClock();
    const a = await mode().engine({ prefix, clock, flushIntervalMs: 60_000 });
    assert.equal(await a.lax.get('k'), 0); // warm: the inc stays buffered until close
    assert.equal(await a.lax.inc('k', 5), 5);
    a.lax.add('other', 3);
    assert.equal(await laxStored(prefix, 'k'), null, 'still buffered before close');
    await a.close();
    assert.equal(await laxStored(prefix, 'k'), '5', 'close() delivered the pending delta');
    assert.equal(await laxStored(prefix, 'other'), '3');
    assert.deepEqual(
      (await mode().keysOf(prefix)).filter((k) => k.includes(':m:')),
      [],
      'close() removed its call markers',
    );
  });

  it('a lax delta Redis refuses (past 2^53 − 1) stays pending and is reported; a later set replaces it, as it replaces any earlier add', async () => {
    const MAX = Number.MAX_SAFE_INTEGER;
    const prefix = freshPrefix('refused');
    const e = await mode().engine({ prefix });
    assert.equal(await e.lax.set('k', MAX - 1), MAX - 1);
    e.lax.add('k', 5);
    await e.lax.flush();
    const stats = (await e.stats()).flusher!;
    assert.match(stats.lastError ?? '', /refused a delta of 5 for lax counter "k"/);
    assert.equal(stats.pendingKeys, 1, 'the refused delta is still pending');
    assert.equal(await laxStored(prefix, 'k'), String(MAX - 1), 'nothing written');
    assert.equal(await e.lax.set('k', 10), 10);
    await e.lax.flush();
    assert.equal(await laxStored(prefix, 'k'), '10', 'the refused delta did not land on the new value');
    assert.equal(await e.lax.get('k'), 10);
    assert.equal((await e.stats()).flusher!.pendingKeys, 0);
    await e.close(); // nothing undelivered: it would reject
  });
}
