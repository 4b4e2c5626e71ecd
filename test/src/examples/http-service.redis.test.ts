/**
 * The example service (examples/http-service.ts) started as a user starts it, one command in a child
 * process: embedded, then two instances on one private redis-server sharing their limits. Each is
 * exercised over HTTP (headers, 429s, /metrics parsed by a real exposition parser) and ends on SIGTERM.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import parse from 'parse-prometheus-text-format';
import { type RedisServer, startRedisServer } from '../../../bench/redis-server.js';

const SERVICE = fileURLToPath(new URL('../../../examples/http-service.js', import.meta.url));

interface Service {
  readonly url: string;
  readonly child: ChildProcess;
  stop(): Promise<number | null>;
}

/** Starts the example with `args` and resolves with its address once it printed it. */
async function start(args: string[]): Promise<Service> {
  const child = spawn(process.execPath, [SERVICE, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m !== null) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`the service exited (${code}) before listening: ${out}${err}`)));
  });
  return {
    url,
    child,
    stop: async () => {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
      assert.equal(err, '', 'nothing on stderr');
      return code ?? (signal === 'SIGTERM' ? 143 : null);
    },
  };
}

let server: RedisServer;
before(async () => {
  server = await startRedisServer();
});
after(() => server?.stop());

async function login(url: string, ip: string): Promise<number> {
  return (await fetch(`${url}/login`, { method: 'POST', headers: { 'x-forwarded-for': ip } })).status;
}

test('embedded: headers on /, /login refused after 5, /metrics parses; SIGTERM ends it cleanly', { timeout: 60_000 }, async () => {
  const s = await start([]);
  try {
    const r = await fetch(`${s.url}/`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('ratelimit-policy'), '"api";q=60;w=60');
    assert.equal(r.headers.get('ratelimit'), '"api";r=59;t=60');
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push(await login(s.url, 'unused'));
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429]);
    const refused = await fetch(`${s.url}/login`, { method: 'POST' });
    assert.match(refused.headers.get('ratelimit-policy')!, /^"per-minute";q=5;w=60$/);
    assert.ok(Number(refused.headers.get('retry-after')) > 0);
    const metrics = parse(await (await fetch(`${s.url}/metrics`)).text());
    const decisions = metrics.find((f) => f.name === 'tallyworks_decisions_total')!;
    const of = (limiter: string, outcome: string): number => Number(decisions.metrics.find((m) => m.labels?.limiter === limiter && m.labels.outcome === outcome)?.value);
    assert.equal(of('login-minute', 'allowed'), 5);
    assert.equal(of('login-minute', 'rejected'), 2);
    assert.equal(of('api', 'allowed'), 1);
  } finally {
    assert.equal(await s.stop(), 143, 'ended by its SIGTERM, as without a handler');
  }
});

test('--redis: two instances share the login limit through the hybrid provider', { timeout: 60_000 }, async () => {
  const a = await start(['--redis', server.url]);
  const b = await start(['--redis', server.url]);
  try {
    // A takes the whole minute's quota (a new key admits one request, then waits for its first sync).
    let admitted = 0;
    for (let i = 0; i < 500 && admitted < 5; i++) if ((await login(a.url, '203.0.113.77')) === 200) admitted++;
    assert.equal(admitted, 5);
    assert.equal(await login(a.url, '203.0.113.77'), 429);
    // A's admitted requests reach Redis with its next sync: its metrics say when nothing is pending.
    const pending = async (): Promise<number> => {
      const f = parse(await (await fetch(`${a.url}/metrics`)).text()).find((x) => x.name === 'tallyworks_hybrid_pending_events');
      return Number(f?.metrics.find((m) => m.labels?.limiter === 'api,login-minute')?.value ?? NaN); // one window: one hybrid
    };
    for (let i = 0; i < 1000 && (await pending()) !== 0; i++) await new Promise((r) => setImmediate(r));
    assert.equal(await pending(), 0, "A's counts are committed");
    let byB = 0;
    for (let i = 0; i < 20; i++) if ((await login(b.url, '203.0.113.77')) === 200) byB++;
    assert.ok(byB <= 1, `B admitted ${byB} of the quota A used up (unshared it would admit 5)`);
    const metrics = parse(await (await fetch(`${b.url}/metrics`)).text());
    const calls = metrics.find((f) => f.name === 'tallyworks_redis_round_trips_total')!;
    assert.ok(Number(calls.metrics.find((m) => m.labels?.component === 'rate_limiter')?.value) > 0);
  } finally {
    assert.equal(await a.stop(), 143);
    assert.equal(await b.stop(), 143);
  }
});
