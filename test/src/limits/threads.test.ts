/**
 * Rate limiter decisions from app worker threads through `limiter.link()`: exact under truly parallel
 * deciders, and a decider terminated at random moments (inside its lock or not) never leaves a record
 * stuck and never lets more than the limit through.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { connectRateLimiter, createEngine, TallyworksError, TestClock } from '../../../src/index.js';
import type { RateWorkerInput, RateWorkerOutput } from '../../../bench/cli/rate-worker.js';
import { SLF_WINDOWS, SLW_TOTAL } from '../../../common/layout.js';
import { prng } from '../../helpers/prng.js';
import { withCode } from '../../helpers/time.js';

const workerScript = fileURLToPath(new URL('../../../bench/cli/rate-worker.js', import.meta.url));

/** Errors of every worker started, also after its first message (a crash must not pass for a kill). */
const workerErrors: Error[] = [];

function start(input: RateWorkerInput): { worker: Worker; next: Promise<RateWorkerOutput> } {
  const worker = new Worker(workerScript, { workerData: input, transferList: [input.link.port] });
  worker.on('error', (err) => workerErrors.push(err));
  const next = new Promise<RateWorkerOutput>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return { worker, next };
}

afterEach(() => assert.deepEqual(workerErrors.splice(0), [], 'no worker thread failed'));

