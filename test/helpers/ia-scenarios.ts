/**
 * Instance-aware counter scenarios 17–27 of the spec and the seed bugs it names, written once against a
 * {@link Mode} (a private redis-server, or a Redis Cluster) and run for both flavours, strict and lax.
 *
 * A, B and C are engines on one prefix with their own instance ids. "A silent" is A's flusher pausing
 * its heartbeats (a frozen process: it sends nothing); A is dead to the others once the threshold
 * passed, which we poll for with a bounded deadline (Redis TIME is real time: no test clock reaches it).
 * Lax engines read with allowedLagMs 0 (every read refreshes from Redis) and flush after each write, so
 * both flavours must answer exactly alike.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { type Engine, type EngineOptions, eq, ErrorCode, gt, type InstanceAwareCounters, type Slice } from '../../src/index.js';
import { internals } from '../../src/engine.js';
import { unpack } from 'msgpackr';
import { partitionKey, partitionOf } from '../../common/redis.js';
import { expectError, freshPrefix, it, type Mode, until } from './counter-scenarios.js';

type Flavour = 'strict' | 'lax';

/** The slice Redis holds for incarnation `inc` ("<instanceId>#<generation>") of `key` (0: none). */
export async function sliceInRedis(redis: { hgetBuffer(key: string, field: string): Promise<Buffer | null> }, prefix: string, kind: 'is' | 'il', key: string, inc: string): Promise<number> {
  const raw = await redis.hgetBuffer(partitionKey(prefix, kind, partitionOf(key)), key);
  const slices = raw === null ? [] : (unpack(raw) as Array<string | number>);
  const at = slices.indexOf(inc);
  return at < 0 ? 0 : Number(slices[at + 1]);
}

/** One instance: its engine, and its instance-aware counters of the flavour under test. */
interface Instance {
  readonly engine: Engine;
  /** The op, then (lax) a flush, so the next instance's read sees it. */
  run<T>(op: (c: InstanceAwareCounters) => Promise<T>): Promise<T>;
  /** Stops (true) or resumes this instance's heartbeats. */
  silent(paused: boolean): Promise<void>;
}

export function instanceAwareScenarios(mode: () => Mode): void {
  for (const flavour of ['strict', 'lax'] as const) describe(flavour, () => flavourScenarios(mode, flavour));
}

