/**
 * Strict and lax Redis counters under faults, and the Redis layout they rely on (common/redis.ts), through the public API on private redis-servers:
 *  - the apply script is pinned and cluster-ready (declared keys, one slot per call, spread prefixes);
 *  - strict ops fail fast while Redis is down (and within the command timeout while it hangs), and a call
 *    whose reply was lost is never counted twice and never reported "not applied" when it applied;
 *  - lax deltas are delivered exactly once across lost replies and real SIGKILLs, close() reports what it
 *    could not deliver, the pending-key cap refuses only new keys, and lax reads and ops never wait on a
 *    hung Redis longer than a few command timeouts;
 *  - option checks, the version check, and a user's own ioredis instance is left alone.
 *
 * Every server runs with AOF (`appendfsync always`), so what Redis acknowledged survives a SIGKILL.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createConnection, createServer } from 'node:net';
import { after, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { APPLY, ApplyStatus, INC, MARKER_TTL_MS, runInc } from '../../../common/scripts.js';
import {
  checkVersion,
  markerKey,
  MIN_REDIS_VERSION as MIN_VERSION_INTERNAL,
  PARTITIONS,
  partitionKey,
  partitionOf,
} from '../../../common/redis.js';
import { internals } from '../../../src/engine.js';
import {
  always,
  createEngine,
  type Engine,
  type EngineOptions,
  ErrorCode,
  type FlusherStats,
  gt,
  lt,
  MIN_REDIS_VERSION,
  TallyworksError,
  UndeliveredError,
} from '../../../src/index.js';
import { crc16, hashedPart, keySlot } from '../../helpers/key-slot.js';
import { type RedisServer, startRedisServer } from '../../../bench/redis-server.js';
import { sliceInRedis } from '../../helpers/ia-scenarios.js';

const UNAVAILABLE = ErrorCode.REDIS_UNAVAILABLE;
const UNKNOWN = ErrorCode.REDIS_OUTCOME_UNKNOWN;

// ---------------------------------------------------------------------------------------------------
// Harness: servers, inspection clients and engines are all released after the file, whatever happened.

const servers: RedisServer[] = [];
const inspectors: Redis[] = [];
const engines: Engine[] = [];

after(async () => {
  await Promise.allSettled(engines.map((e) => e.close()));
  for (const r of inspectors) {
    if (r.status === 'ready') await r.quit().catch(() => r.disconnect());
    else r.disconnect();
  }
  await Promise.allSettled(servers.map((s) => s.stop()));
});

async function redisServer(): Promise<RedisServer> {
  const server = await startRedisServer({ appendOnly: true });
  servers.push(server);
  return server;
}

/** A plain ioredis client to look into Redis; while the server is down its commands wait for it. */
function inspector(server: RedisServer): Redis {
  const r = new Redis(server.url, { maxRetriesPerRequest: null, retryStrategy: () => 20 });
  r.on('error', () => undefined);
  inspectors.push(r);
  return r;
}

const defaults: EngineOptions = {
  shards: 1,
  flushIntervalMs: 20,
  allowedLagMs: 20,
  redisCommandTimeoutMs: 1000,
  maxPendingKeys: 1_000_000,
  closeTimeoutMs: 10_000,
};

async function engineOn(server: RedisServer, prefix: string, options: EngineOptions = {}): Promise<Engine> {
  const engine = await createEngine({ ...defaults, redis: server.url, prefix, ...options });
  engines.push(engine);
  return engine;
}

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as { code?: string }).code : undefined;
}

type Outcome<T> = { ok: true; value: T; ms: number } | { ok: false; err: unknown; code: string | undefined; ms: number };

/** Runs `fn` and records how it settled and how long it took. */
async function outcome<T>(fn: () => Promise<T>): Promise<Outcome<T>> {
  const t0 = performance.now();
  try {
    const value = await fn();
    return { ok: true, value, ms: performance.now() - t0 };
  } catch (err) {
    return { ok: false, err, code: codeOf(err), ms: performance.now() - t0 };
  }
}

function describeOutcome(o: Outcome<unknown>): string {
  return o.ok ? `resolved ${JSON.stringify(o.value)} after ${o.ms.toFixed(0)} ms` : `rejected ${o.code ?? ''} (${String((o.err as Error)?.message ?? o.err)}) after ${o.ms.toFixed(0)} ms`;
}

/** Polls `probe` until it returns true; fails naming `what` after `timeoutMs`. */
async function waitFor(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(10);
  }
}

/** Until the engine's strict connection has seen the outage (a read fails, as reads must). */
async function strictSeesOutage(engine: Engine): Promise<void> {
  await waitFor('strict reads to fail once Redis is gone', async () => {
    const o = await outcome(() => engine.strict.get('outage-probe'));
    if (o.ok) return false;
    assert.equal(o.code, UNAVAILABLE, `a strict read against a dead server: ${describeOutcome(o)}`);
    return true;
  });
}

async function strictSeesRedis(engine: Engine): Promise<void> {
  await waitFor('strict reads to succeed again', async () => (await outcome(() => engine.strict.get('outage-probe'))).ok);
}

/**
 * Until the flusher's connection has seen the outage: a lax `set` (which needs Redis) is refused at once
 * only when the flusher knows Redis is unreachable. The probe writes 0, so it changes nothing that counts.
 */
async function flusherSeesOutage(engine: Engine): Promise<void> {
  await waitFor('the flusher to see the outage', async () => {
    const o = await outcome(() => engine.lax.set('outage-probe', 0));
    return !o.ok && o.code === UNAVAILABLE;
  });
}

/** Flushes until no lax delta is pending and no call is unresolved; returns the flusher's figures. */
async function flushUntilIdle(engine: Engine, timeoutMs = 8000): Promise<FlusherStats> {
  let last: FlusherStats | undefined;
  await waitFor(
    'every lax delta to be delivered',
    async () => {
      await engine.lax.flush();
      last = (await engine.stats()).flusher!;
      return last.pendingKeys === 0 && last.unresolved === 0;
    },
    timeoutMs,
  );
  return last!;
}

/** A counter's value in Redis (0 when missing), read from its partition hash. */
async function stored(r: Redis, prefix: string, kind: 's' | 'l', key: string): Promise<number> {
  const v = await r.hget(partitionKey(prefix, kind, partitionOf(key)), key);
  return v === null ? 0 : Number(v);
}

async function storedMany(r: Redis, prefix: string, kind: 's' | 'l', keys: readonly string[]): Promise<Map<string, number>> {
  const pipe = r.pipeline();
  for (const k of keys) pipe.hget(partitionKey(prefix, kind, partitionOf(k)), k);
  const replies = (await pipe.exec()) ?? [];
  return new Map(keys.map((k, i) => [k, replies[i]?.[1] == null ? 0 : Number(replies[i]![1])]));
}

