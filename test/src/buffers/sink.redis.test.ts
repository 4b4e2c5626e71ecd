/**
 * The stat buffer Redis sink (src/buffers/sinks.ts redisSink, common/scripts/buffer-sink.lua, addFlush and
 * sinkMarkerKey in common/redis.ts) against private redis-servers, and end to end with `engine.buffer()`
 * on a TestClock:
 *  - counts are added with HINCRBY, once per flush id (a marker `{hash}:tw-flush:<id>` with a TTL, in the
 *    hash's cluster slot), exactly for every safe integer, positive or negative;
 *  - a buffer delivers every count exactly, across lost replies, a Redis SIGKILL and restart (AOF), and a
 *    batch Redis refuses half-way;
 *  - bad arguments are refused with TW_INVALID_ARGUMENT naming the argument.
 *
 * The ioredis clients fail fast while Redis is down (no offline queue, no retries per request, no resends):
 * a command that fails is the buffer's to retry, and the buffer's `timeoutMs` turns a hung one into a retry.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay, setImmediate as turn } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { sinkMarkerKey } from '../../../common/redis.js';
import { addFlush, MARKER_TTL_MS } from '../../../common/scripts.js';
import {
  asyncBatchSink,
  asyncSink,
  createEngine,
  type DeadLetter,
  type Engine,
  ErrorCode,
  redisSink,
  type StatBuffer,
  TallyworksError,
  TallyworksRangeError,
  TestClock,
} from '../../../src/index.js';
import { crc16, hashedPart, keySlot } from '../../helpers/key-slot.js';
import { prng } from '../../helpers/prng.js';
import { type RedisServer, startRedisServer } from '../../../bench/redis-server.js';

// ---------------------------------------------------------------------------------------------------
// Harness: every server, client and the engine are released after the file, whatever happened.

const servers: RedisServer[] = [];
const clients: Redis[] = [];
const clock = new TestClock();
let engine: Engine;
let server: RedisServer;
let redis: Redis;

/** A client that fails fast while Redis is down: no offline queue, no per-request retries, no resends. */
function client(s: RedisServer): Redis {
  const r = new Redis(s.url, {
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    commandTimeout: 2000,
    retryStrategy: () => 20,
  });
  r.on('error', () => undefined);
  clients.push(r);
  return r;
}

async function ready(r: Redis, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (r.status !== 'ready') {
    if (Date.now() > deadline) assert.fail(`the ioredis client is not ready after ${timeoutMs} ms (status ${r.status})`);
    await delay(5);
  }
}

before(async () => {
  server = await startRedisServer({ appendOnly: true });
  servers.push(server);
  redis = client(server);
  await ready(redis);
  engine = await createEngine({ clock, shards: 1 });
});

after(async () => {
  // The engine closes every buffer; one a failed test left open gives up at its close deadline, which is on
  // the clock: move it until the engine has closed.
  if (engine !== undefined) {
    let done = false;
    const closing = engine.close().finally(() => {
      done = true;
    });
    for (let i = 0; i < 2000 && !done; i++) {
      clock.advance(1000);
      await delay(1);
    }
    await closing.catch(() => undefined);
  }
  for (const r of clients) {
    if (r.status === 'ready') await r.quit().catch(() => r.disconnect());
    else r.disconnect();
  }
  await Promise.allSettled(servers.map((s) => s.stop()));
});


let ids = 0;
/** A fresh flush id (the buffer's own look like `<name>:<random hex>:<n>`). */
function flushId(): string {
  return `test:${process.pid.toString(16)}:${++ids}`;
}

let hashes = 0;
function hashName(what: string): string {
  return `tw-test:${what}:${++hashes}`;
}

/** The hash as a Map of BigInt totals (Redis keeps int64: BigInt compares totals past 2^53 exactly). */
async function totals(r: Redis, hash: string): Promise<Map<string, bigint>> {
  const all = await r.hgetall(hash);
  return new Map(Object.entries(all).map(([k, v]) => [k, BigInt(v)]));
}

