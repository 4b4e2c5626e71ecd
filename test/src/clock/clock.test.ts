/**
 * The system clock's ticker sleeps while nothing uses the clock (issue: hardening, defect 14: an idle
 * engine used 2.8 % of a core), and the first use after a sleep still reads the current time.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { tickerSleepsForTest } from '../../../src/clock/clock.js';
import { createEngine } from '../../../src/index.js';

async function until(cond: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await delay(20);
  }
}

test('an idle engine lets the ticker sleep; an observation after the sleep is stamped with the current time', { timeout: 60_000 }, async () => {
  const engine = await createEngine({ shards: 1 });
  try {
    const w = engine.windows({ size: 2, unit: 'second' });
    w.observe('k');
    assert.equal(await w.value('k'), 1);
    await until(() => tickerSleepsForTest(), 'the ticker to sleep');
    // Asleep, the cell is refreshed only once a second: a stale read would be up to a second old.
    const now = engine.clock.now();
    assert.ok(Math.abs(now - Date.now()) < 250, `the first read after a sleep is current (off by ${now - Date.now()} ms)`);
    await until(() => !tickerSleepsForTest(), 'a use to wake the ticker');
    // Observations are stamped through the same touch: wait for another sleep, then observe and read back
    // within the current second (a stale stamp a second old would land in the previous bucket).
    await until(() => tickerSleepsForTest(), 'the ticker to sleep again');
    const before = Date.now();
    w.observe('fresh');
    const buckets = await engine.windows({ size: 2, unit: 'second' }).buckets('fresh');
    if (Math.floor(Date.now() / 1000) === Math.floor(before / 1000)) assert.deepEqual(buckets, [0, 1], 'counted in the current second');
    else assert.equal(buckets[0]! + buckets[1]!, 1);
  } finally {
    await engine.close();
  }
});

test('a sparse decider (an HTTP service) lets the ticker sleep while it decides; a dense burst wakes it', { timeout: 60_000 }, async () => {
  const engine = await createEngine({ shards: 1 });
  try {
    const limiter = engine.rateLimiter({ windowSeconds: 60 }).local.absolute;
    // One decision every 20 ms: the ticker falls asleep all the same.
    let asleep = false;
    for (let i = 0; i < 750 && !asleep; i++) {
      limiter.inc('sparse', 1000);
      await delay(20);
      asleep = tickerSleepsForTest();
    }
    assert.ok(asleep, 'the ticker sleeps under sparse decisions');
    for (let i = 0; i < 10_000; i++) limiter.inc('dense', 1e9);
    await until(() => !tickerSleepsForTest(), 'a dense burst to wake the ticker');
    assert.equal(limiter.count('dense'), 10_000);
  } finally {
    await engine.close();
  }
});