/** Keys whose Redis value differs from `expected`, for an assertion message. */
function mismatches(expected: ReadonlyMap<string, number>, actual: ReadonlyMap<string, number>): string[] {
  const out: string[] = [];
  for (const [k, v] of expected) if (actual.get(k) !== v) out.push(`${k}: expected ${v}, Redis holds ${actual.get(k)}`);
  return out;
}

async function allKeys(r: Redis): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await r.scan(cursor, 'COUNT', 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys.sort();
}

/** Ref'd resources of this process by type (what would keep node, and so the test runner, from exiting). */
function resources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) {
    if (type === 'FSReqCallback' || type === 'CloseReq') continue;
    counts.set(type, (counts.get(type) ?? 0) + 1);
  }
  return counts;
}

/** Waits until no more resources are alive than in `baseline`; fails listing the extra ones. */
async function assertNothingLeft(baseline: Map<string, number>, what: string): Promise<void> {
  let extra: string[] = [];
  try {
    await waitFor(
      `${what} to release everything`,
      () => {
        extra = [...resources()].filter(([type, n]) => n > (baseline.get(type) ?? 0)).map(([type, n]) => `${type} ×${n - (baseline.get(type) ?? 0)}`);
        return extra.length === 0;
      },
      3000,
    );
  } catch {
    assert.fail(`${what} left resources that keep the process alive: ${extra.join(', ')}`);
  }
}

/** Settles like {@link outcome}, or undefined when `fn` is still pending after `ms`. */
async function within<T>(ms: number, fn: () => Promise<T>): Promise<Outcome<T> | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([outcome(fn), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The redis-server's process id (to SIGSTOP it: a hung server, connections open). */
async function serverPid(r: Redis): Promise<number> {
  const pid = Number(/process_id:(\d+)/.exec(await r.info('server'))?.[1]);
  assert.ok(pid > 0);
  return pid;
}

/** A loopback port where nothing listens (bound, then released). */
function deadPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      s.close(() => resolve(port));
    });
  });
}


const sumOf = (xs: Iterable<number>): number => {
  let s = 0;
  for (const x of xs) s += x;
  return s;
};

// ---------------------------------------------------------------------------------------------------

