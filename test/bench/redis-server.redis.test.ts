/**
 * Tests of the private redis-server harness: every test talks to the real server it started, never to
 * the shared Redis on 6379.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { REDIS_SERVER_NOT_FOUND_MESSAGE, startRedisServer, type RedisServer } from '../../bench/redis-server.js';

/**
 * A client that fails fast instead of queueing or reconnecting, so a dead server surfaces as a
 * rejected promise and no retry timer keeps the test process alive.
 */
function client(server: RedisServer): Redis {
  const redis = new Redis({
    host: server.host,
    port: server.port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    // disconnect() on a connection the server already dropped arms a ref'd timer of disconnectTimeout
    // ms (default 2000) whose 'close' clear-listener can never fire, delaying process exit by 2 s.
    // Loopback closes in well under 100 ms, so this only shortens that dead wait.
    disconnectTimeout: 100,
  });
  // Failures are asserted through rejected promises; without a listener ioredis would also log them.
  redis.on('error', () => {});
  return redis;
}

/** Run `fn` with a connected client and always disconnect it, so its socket cannot hold the process open. */
async function withClient<T>(server: RedisServer, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = client(server);
  try {
    await redis.connect();
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

test('start: SET/GET works on the reported private port', async (t) => {
  const server = await startRedisServer();
  t.after(() => server.stop());

  assert.equal(server.running, true);
  assert.equal(server.host, '127.0.0.1');
  assert.notEqual(server.port, 6379);
  assert.equal(server.url, `redis://127.0.0.1:${server.port}`);
  await withClient(server, async (redis) => {
    assert.equal(await redis.set('harness:key', 'value'), 'OK');
    assert.equal(await redis.get('harness:key'), 'value');
    // Proves the client reached the server we started (its own dir), not some other Redis.
    assert.deepEqual(await redis.config('GET', 'dir'), ['dir', server.dir]);
  });
});

test('kill: the server stops answering and running is false', async (t) => {
  const server = await startRedisServer();
  t.after(() => server.stop());

  const connected = client(server);
  try {
    await connected.connect();
    assert.equal(await connected.ping(), 'PONG');
    await server.kill();
    assert.equal(server.running, false);
    // The already-open connection can no longer run commands...
    await assert.rejects(connected.ping());
  } finally {
    connected.disconnect();
  }

  // ...and a new connection is refused because nothing listens on the port any more. ioredis rejects
  // connect() with a generic "Connection is closed."; the socket error itself arrives as an 'error' event.
  const fresh = client(server);
  const errors: NodeJS.ErrnoException[] = [];
  fresh.on('error', (err: NodeJS.ErrnoException) => errors.push(err));
  try {
    await assert.rejects(fresh.connect());
    assert.deepEqual(
      errors.map((err) => err.code),
      ['ECONNREFUSED'],
    );
  } finally {
    fresh.disconnect();
  }
  // Killing a dead server is a no-op.
  await server.kill();
});

test('restart with appendOnly: writes acknowledged before a SIGKILL survive', async (t) => {
  const server = await startRedisServer({ appendOnly: true });
  t.after(() => server.stop());
  const { port, dir } = server;

  await withClient(server, async (redis) => {
    for (let i = 1; i <= 5; i++) assert.equal(await redis.incr('harness:counter'), i);
  });
  await server.kill();
  assert.equal(server.running, false);

  await server.restart();
  assert.equal(server.running, true);
  assert.equal(server.port, port);
  assert.equal(server.dir, dir);
  await withClient(server, async (redis) => {
    assert.equal(await redis.get('harness:counter'), '5');
    assert.equal(await redis.incr('harness:counter'), 6);
  });
});

test('restart with appendOnly after a SIGKILL cut the MULTI block of a script call short: the call is lost whole, and sent again it counts once', async (t) => {
  const server = await startRedisServer({ appendOnly: true });
  t.after(() => server.stop());
  // A script like apply.lua: increments and a marker in one call (the AOF holds it as MULTI … EXEC).
  const script = "redis.call('HINCRBY', KEYS[1], 'a', 1) redis.call('HINCRBY', KEYS[1], 'b', 1) redis.call('HINCRBY', KEYS[1], 'c', 1) redis.call('SET', KEYS[2], ARGV[1]) return 1";
  const call = (seq: number): Promise<void> => withClient(server, async (redis) => void (await redis.eval(script, 2, 'h', 'marker', String(seq))));
  await call(1);
  await call(2);
  await server.kill();
  // What a SIGKILL during write() can leave: the last MULTI block cut inside its third command.
  const aofDir = join(server.dir, 'appendonlydir');
  const incr = join(aofDir, readdirSync(aofDir).find((f) => f.endsWith('.incr.aof'))!);
  const bytes = readFileSync(incr);
  const multi = bytes.lastIndexOf('*1\r\n$5\r\nMULTI');
  const cut = bytes.indexOf('$1\r\nc', multi) + 3;
  assert.ok(multi > 0 && cut > multi, 'the AOF holds the second call as a MULTI block');
  writeFileSync(incr, bytes.subarray(0, cut));
  await server.restart();
  await withClient(server, async (redis) => {
    assert.deepEqual(await redis.hgetall('h'), { a: '1', b: '1', c: '1' }, 'the cut call is lost whole');
    assert.equal(await redis.get('marker'), '1');
  });
  await call(2); // its client sends the lost call again
  await server.restart();
  await withClient(server, async (redis) => {
    // Without the repair, Redis 7.0 left a MULTI open at the cut and this load counted a and b twice.
    assert.deepEqual(await redis.hgetall('h'), { a: '2', b: '2', c: '2' });
  });
});

test('restart without appendOnly starts an empty server on the same port', async (t) => {
  const server = await startRedisServer();
  t.after(() => server.stop());
  const { port } = server;

  await withClient(server, (redis) => redis.set('harness:volatile', '1'));
  // restart() on a live server kills it first.
  await server.restart();
  assert.equal(server.port, port);
  await withClient(server, async (redis) => assert.equal(await redis.get('harness:volatile'), null));
});

test('stop: the server exits, its dir is removed, and stop is idempotent', async () => {
  const server = await startRedisServer({ appendOnly: true });
  assert.ok((await stat(server.dir)).isDirectory());
  await withClient(server, (redis) => redis.set('harness:key', 'value'));

  await server.stop();
  assert.equal(server.running, false);
  await assert.rejects(stat(server.dir), { code: 'ENOENT' });
  await server.stop();
  await assert.rejects(server.restart(), /cannot be restarted/);
});

test('two servers started concurrently get different ports and separate data', async (t) => {
  const [a, b] = await Promise.all([startRedisServer(), startRedisServer()]);
  t.after(() => Promise.all([a.stop(), b.stop()]));

  assert.notEqual(a.port, b.port);
  assert.notEqual(a.dir, b.dir);
  for (const server of [a, b]) assert.notEqual(server.port, 6379);
  await withClient(a, (redis) => redis.set('harness:owner', 'a'));
  await withClient(b, async (redis) => assert.equal(await redis.get('harness:owner'), null));
});

test('a missing redis-server binary gives an actionable error', async () => {
  // An empty directory as the whole PATH makes the spawn fail with ENOENT. Tests in this file run
  // sequentially, and PATH is restored before anything else can spawn.
  const emptyDir = await mkdtemp(join(tmpdir(), 'tallyworks-empty-path-'));
  const savedPath = process.env.PATH;
  process.env.PATH = emptyDir;
  try {
    await assert.rejects(startRedisServer(), { message: REDIS_SERVER_NOT_FOUND_MESSAGE });
  } finally {
    process.env.PATH = savedPath;
    await rm(emptyDir, { recursive: true, force: true });
  }
});
