/**
 * Hybrid sliding-window limits across processes (scenario 6 of the rate-limits spec): 2 and 4 child
 * processes (test/fixtures/hybrid-child.ts) on one prefix burst on one key with a limit of 100, all at
 * once. Admitted in all must reach the limit and stay within the documented bound,
 * limit + (N − 1) × ⌈limit / N⌉ + N (the seed's worst case is N × limit); Redis then holds every admission.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createEngine } from '../../../src/index.js';
import { startRedisServer, type RedisServer } from '../../../bench/redis-server.js';
import { Child } from '../../helpers/child.js';
import { freshPrefix } from '../../helpers/counter-scenarios.js';

const childScript = fileURLToPath(new URL('../../fixtures/hybrid-child.js', import.meta.url));
type Reply = { type: 'ready'; instances: number } | { type: 'done'; admitted: number };

let server: RedisServer;
const children: Array<Child<Reply>> = [];
before(async () => {
  server = await startRedisServer();
});
after(async () => {
  for (const c of children) c.proc.kill('SIGKILL');
  await server?.stop();
});

for (const n of [2, 4]) {
  test(`scenario 6, ${n} processes, limit 100, a simultaneous burst: 100 ≤ admitted ≤ 100 + (N − 1) × ⌈100 / N⌉ + N`, { timeout: 60_000 }, async (t) => {
    const prefix = freshPrefix('hmp');
    const procs = Array.from({ length: n }, (_, i) => new Child<Reply>(childScript, [server.url, prefix, `p${i}`, String(n)], `p${i}`));
    children.push(...procs);
    for (const c of procs) assert.equal((await c.next('ready')).instances, n);
    // 100 a minute; each process tries 400 times over about 100 ms.
    for (const c of procs) c.send({ type: 'burst', key: 'burst', rate: 100 / 60, rounds: 40, perRound: 10 });
    let admitted = 0;
    for (const c of procs) admitted += (await c.next('done')).admitted;
    const bound = 100 + (n - 1) * Math.ceil(100 / n) + n;
    t.diagnostic(`${n} processes admitted ${admitted} of 100 (bound ${bound}; the seed's worst case ${n * 100})`);
    assert.ok(admitted >= 100 && admitted <= bound, `admitted ${admitted}, bound ${bound}`);
    const observer = await createEngine({ redis: server.url, prefix, shards: 1 });
    try {
      const d = await observer.rateLimiter({ windowSeconds: 60 }).redis.absolute.inc('burst', 100 / 60);
      assert.equal(d.allowed, false, 'Redis holds every admission: the window is full');
    } finally {
      await observer.close();
    }
    for (const c of procs) c.send({ type: 'close' });
    await Promise.all(procs.map((c) => new Promise((resolve) => (c.proc.exitCode === null ? c.proc.once('exit', resolve) : resolve(undefined)))));
  });
}