describe('the apply script and the Redis layout', () => {
  test('a real server has the scripts of the pinned SHAs (test/common/scripts.test.ts) cached: inc.lua for a plain inc, apply.lua otherwise', async () => {
    assert.equal(createHash('sha1').update(APPLY.lua).digest('hex'), APPLY.sha);
    assert.equal(createHash('sha1').update(INC.lua).digest('hex'), INC.sha);

    const server = await redisServer();
    const r = inspector(server);
    assert.deepEqual(await r.script('EXISTS', APPLY.sha, INC.sha), [0, 0], 'a fresh server has no script cached');
    const engine = await engineOn(server, 'sha');
    assert.equal(await engine.strict.inc('a', 3), 3);
    assert.deepEqual(await r.script('EXISTS', APPLY.sha, INC.sha), [0, 1], 'an unconditional inc ran the lean script (EVALSHA, loaded by EVAL on NOSCRIPT)');
    assert.deepEqual(await engine.strict.incIf('a', lt(10), 1), [4, 3]);
    assert.deepEqual(await r.script('EXISTS', APPLY.sha, INC.sha), [1, 1], 'a conditional op ran the apply script');
    await engine.close();
  });

  test('inc.lua: new values; a refused increment names the value it found; the same seq again answers from the marker; an older one is stale', async () => {
    const server = await redisServer();
    const r = inspector(server);
    const MAX = Number.MAX_SAFE_INTEGER;
    await r.hset('{t}p', 'big', String(MAX - 1), 'text', 'abc');
    // One call: an add, one past 2^53 − 1 (undone), one on a field that holds no integer, the first key again.
    const ops = ['a', 3, 'big', 5, 'text', 1, 'a', -1];
    const first = await runInc(r, '{t}p', '{t}m', 1, ops);
    assert.deepEqual(first, { status: ApplyStatus.APPLIED, results: [3, 0, false, MAX - 1, false, 0, 2, 3] });
    const state = { a: '2', big: String(MAX - 1), text: 'abc' };
    assert.deepEqual(await r.hgetall('{t}p'), state);
    assert.deepEqual(await runInc(r, '{t}p', '{t}m', 1, ops), { status: ApplyStatus.REPLAYED, results: first.results }, 'the results as the marker kept them');
    assert.deepEqual(await r.hgetall('{t}p'), state, 'nothing applied twice');
    assert.equal((await runInc(r, '{t}p', '{t}m', 2, ['a', 10])).status, ApplyStatus.APPLIED);
    assert.deepEqual(await runInc(r, '{t}p', '{t}m', 1, ops), { status: ApplyStatus.STALE, results: [] });
    assert.equal(await r.hget('{t}p', 'a'), '12');
  });

  for (const script of [APPLY, INC]) {
    test(`${script.file} declares every key it touches: no key name is built in Lua, only KEYS[1] and KEYS[2] are used`, () => {
      const calls = [...script.lua.matchAll(/redis\.p?call\(\s*'([A-Za-z]+)'\s*,\s*([^,)]*)/g)];
      assert.ok(calls.length > 0);
      assert.equal(calls.length, (script.lua.match(/redis\.p?call\b/g) ?? []).length, 'every redis.call has a literal command name and a key argument');
      for (const [text, command, keyArg] of calls) {
        const arg = keyArg!.trim();
        assert.ok(['h', 'KEYS[1]', 'KEYS[2]'].includes(arg), `${command} touches ${arg}, not a declared key: ${text}`);
        assert.ok(!arg.includes('..'), `${text}: a key name built by concatenation`);
      }
      // `h` is KEYS[1] and nothing else.
      assert.deepEqual(script.lua.match(/\bh\s*=[^=].*/g), ['h = KEYS[1]']);
      const indexes = new Set([...script.lua.matchAll(/KEYS\[(\w+)\]/g)].map((m) => m[1]));
      assert.deepEqual([...indexes].sort(), ['1', '2']);
    });
  }

  test('every key is hash-tagged, a partition and its markers share a slot, prefixes spread over slots and never share keys', async () => {
    // Known CLUSTER KEYSLOT values: the checksum below is Redis's.
    assert.equal(crc16(Buffer.from('123456789')), 0x31c3);
    assert.equal(keySlot('foo'), 12182);
    assert.equal(keySlot('{user1000}.following'), keySlot('{user1000}.followers'));

    const server = await redisServer();
    const r = inspector(server);
    const prefixes = ['lay', 'lay2'];
    const keys = Array.from({ length: 200 }, (_, i) => `key${i}`);
    const byPrefix = new Map<string, Engine>();
    for (const prefix of prefixes) {
      const engine = await engineOn(server, prefix);
      byPrefix.set(prefix, engine);
      await engine.strict.incAll(keys.map((k) => [k, prefix === 'lay' ? 1 : 10] as const));
      for (const k of keys) engine.lax.add(k, prefix === 'lay' ? 2 : 20);
      await flushUntilIdle(engine);
    }

    const all = await allKeys(r);
    // Partition hashes and markers; and each instance-aware partition's registry (every engine heartbeats).
    const shape = /^\{([^{}:]+):(s|l|is|il):(\d+)\}(?::m:([0-9a-f]{16})|:(r))?$/;
    const partitionsSeen = new Map<string, Set<string>>(); // prefix:kind → partition keys
    const instances = new Map<string, Set<string>>(); // prefix → instance ids in markers
    let markers = 0;
    for (const key of all) {
      assert.ok(hashedPart(key) !== key, `${key} has no hash tag: it would land on an arbitrary cluster slot`);
      const m = shape.exec(key);
      assert.ok(m, `${key} is not a partition hash or a marker of this layout`);
      const [, prefix, kind, p, instance, registry] = m;
      assert.ok(prefixes.includes(prefix!), `${key}: unknown prefix`);
      assert.ok(Number(p) >= 0 && Number(p) < PARTITIONS, `${key}: partition out of range`);
      const partition = partitionKey(prefix!, kind!, Number(p));
      assert.equal(key.slice(0, partition.length), partition);
      if (registry !== undefined) {
        assert.ok(kind === 'is' || kind === 'il', `${key}: a registry of a kind that has none`);
        assert.equal(keySlot(key), keySlot(partition), `registry ${key} is not in its partition's slot`);
        assert.equal(await r.type(key), 'zset');
        assert.deepEqual(await r.zrange(key, '0', '-1'), [`${byPrefix.get(prefix!)!.instanceId}#0`], `${key} holds its engine`);
      } else if (instance !== undefined) {
        markers++;
        assert.equal(key, markerKey(partition, instance));
        assert.equal(keySlot(key), keySlot(partition), `marker ${key} is not in its partition's slot`);
        const ttl = await r.pttl(key);
        assert.ok(ttl > 0 && ttl <= MARKER_TTL_MS, `marker ${key} must expire (PTTL ${ttl})`);
        instances.set(prefix!, (instances.get(prefix!) ?? new Set()).add(instance));
      } else {
        assert.equal(await r.type(key), 'hash');
        assert.equal(await r.pttl(key), -1, `${key}: counter data must not expire`);
        const set = partitionsSeen.get(`${prefix}:${kind}`) ?? new Set<string>();
        partitionsSeen.set(`${prefix}:${kind}`, set.add(key));
        // Every field is a counter of this partition, with this prefix's value (no cross-talk).
        const fields = await r.hgetall(key);
        for (const [field, value] of Object.entries(fields)) {
          assert.equal(partitionOf(field), Number(p), `${field} stored in partition ${p}, belongs to ${partitionOf(field)}`);
          const expected = (kind === 's' ? 1 : 2) * (prefix === 'lay' ? 1 : 10);
          assert.equal(Number(value), expected, `${key} ${field}`);
        }
      }
    }
    // Both kinds of both prefixes wrote all 16 partitions, spread over the cluster's slots.
    for (const prefix of prefixes) {
      for (const kind of ['s', 'l']) {
        const seen = partitionsSeen.get(`${prefix}:${kind}`);
        assert.equal(seen?.size, PARTITIONS, `${prefix}:${kind} partitions`);
        const slots = new Set([...seen!].map(keySlot));
        assert.ok(slots.size >= 8, `${prefix}:${kind}: ${PARTITIONS} partitions land on only ${slots.size} slots`);
      }
      assert.equal(instances.get(prefix)?.size, 1, `${prefix}: one instance wrote markers`);
    }
    assert.equal(markers, prefixes.length * 2 * PARTITIONS, 'one marker per instance, kind and partition written');
    // Prefixes and kinds never share a partition key.
    const everyPartition = prefixes.flatMap((prefix) => ['s', 'l'].flatMap((kind) => Array.from({ length: PARTITIONS }, (_, p) => partitionKey(prefix, kind, p))));
    assert.equal(new Set(everyPartition).size, everyPartition.length);
    const registries = prefixes.length * 2 * PARTITIONS; // one per instance-aware partition ("is", "il") and prefix
    assert.equal(all.length, everyPartition.length + markers + registries, 'nothing but partition hashes, markers and registries in Redis');

    // The engines read their own prefix only.
    assert.equal(await byPrefix.get('lay')!.strict.get('key7'), 1);
    assert.equal(await byPrefix.get('lay2')!.strict.get('key7'), 10);

    // Markers are hygiene: a clean close deletes its instance's markers.
    for (const engine of byPrefix.values()) await engine.close();
    const left = (await allKeys(r)).filter((k) => k.includes(':m:'));
    assert.deepEqual(left, [], 'markers of cleanly closed engines');
  });
});