describe('rate limiter links', () => {
  test('two worker threads and the engine thread on the same 10k keys admit exactly the limit per key', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 2 });
    try {
      const limiter = engine.rateLimiter({ windowSeconds: 60, groupMs: 1000 });
      const keys = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);
      const limit = 5;
      const rate = limit / 60;
      // The engine's thread decides first (one each), then two workers contend in parallel for the rest.
      const mine = keys.map((k) => (limiter.local.absolute.inc(k, rate).allowed ? 1 : 0));
      const workers = [0, 1].map(() => start({ link: limiter.link(), mode: 'contend', keys, rounds: 4, rate }));
      assert.deepEqual(await Promise.all(workers.map((w) => w.next)), [{ t: 'ready' }, { t: 'ready' }]);
      const done = workers.map((w) => new Promise<RateWorkerOutput>((resolve) => w.worker.once('message', resolve)));
      for (const w of workers) w.worker.postMessage('go'); // both run their rounds in parallel from here
      const outputs = await Promise.all(done);
      keys.forEach((k, i) => {
        const admitted = mine[i]! + outputs.reduce((sum, o) => sum + (o.t === 'admitted' ? o.admitted[i]! : 0), 0);
        assert.equal(admitted, limit, `admitted for ${k}`);
        assert.equal(limiter.local.absolute.count(k), limit, `counted for ${k}`);
      });
      await Promise.all(workers.map((w) => w.worker.terminate()));
    } finally {
      await engine.close();
    }
  });

  test('a deciding worker terminated at random moments 150 times: no record stays stuck, never more than the limit', { timeout: 240_000 }, async (t) => {
    const engine = await createEngine({ clock: new TestClock(), shards: 1 });
    try {
      const limiter = engine.rateLimiter({ windowSeconds: 60, groupMs: 1000 });
      const absolute = limiter.local.absolute;
      const keys = Array.from({ length: 4 }, (_, i) => `hot-${i}`);
      // The test clock stands still: nothing leaves the window, so a count above the limit would stay
      // visible. The limit is reached within the first trials: from then on every decision is a refusal
      // under the lock, and one admitted too many would show.
      const limit = 20_000;
      const rate = limit / 60;
      const random = prng(150);
      let worst = 0;
      for (let trial = 0; trial < 150; trial++) {
        const { worker, next } = start({ link: limiter.link(), mode: 'hammer', keys, rounds: 0, rate });
        assert.equal((await next).t, 'ready');
        await new Promise((resolve) => setTimeout(resolve, random() * 3));
        const killed = performance.now();
        await worker.terminate();
        // Every key decides again: a lock the dead worker held is taken over once its death is known.
        for (const key of keys) {
          for (;;) {
            try {
              absolute.inc(key, rate);
              break;
            } catch (err) {
              if (!(err instanceof TallyworksError && err.code === 'TW_RECORD_BUSY')) throw err;
              if (performance.now() - killed > 10_000) throw new Error(`the record of ${key} stayed locked 10 s after its holder was killed`);
              await new Promise((resolve) => setImmediate(resolve));
            }
          }
        }
        worst = Math.max(worst, performance.now() - killed);
        for (const key of keys) assert.ok(absolute.count(key) <= limit, `${key}: ${absolute.count(key)} counted over ${limit}`);
      }
      for (const key of keys) assert.equal(absolute.count(key), limit, `${key} reached its limit exactly`);
      const takeovers = (absolute as unknown as { decider: { takeovers: number } }).decider.takeovers;
      t.diagnostic(`150 kills: ${takeovers} locks taken over from a dead holder; slowest recovery ${worst.toFixed(1)} ms after terminate()`);
      assert.ok(takeovers > 0, 'some kills landed inside a lock (else the test proves nothing)');
    } finally {
      await engine.close();
    }
  });

  test('the engine closing while linked workers decide: they get TW_CLOSED, and no decision is lost or doubled', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 1 });
    const limiter = engine.rateLimiter({ windowSeconds: 60 });
    const keys = ['a', 'b'];
    const rate = 1e12;
    const workers = [0, 1, 2].map(() => start({ link: limiter.link(), mode: 'until-closed', keys, rounds: 0, rate }));
    for (const w of workers) assert.equal((await w.next).t, 'ready');
    const stopped = workers.map((w) => new Promise<RateWorkerOutput>((resolve) => w.worker.once('message', resolve)));
    await new Promise((resolve) => setTimeout(resolve, 20));
    // Close while the workers are still deciding; every worker stops on TW_CLOSED.
    const closing = engine.close();
    const outputs = await Promise.all(stopped);
    await closing;
    for (const o of outputs) assert.deepEqual(o.t === 'stopped' && o.code, 'TW_CLOSED');
    const admitted = keys.map((_, i) => outputs.reduce((sum, o) => sum + (o.t === 'stopped' ? o.admitted[i]! : 0), 0));
    // Counted = admitted per key: had closing marked the workers dead, they would take each other's locks.
    // (count() throws once closed: the window's total straight from the record.)
    const counted = keys.map((k) => {
      const e = limiter.local.absolute.directory.get(k)!;
      return e.views.f64[e.offset + SLF_WINDOWS + SLW_TOTAL]!;
    });
    assert.deepEqual(counted, admitted);
    await Promise.all(workers.map((w) => w.worker.terminate()));
  });

  test('once linked, the engine thread decides under the locks too: its decisions and a worker\'s on one key are all counted', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 1 });
    const limiter = engine.rateLimiter({ windowSeconds: 60 });
    const rate = 1e12; // everything admitted: the count is every decision
    // Unlinked, the engine thread decides without taking locks (nothing else can); the link must end that.
    let mine = 0;
    for (let i = 0; i < 1000; i++) if (limiter.local.absolute.inc('a', rate).allowed) mine++;
    const w = start({ link: limiter.link(), mode: 'until-closed', keys: ['a'], rounds: 0, rate });
    assert.equal((await w.next).t, 'ready');
    const stopped = new Promise<RateWorkerOutput>((resolve) => w.worker.once('message', resolve));
    // The worker decides in a loop on its thread meanwhile; unlocked writes here would lose updates.
    for (let i = 0; i < 300_000; i++) if (limiter.local.absolute.inc('a', rate).allowed) mine++;
    const closing = engine.close();
    const out = await stopped;
    await closing;
    assert.equal(out.t, 'stopped');
    const theirs = out.t === 'stopped' ? out.admitted[0]! : 0;
    const e = limiter.local.absolute.directory.get('a')!;
    assert.equal(e.views.f64[e.offset + SLF_WINDOWS + SLW_TOTAL], mine + theirs, `counted = ${mine} here + ${theirs} there`);
    await w.worker.terminate();
  });

  test('the timed cleanup meeting a lock a terminated worker still holds skips it, and retires it once the death is known', async () => {
    const clock = new TestClock();
    const engine = await createEngine({ clock, shards: 1 });
    try {
      const limiter = engine.rateLimiter({ windowSeconds: 1, staleAfterMs: 1000, cleanupIntervalMs: 1 });
      const keys = Array.from({ length: 8 }, (_, i) => `k${i}`);
      for (let trial = 0; trial < 20; trial++) {
        const { worker, next } = start({ link: limiter.link(), mode: 'hammer', keys, rounds: 0, rate: 1e9 });
        assert.equal((await next).t, 'ready');
        const dying = worker.terminate();
        // The clock moves, and the cleanup runs on its moves, before the engine has seen the worker end:
        // a record it holds is skipped, not waited for (no throw from advance()).
        for (let i = 0; i < 5; i++) clock.advance(300);
        await dying;
        await new Promise((resolve) => setImmediate(resolve));
        // Once the death is known, every key idle past staleAfterMs is retired, a dead holder's included.
        clock.advance(1500);
        assert.equal(limiter.local.absolute.directory.size, 0, `trial ${trial}: every idle key retired`);
      }
    } finally {
      await engine.close();
    }
  });

  test('connectRateLimiter refuses what is not a link', () => {
    assert.throws(() => connectRateLimiter({} as never), withCode('TW_INVALID_ARGUMENT', 'link'));
    assert.throws(() => connectRateLimiter(null as never), withCode('TW_INVALID_ARGUMENT', 'link'));
  });
});
