/**
 * Exactness at volume and under shard-thread death, through the public API.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createEngine, ErrorCode, TallyworksError, TestClock } from '../../src/index.js';
import { internals } from '../../src/engine.js';
import type { RecordKind } from '../../common/messages.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const pause = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 1));

describe('exactness', () => {
  test('10M observations over 100k keys read back exact totals (by id and by handle)', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 2 });
    try {
      const set = engine.windows({ size: 4, unit: 'hour' });
      const keys = Array.from({ length: 100_000 }, (_, i) => `user${i}`);
      const handles = keys.map((k) => set.window(k));
      // Key i gets 100 observations: 50 by id, 50 through its handle, with deltas that differ per key.
      for (let round = 0; round < 50; round++) {
        for (let i = 0; i < keys.length; i++) set.observe(keys[i]!);
        for (let i = 0; i < handles.length; i++) handles[i]!.observe(1 + (i % 3));
        if (round % 10 === 9) await tick();
      }
      let wrong = 0;
      let total = 0;
      for (let i = 0; i < keys.length; i++) {
        const v = await set.value(keys[i]!);
        total += v;
        if (v !== 50 + 50 * (1 + (i % 3))) wrong++;
      }
      assert.equal(wrong, 0, 'every key exact');
      let expected = 0;
      for (let i = 0; i < keys.length; i++) expected += 50 + 50 * (1 + (i % 3));
      assert.equal(total, expected);
    } finally {
      await engine.close();
    }
  });
});

describe('shard crash recovery', () => {
  test('killing a shard thread under load loses nothing and doubles nothing', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 2, batchSize: 4096 });
    try {
      const { router } = engine[internals];
      const set = engine.windows({ size: 2, unit: 'hour' });
      const keys = Array.from({ length: 1000 }, (_, i) => `k${i}`);
      const expected = new Map<string, number>();
      let kills = 0;
      for (let chunk = 0; chunk < 300; chunk++) {
        for (let i = 0; i < 5_000; i++) {
          const key = keys[(chunk * 7 + i) % keys.length]!;
          const n = 1 + (i % 5);
          set.observe(key, n);
          expected.set(key, (expected.get(key) ?? 0) + n);
        }
        // Kill shard 0 in the middle of the stream, several times, without waiting for it to die. A control
        // round trip first, so that the kill hits a running thread and not the previous kill's replacement
        // still booting (kills while booting have their own test below).
        if (chunk % 60 === 30) {
          await engine.stats();
          void router.lanes[0]!.killThreadForTest();
          kills++;
        }
        // Yield as a service does between requests: the dead thread can only be replaced on a loop turn
        // (a producer that never yields gets TW_SHARD_STALLED instead; see the next test).
        await pause();
      }
      for (const key of keys) assert.equal(await set.value(key), expected.get(key), key);
      const stats = await engine.stats();
      assert.equal(stats.shards[0]!.restarts, kills, 'every death was noticed and the thread replaced');
      assert.equal(stats.shards[0]!.attaches, kills + 1, 'each replacement re-attached to the same memory');
      assert.equal(stats.shards[1]!.restarts, 0);
    } finally {
      await engine.close();
    }
  });

  test('a producer that never yields while its shard is dead gets TW_SHARD_STALLED, and nothing it was told failed is counted', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 1, batchSize: 16, maxInFlight: 1, stallTimeoutMs: 300 });
    try {
      const { router } = engine[internals];
      const w = engine.window('solo', { size: 1, unit: 'hour' });
      w.observe();
      assert.equal(await w.value(), 1);
      await router.lanes[0]!.killThreadForTest();
      let accepted = 1;
      let error: unknown;
      try {
        // The dead shard cannot be replaced while this loop holds the thread: the restart backlog
        // (64 batches of 16 ops) fills up, then the producer waits stallTimeoutMs and gets the error.
        for (let i = 0; i < 100_000; i++) {
          w.observe();
          accepted++;
        }
      } catch (err) {
        error = err;
      }
      assert.ok(error instanceof TallyworksError && error.code === ErrorCode.SHARD_STALLED, String(error));
      assert.ok(accepted < 100_000);
      // Once the event loop turns, the shard is replaced and everything accepted is applied exactly once.
      assert.equal(await w.value(), accepted);
      w.observe();
      assert.equal(await w.value(), accepted + 1);
    } finally {
      await engine.close();
    }
  });

  test('a batch that kills every thread that applies it gets the shard given up: TW_SHARD_FAILED', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 1, maxRestarts: 2 });
    const lane = engine[internals].router.lanes[0]!;
    const w = engine.window('doomed', { size: 1, unit: 'hour' });
    w.observe();
    assert.equal(await w.value(), 1);
    // A record of a kind no shard knows: applying its batch throws in the shard thread, every time.
    lane.createRecord(4, 99 as RecordKind, 0);
    const failed = (err: unknown) => err instanceof TallyworksError && err.code === ErrorCode.SHARD_FAILED;
    await assert.rejects(w.value(), failed);
    assert.match(String(lane.failed?.message), /died 3 times without applying batch/);
    assert.throws(() => w.observe(), failed);
    await assert.rejects(engine.close(), failed, 'close reports what could not be applied');
  });

  test('threads killed again and again, even while booting, are replaced and nothing is lost', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 1 });
    try {
      const lane = engine[internals].router.lanes[0]!;
      const w = engine.window('survivor', { size: 1, unit: 'hour' });
      for (let i = 0; i < 5; i++) {
        w.observe();
        await lane.killThreadForTest();
        await tick();
      }
      assert.equal(await w.value(), 5);
      assert.ok((await engine.stats()).shards[0]!.restarts >= 1);
    } finally {
      await engine.close();
    }
  });
});