function flavourScenarios(mode: () => Mode, flavour: Flavour): void {
  /** Instances named `ids` on one fresh prefix. */
  async function instances(ids: readonly string[], options: EngineOptions = {}): Promise<Instance[]> {
    const prefix = freshPrefix(`ia${flavour}`);
    return Promise.all(
      ids.map(async (id) => {
        const engine = await mode().engine({ prefix, instanceId: id, allowedLagMs: 0, ...options });
        const counters = engine.instanceAware[flavour];
        return {
          engine,
          async run<T>(op: (c: InstanceAwareCounters) => Promise<T>): Promise<T> {
            const result = await op(counters);
            if (flavour === 'lax') await engine.instanceAware.lax.flush();
            return result;
          },
          silent: (paused: boolean) => engine[internals].flusher!.pauseHeartbeatsForTest(paused),
        };
      }),
    );
  }

  /** Waits until `who` reads `expected` for `key` (the silent instance is past the threshold). */
  const reads = (who: Instance, key: string, expected: Slice, what: string): Promise<number> =>
    until(
      async () => JSON.stringify(await who.run((c) => c.get(key))) === JSON.stringify(expected),
      5000,
      what,
      () => who.run((c) => c.get(key)),
    );

  it('scenario 17: A inc 3 → [3,3]; B inc 5 → [8,5]; A setOnInstance 7 → [12,7]; A delOnInstance → [5,7]', async () => {
    const [a, b] = await instances(['a', 'b']);
    assert.deepEqual(await a!.run((c) => c.inc('k', 3)), [3, 3]);
    assert.deepEqual(await b!.run((c) => c.inc('k', 5)), [8, 5]);
    assert.deepEqual(await a!.run((c) => c.setOnInstance('k', 7)), [12, 7]);
    assert.deepEqual(await a!.run((c) => c.delOnInstance('k')), [5, 7]);
    assert.deepEqual(await b!.run((c) => c.get('k')), [5, 5]);
    assert.deepEqual(await a!.run((c) => c.get('k')), [5, 0]);
  });

  it('scenario 18: A inc 10, B inc 5; A set 100 → [100,100]; B inc 5 → [105,5]', async () => {
    const [a, b] = await instances(['a', 'b']);
    await a!.run((c) => c.inc('k', 10));
    await b!.run((c) => c.inc('k', 5));
    assert.deepEqual(await a!.run((c) => c.set('k', 100)), [100, 100]);
    assert.deepEqual(await b!.run((c) => c.get('k')), [100, 0], "B's old slice is stale after the global set");
    assert.deepEqual(await b!.run((c) => c.inc('k', 5)), [105, 5]);
  });

  it('scenario 19: A, B, C each inc 100; A del → 300; B inc 10, C inc 10 → 20', async () => {
    const [a, b, c] = await instances(['a', 'b', 'c']);
    for (const x of [a!, b!, c!]) await x.run((n) => n.inc('k', 100));
    assert.deepEqual(await a!.run((n) => n.del('k')), [300, 100], 'del answers what the key had');
    assert.deepEqual(await b!.run((n) => n.inc('k', 10)), [10, 10]);
    assert.deepEqual(await c!.run((n) => n.inc('k', 10)), [20, 10]);
  });

  it('scenario 20 (threshold 100 ms): A inc 20 on k1..k3; A silent; B reads 0 on each', async () => {
    const [a, b] = await instances(['a', 'b'], { deadInstanceThresholdMs: 100 });
    for (const k of ['k1', 'k2', 'k3']) await a!.run((c) => c.inc(k, 20));
    assert.deepEqual(await b!.run((c) => c.get('k1')), [20, 0], 'A counts while it beats');
    await a!.silent(true);
    for (const k of ['k1', 'k2', 'k3']) await reads(b!, k, [0, 0], `B reads ${k} as 0 once A is past the threshold`);
  });

  it('scenario 21 (threshold 100 ms): A inc 20; A silent; B get → 0; A inc 5 → [25,25]', async () => {
    const [a, b] = await instances(['a', 'b'], { deadInstanceThresholdMs: 100 });
    await a!.run((c) => c.inc('k', 20));
    await a!.silent(true);
    await reads(b!, 'k', [0, 0], 'A is dead to B');
    assert.deepEqual(await a!.run((c) => c.inc('k', 5)), [25, 25], 'A returns with its whole slice');
  });

  it('scenario 22: A k1 = 10, k2 = 20; A reaped; A inc(k1, 1) → k1 = 11 and k2 = 20 (every key recovered)', async () => {
    const [a, b] = await instances(['a', 'b'], { deadInstanceThresholdMs: 100 });
    await a!.run((c) => c.inc('k1', 10));
    await a!.run((c) => c.inc('k2', 20));
    await a!.silent(true);
    await reads(b!, 'k2', [0, 0], 'A is dead to B');
    // k1 may live in another partition (a cluster slot of its own), whose registry learns of A's silence
    // from its own last heartbeat: waited for too (bounded), not read at once.
    await reads(b!, 'k1', [0, 0], "A is dead to B in k1's partition too");
    assert.deepEqual(await a!.run((c) => c.inc('k1', 1)), [11, 11]);
    // Every partition learns A is back from A's next heartbeat there (within a third of the threshold).
    await a!.silent(false);
    await reads(b!, 'k2', [20, 0], 'the key A did not touch on its return counts again too');
    assert.deepEqual(await b!.run((c) => c.get('k1')), [11, 0]);
  });

  it('scenario 23: A inc 20; A reaped; B set 100; A returns → total 100, not 120', async () => {
    const [a, b] = await instances(['a', 'b'], { deadInstanceThresholdMs: 100 });
    await a!.run((c) => c.inc('k', 20));
    await a!.silent(true);
    await reads(b!, 'k', [0, 0], 'A is dead to B');
    assert.deepEqual(await b!.run((c) => c.set('k', 100)), [100, 100]);
    assert.deepEqual(await a!.run((c) => c.get('k')), [100, 0], 'A returns: its slice was before the set');
    await a!.silent(false);
    assert.deepEqual(await b!.run((c) => c.get('k')), [100, 100]);
  });

  it('scenario 24: A inc 10; B set 100; A dies → total 100 (the seed gives 90)', async () => {
    const [a, b] = await instances(['a', 'b'], { deadInstanceThresholdMs: 100 });
    await a!.run((c) => c.inc('k', 10));
    assert.deepEqual(await b!.run((c) => c.set('k', 100)), [100, 100]);
    await a!.silent(true);
    // Once A is dead to B (its registry entry is old enough), B still reads the whole value.
    await until(async () => !(await b!.engine.instances()).ids.includes('a'), 5000, 'A is dead to B');
    assert.deepEqual(await b!.run((c) => c.get('k')), [100, 100]);
    await a!.engine.close();
    assert.deepEqual(await b!.run((c) => c.get('k')), [100, 100], 'nor does closing A subtract its stale slice');
  });

  it('scenario 25: A inc 10; B set 100; A get → slice 0; A inc 5 → [105,5]; A delOnInstance → [100,5]', async () => {
    const [a, b] = await instances(['a', 'b']);
    await a!.run((c) => c.inc('k', 10));
    await b!.run((c) => c.set('k', 100));
    assert.deepEqual(await a!.run((c) => c.get('k')), [100, 0], 'get does not adopt the stale slice');
    assert.deepEqual(await a!.run((c) => c.inc('k', 5)), [105, 5]);
    assert.deepEqual(await a!.run((c) => c.delOnInstance('k')), [100, 5]);
  });

  it('scenario 26 (threshold 500 ms): A inc 40, B inc 60; 100 ms later B get → 100', async () => {
    const [a, b] = await instances(['a', 'b'], { deadInstanceThresholdMs: 500 });
    await a!.run((c) => c.inc('k', 40));
    await b!.run((c) => c.inc('k', 60));
    await delay(100);
    assert.deepEqual(await b!.run((c) => c.get('k')), [100, 60]);
  });

  it('scenario 27: A slice 7, B slice 5; setOnInstanceIf compares against my slice', async () => {
    const [a, b] = await instances(['a', 'b']);
    await a!.run((c) => c.setOnInstance('k', 7));
    await b!.run((c) => c.setOnInstance('k', 5));
    assert.deepEqual(await a!.run((c) => c.setOnInstanceIf('k', eq(7), 9)), [[14, 9], [12, 7]]);
    assert.deepEqual(await a!.run((c) => c.setOnInstanceIf('k', gt(10), 50)), [[14, 9], [14, 9]], 'mine (9) is not > 10: nothing written');
    assert.deepEqual(await a!.run((c) => c.incIf('k', gt(10), 1)), [[15, 10], [14, 9]], 'incIf compares against the cumulative (14)');
    assert.deepEqual(await b!.run((c) => c.setIf('k', eq(14), 3)), [[15, 5], [15, 5]], 'setIf: 15 ≠ 14, nothing written');
    assert.deepEqual(await b!.run((c) => c.setIf('k', eq(15), 3)), [[3, 3], [15, 5]], 'setIf passes: the global total, as my slice');
  });

  it('seed bug: clearOnInstance subtracts nothing stale (A inc 10; B set 100; A clearOnInstance → 100)', async () => {
    const [a, b] = await instances(['a', 'b']);
    await a!.run((c) => c.inc('k', 10));
    await a!.run((c) => c.inc('other', 4));
    await b!.run((c) => c.set('k', 100));
    await b!.run((c) => c.inc('other', 1));
    await a!.run((c) => c.clearOnInstance());
    assert.deepEqual(await b!.run((c) => c.get('k')), [100, 100]);
    assert.deepEqual(await b!.run((c) => c.get('other')), [1, 1], "A's live slice is gone, B's stays");
    assert.deepEqual(await a!.run((c) => c.get('other')), [1, 0]);
    assert.deepEqual(await a!.run((c) => c.inc('other', 2)), [3, 2], 'A starts a new slice');
  });

  if (flavour === 'strict') {
    it('ops queued after clearOnInstance (one script call or the next) see none of the old slices', async () => {
      const [a, b] = await instances(['a', 'b']);
      await a!.run((c) => c.inc('k', 10));
      await b!.run((c) => c.inc('k', 1));
      const counters = a!.engine.instanceAware.strict;
      const [, changed] = await Promise.all([counters.clearOnInstance(), counters.incIf('k', eq(1), 5)]);
      assert.deepEqual(changed, [[6, 5], [1, 0]], "the cumulative before is B's slice only");
      assert.deepEqual(await b!.run((c) => c.get('k')), [6, 1]);
    });
  }

  it('live slices that add up past ±(2^53 − 1) (a dead instance returned) are reported, not rounded; set starts afresh', async () => {
    const max = Number.MAX_SAFE_INTEGER;
    const [a, b, c] = await instances(['a', 'b', 'c'], { deadInstanceThresholdMs: 100 });
    assert.deepEqual(await a!.run((n) => n.inc('k', max)), [max, max]);
    await a!.silent(true);
    await reads(b!, 'k', [0, 0], 'A is dead to B');
    assert.deepEqual(await b!.run((n) => n.inc('k', max)), [max, max], 'the live slices fit');
    await a!.silent(false);
    const unsafe = async (): Promise<boolean> => {
      try {
        await b!.run((n) => n.get('k'));
        return false;
      } catch (err) {
        return (err as { code?: string }).code === ErrorCode.UNSAFE_TOTAL;
      }
    };
    await until(unsafe, 5000, 'a read reports the unsafe total once A counts again');
    await expectError(() => b!.run((n) => n.inc('k', 1)), ErrorCode.UNSAFE_TOTAL, 'inc on an unsafe total');
    await expectError(() => c!.run((n) => n.delOnInstance('k')), ErrorCode.UNSAFE_TOTAL, "delOnInstance: the others' slices alone are unsafe");
    await expectError(() => b!.run((n) => n.getAll(['k'])), ErrorCode.UNSAFE_TOTAL, 'a batch read');
    assert.deepEqual(await b!.run((n) => n.set('k', 5)), [5, 5], 'a global set starts the key afresh');
    assert.deepEqual(await a!.run((n) => n.get('k')), [5, 0]);
  });

  it('seed bug: a negative slice is restored like any other when its instance returns', async () => {
    const [a, b] = await instances(['a', 'b'], { deadInstanceThresholdMs: 100 });
    assert.deepEqual(await a!.run((c) => c.dec('k', 5)), [-5, -5]);
    assert.deepEqual(await b!.run((c) => c.inc('k', 10)), [5, 10]);
    await a!.silent(true);
    await reads(b!, 'k', [10, 10], 'A is dead to B');
    await a!.silent(false);
    await reads(b!, 'k', [5, 10], "A's negative slice counts again");
  });

  it('close() removes my slices at once; another engine with the same instance id starts empty', async () => {
    const [a, b] = await instances(['a', 'b']);
    await a!.run((c) => c.inc('k', 5));
    await b!.run((c) => c.inc('k', 3));
    // Liveness is by heartbeat: A's first round reaches the registry a moment after it started (a loaded
    // machine showed B reading only itself once).
    await until(async () => (await b!.engine.instances()).ids.join() === 'a,b', 5000, 'B sees A and itself live');
    await a!.engine.close();
    assert.deepEqual(await b!.run((c) => c.get('k')), [3, 3]);
    assert.deepEqual(await b!.engine.instances(), { count: 1, ids: ['b'] });
    const again = await mode().engine({ prefix: b!.engine[internals].options.prefix, instanceId: 'a', allowedLagMs: 0 });
    assert.deepEqual(await again.instanceAware[flavour].get('k'), [3, 0], 'a closed instance does not come back');
  });

  it('an instance restarted with the same instance id (no close: a crash) takes its slices back', async () => {
    const [a, b] = await instances(['node-a', 'b'], { deadInstanceThresholdMs: 100 });
    await a!.run((c) => c.inc('k1', 7));
    await a!.run((c) => c.inc('k2', 2));
    await a!.silent(true);
    await reads(b!, 'k1', [0, 0], 'the crashed instance is dead to B');
    const restarted = await mode().engine({ prefix: b!.engine[internals].options.prefix, instanceId: 'node-a', allowedLagMs: 0, deadInstanceThresholdMs: 100 });
    assert.deepEqual(await restarted.instanceAware[flavour].get('k1'), [7, 7]);
    // Every other partition learns it is back from its first heartbeat there.
    await reads(b!, 'k2', [2, 0], 'every key of it counts again');
  });

  it('batches keep input order and apply duplicates in sequence', async () => {
    const [a, b] = await instances(['a', 'b']);
    await b!.run((c) => c.inc('y', 1));
    assert.deepEqual(await a!.run((c) => c.incAll([['x', 3], ['y', 2], ['x', 4]])), [['x', 3, 3], ['y', 3, 2], ['x', 7, 7]]);
    assert.deepEqual(await a!.run((c) => c.getAll(['y', 'x', 'missing'])), [['y', 3, 2], ['x', 7, 7], ['missing', 0, 0]]);
    assert.deepEqual(await a!.run((c) => c.setOnInstanceAll([['y', 10], ['y', 20]])), [['y', 11, 10], ['y', 21, 20]], 'each item its own result');
    assert.deepEqual(await a!.run((c) => c.setAll([['x', 1], ['x', 2]])), [['x', 1, 1], ['x', 2, 2]]);
    assert.deepEqual(await a!.run((c) => c.incAllIf([['x', eq(2), 5], ['y', eq(0), 5]])), [['x', [7, 7], [2, 2]], ['y', [21, 20], [21, 20]]]);
    assert.deepEqual(await a!.run((c) => c.incAll([])), []);
  });

  it('clear removes every instance-aware counter of this flavour under the prefix, every slice', async () => {
    const [a, b] = await instances(['a', 'b']);
    await a!.run((c) => c.inc('k', 1));
    await b!.run((c) => c.inc('k', 2));
    await a!.run((c) => c.clear());
    assert.deepEqual(await b!.run((c) => c.get('k')), [0, 0]);
  });
}
