/**
 * Start-up, close() and thread deaths under load (issue: hardening from a fault and fuzz probe, defects 3
 * and 15, and two found by a later probe: a shard thread that dies while the engine starts, and control
 * calls in flight when a shard thread dies). Every promise settles; every accepted write is kept.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createEngine, ErrorCode, FileStorage, MemoryStorage, SPEC_START, TallyworksError, TestClock } from '../../src/index.js';
import { internals } from '../../src/engine.js';
import { resolveOptions } from '../../src/options.js';
import { Router } from '../../src/router/router.js';
import { tempDir } from '../helpers/temp-files.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const closed = (err: unknown): boolean => err instanceof TallyworksError && err.code === ErrorCode.CLOSED;

describe('defect 3: close() under load keeps every record it accepted', () => {
  test('records made while close() runs either land in the final persist or throw TW_CLOSED', { timeout: 120_000 }, async () => {
    const path = join(await tempDir(), 'closing.tw');
    const clock = new TestClock(SPEC_START);
    const engine = await createEngine({ clock, shards: 2, events: { storage: new FileStorage(path), intervals: { hours: 2 } } });
    const accepted: string[] = [];
    let refused = 0;
    let stop = false;
    // A producer that records new ids on every turn of the event loop, before and during close().
    const producer = (async () => {
      for (let turn = 0; !stop; turn++) {
        for (let i = 0; i < 500; i++) {
          const id = `t${turn}-${i}`;
          try {
            engine.events.record(id);
            accepted.push(id);
          } catch (err) {
            assert.ok(closed(err), String(err));
            refused++;
          }
        }
        await tick();
      }
    })();
    for (let i = 0; i < 20; i++) await tick();
    await engine.close();
    stop = true;
    await producer;
    assert.ok(refused > 0, 'the producer ran into the closed store');
    assert.ok(accepted.length > 0);
    const reader = await createEngine({ clock, shards: 2, events: { storage: new FileStorage(path), intervals: { hours: 2 } } });
    try {
      const stored = new Set(Object.keys((await reader.events.export()).counters));
      const lost = accepted.filter((id) => !stored.has(id));
      assert.deepEqual(lost.slice(0, 5), [], `${lost.length} of ${accepted.length} accepted ids were not persisted`);
      assert.equal(stored.size, accepted.length);
    } finally {
      await reader.close();
    }
  });
});

describe('defect 15: operations issued before close() complete normally', () => {
  test('queries, ratios, deltas, limits, exports, merges, windows and counters issued before close() resolve; later ones reject TW_CLOSED', async () => {
    const clock = new TestClock(SPEC_START);
    const engine = await createEngine({ clock, shards: 2, events: { storage: new MemoryStorage() } });
    const ev = engine.events;
    ev.record('a', 6);
    ev.record('b', 3);
    ev.record('x', 5);
    ev.record('y', 2);
    const w = engine.window('w', { size: 3, unit: 'second' });
    w.observe(4);
    const exp = await ev.export();
    const limiter = ev.limit().atMost(100, 'hour');
    const reservation = await limiter.reserve('r');
    // Issued in the same turn as close(), so that close() begins while every one of them is in flight.
    const issued = {
      sum: ev.queryMany(['a', 'b']).lastHours(1).sum(),
      average: ev.query('a').lastHours(2).average(),
      seen: ev.query('a').lastSeen(),
      ratio: ev.ratio('a', 'b').lastHours(1),
      delta: ev.delta('a', 'b').lastHours(1).sum(),
      balance: ev.balanceDelta('x', 'y'),
      check: limiter.checkAndRecord('c'),
      usage: limiter.usage('c'),
      commit: reservation.commit(),
      export: ev.export(),
      merge: engine.eventStore({ name: 'other' }).merge(exp),
      window: w.value(),
      strict: engine.strict.inc('s', 2),
      lax: engine.lax.inc('l', 5),
    };
    const closing = engine.close();
    const results = Object.fromEntries(await Promise.all(Object.entries(issued).map(async ([k, p]) => [k, await (p as Promise<unknown>)])));
    await closing;
    assert.equal(results.sum, 9);
    assert.equal(results.ratio, 2);
    assert.equal(results.delta, 3);
    assert.equal(results.window, 4);
    assert.equal(results.strict, 2);
    assert.equal(results.lax, 5);
    assert.equal((results.check as { allowed: boolean }).allowed, true);
    const exported = Object.keys((results.export as { counters: object }).counters);
    for (const id of ['a', 'b', 'x', 'y']) assert.ok(exported.includes(id), `${id} in ${exported.join(',')}`);
    assert.deepEqual(results.merge, { merged: true });
    // After close() began: refused, never half-done.
    await assert.rejects(ev.query('a').lastHours(1).sum(), closed);
    await assert.rejects(ev.ratio('a', 'b').lastHours(1), closed);
    await assert.rejects(limiter.checkAndRecord('c'), closed);
    await assert.rejects(ev.export(), closed);
    assert.throws(() => ev.record('a'), closed);
  });
});

describe('a shard thread that dies while the engine starts or answers', () => {
  test('a thread killed while it boots is replaced and start() resolves (it used to hang forever)', { timeout: 60_000 }, async () => {
    const clock = new TestClock(SPEC_START);
    for (const delayTurns of [0, 1, 3, 10]) {
      const router = new Router(1, resolveOptions({ shards: 1, clock }), clock.timeCell);
      const started = router.start();
      for (let i = 0; i < delayTurns; i++) await tick();
      await router.lanes[0]!.killThreadForTest();
      await started;
      const stats = await router.lanes[0]!.stats();
      assert.ok(stats.attaches >= 1);
      await router.close();
    }
  });

  test('stats() calls in flight when a shard thread dies all settle, answered by the replacement', { timeout: 60_000 }, async () => {
    const engine = await createEngine({ clock: new TestClock(SPEC_START), shards: 1 });
    try {
      const lane = engine[internals].router.lanes[0]!;
      const calls = Array.from({ length: 50 }, () => engine.stats());
      await lane.killThreadForTest();
      const more = Array.from({ length: 50 }, () => engine.stats());
      const settledAll = await Promise.allSettled([...calls, ...more]);
      assert.deepEqual(settledAll.filter((r) => r.status === 'rejected'), []);
      assert.ok((await engine.stats()).shards[0]!.restarts >= 1);
    } finally {
      await engine.close();
    }
  });
});

describe('defect 5: a shard restart under a producer that writes on every turn', () => {
  test('12 kills under a per-turn producer: no op fails and every count is exact', { timeout: 120_000 }, async () => {
    const engine = await createEngine({ clock: new TestClock(SPEC_START), shards: 1 });
    try {
      const lane = engine[internals].router.lanes[0]!;
      const set = engine.windows({ size: 2, unit: 'hour' });
      let written = 0;
      let failures = 0;
      let stop = false;
      // A few ops per turn, every turn: the pattern that used to fill the restart backlog with tiny batches
      // and then block the event loop (so the replacement could never attach) until TW_SHARD_STALLED.
      const producer = (async () => {
        for (let turn = 0; !stop; turn++) {
          for (let i = 0; i < 3; i++) {
            try {
              set.observe(`k${(turn + i) % 50}`);
              written++;
            } catch {
              failures++;
            }
          }
          await tick();
        }
      })();
      for (let kill = 0; kill < 12; kill++) {
        // The replacement answers first (a control round trip), so each kill hits a running thread, not one
        // still booting (a thread that never gets to apply anything is given up after maxRestarts).
        await engine.stats();
        for (let i = 0; i < 30; i++) await tick();
        await lane.killThreadForTest();
      }
      for (let i = 0; i < 30; i++) await tick();
      stop = true;
      await producer;
      assert.equal(failures, 0, 'no op failed');
      let total = 0;
      for (let k = 0; k < 50; k++) total += await set.value(`k${k}`);
      assert.equal(total, written);
      assert.ok((await engine.stats()).shards[0]!.restarts >= 12);
    } finally {
      await engine.close();
    }
  });
});
