/**
 * Connecting to Redis as apps do: the app's own ioredis 5 client (Redis and Cluster) for the engine and for
 * redisSink, passwords, TLS, ACLs, and the errors each failure gives. Every server is private, on a free
 * loopback port.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { inspect } from 'node:util';
import { Cluster as Cluster5, Redis as Redis5 } from 'ioredis5';
import { Redis } from 'ioredis';
import { partitionOf } from '../../common/redis.js';
import { type RedisCluster, type RedisServer, startRedisCluster, startRedisServer } from '../../bench/redis-server.js';
import { createEngine, type Engine, ErrorCode, redisSink, TallyworksError, TestClock } from '../../src/index.js';

const PASSWORD = 'hunter2-Secret';

/** Resolves to what `p` rejected with (fails the test if it resolved). */
async function rejection(p: Promise<unknown>): Promise<TallyworksError> {
  const err = await p.then(
    () => assert.fail('expected a rejection'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TallyworksError, `a TallyworksError, got ${String(err)}`);
  return err;
}

/** Sends the engine's lax delta and reads it back, then a strict inc: the engine works end to end. */
async function exercise(engine: Engine, key: string): Promise<void> {
  engine.lax.add(key, 5);
  await engine.lax.flush();
  assert.equal(await engine.lax.get(key), 5);
  assert.equal(await engine.strict.inc(key, 2), 2);
  assert.equal(await engine.strict.get(key), 2);
}

describe('the app brings its own ioredis 5 client', () => {
  let server: RedisServer;
  let cluster: RedisCluster;
  const clients: Array<{ quit(): Promise<unknown>; disconnect(): void }> = [];
  before(async () => {
    [server, cluster] = await Promise.all([startRedisServer(), startRedisCluster(3)]);
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await Promise.all([server?.stop(), cluster?.stop()]);
  });

  test('createEngine({ redis: new Redis5(url) }) counts strict and lax in that Redis; the client stays the app’s', async () => {
    const app = new Redis5(server.url);
    clients.push(app);
    const engine = await createEngine({ redis: app, prefix: 'byo5', shards: 1 });
    await exercise(engine, 'orders');
    await engine.close();
    assert.equal(app.status, 'ready', 'the engine never closes the app’s client');
    assert.equal(await app.hget(`{byo5:s:${partitionOf('orders')}}`, 'orders'), '2');
  });

  test('createEngine({ redis: new Cluster5(nodes) }) works on a real Redis Cluster', async () => {
    const app = new Cluster5([...cluster.nodes]);
    clients.push(app);
    const engine = await createEngine({ redis: app, prefix: 'byoc', shards: 1 });
    for (let i = 0; i < 50; i++) engine.lax.add(`k${i}`, i);
    await engine.lax.flush();
    assert.deepEqual(await Promise.all([0, 17, 49].map((i) => engine.lax.get(`k${i}`))), [0, 17, 49]);
    assert.deepEqual(await engine.strict.incAll(Array.from({ length: 20 }, (_, i): [string, number] => [`s${i}`, i + 1])), Array.from({ length: 20 }, (_, i) => [`s${i}`, i + 1]));
    await engine.close();
  });

  test('redisSink(new Redis5(url)) and redisSink(new Cluster5(nodes)) deliver a buffer’s counts', async () => {
    for (const app of [new Redis5(server.url), new Cluster5([...cluster.nodes])]) {
      clients.push(app);
      const clock = new TestClock(0);
      const engine = await createEngine({ clock, shards: 1 });
      const views = engine.buffer({ name: 'views', intervalMs: 1000, ...redisSink(app, { hash: '{views}:total' }) });
      views.increment('home', 3);
      views.increment('about');
      await views.flush();
      assert.deepEqual(await app.hgetall('{views}:total'), { home: '3', about: '1' });
      await engine.close();
      await app.del('{views}:total');
    }
  });

  test('a client whose TLS options hold a function is refused, naming the option; nothing is started', async () => {
    const app = new Redis5({ lazyConnect: true, tls: { checkServerIdentity: () => undefined } });
    clients.push(app);
    const err = await rejection(createEngine({ redis: app }));
    assert.equal(err.code, ErrorCode.INVALID_OPTION);
    assert.match(err.message, /"redis\.options\.tls\.checkServerIdentity"/);
    const fromOptions = await rejection(createEngine({ redis: { tls: { checkServerIdentity: () => undefined } } }));
    assert.match(fromOptions.message, /"redis\.tls\.checkServerIdentity"/);
    // The engine's own reconnect strategy replaces the app's: such functions are not refused.
    const withStrategy = new Redis5(server.url, { retryStrategy: () => 10, reconnectOnError: () => false });
    clients.push(withStrategy);
    const engine = await createEngine({ redis: withStrategy, shards: 1 });
    await exercise(engine, 'strategy');
    await engine.close();
  });
});

describe('passwords and ACLs', () => {
  let server: RedisServer;
  before(async () => {
    server = await startRedisServer({ password: PASSWORD });
  });
  after(() => server?.stop());

  test('the right password in the URL connects', async () => {
    const engine = await createEngine({ redis: `redis://:${PASSWORD}@127.0.0.1:${server.port}`, shards: 1 });
    await exercise(engine, 'authed');
    await engine.close();
  });

  test('a wrong password is TW_REDIS_AUTH with Redis’s WRONGPASS reason and cause; the password appears nowhere', async () => {
    const url = `redis://:not-${PASSWORD}@127.0.0.1:${server.port}`;
    const err = await rejection(createEngine({ redis: url, shards: 1 }));
    assert.equal(err.code, ErrorCode.REDIS_AUTH);
    assert.match(err.message, /WRONGPASS/);
    assert.match((err.cause as Error).message, /^WRONGPASS/);
    assert.ok(!JSON.stringify([err.message, err.stack, (err.cause as Error).message]).includes(PASSWORD));
    // ioredis attaches the failed command (HELLO 3 AUTH default <password>) to the cause: masked too.
    assert.ok(!inspect(err, { depth: 10 }).includes(PASSWORD), inspect(err.cause, { depth: 10 }));
    assert.ok(!JSON.stringify(err.cause).includes(PASSWORD));
  });

  test('a password given as ioredis options, and one with URL-special characters, is masked in every error', async () => {
    const odd = 'p@ss:w/rd%41';
    const err = await rejection(createEngine({ redis: { port: server.port, password: odd }, shards: 1 }));
    assert.equal(err.code, ErrorCode.REDIS_AUTH);
    assert.ok(!inspect(err, { depth: 10 }).includes(odd));
    const viaUrl = await rejection(createEngine({ redis: `redis://:${encodeURIComponent(odd)}@127.0.0.1:${server.port}`, shards: 1 }));
    assert.equal(viaUrl.code, ErrorCode.REDIS_AUTH);
    assert.ok(!inspect(viaUrl, { depth: 10 }).includes(odd) && !inspect(viaUrl, { depth: 10 }).includes(encodeURIComponent(odd)));
  });

  test('a password changed while the engine runs: calls reject TW_REDIS_AUTH with WRONGPASS, not "unreachable"', async () => {
    const admin = new Redis({ port: server.port, password: PASSWORD });
    await admin.call('ACL', 'SETUSER', 'rot', 'on', '>old-pass', '~*', '&*', '+@all');
    const engine = await createEngine({ redis: { port: server.port, username: 'rot', password: 'old-pass' }, shards: 1 });
    try {
      await exercise(engine, 'rotated');
      await admin.call('ACL', 'SETUSER', 'rot', 'resetpass', '>new-pass');
      await admin.call('CLIENT', 'KILL', 'USER', 'rot');
      // The connections come back only to be refused; until the first refusal is seen, a call may still
      // read "unreachable". Bounded by the reconnect delays (at most 500 ms each).
      let err: TallyworksError | undefined;
      for (let i = 0; i < 100 && err?.code !== ErrorCode.REDIS_AUTH; i++) {
        err = await rejection(engine.strict.inc('rotated'));
        if (err.code !== ErrorCode.REDIS_AUTH) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(err?.code, ErrorCode.REDIS_AUTH);
      assert.match(err!.message, /WRONGPASS/);
      let lax: TallyworksError | undefined;
      for (let i = 0; i < 100 && lax?.code !== ErrorCode.REDIS_AUTH; i++) {
        lax = await rejection(engine.lax.set('rotated', 1));
        if (lax.code !== ErrorCode.REDIS_AUTH) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(lax?.code, ErrorCode.REDIS_AUTH);
      assert.match(lax!.message, /WRONGPASS/);
    } finally {
      await engine.close().catch(() => undefined);
      await admin.quit();
    }
  });

  test('an ACL that denies the counters\' keys: strict and lax writes reject TW_REDIS_AUTH (NOPERM) at once, not "outcome unknown"', async () => {
    const admin = new Redis({ port: server.port, password: PASSWORD });
    await admin.call('ACL', 'SETUSER', 'otherkeys', 'on', '>pw', '~other:*', '&*', '+@all');
    const engine = await createEngine({ redis: { port: server.port, username: 'otherkeys', password: 'pw' }, shards: 1, redisCommandTimeoutMs: 1000 });
    try {
      const started = Date.now();
      const strict = await rejection(engine.strict.inc('x'));
      assert.equal(strict.code, ErrorCode.REDIS_AUTH);
      assert.match(strict.message, /NOPERM/);
      const lax = await rejection(engine.lax.set('x', 5));
      assert.equal(lax.code, ErrorCode.REDIS_AUTH);
      assert.match(lax.message, /NOPERM/);
      // Refusals are known outcomes: no wait for a lost reply (that would take the 5 s outcome window).
      assert.ok(Date.now() - started < 4500, `answered after ${Date.now() - started} ms`);
      engine.lax.add('y', 2);
      await engine.lax.flush();
      assert.match((await engine.stats()).flusher!.lastError ?? '', /NOPERM/);
    } finally {
      await engine.close().catch(() => undefined);
      await admin.quit();
    }
  });

  test('a missing password is TW_REDIS_AUTH with Redis’s NOAUTH reason', async () => {
    const err = await rejection(createEngine({ redis: server.url, shards: 1 }));
    assert.equal(err.code, ErrorCode.REDIS_AUTH);
    assert.match(err.message, /NOAUTH/);
  });

  test('an ACL that denies the scripts makes strict calls reject TW_REDIS_AUTH (NOPERM), not "unreachable"', async () => {
    const admin = new Redis({ port: server.port, password: PASSWORD });
    await admin.call('ACL', 'SETUSER', 'noscripts', 'on', '>pw', '~*', '&*', '+@all', '-evalsha', '-eval');
    const engine = await createEngine({ redis: { port: server.port, username: 'noscripts', password: 'pw' }, shards: 1 });
    const err = await rejection(engine.strict.inc('x'));
    assert.equal(err.code, ErrorCode.REDIS_AUTH);
    assert.match(err.message, /NOPERM/);
    await engine.close();
    await admin.quit();
  });

  test('invalid redis URLs are refused without echoing their password', async () => {
    const urls = [
      `http://app:${PASSWORD}@127.0.0.1:6379`,
      `redis://app:${PASSWORD}@[not-a-host`,
      `redis://${PASSWORD}@bad host`,
      `redis://us@er:${PASSWORD}@127.0.0.1:6379/x`,
      `redis:/user:${PASSWORD}@127.0.0.1:6379`,
      `redis:user:${PASSWORD}@127.0.0.1`,
      `redis://user:${PASSWORD}@127.0.0.1:${server.port}/abc`,
    ];
    for (const url of urls) {
      const err = await rejection(createEngine({ redis: url }));
      assert.equal(err.code, ErrorCode.INVALID_OPTION, url);
      assert.ok(!err.message.includes(PASSWORD) && !err.message.includes(PASSWORD.slice(0, 8)), err.message);
    }
  });
});

describe('TLS', () => {
  let server: RedisServer;
  let dir: string;
  let ca: Buffer;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tallyworks-tls-'));
    const made = spawnSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
      { encoding: 'utf8' },
    );
    assert.equal(made.status, 0, made.stderr);
    ca = readFileSync(join(dir, 'cert.pem'));
    server = await startRedisServer({ tls: { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem'), caFile: join(dir, 'cert.pem') } });
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('with the CA, strict and lax counters work over TLS (the CA crosses to the flusher thread)', async () => {
    const engine = await createEngine({ redis: { host: '127.0.0.1', port: server.tlsPort, tls: { ca } }, shards: 1 });
    await exercise(engine, 'tls');
    await engine.close();
  });

  test('a certificate the client does not trust is TW_REDIS_TLS with the TLS reason and its code', async () => {
    const err = await rejection(createEngine({ redis: `rediss://127.0.0.1:${server.tlsPort}`, shards: 1 }));
    assert.equal(err.code, ErrorCode.REDIS_TLS);
    assert.match(err.message, /self-signed certificate/);
    assert.equal((err.cause as { code?: string }).code, 'DEPTH_ZERO_SELF_SIGNED_CERT');
  });
});

describe('databases and option values', () => {
  let server: RedisServer;
  before(async () => {
    server = await startRedisServer();
  });
  after(() => server?.stop());

  test('a database number in the URL is used: counters land in that database', async () => {
    const engine = await createEngine({ redis: `${server.url}/3`, prefix: 'dbs', shards: 1 });
    await exercise(engine, 'in-db-3');
    await engine.close();
    const db3 = new Redis(`${server.url}/3`);
    const db0 = new Redis(server.url);
    assert.equal(await db3.hget(`{dbs:s:${partitionOf('in-db-3')}}`, 'in-db-3'), '2');
    assert.equal(await db0.exists(`{dbs:s:${partitionOf('in-db-3')}}`), 0);
    await Promise.all([db3.quit(), db0.quit()]);
  });

  test('a database the server does not have is refused (ioredis alone would count in database 0)', async () => {
    for (const redis of [`${server.url}/16`, { port: server.port, db: 99 }]) {
      const err = await rejection(createEngine({ redis, shards: 1 }));
      assert.equal(err.code, ErrorCode.INVALID_OPTION);
      assert.match(err.message, /database (16|99)/);
    }
    const db0 = new Redis(server.url);
    assert.equal(await db0.dbsize(), 0, 'nothing was written to database 0');
    await db0.quit();
  });

  test('a URL path that is no database number, and BigInt option values, are refused before anything starts', async () => {
    const path = await rejection(createEngine({ redis: `${server.url}/abc` }));
    assert.equal(path.code, ErrorCode.INVALID_OPTION);
    const big = await rejection(createEngine({ redis: { port: server.port, connectTimeout: 10n as unknown as number } }));
    assert.equal(big.code, ErrorCode.INVALID_OPTION);
    assert.match(big.message, /"redis\.connectTimeout"/);
  });
});

describe('unreachable Redis', () => {
  test("a refused port is TW_REDIS_UNAVAILABLE with the socket's reason (ECONNREFUSED), with redisStartup 'require'", async () => {
    const server = await startRedisServer();
    const port = server.port;
    await server.stop();
    const err = await rejection(createEngine({ redis: `redis://127.0.0.1:${port}`, shards: 1, redisStartup: 'require' }));
    assert.equal(err.code, ErrorCode.REDIS_UNAVAILABLE);
    assert.match(err.message, /ECONNREFUSED/);
    assert.equal((err.cause as { code?: string }).code, 'ECONNREFUSED');
  });

  test('a URL naming one node of a Redis Cluster: writes reject at once with MOVED (not "outcome unknown")', async () => {
    const cluster = await startRedisCluster(3);
    try {
      // The node that does not own the strict partition of "moved" answers MOVED for it.
      const engines = await Promise.all(cluster.nodes.map((n) => createEngine({ redis: { host: n.host, port: n.port }, shards: 1 })));
      try {
        const outcomes = await Promise.all(engines.map((e) => e.strict.inc('moved').then(() => undefined, (err: unknown) => err as TallyworksError)));
        const refused = outcomes.filter((o) => o !== undefined);
        assert.equal(refused.length, 2, 'two of the three nodes do not own the partition');
        for (const err of refused) {
          assert.equal(err!.code, ErrorCode.REDIS_UNAVAILABLE);
          assert.match(err!.message, /MOVED/);
        }
      } finally {
        await Promise.all(engines.map((e) => e.close().catch(() => undefined)));
      }
    } finally {
      await cluster.stop();
    }
  });

  test('a failure on the flusher thread during createEngine arrives as a TallyworksError with its code and reason', async () => {
    // One connection allowed: the engine's own client takes it, the flusher thread's is refused (Redis
    // closes it at once, so the client sees only the socket's end, not Redis's "max number of clients").
    const server = await startRedisServer({ maxClients: 1 });
    try {
      const err = await rejection(createEngine({ redis: server.url, shards: 1 }));
      assert.equal(err.code, ErrorCode.REDIS_UNAVAILABLE);
      assert.match(err.message, /connect was not applied: .+/);
      assert.match(err.stack ?? '', /workers\/flusher\.js/, 'thrown on the flusher thread');
    } finally {
      await server.stop();
    }
  });
});