describe('strict counters during outages', () => {
  test('with Redis down, strict ops fail fast with TW_REDIS_UNAVAILABLE and are not applied; lax adds and reads keep working', { timeout: 20_000 }, async () => {
    const server = await redisServer();
    const r = inspector(server);
    const engine = await engineOn(server, 'ff', { redisCommandTimeoutMs: 1000 });
    assert.equal(await engine.strict.inc('a', 10), 10);
    engine.lax.add('l', 4);
    await flushUntilIdle(engine);
    assert.equal(await stored(r, 'ff', 's', 'a'), 10);

    await server.kill();
    await strictSeesOutage(engine);

    const bound = 1500; // redisCommandTimeoutMs 1000 plus slack: a bound on behaviour, not a benchmark
    const writes = {
      inc: await outcome(() => engine.strict.inc('a', 5)),
      dec: await outcome(() => engine.strict.dec('a', 5)),
      set: await outcome(() => engine.strict.set('a', 99)),
      del: await outcome(() => engine.strict.del('a')),
      incIf: await outcome(() => engine.strict.incIf('a', always, 5)),
      incAll: await outcome(() => engine.strict.incAll([['a', 1], ['b', 1]])),
      get: await outcome(() => engine.strict.get('a')),
      getAll: await outcome(() => engine.strict.getAll(['a', 'b'])),
    };
    for (const [name, o] of Object.entries(writes)) {
      assert.ok(!o.ok && o.code === UNAVAILABLE, `strict.${name} with Redis down: ${describeOutcome(o)}`);
      assert.ok(o.ms < bound, `strict.${name} took ${o.ms.toFixed(0)} ms to fail (bound ${bound} ms)`);
      assert.ok(o.err instanceof TallyworksError);
    }

    // Lax: increments are accepted and reads answer the local estimate.
    const laxKeys = Array.from({ length: 50 }, (_, i) => `lk${i}`);
    for (let round = 0; round < 3; round++) {
      engine.lax.add('l', 3);
      for (const k of laxKeys) engine.lax.add(k, 2);
    }
    const laxRead = await outcome(() => engine.lax.get('l'));
    assert.ok(laxRead.ok && laxRead.value === 4 + 9, `lax.get during the outage: ${describeOutcome(laxRead)} (local estimate 13)`);
    assert.ok(laxRead.ms < bound, `lax.get took ${laxRead.ms.toFixed(0)} ms during the outage`);
    const laxAll = await engine.lax.getAll(laxKeys.slice(0, 3));
    assert.deepEqual(laxAll, laxKeys.slice(0, 3).map((k) => [k, 6]));

    await server.restart();
    await strictSeesRedis(engine);
    assert.equal(await stored(r, 'ff', 's', 'a'), 10, 'no failed strict op reached Redis');
    assert.equal(await stored(r, 'ff', 's', 'b'), 0);
    assert.equal(await engine.strict.inc('a', 1), 11);
    await flushUntilIdle(engine);
    assert.equal(await stored(r, 'ff', 'l', 'l'), 13);
    const laxStored = await storedMany(r, 'ff', 'l', laxKeys);
    assert.deepEqual(mismatches(new Map(laxKeys.map((k) => [k, 6])), laxStored), []);
    await engine.close();
  });

  test('a hung (stopped) Redis: strict reads fail within the command timeout, a write is reported unknown (never "not applied") and is not doubled', { timeout: 20_000 }, async () => {
    const server = await redisServer();
    const r = inspector(server);
    const timeout = 500;
    const engine = await engineOn(server, 'hung', { redisCommandTimeoutMs: timeout });
    assert.equal(await engine.strict.inc('h', 10), 10);
    engine.lax.add('hl', 5);
    await flushUntilIdle(engine);
    const pid = await serverPid(r);

    let read: Outcome<number>;
    let write: Outcome<number>;
    process.kill(pid, 'SIGSTOP');
    try {
      read = await outcome(() => engine.strict.get('h'));
      write = await outcome(() => engine.strict.inc('h', 1));
      engine.lax.add('hl', 3); // its flush calls time out and are re-sent while Redis hangs
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    assert.ok(!read.ok && read.code === UNAVAILABLE, `strict.get on a hung server: ${describeOutcome(read)}`);
    assert.ok(read.ms < timeout + 700, `strict.get took ${read.ms.toFixed(0)} ms (command timeout ${timeout} ms)`);
    // The inc is in Redis's socket buffer: it applies once Redis resumes, so it must not be "not applied".
    assert.ok(!write.ok && write.code === UNKNOWN, `strict.inc on a hung server: ${describeOutcome(write)}`);
    // A lost reply is settled from the marker, whose reads are retried for the outcome window (the longer
    // of 5 s and 5 command timeouts), so a hung Redis bounds the write by that window.
    const outcomeWindow = Math.max(5000, 5 * timeout);
    assert.ok(write.ms < outcomeWindow + 1500, `strict.inc took ${write.ms.toFixed(0)} ms to give up (outcome window ${outcomeWindow} ms)`);

    await waitFor('the stopped inc to apply once Redis resumed', async () => (await stored(r, 'hung', 's', 'h')) === 11);
    assert.equal(await engine.strict.inc('h', 1), 12, 'the next inc follows the one that applied late');
    await flushUntilIdle(engine);
    assert.equal(await stored(r, 'hung', 'l', 'hl'), 8, 'lax calls re-sent while Redis hung applied once');
    await engine.close();
  });

  test('strict incs in flight when Redis is SIGKILLed: Redis holds exactly the acknowledged ones', { timeout: 30_000 }, async (t) => {
    const server = await redisServer();
    const r = inspector(server);
    const engine = await engineOn(server, 'lost');
    const report: string[] = [];
    for (let round = 1; round <= 3; round++) {
      const keys = Array.from({ length: 8 }, (_, i) => `r${round}k${i}`);
      const results: Array<{ key: string; n: number; code: string }> = [];
      const settled: Array<Promise<void>> = [];
      let acknowledged = 0;
      let killed = false;
      let acknowledgedAfterKill = 0;
      let stop = false;
      const producer = (async () => {
        for (let i = 0; !stop; ) {
          for (let j = 0; j < 25; j++, i++) {
            const key = keys[i % keys.length]!;
            const n = 1 + (i % 3);
            settled.push(
              engine.strict.inc(key, n).then(
                () => {
                  acknowledged++;
                  if (killed) acknowledgedAfterKill++;
                  results.push({ key, n, code: 'ok' });
                },
                (err: unknown) => {
                  results.push({ key, n, code: codeOf(err) ?? String(err) });
                },
              ),
            );
          }
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      await waitFor('strict incs to be acknowledged', () => acknowledged >= 100 * round);
      const killing = server.kill();
      killed = true;
      await killing;
      stop = true;
      await producer;
      await server.restart();
      await Promise.all(settled);

      const codes = new Map<string, number>();
      for (const x of results) codes.set(x.code, (codes.get(x.code) ?? 0) + 1);
      const unexpected = [...codes.keys()].filter((c) => c !== 'ok' && c !== UNAVAILABLE && c !== UNKNOWN);
      assert.deepEqual(unexpected, [], `round ${round}: every inc resolves or fails with a Redis code (${JSON.stringify([...codes])})`);
      const unknown = codes.get(UNKNOWN) ?? 0;
      report.push(`round ${round}: ${JSON.stringify(Object.fromEntries(codes))}, ${acknowledgedAfterKill} acknowledged after the kill began (in flight or queued behind a lost reply)`);
      const values = await storedMany(r, 'lost', 's', keys);
      for (const key of keys) {
        const ok = sumOf(results.filter((x) => x.key === key && x.code === 'ok').map((x) => x.n));
        const maybe = sumOf(results.filter((x) => x.key === key && x.code === UNKNOWN).map((x) => x.n));
        const value = values.get(key)!;
        const where = `round ${round}, ${key}: Redis ${value}, acknowledged ${ok}${unknown > 0 ? `, ${unknown} incs ended TW_REDIS_OUTCOME_UNKNOWN (+${maybe} possible)` : ''}`;
        if (maybe === 0) assert.equal(value, ok, where);
        else assert.ok(value >= ok && value <= ok + maybe, where);
      }
      await strictSeesRedis(engine);
    }
    for (const line of report) t.diagnostic(line);
    assert.equal(await engine.strict.inc('after', 1), 1, report.join('; '));
    await engine.close();
  });
});

describe('lax counters: exactly once', () => {
  test('lost replies of landed flush calls (loseRepliesForTest) are re-sent without doubling', { timeout: 20_000 }, async () => {
    const server = await redisServer();
    const r = inspector(server);
    const engine = await engineOn(server, 'lose');
    const flusher = engine[internals].flusher!;
    const keys = Array.from({ length: 300 }, (_, i) => `k${i}`);
    const expected = new Map(keys.map((k) => [k, 0]));
    const add = (round: number): void => {
      keys.forEach((k, i) => {
        const n = 1 + ((i + round) % 7);
        if (i % 2 === 0) engine.lax.add(k, n);
        else engine.lax.handle(k).add(n);
        expected.set(k, expected.get(k)! + n);
      });
    };

    await flusher.loseRepliesForTest(8);
    for (let round = 0; round < 3; round++) add(round);
    const stats = await flushUntilIdle(engine);
    assert.ok(stats.failures >= 8, `the 8 lost replies counted as failures (${JSON.stringify(stats)})`);
    assert.match(stats.lastError ?? '', /loseRepliesForTest/);
    assert.deepEqual(mismatches(expected, await storedMany(r, 'lose', 'l', keys)), [], 'every delta exactly once in Redis');
    // The local estimate counts every delta once as well.
    const local = new Map(await engine.lax.getAll(keys));
    assert.deepEqual(mismatches(expected, local), []);

    // Later flushes of the same keys are exact too (no delta left counted as both pending and delivered).
    await flusher.loseRepliesForTest(3);
    add(3);
    await flushUntilIdle(engine);
    assert.deepEqual(mismatches(expected, await storedMany(r, 'lose', 'l', keys)), []);
    await engine.close();
    assert.deepEqual(mismatches(expected, await storedMany(r, 'lose', 'l', keys)), []);
  });

  test('deltas added continuously while Redis is SIGKILLed and restarted twice land exactly once by close()', { timeout: 30_000 }, async (t) => {
    const server = await redisServer();
    const r = inspector(server);
    const engine = await engineOn(server, 'kill');
    const keys = Array.from({ length: 200 }, (_, i) => `x${i}`);
    const handles = keys.map((k) => engine.lax.handle(k));
    const expected = new Map(keys.map((k) => [k, 0]));
    let stop = false;
    let refused = 0;
    const producer = (async () => {
      for (let iter = 0; !stop; iter++) {
        for (let i = 0; i < keys.length; i++) {
          const n = 1 + ((iter + i) % 4);
          try {
            if (i % 2 === 0) engine.lax.add(keys[i]!, n);
            else handles[i]!.add(n);
            expected.set(keys[i]!, expected.get(keys[i]!)! + n);
          } catch {
            refused++;
          }
        }
        await delay(3);
      }
    })();
    // The outages are timed against the producer, which runs throughout (pacing, not waiting for an event).
    for (let outage = 0; outage < 2; outage++) {
      await delay(120);
      await server.kill();
      await delay(120);
      await server.restart();
    }
    await delay(120);
    stop = true;
    await producer;
    assert.equal(refused, 0, 'no add was refused');
    const stats = (await engine.stats()).flusher!;
    assert.ok(stats.failures > 0, `the flusher met the outages (${JSON.stringify(stats)})`);
    t.diagnostic(`flusher before close: ${JSON.stringify(stats)}`);
    await engine.close(); // must resolve: every delta delivered
    const actual = await storedMany(r, 'kill', 'l', keys);
    const wrong = mismatches(expected, actual);
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} of ${keys.length} keys wrong`);
    assert.ok(sumOf(expected.values()) > 0);
  });
});

describe('lax counters: close and the pending-key cap', () => {
  test('close() with Redis down rejects TW_UNDELIVERED listing exactly the undelivered keys and deltas, and leaves nothing running', { timeout: 20_000 }, async () => {
    const server = await redisServer();
    const baseline = resources();
    const engine = await createEngine({ ...defaults, redis: server.url, prefix: 'und', closeTimeoutMs: 300 });
    engine.lax.add('u0', 5);
    engine.lax.add('delivered', 7);
    await flushUntilIdle(engine);

    await server.kill();
    await flusherSeesOutage(engine);
    engine.lax.add('u0', 2);
    engine.lax.add('u1', 3);
    engine.lax.handle('u2').add(-4);
    engine.lax.add('u1', 1);

    const closing = await outcome(() => engine.close());
    assert.ok(!closing.ok, `close() with undelivered deltas: ${describeOutcome(closing)}`);
    assert.ok(closing.err instanceof UndeliveredError, 'an UndeliveredError');
    assert.equal(closing.code, ErrorCode.UNDELIVERED);
    const undelivered = [...(closing.err as UndeliveredError).undelivered].map(([k, d]) => [k, d]).sort();
    assert.deepEqual(undelivered, [['u0', 2], ['u1', 4], ['u2', -4]]);
    assert.ok(closing.ms < 300 + 2000, `close() took ${closing.ms.toFixed(0)} ms with closeTimeoutMs 300`);
    assert.ok(engine.close() === engine.close(), 'close() is idempotent');
    assert.throws(() => engine.lax.add('u0', 1), (err: unknown) => codeOf(err) === ErrorCode.CLOSED);
    await assertNothingLeft(baseline, 'an engine closed with Redis down');
  });

  test('maxPendingKeys: during an outage new keys are refused with TW_CAPACITY, pending keys still take deltas, all lands after recovery', { timeout: 20_000 }, async () => {
    const server = await redisServer();
    const r = inspector(server);
    const engine = await engineOn(server, 'cap', { maxPendingKeys: 5 });
    engine.lax.add('warm', 1);
    await flushUntilIdle(engine);

    await server.kill();
    await flusherSeesOutage(engine);
    const keys = ['q0', 'q1', 'q2', 'q3', 'q4'];
    keys.forEach((k, i) => engine.lax.add(k, i + 1));
    await engine.lax.flush(); // fails: Redis is down
    const during = (await engine.stats()).flusher!;
    assert.equal(during.pendingKeys, 5, `five keys hold undelivered deltas (${JSON.stringify(during)})`);

    assert.throws(() => engine.lax.add('q5', 1), (err: unknown) => codeOf(err) === ErrorCode.CAPACITY && err instanceof TallyworksError, 'a sixth key is refused synchronously');
    assert.throws(() => engine.lax.handle('q6').add(1), (err: unknown) => codeOf(err) === ErrorCode.CAPACITY, 'through a handle too');
    assert.throws(() => engine.lax.add('warm', 1), (err: unknown) => codeOf(err) === ErrorCode.CAPACITY, 'a known key with nothing pending is new pending memory');
    engine.lax.add('q0', 10); // pending already: accepted
    engine.lax.handle('q1').add(10);
    assert.equal(await engine.lax.get('q0'), 11, 'local estimate during the outage');
    assert.equal(await engine.lax.get('q5'), 0, 'the refused add added nothing');

    await server.restart();
    await flushUntilIdle(engine);
    const values = await storedMany(r, 'cap', 'l', [...keys, 'q5', 'q6', 'warm']);
    assert.deepEqual(Object.fromEntries(values), { q0: 11, q1: 12, q2: 3, q3: 4, q4: 5, q5: 0, q6: 0, warm: 1 });
    // New keys are accepted again: five fit under the cap at once, and once delivered, more.
    for (const k of ['q5', 'q6', 'q7', 'q8', 'q9']) engine.lax.add(k, 2);
    assert.throws(() => engine.lax.add('q10', 2), (err: unknown) => codeOf(err) === ErrorCode.CAPACITY, 'a sixth undelivered key at once is over the cap');
    await flushUntilIdle(engine);
    engine.lax.add('q10', 2);
    await flushUntilIdle(engine);
    assert.equal(await stored(r, 'cap', 'l', 'q10'), 2);
    assert.equal(await stored(r, 'cap', 'l', 'q5'), 2);
    await engine.close();
  });

  test('maxPendingKeys is enforced where a key is first accepted: the 101st new key of a burst is refused at a cap of 100 (the flusher gauge lags a cycle)', { timeout: 20_000 }, async () => {
    const server = await redisServer();
    const r = inspector(server);
    const engine = await engineOn(server, 'cap3', { maxPendingKeys: 100, flushIntervalMs: 60_000 });
    // A burst within one turn: no flusher cycle runs between these adds.
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 160; i++) {
      try {
        engine.lax.add(`b${i}`, 1);
        accepted++;
      } catch (err) {
        assert.equal(codeOf(err), ErrorCode.CAPACITY);
        refused++;
      }
    }
    assert.equal(accepted, 100);
    assert.equal(refused, 60);
    engine.lax.add('b0', 5); // a key already pending takes more
    await flushUntilIdle(engine);
    // Delivered: the keys are clean again, so new keys fit under the cap.
    for (let i = 100; i < 160; i++) engine.lax.add(`b${i}`, 1);
    await flushUntilIdle(engine);
    assert.equal(await stored(r, 'cap3', 'l', 'b0'), 6);
    assert.equal(await stored(r, 'cap3', 'l', 'b159'), 1);
    await engine.close();
  });

  test('maxPendingKeys counts keys: a key in an unresolved call that takes more deltas is one pending key, not two', { timeout: 20_000 }, async () => {
    const server = await redisServer();
    const r = inspector(server);
    const engine = await engineOn(server, 'cap2', { maxPendingKeys: 2 });
    const flusher = engine[internals].flusher!;
    // Every landed flush call loses its reply: 'd0' stays in an unresolved call, re-sent each cycle.
    await flusher.loseRepliesForTest(1_000_000);
    engine.lax.add('d0', 1);
    await engine.lax.flush();
    await waitFor('the call of d0 to be unresolved', async () => (await engine.stats()).flusher!.unresolved === 1);
    engine.lax.add('d0', 1); // more for the same key while its call is unresolved
    await engine.lax.flush();
    const stats = (await engine.stats()).flusher!;
    const added = await outcome(async () => engine.lax.add('d1', 1));
    await flusher.loseRepliesForTest(0);
    await flushUntilIdle(engine);
    assert.ok(added.ok, `only d0 holds undelivered deltas, so a second key under maxPendingKeys 2 must be accepted: ${describeOutcome(added)}; flusher ${JSON.stringify(stats)}`);
    assert.equal(stats.pendingKeys, 1, `only d0 holds undelivered deltas (${JSON.stringify(stats)})`);
    assert.equal(await stored(r, 'cap2', 'l', 'd0'), 2);
    assert.equal(await stored(r, 'cap2', 'l', 'd1'), 1);
    await engine.close();
  });
});

describe('lax counters: ops that need Redis during an outage', () => {
  test('set / del / incIf / setIf / batches / clear reject with TW_REDIS_UNAVAILABLE, change nothing, and the pending delta is still delivered', { timeout: 20_000 }, async () => {
    const server = await redisServer();
    const r = inspector(server);
    const engine = await engineOn(server, 'out');
    engine.lax.add('k', 7);
    engine.lax.add('other', 20);
    await flushUntilIdle(engine);

    await server.kill();
    await flusherSeesOutage(engine);
    engine.lax.add('k', 3);
    const ops = {
      set: await outcome(() => engine.lax.set('k', 100)),
      del: await outcome(() => engine.lax.del('k')),
      incIf: await outcome(() => engine.lax.incIf('k', always, 5)),
      setIf: await outcome(() => engine.lax.setIf('k', gt(0), 50)),
      setAll: await outcome(() => engine.lax.setAll([['k', 1], ['other', 1]])),
      incAllIf: await outcome(() => engine.lax.incAllIf([['k', always, 1]])),
      delOther: await outcome(() => engine.lax.del('other')),
      clear: await outcome(() => engine.lax.clear()),
    };
    for (const [name, o] of Object.entries(ops)) {
      assert.ok(!o.ok && o.code === UNAVAILABLE, `lax.${name} with Redis down: ${describeOutcome(o)}`);
      assert.ok(o.ms < 1500, `lax.${name} took ${o.ms.toFixed(0)} ms to fail`);
    }
    assert.equal(await engine.lax.get('k'), 10, 'the local estimate is untouched by the failed ops');
    assert.equal(await engine.lax.get('other'), 20);

    await server.restart();
    await flushUntilIdle(engine);
    assert.equal(await stored(r, 'out', 'l', 'k'), 10, 'the pending +3 delivered; none of the failed ops applied');
    assert.equal(await stored(r, 'out', 'l', 'other'), 20);
    assert.equal(await engine.lax.set('k', 100), 100, 'set works again');
    assert.equal(await stored(r, 'out', 'l', 'k'), 100);
    await engine.close();
  });

  test('a lax set whose call landed but lost its reply is never reported "not applied" (TW_REDIS_UNAVAILABLE)', { timeout: 20_000 }, async () => {
    const server = await redisServer();
    const r = inspector(server);
    const engine = await engineOn(server, 'setlost', { redisCommandTimeoutMs: 1000 });
    const flusher = engine[internals].flusher!;
    engine.lax.add('k', 5);
    await flushUntilIdle(engine);

    await flusher.loseRepliesForTest(1_000_000);
    const setting = outcome(() => engine.lax.set('k', 100));
    await waitFor('the set call to land and lose its reply', async () => (await engine.stats()).flusher!.unresolved === 1);
    assert.equal(await stored(r, 'setlost', 'l', 'k'), 100, 'the set applied in Redis');
    await server.kill(); // the flusher cannot re-send the call to learn its outcome
    const result = await setting;
    await flusher.loseRepliesForTest(0);
    await server.restart();
    await flushUntilIdle(engine);
    const value = await stored(r, 'setlost', 'l', 'k');
    assert.equal(value, 100);
    if (!result.ok && result.code === UNAVAILABLE) {
      assert.fail(`lax.set ${describeOutcome(result)} ("not applied"), yet Redis holds ${value} from that very set`);
    }
    assert.ok(result.ok ? result.value === 100 : result.code === UNKNOWN, `lax.set: ${describeOutcome(result)}`);
    await engine.close();
  });
});

describe('lax counters: a hung Redis', () => {
  test('lax reads and ops waiting behind a flush call Redis does not answer settle within the command timeout', { timeout: 20_000 }, async () => {
    const server = await redisServer();
    const r = inspector(server);
    const timeout = 500;
    const engine = await engineOn(server, 'hunglax', { redisCommandTimeoutMs: timeout });
    engine.lax.add('k', 5);
    await flushUntilIdle(engine);
    const pid = await serverPid(r);

    const bound = 5 * timeout; // the request's deadline is one timeout; flush cycles add backoff
    let read: Outcome<number> | undefined;
    let set: Outcome<number> | undefined;
    process.kill(pid, 'SIGSTOP');
    try {
      engine.lax.add('k', 3);
      await waitFor('the flush call carrying k to go unanswered', async () => (await engine.stats()).flusher!.unresolved >= 1, 5000);
      read = await within(bound, () => engine.lax.get('k'));
      set = await within(bound, () => engine.lax.set('k', 100));
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    assert.ok(read !== undefined, `lax.get still pending after ${bound} ms while Redis hangs (redisCommandTimeoutMs ${timeout}): reads must answer the local estimate`);
    assert.ok(read.ok && read.value === 8, `lax.get on a hung server: ${describeOutcome(read)} (local estimate 8)`);
    assert.ok(set !== undefined, `lax.set still pending after ${bound} ms while Redis hangs (redisCommandTimeoutMs ${timeout})`);
    assert.ok(!set.ok && (set.code === UNKNOWN || set.code === UNAVAILABLE), `lax.set on a hung server: ${describeOutcome(set)}`);

    await flushUntilIdle(engine);
    const value = await stored(r, 'hunglax', 'l', 'k');
    if (set.code === UNAVAILABLE) assert.equal(value, 8, 'lax.set was reported not applied');
    else assert.ok(value === 8 || value === 100, `Redis holds ${value}`);
    await engine.close();
  });
});

describe('options, connections and the version check', () => {
  test('bad redis, prefix and flushIntervalMs options are TW_INVALID_OPTION, before anything connects', async () => {
    const port = await deadPort();
    const url = `redis://127.0.0.1:${port}`;
    const baseline = resources();
    const invalid = (kind: ErrorConstructor, option: string) => (err: unknown) =>
      err instanceof kind && codeOf(err) === ErrorCode.INVALID_OPTION && String((err as Error).message).includes(option);
    const cases: Array<[EngineOptions, ErrorConstructor, string]> = [
      [{ redis: 42 as never }, TypeError, 'redis'],
      [{ redis: true as never }, TypeError, 'redis'],
      [{ redis: null as never }, TypeError, 'redis'],
      [{ redis: `http://127.0.0.1:${port}` }, RangeError, 'redis'],
      [{ redis: `127.0.0.1:${port}` }, RangeError, 'redis'],
      [{ redis: url, prefix: 'a:b' }, RangeError, 'prefix'],
      [{ redis: url, prefix: '{tw}' }, RangeError, 'prefix'],
      [{ redis: url, prefix: 'a{' }, RangeError, 'prefix'],
      [{ redis: url, prefix: '' }, RangeError, 'prefix'],
      [{ redis: url, prefix: 7 as never }, TypeError, 'prefix'],
      [{ redis: url, flushIntervalMs: 0 }, RangeError, 'flushIntervalMs'],
      [{ redis: url, flushIntervalMs: '20' as never }, TypeError, 'flushIntervalMs'],
    ];
    for (const [options, kind, name] of cases) {
      await assert.rejects(createEngine({ shards: 1, ...options }), invalid(kind, name), JSON.stringify(options));
    }
    await assertNothingLeft(baseline, 'rejected options');
  });

  test("redisStartup 'require': createEngine against a port where nothing listens rejects TW_REDIS_UNAVAILABLE and leaves nothing running", { timeout: 20_000 }, async () => {
    const port = await deadPort();
    const baseline = resources();
    const created = await outcome(() => createEngine({ ...defaults, redis: `redis://127.0.0.1:${port}`, prefix: 'none', redisStartup: 'require' }));
    if (created.ok) engines.push(created.value);
    assert.ok(!created.ok && created.code === UNAVAILABLE, `createEngine: ${describeOutcome(created)}`);
    assert.ok(created.ms < 5000, `createEngine took ${created.ms.toFixed(0)} ms to give up`);
    await assertNothingLeft(baseline, 'a failed createEngine');
  });

  test("redisStartup 'tolerate' (the default): an engine started while Redis is down buffers lax adds, fails strict calls fast, and delivers once Redis is up", { timeout: 30_000 }, async () => {
    const server = await redisServer();
    const r = inspector(server);
    await server.kill();
    const engine = await createEngine({ ...defaults, redis: server.url, prefix: 'late' });
    engines.push(engine);
    const strict = await outcome(() => engine.strict.inc('s', 1));
    assert.ok(!strict.ok && strict.code === UNAVAILABLE, `strict.inc while Redis is down: ${describeOutcome(strict)}`);
    assert.ok(strict.ms < 4000, `strict.inc failed fast, not after the 5 s outcome window (${strict.ms.toFixed(0)} ms)`);
    const iaStrict = await outcome(() => engine.instanceAware.strict.inc('s', 1));
    assert.ok(!iaStrict.ok && iaStrict.code === UNAVAILABLE && iaStrict.ms < 4000, `instance-aware strict inc while Redis is down: ${describeOutcome(iaStrict)}`);
    for (let i = 0; i < 100; i++) engine.lax.add(`k${i % 10}`, 1);
    for (let i = 0; i < 100; i++) engine.instanceAware.lax.add(`k${i % 10}`, 2);
    assert.equal(await engine.lax.get('k3'), 10, 'lax reads answer from the buffered deltas');
    assert.deepEqual(await engine.instanceAware.lax.get('k3'), [20, 20], 'instance-aware lax reads too');
    await server.restart();
    await waitFor('strict calls to work once Redis is up', async () => (await outcome(() => engine.strict.inc('s', 1))).ok);
    await flushUntilIdle(engine);
    for (const k of ['k0', 'k3', 'k9']) assert.equal(await stored(r, 'late', 'l', k), 10, `${k} delivered once`);
    assert.equal(await stored(r, 'late', 's', 's'), 1, 'only the inc that succeeded counted');
    for (const k of ['k0', 'k3', 'k9']) assert.equal(await sliceInRedis(r, 'late', 'il', k, `${engine.instanceId}#0`), 20, `instance-aware ${k} delivered once`);
    await engine.close();
  });

  test("redisStartup 'tolerate': a database Redis does not have, found on the first connection, refuses strict calls and writes nothing to database 0", { timeout: 30_000 }, async () => {
    const server = await redisServer();
    const r = inspector(server);
    await server.kill();
    const engine = await createEngine({ ...defaults, redis: `${server.url}/99`, prefix: 'nodb' });
    engines.push(engine);
    engine.lax.add('k', 5);
    await server.restart();
    let last: Outcome<number> | undefined;
    await waitFor('the database check to refuse strict calls', async () => {
      last = await outcome(() => engine.strict.inc('s', 1));
      return !last.ok && last.code === ErrorCode.INVALID_OPTION;
    });
    assert.match(last!.ok ? '' : String((last!.err as Error).message), /database 99/);
    await delay(300); // flush cycles run meanwhile: none may reach database 0
    assert.deepEqual(await r.keys('*nodb*'), [], 'nothing written to database 0');
    const closing = await outcome(() => engine.close());
    assert.ok(!closing.ok && closing.code === ErrorCode.UNDELIVERED, `close reports the lax delta undelivered: ${describeOutcome(closing)}`);
  });

  test("redisStartup 'tolerate': a first check that times out on a live connection is made again (the client does not stay not-ready)", { timeout: 30_000 }, async (t) => {
    const server = await redisServer();
    const r = inspector(server);
    // A proxy that holds back the first two CLIENT INFO checks (the engine's client and the flusher's) past
    // the command timeout, and forwards everything else at once.
    let held = 0;
    const proxy = createServer((c) => {
      const u = createConnection(server.port, '127.0.0.1');
      c.on('data', (d: Buffer) => {
        if (held < 2 && /CLIENT\r\n\$4\r\nINFO/i.test(d.toString('latin1'))) {
          held++;
          c.pause();
          setTimeout(() => {
            u.write(d);
            c.resume();
          }, 1500);
          return;
        }
        u.write(d);
      });
      u.on('data', (d: Buffer) => c.write(d));
      for (const [a, b] of [[c, u], [u, c]] as const) {
        a.on('error', () => b.destroy());
        a.on('close', () => b.destroy());
      }
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    t.after(() => proxy.close());
    const port = (proxy.address() as { port: number }).port;
    await server.kill();
    const engine = await createEngine({ ...defaults, redis: `redis://127.0.0.1:${port}`, prefix: 'slowcheck', redisCommandTimeoutMs: 200 });
    engines.push(engine);
    engine.lax.add('x', 7);
    await server.restart();
    await waitFor('strict calls to work once the checks pass', async () => (await outcome(() => engine.strict.inc('s', 1))).ok, 10_000);
    assert.equal(held, 2, 'both first checks were held past the command timeout');
    await flushUntilIdle(engine);
    assert.equal(await stored(r, 'slowcheck', 'l', 'x'), 7);
    await engine.close();
  });

  test("bad redisStartup values are TW_INVALID_OPTION naming the option", async () => {
    await assert.rejects(createEngine({ redisStartup: 'maybe' as never }), (err: unknown) => err instanceof TallyworksError && err.code === ErrorCode.INVALID_OPTION && /redisStartup/.test(err.message) && err instanceof RangeError);
    await assert.rejects(createEngine({ redisStartup: 1 as never }), (err: unknown) => err instanceof TallyworksError && err.code === ErrorCode.INVALID_OPTION && err instanceof TypeError);
  });

  test("a user's own ioredis instance works and is not closed by engine.close()", { timeout: 20_000 }, async () => {
    const server = await redisServer();
    const user = new Redis(server.url);
    user.on('error', () => undefined);
    inspectors.push(user);
    assert.equal(await user.ping(), 'PONG');
    const engine = await createEngine({ ...defaults, redis: user, prefix: 'own' });
    engines.push(engine);
    assert.equal(await engine.strict.inc('a', 2), 2);
    engine.lax.add('b', 3);
    await flushUntilIdle(engine);
    assert.equal(await user.hget(partitionKey('own', 's', partitionOf('a')), 'a'), '2');
    assert.equal(await user.hget(partitionKey('own', 'l', partitionOf('b')), 'b'), '3');
    await engine.close();
    assert.equal(user.status, 'ready', "the user's instance is still connected");
    assert.equal(await user.ping(), 'PONG');
    assert.equal(await user.hget(partitionKey('own', 's', partitionOf('a')), 'a'), '2');
    // The engine's own connections are gone: only the user's is left.
    await waitFor('the engine connections to close', async () => (await user.client('LIST') as string).trim().split('\n').length === 1);
  });

  test('the minimum Redis version is 6.2.0 and the running server passes the check', async () => {
    assert.equal(MIN_REDIS_VERSION, '6.2.0');
    assert.equal(MIN_VERSION_INTERNAL, MIN_REDIS_VERSION);
    const server = await redisServer();
    const r = inspector(server);
    const running = /redis_version:([\d.]+)/.exec(await r.info('server'))?.[1];
    assert.ok(running !== undefined);
    assert.equal(await checkVersion(r), running);
    assert.match(running, /^7\./);
  });
});