/** Every marker of `hash`'s flushes (SCAN, never KEYS). */
async function markers(r: Redis, hash: string): Promise<string[]> {
  const pattern = `${sinkMarkerKey(hash, '')}*`.replace(/([[\]?\\])/g, '\\$1');
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}

/** Waits (real time: Redis replies) until the buffer has no handler call pending. */
async function quiesce(buffer: StatBuffer, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (buffer.stats().deliveries > 0) {
    if (Date.now() > deadline) assert.fail(`deliveries still pending after ${timeoutMs} ms: ${JSON.stringify(buffer.stats())}`);
    await delay(1);
  }
  await turn();
}

/** close(), with the clock moving `stepMs` per few real ms (retries and timeouts are on clock time) until it settles. */
async function closeDriving(buffer: StatBuffer, stepMs: number, realTimeoutMs = 10_000): Promise<unknown> {
  let settled = false;
  let error: unknown;
  const closing = buffer.close().then(
    () => {
      settled = true;
    },
    (err: unknown) => {
      settled = true;
      error = err;
    },
  );
  const deadline = Date.now() + realTimeoutMs;
  while (!settled) {
    if (Date.now() > deadline) assert.fail(`close() did not settle within ${realTimeoutMs} ms: ${JSON.stringify(buffer.stats())}`);
    await delay(3);
    if (!settled) clock.advance(stepMs);
  }
  await closing;
  return error;
}

function assertTotals(actual: Map<string, bigint>, expected: Map<string, number>, what: string): void {
  const wrong: string[] = [];
  for (const [key, e] of expected) {
    const got = actual.get(key) ?? 0n;
    if (got !== BigInt(e)) wrong.push(`${key}: Redis ${got}, incremented ${e}`);
  }
  for (const [key, got] of actual) if (!expected.has(key)) wrong.push(`${key}: Redis ${got}, never incremented`);
  assert.deepEqual(wrong.slice(0, 10), [], `${what}: ${wrong.length} of ${expected.size} keys wrong`);
}

const isArgumentError =
  (argument: string) =>
  (err: unknown): boolean => {
    assert.ok(err instanceof TallyworksError, `not a TallyworksError: ${String(err)}`);
    assert.equal((err as TallyworksError).code, ErrorCode.INVALID_ARGUMENT);
    assert.match((err as Error).message, new RegExp(`argument "${argument.replace(/\./g, '\\.')}"`));
    return true;
  };

