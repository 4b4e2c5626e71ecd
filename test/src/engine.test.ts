/**
 * Engine lifecycle, option validation and key rules, on the public API.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  createEngine,
  ErrorCode,
  sanitizeKey,
  SystemClock,
  TallyworksError,
  TestClock,
  validateKey,
} from '../../src/index.js';
import { defaultShards } from '../../src/options.js';

function optionError(kind: ErrorConstructor, option: string) {
  return (err: unknown): boolean =>
    err instanceof kind &&
    err instanceof TallyworksError &&
    err.code === ErrorCode.INVALID_OPTION &&
    err.message.includes(`option "${option}"`);
}

describe('createEngine options', () => {
  test('each bad option is rejected with a message naming the option and its rule', async () => {
    const cases: Array<[Record<string, unknown>, ErrorConstructor, string]> = [
      [{ shards: 0 }, RangeError, 'shards'],
      [{ shards: 65 }, RangeError, 'shards'],
      [{ shards: 1.5 }, RangeError, 'shards'],
      [{ shards: '2' }, TypeError, 'shards'],
      [{ batchSize: 8 }, RangeError, 'batchSize'],
      [{ batchSize: null }, TypeError, 'batchSize'],
      [{ maxInFlight: 0 }, RangeError, 'maxInFlight'],
      [{ stallTimeoutMs: 0 }, RangeError, 'stallTimeoutMs'],
      [{ stallTimeoutMs: Number.NaN }, RangeError, 'stallTimeoutMs'],
      [{ stallTimeoutMs: '1s' }, TypeError, 'stallTimeoutMs'],
      [{ maxShardMemoryBytes: 1024 }, RangeError, 'maxShardMemoryBytes'],
      [{ maxShardMemoryBytes: 8 * 2 ** 30 }, RangeError, 'maxShardMemoryBytes'],
      [{ maxRestarts: -1 }, RangeError, 'maxRestarts'],
      [{ maxInFlight: 8, restartBacklogBatches: 4 }, RangeError, 'restartBacklogBatches'],
      [{ clock: Date }, TypeError, 'clock'],
      [{ clock: { now: () => 0 } }, TypeError, 'clock'],
      [{ shardz: 2 }, TypeError, 'shardz'],
    ];
    for (const [options, kind, name] of cases) {
      await assert.rejects(createEngine(options as never), optionError(kind, name), JSON.stringify(options));
    }
    await assert.rejects(createEngine('fast' as never), optionError(TypeError, 'options'));
    const message = await createEngine({ shards: 0 }).catch((err: Error) => err.message);
    assert.match(String(message), /must be an integer from 1 to 64; got 0/);
  });

  test('the shard count defaults from the machine, leaving a core to the caller', async () => {
    const engine = await createEngine({ clock: new TestClock() });
    try {
      assert.equal(engine.shards, defaultShards());
      assert.equal((await engine.stats()).shards.length, engine.shards);
      assert.ok(engine.shards >= 1);
    } finally {
      await engine.close();
    }
  });
});

describe('engine lifecycle', () => {
  test('close() is idempotent, drains, and makes later use fail with TW_CLOSED', async () => {
    const clock = new TestClock();
    const engine = await createEngine({ clock, shards: 2 });
    const w = engine.window('x', { size: 2, unit: 'minute' });
    for (let i = 0; i < 5000; i++) w.observe();
    const first = engine.close();
    assert.equal(engine.close(), first, 'the same promise');
    await first;
    await engine.close();
    const closed = (err: unknown) => err instanceof TallyworksError && err.code === ErrorCode.CLOSED;
    assert.throws(() => w.observe(), closed);
    assert.throws(() => engine.window('y', { size: 2, unit: 'minute' }), closed);
    assert.throws(() => engine.window('x', { size: 2, unit: 'minute' }), closed, 'the last shape and a loaded window: still closed');
    await assert.rejects(engine.stats(), closed);
  });

  test('await using closes the engine at the end of the block', async () => {
    let escaped: import('../../src/index.js').Engine | undefined;
    {
      await using engine = await createEngine({ clock: new TestClock(), shards: 1 });
      escaped = engine;
      engine.window('a', { size: 1, unit: 'second' }).observe();
    }
    assert.throws(() => escaped!.window('a', { size: 1, unit: 'second' }), (err: unknown) => (err as TallyworksError).code === ErrorCode.CLOSED);
  });

  test('stats come from each shard actor over the control plane', async () => {
    const engine = await createEngine({ clock: new TestClock(), shards: 2 });
    try {
      const set = engine.windows({ size: 5, unit: 'second' });
      for (let i = 0; i < 100; i++) set.observe(`k${i}`);
      await set.value('k1');
      await set.value('k2');
      for (let i = 0; i < 100; i++) await set.value(`k${i}`);
      const startedAt = engine.clock.now();
      const { shards } = await engine.stats();
      assert.equal(shards.reduce((sum, s) => sum + s.records, 0), 100);
      assert.deepEqual(shards.map((s) => s.shard), [0, 1]);
      (engine.clock as TestClock).set(Date.UTC(2030, 0, 1));
      const later = await engine.stats();
      assert.deepEqual(later.shards.map((s) => s.clockMs), [Date.UTC(2030, 0, 1), Date.UTC(2030, 0, 1)], 'set() is seen across threads at once');
      for (const s of shards) {
        assert.equal(s.clockMs, startedAt, 'the shard thread reads the test clock');
        assert.equal(s.attaches, 1);
        assert.equal(s.restarts, 0);
        assert.equal(s.inflight, 0);
      }
    } finally {
      await engine.close();
    }
  });

  test('the system clock follows wall time through its ticker, shared by engines and stopped by the last', async () => {
    const a = await createEngine({ shards: 1 });
    const b = await createEngine({ shards: 1, clock: new SystemClock() });
    try {
      const seen = a.clock.now();
      assert.ok(Math.abs(seen - Date.now()) < 1000);
      const start = Date.now();
      while (a.clock.now() === seen && Date.now() - start < 2000) await new Promise((r) => setTimeout(r, 2));
      assert.ok(a.clock.now() > seen, 'the time cell moved');
    } finally {
      await a.close();
      await b.close();
    }
    assert.ok(Math.abs(new SystemClock().now() - Date.now()) < 50, 'with no ticker, now() reads the OS clock');
  });
});

describe('keys', () => {
  test('spec scenario 1: "", 256 × "a" and "u:1" rejected; 255 × "a" accepted; sanitize', () => {
    const invalid = (err: unknown) => err instanceof TypeError && (err as TallyworksError).code === ErrorCode.INVALID_KEY;
    assert.throws(() => validateKey(''), invalid);
    assert.throws(() => validateKey('a'.repeat(256)), invalid);
    assert.throws(() => validateKey('u:1'), invalid);
    assert.throws(() => validateKey('€'.repeat(86)), invalid, '258 UTF-8 bytes');
    assert.equal(validateKey('a'.repeat(255)), 'a'.repeat(255));
    assert.equal(sanitizeKey('user:123'), 'user123');
    assert.throws(() => sanitizeKey(':'), invalid);
    assert.throws(() => validateKey(7), /key must be a string; got 7 \(number\)/);
  });
});

describe('package entry', () => {
  test('package.json exports resolve to the built entry (for import and require) and its types', async () => {
    const pkg = (await import('node:fs')).readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8');
    const { exports, engines } = JSON.parse(pkg) as { exports: Record<string, { default: string; types: string }>; engines: { node: string } };
    assert.equal(engines.node, '>=20');
    const entry = new URL(`../../../${exports['.']!.default}`, import.meta.url);
    const mod = (await import(entry.href)) as Record<string, unknown>;
    assert.equal(typeof mod.createEngine, 'function');
    assert.ok((await import('node:fs')).existsSync(new URL(`../../../${exports['.']!.types}`, import.meta.url)), 'the types file exists');
  });
});