const SEED = process.env.TW_SOAK_SEED !== undefined ? Number(process.env.TW_SOAK_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
console.log(`buffers-redis seed=${SEED} (rerun with TW_SOAK_SEED=${SEED})`);
const rng = prng(SEED);

/** A mixed-sign increment, mostly small. */
function someCount(): number {
  const r = rng();
  return r < 0.3 ? -Math.ceil(rng() * 50) : r < 0.995 ? Math.ceil(rng() * 100) : Math.ceil(rng() * 1e12);
}

const MAX = Number.MAX_SAFE_INTEGER;

// ---------------------------------------------------------------------------------------------------

describe('redisSink: HINCRBY once per flush id', () => {
  test('adds each entry to the hash with HINCRBY (on top of what the field holds), one script call per flush', async () => {
    const hash = hashName('hincrby');
    await redis.hset(hash, 'a', '10');
    const { onFlushBatch } = redisSink(redis, { hash });
    const keys = ['a', 'b', 'ünï:cødé', 'with {braces} and spaces'];
    await onFlushBatch(
      keys.map((key, i) => ({ key, count: i + 1 })),
      flushId(),
    );
    await onFlushBatch([{ key: 'a', count: -4 }, { key: 'b', count: 5 }], flushId());
    assert.deepEqual(await redis.hgetall(hash), { a: String(10 + 1 - 4), b: String(2 + 5), 'ünï:cødé': '3', 'with {braces} and spaces': '4' });
    assert.equal(await redis.type(hash), 'hash');
    assert.equal((await markers(redis, hash)).length, 2, 'one marker per flush id');
  });

  test('the same flush id twice adds once; its marker {hash}:tw-flush:<id> has a TTL of at most dedupeTtlMs', async () => {
    const hash = hashName('dedupe');
    const id = flushId();
    const marker = `{${hash}}:tw-flush:${id}`;
    assert.equal(sinkMarkerKey(hash, id), marker);
    const { onFlushBatch } = redisSink(redis, { hash, dedupeTtlMs: 5000 });
    await onFlushBatch([{ key: 'k', count: 7 }], id);
    await onFlushBatch([{ key: 'k', count: 7 }], id);
    assert.equal(await redis.hget(hash, 'k'), '7', 'the second call with the same flush id added nothing');
    assert.equal(await redis.exists(marker), 1, `marker ${marker} exists`);
    const ttl = await redis.pttl(marker);
    assert.ok(ttl > 0 && ttl <= 5000, `marker TTL ${ttl} ms, expected (0, 5000]`);

    // addFlush reports which call added.
    const id2 = flushId();
    assert.equal(await addFlush(redis, hash, sinkMarkerKey(hash, id2), 5000, ['k', 1]), true);
    assert.equal(await addFlush(redis, hash, sinkMarkerKey(hash, id2), 5000, ['k', 1]), false);
    assert.equal(await redis.hget(hash, 'k'), '8');

    // The default TTL is MARKER_TTL_MS (24 h).
    const id3 = flushId();
    await redisSink(redis, { hash }).onFlushBatch([{ key: 'k', count: 1 }], id3);
    const ttl3 = await redis.pttl(sinkMarkerKey(hash, id3));
    assert.ok(ttl3 > MARKER_TTL_MS - 60_000 && ttl3 <= MARKER_TTL_MS, `default marker TTL ${ttl3} ms, expected about ${MARKER_TTL_MS}`);

    // Once the marker has expired, the flush id is forgotten: it would add again.
    await redis.pexpire(marker, 1);
    await delay(20);
    assert.equal(await redis.exists(marker), 0);
    await onFlushBatch([{ key: 'k', count: 7 }], id);
    assert.equal(await redis.hget(hash, 'k'), String(8 + 1 + 7));
  });

  test('a simulated lost reply (the same call sent twice) adds once, and a buffer retry of an applied flush adds nothing', async () => {
    const hash = hashName('lost-reply');
    const sink = redisSink(redis, { hash });
    const id = flushId();
    const entries = [
      { key: 'x', count: 3 },
      { key: 'y', count: -2 },
    ];
    // The first call applied but its reply never arrived; the caller sends it again.
    await Promise.all([sink.onFlushBatch(entries, id), sink.onFlushBatch(entries, id)]);
    await sink.onFlushBatch(entries, id);
    assert.deepEqual(await redis.hgetall(hash), { x: '3', y: '-2' });

    // End to end: every first call reaches Redis, then "loses" its reply; the buffer retries with the same flush id.
    const seen = new Set<string>();
    let lost = 0;
    const buffer = engine.buffer({
      name: 'lost-reply',
      intervalMs: 100,
      backoffMs: 10,
      closeTimeoutMs: 60_000,
      onFlushBatch: async (batch, fid) => {
        await sink.onFlushBatch(batch, fid);
        if (!seen.has(fid)) {
          seen.add(fid);
          lost++;
          throw new Error('connection reset (reply lost)');
        }
      },
    });
    const expected = new Map<string, number>([
      ['x', 3],
      ['y', -2],
    ]);
    for (let i = 0; i < 200; i++) {
      const key = `k${i % 20}`;
      const n = someCount();
      buffer.increment(key, n);
      expected.set(key, (expected.get(key) ?? 0) + n);
      if (i % 20 === 19) {
        clock.advance(60);
        await quiesceRetrying(buffer, 10);
      }
    }
    const err = await closeDriving(buffer, 10);
    assert.equal(err, undefined);
    assert.ok(lost >= 3, `only ${lost} lost replies`);
    const stats = buffer.stats();
    assert.equal(stats.failures, lost);
    assert.equal(stats.handlerCalls, 2 * lost, 'each flush was called twice: once lost, once deduplicated');
    assertTotals(await totals(redis, hash), expected, 'after lost replies');
  });

  test('a call Redis refused half-way (HINCRBY on a field that is not an integer) is not reported as added when retried', async () => {
    const hash = hashName('partial');
    await redis.hset(hash, 'bad', 'not a number');
    const { onFlushBatch } = redisSink(redis, { hash });
    const id = flushId();
    const entries = [
      { key: 'before', count: 1 },
      { key: 'bad', count: 1 },
      { key: 'after', count: 1 },
    ];
    await assert.rejects(async () => onFlushBatch(entries, id), /TW_SINK_REFUSED field bad .* holds no integer/, 'the first call fails');
    // All or nothing: the refused call wrote neither the fields before the bad one nor its marker.
    assert.equal(await redis.hget(hash, 'before'), null);
    assert.equal(await redis.exists(sinkMarkerKey(hash, id)), 0);
    // The buffer retries a failed call with the same flush id: that retry must not succeed without adding 'after'.
    let retry: string;
    try {
      await onFlushBatch(entries, id);
      retry = 'resolved';
    } catch (err) {
      retry = `rejected (${(err as Error).message})`;
    }
    const after = await redis.hget(hash, 'after');
    assert.ok(
      retry !== 'resolved' || after === '1',
      `the retry ${retry} (reported the flush as added) but 'after' holds ${after} and 'bad' ${await redis.hget(hash, 'bad')}: its count is lost`,
    );
  });

  test('a hash name with a {tag} keeps the marker in the tag: the same cluster slot as the hash', async () => {
    // The checksum is Redis's: known CLUSTER KEYSLOT values.
    assert.equal(crc16(Buffer.from('123456789')), 0x31c3);
    assert.equal(keySlot('foo'), 12182);
    assert.equal(keySlot('{user1000}.following'), keySlot('{user1000}.followers'));
    for (const hash of [hashName('plain'), `stats:{${hashName('tag')}}:daily`, `{${hashName('lead')}}`, 'a{b}{c}']) {
      const id = flushId();
      await redisSink(redis, { hash }).onFlushBatch([{ key: 'k', count: 1 }], id);
      const found = await scanAll(`*:tw-flush:${id}`);
      assert.equal(found.length, 1, `${hash}: one marker for flush id ${id}, found ${JSON.stringify(found)}`);
      assert.equal(found[0], sinkMarkerKey(hash, id));
      assert.equal(keySlot(found[0]!), keySlot(hash), `${hash}: marker ${found[0]} is in slot ${keySlot(found[0]!)}, the hash in ${keySlot(hash)}`);
      if (hash.includes('{') && hashedPart(hash) !== hash) assert.ok(found[0]!.startsWith(`{${hashedPart(hash)}}:`), `${hash}: marker ${found[0]} does not start with the tag`);
      assert.equal(await redis.hget(hash, 'k'), '1');
    }
  });

  test('a hash name whose braces are no tag (views}daily, {}views, x{}y{z}, a{b) is refused up front', () => {
    // Redis hashes these whole (no non-empty {…} tag), and no marker name with a tag can share that slot: a
    // marker in another slot would make every flush a CROSSSLOT error on a cluster. So redisSink refuses them.
    for (const hash of ['views}daily', '{}views', 'x{}y{z}', 'end}', 'a{b']) {
      assert.throws(
        () => redisSink(redis, { hash }),
        (err: TallyworksRangeError) => err instanceof TallyworksRangeError && err.code === ErrorCode.INVALID_ARGUMENT && /options\.hash.*hash tag/.test(err.message),
        hash,
      );
    }
    // Names with a tag, or without braces, keep their marker in the hash's slot.
    for (const hash of ['views:daily', 'stats:{views}:daily', 'x{y}{z}']) {
      const marker = sinkMarkerKey(hash, flushId());
      assert.equal(keySlot(marker), keySlot(hash), `${hash} → ${marker}`);
    }
  });

  test('counts up to ±(2^53 − 1) are added exactly, and totals past 2^53 stay exact in Redis', async () => {
    const hash = hashName('exact');
    const { onFlushBatch } = redisSink(redis, { hash });
    const values = [MAX, -MAX, 1e15, -1e15, 2 ** 50, 1e14, 2 ** 32, -(2 ** 31) - 1, 2 ** 31, 123_456_789_012_345, -1, 1, 999_999_999_999_999, 2 ** 53 - 2];
    await onFlushBatch(
      values.map((count, i) => ({ key: `v${i}`, count })),
      flushId(),
    );
    for (let i = 0; i < values.length; i++) assert.equal(await redis.hget(hash, `v${i}`), BigInt(values[i]!).toString(), `v${i} = ${values[i]}`);
    // Several flushes of one field: the total goes past 2^53 and back, exactly.
    await onFlushBatch([{ key: 'sum', count: MAX }], flushId());
    await onFlushBatch([{ key: 'sum', count: MAX }], flushId());
    await onFlushBatch([{ key: 'sum', count: 3 }], flushId());
    assert.equal(await redis.hget(hash, 'sum'), (2n * BigInt(MAX) + 3n).toString());
    await onFlushBatch([{ key: 'sum', count: -MAX }], flushId());
    await onFlushBatch([{ key: 'sum', count: -MAX }], flushId());
    assert.equal(await redis.hget(hash, 'sum'), '3');

    // Through a buffer: a count that would leave the safe range is delivered as two exact counts.
    const buffer = engine.buffer({ name: 'exact', intervalMs: 100, ...redisSink(redis, { hash }) });
    buffer.increment('big', MAX);
    buffer.increment('big', MAX);
    buffer.increment('big', 5);
    buffer.increment('neg', -MAX);
    buffer.increment('neg', -MAX);
    buffer.increment('neg', -7);
    await quiesce(buffer);
    clock.advance(100);
    await quiesce(buffer);
    assert.equal(await closeDriving(buffer, 10), undefined);
    assert.equal(await redis.hget(hash, 'big'), (2n * BigInt(MAX) + 5n).toString());
    assert.equal(await redis.hget(hash, 'neg'), (-2n * BigInt(MAX) - 7n).toString());
  });
});

/** Like quiesce, but moves the clock while deliveries wait for a retry (retries are on clock time). */
async function quiesceRetrying(buffer: StatBuffer, stepMs: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (buffer.stats().deliveries > 0) {
    if (Date.now() > deadline) assert.fail(`deliveries still pending after ${timeoutMs} ms: ${JSON.stringify(buffer.stats())}`);
    await delay(1);
    clock.advance(stepMs);
  }
  await turn();
}

async function scanAll(pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}

describe('a buffer flushing to Redis', () => {
  test('end to end on a TestClock: onFlushBatch via redisSink delivers every count exactly, each flush once', async () => {
    const hash = hashName('e2e');
    const buffer = engine.buffer({
      name: 'e2e',
      intervalMs: 1000,
      jitterMs: 300,
      timeoutMs: 10_000,
      backoffMs: 50,
      maxBatch: 100,
      closeTimeoutMs: 60_000,
      ...redisSink(redis, { hash }),
    });
    const keys = 500;
    const expected = new Map<string, number>();
    for (let step = 0; step < 300; step++) {
      for (let i = 0; i < 100; i++) {
        const key = `key-${Math.floor(rng() * keys)}`;
        const n = someCount();
        buffer.increment(key, n);
        expected.set(key, (expected.get(key) ?? 0) + n);
      }
      clock.advance(20);
      await quiesce(buffer);
      if (step % 50 === 49) {
        // Mid-run: Redis + what the buffer holds = incremented.
        const now = await totals(redis, hash);
        for (const [key, e] of expected) assert.equal(Number(now.get(key) ?? 0n) + (buffer.count(key) ?? 0), e, `${key} at step ${step}`);
      }
    }
    assert.equal(await closeDriving(buffer, 20), undefined);
    const stats = buffer.stats();
    assertTotals(await totals(redis, hash), expected, 'e2e');
    assert.equal(stats.failures, 0);
    assert.equal(stats.keys, 0);
    assert.equal(stats.deadLettered, 0);
    assert.ok(stats.delivered >= 3 * keys, `keys flushed many times: ${stats.delivered} entries delivered`);
    const found = await markers(redis, hash);
    assert.equal(found.length, stats.handlerCalls, 'one marker per handler call: every call was a new flush, none retried');
    for (const m of found.slice(0, 20)) {
      const ttl = await redis.pttl(m);
      assert.ok(ttl > 0 && ttl <= MARKER_TTL_MS, `${m}: TTL ${ttl}`);
    }
  });

  test('Redis outage: increments keep working while Redis is down, and after a restart (AOF) the buffer retries until the totals are exact', async (t) => {
    const own = await startRedisServer({ appendOnly: true });
    servers.push(own);
    const r = client(own);
    await ready(r);
    const hash = hashName('outage');
    const deadLetters: DeadLetter[] = [];
    const sink = redisSink(r, { hash });
    const confirmedIds = new Set<string>();
    const confirmed = new Map<string, number>();
    const buffer = engine.buffer({
      name: 'outage',
      intervalMs: 500,
      jitterMs: 100,
      // A command that hangs (sent as the server died) times out on clock time and is retried.
      timeoutMs: 1000,
      backoffMs: 50,
      maxBackoffMs: 400,
      maxBatch: 50,
      closeTimeoutMs: 600_000,
      // The sink, watched: `confirmed` is what the buffer was told was added (once per flush id).
      onFlushBatch: async (entries, id) => {
        await sink.onFlushBatch(entries, id);
        if (confirmedIds.has(id)) return;
        confirmedIds.add(id);
        for (const e of entries) confirmed.set(e.key, (confirmed.get(e.key) ?? 0) + e.count);
      },
      onDeadLetter: (entries) => {
        deadLetters.push(...entries);
      },
    });
    const keys = 300;
    const expected = new Map<string, number>();
    const incrementSome = (count: number): void => {
      for (let i = 0; i < count; i++) {
        const key = `key-${Math.floor(rng() * keys)}`;
        const n = someCount();
        buffer.increment(key, n);
        expected.set(key, (expected.get(key) ?? 0) + n);
      }
    };

    // Up: flushes land.
    for (let step = 0; step < 60; step++) {
      incrementSome(50);
      clock.advance(20);
      await quiesce(buffer);
    }
    assertTotals(await totals(r, hash), confirmed, 'before the outage');
    const failuresBefore = buffer.stats().failures;

    // Down: a flush is in flight as the server dies (the clock moved just before the kill).
    incrementSome(50);
    clock.advance(600);
    await own.kill('SIGKILL');
    for (let step = 0; step < 80; step++) {
      incrementSome(50);
      clock.advance(20);
      await delay(2);
    }
    assert.ok(buffer.stats().failures > failuresBefore, `no flush failed while Redis was down: ${JSON.stringify(buffer.stats())}`);
    // Nothing is lost while down: what the buffer holds (in flight included) = incremented − confirmed.
    for (const [key, e] of expected) {
      assert.equal(buffer.count(key) ?? 0, e - (confirmed.get(key) ?? 0), `${key} while Redis is down`);
    }

    // Back (the AOF reloads what was acknowledged); the client reconnects on its own.
    await own.restart();
    await ready(r);
    for (let step = 0; step < 40; step++) {
      incrementSome(50);
      clock.advance(20);
      await delay(2);
    }
    assert.equal(await closeDriving(buffer, 50), undefined);
    assert.deepEqual(deadLetters, []);
    const stats = buffer.stats();
    t.diagnostic(`stats ${JSON.stringify(stats)}, flushes ${confirmedIds.size}`);
    assert.equal(stats.deliveries, 0);
    assert.equal(stats.keys, 0);
    assertTotals(await totals(r, hash), expected, 'after the outage');
    assertTotals(await totals(r, hash), confirmed, 'what the buffer was told was added');
  });

  test('a hung Redis (CLIENT PAUSE): the buffer timeoutMs turns each hung command into a retry, and the late replies add nothing twice', async (t) => {
    const hash = hashName('hung');
    const reader = client(server);
    await ready(reader);
    const deadLetters: DeadLetter[] = [];
    const buffer = engine.buffer({
      name: 'hung',
      intervalMs: 500,
      timeoutMs: 200,
      backoffMs: 40,
      maxBackoffMs: 100,
      maxBatch: 20,
      closeTimeoutMs: 600_000,
      ...redisSink(redis, { hash }),
      onDeadLetter: (entries) => {
        deadLetters.push(...entries);
      },
    });
    const expected = new Map<string, number>();
    for (let i = 0; i < 500; i++) {
      const key = `key-${i % 60}`;
      const n = someCount();
      buffer.increment(key, n);
      expected.set(key, (expected.get(key) ?? 0) + n);
    }
    // Writes (scripts included) wait for 1 s of real time; reads still answer.
    await redis.client('PAUSE', 1000, 'WRITE');
    clock.advance(500);
    for (let step = 0; step < 20; step++) {
      clock.advance(50);
      await delay(5);
    }
    const hung = buffer.stats();
    assert.ok(hung.timeouts >= 3, `the hung calls did not time out: ${JSON.stringify(hung)}`);
    assert.ok(hung.handlerCalls > 3, `no retry while Redis hung: ${JSON.stringify(hung)}`);
    // (Read on another connection: the sink's connection answers in order, after its hung calls.)
    assert.equal(await reader.exists(hash), 0, 'nothing was added while Redis hung');
    // The pause ends: every hung call (first attempts and retries) runs; each flush id adds once.
    await quiesce(buffer, 5000);
    await quiesceRetrying(buffer, 50);
    assert.equal(await closeDriving(buffer, 50), undefined);
    const stats = buffer.stats();
    t.diagnostic(`stats ${JSON.stringify(stats)}`);
    assert.deepEqual(deadLetters, []);
    assertTotals(await totals(redis, hash), expected, 'after Redis hung');
    const flushes = (await markers(redis, hash)).length;
    assert.ok(stats.handlerCalls > flushes, `${stats.handlerCalls} handler calls for ${flushes} flushes: some calls were duplicates the markers absorbed`);
  });

  test('a batch Redis refuses half-way (a field that is not an integer) loses none of its other counts', async () => {
    // The script sets the marker, then runs HINCRBY per entry; Redis does not roll a script back when a
    // command in it fails. The retry (same flush id) must not find the flush "already added" while the
    // entries after the failing one were never added.
    const hash = hashName('half-way');
    await redis.hset(hash, 'bad', 'not a number');
    const deadLetters: DeadLetter[] = [];
    const buffer = engine.buffer({
      name: 'half-way',
      intervalMs: 100,
      backoffMs: 10,
      maxAttempts: 3,
      closeTimeoutMs: 10_000,
      ...redisSink(redis, { hash }),
      onDeadLetter: (entries) => {
        deadLetters.push(...entries);
      },
    });
    buffer.increment('before', 1);
    buffer.increment('bad', 1);
    buffer.increment('after', 1);
    clock.advance(100);
    await quiesceRetrying(buffer, 10);
    assert.equal(await closeDriving(buffer, 10), undefined);
    // 'bad' cannot be added; whatever could not be added must reach onDeadLetter, never vanish.
    const inRedis = await redis.hgetall(hash);
    const accounted = (key: string): number => Number(key in inRedis && key !== 'bad' ? inRedis[key] : 0) + deadLetters.filter((l) => l.key === key).reduce((s, l) => s + l.count, 0);
    assert.deepEqual(
      { before: accounted('before'), bad: accounted('bad'), after: accounted('after') },
      { before: 1, bad: 1, after: 1 },
      `Redis ${JSON.stringify(inRedis)}, dead letters ${JSON.stringify(deadLetters.map((l) => [l.key, l.count]))}, stats ${JSON.stringify(buffer.stats())}`,
    );
  });
});

describe('argument checks', () => {
  test('redisSink, asyncSink and asyncBatchSink refuse bad arguments with TW_INVALID_ARGUMENT naming the argument', () => {
    for (const bad of [undefined, null, 'redis://127.0.0.1:1', {}, { hincrby: () => 0 }]) {
      assert.throws(() => redisSink(bad as never, { hash: 'h' }), isArgumentError('redis'), String(bad));
    }
    for (const bad of [undefined, null, 'h', 42]) {
      assert.throws(() => redisSink(redis, bad as never), isArgumentError('options'), String(bad));
    }
    for (const bad of [undefined, '', 42, null, ['h']]) {
      assert.throws(() => redisSink(redis, { hash: bad } as never), isArgumentError('options.hash'), String(bad));
    }
    for (const bad of [0, 999, 1000.5, -5000, Number.NaN, Infinity, '5000', null]) {
      assert.throws(() => redisSink(redis, { hash: 'h', dedupeTtlMs: bad } as never), isArgumentError('options.dedupeTtlMs'), String(bad));
    }
    assert.doesNotThrow(() => redisSink(redis, { hash: 'h', dedupeTtlMs: 1000 }));
    assert.doesNotThrow(() => redisSink(redis, { hash: 'h', dedupeTtlMs: undefined }));
    for (const bad of [undefined, null, 42, 'fn', {}]) {
      assert.throws(() => asyncSink(bad as never), isArgumentError('fn'), String(bad));
      assert.throws(() => asyncBatchSink(bad as never), isArgumentError('fn'), String(bad));
    }
    // A sink spread next to another handler is refused by the buffer's option check.
    assert.throws(
      () => engine.buffer({ name: 'both', ...redisSink(redis, { hash: 'h' }), onFlush: () => undefined }),
      (err: unknown) => err instanceof TallyworksError && err.code === ErrorCode.INVALID_ARGUMENT && /options\.onFlush/.test((err as Error).message),
    );
  });

  test('redisSink bad arguments follow the error convention: the wrong type is a TypeError, a value breaking its rule a RangeError', () => {
    // common/errors.ts: "Bad input is a TypeError (wrong type or shape) or a RangeError (right type, value outside the rule)".
    const wrong: string[] = [];
    const check = (what: string, fn: () => unknown, kind: typeof TypeError | typeof RangeError): void => {
      try {
        fn();
        wrong.push(`${what}: did not throw`);
      } catch (err) {
        if (!(err instanceof kind)) wrong.push(`${what}: ${(err as Error).name}, expected a ${kind.name}`);
      }
    };
    check('hash 42', () => redisSink(redis, { hash: 42 } as never), TypeError);
    check("hash ''", () => redisSink(redis, { hash: '' }), RangeError);
    check('dedupeTtlMs 999', () => redisSink(redis, { hash: 'h', dedupeTtlMs: 999 }), RangeError);
    check("dedupeTtlMs '5000'", () => redisSink(redis, { hash: 'h', dedupeTtlMs: '5000' } as never), TypeError);
    assert.deepEqual(wrong, []);
  });
});
