/**
 * Instance-aware counters without Redis (this engine is the only instance: the cumulative is my slice),
 * their argument checks, the options that shape them, and the heartbeat period.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createEngine, ErrorCode, eq, gt, TallyworksError } from '../../../src/index.js';
import { heartbeatIntervalMs } from '../../../src/flusher/flusher-client.js';
import { expectError, open } from '../../helpers/counter-scenarios.js';

test('embedded: both flavours answer [cumulative, mine] with one instance; instances() is this engine', async () => {
  const e = await open({ instanceId: 'solo' });
  assert.equal(e.instanceId, 'solo');
  assert.deepEqual(await e.instances(), { count: 1, ids: ['solo'] });
  for (const c of [e.instanceAware.strict, e.instanceAware.lax]) {
    assert.deepEqual(await c.inc('k', 3), [3, 3]);
    assert.deepEqual(await c.dec('k'), [2, 2]);
    assert.deepEqual(await c.setOnInstance('k', 7), [7, 7]);
    assert.deepEqual(await c.incIf('k', eq(7), 1), [[8, 8], [7, 7]]);
    assert.deepEqual(await c.setOnInstanceIf('k', gt(100), 1), [[8, 8], [8, 8]]);
    assert.deepEqual(await c.delOnInstance('k'), [0, 8]);
    assert.deepEqual(await c.get('k'), [0, 0]);
    assert.deepEqual(await c.set('k', 5), [5, 5]);
    assert.deepEqual(await c.del('k'), [5, 5]);
    assert.deepEqual(await c.incAll([['a', 1], ['a', 2]]), [['a', 1, 1], ['a', 3, 3]]);
    await c.clearOnInstance();
    assert.deepEqual(await c.getAll(['a']), [['a', 0, 0]]);
  }
  e.instanceAware.lax.add('fast', 4);
  assert.deepEqual(await e.instanceAware.lax.get('fast'), [4, 4], 'the synchronous add counts');
  assert.deepEqual(await e.instanceAware.strict.get('fast'), [0, 0], 'strict and lax are separate counters');
});

test('bad arguments reject with a typed error naming them, and write nothing', async () => {
  const e = await open({});
  const c = e.instanceAware.strict;
  await expectError(() => c.inc('a:b', 1), ErrorCode.INVALID_KEY, 'a key with ":"');
  await expectError(() => c.inc('k', 1.5), ErrorCode.INVALID_ARGUMENT, 'a fraction', RangeError);
  await expectError(() => c.setOnInstance('k', '3' as never), ErrorCode.INVALID_ARGUMENT, 'a string value', TypeError);
  await expectError(() => c.setOnInstanceIf('k', {} as never, 1), ErrorCode.INVALID_ARGUMENT, 'not a comparator', TypeError);
  await expectError(() => c.incAll([['ok', 1], ['', 1]]), ErrorCode.INVALID_KEY, 'a bad item in a batch');
  await expectError(() => e.instanceAware.lax.add('k', Number.NaN), ErrorCode.INVALID_ARGUMENT, 'a NaN delta', RangeError);
  assert.deepEqual(await c.get('ok'), [0, 0], 'the good item of the refused batch was not written');
  await expectError(() => c.inc('k', Number.MAX_SAFE_INTEGER).then(() => c.inc('k', 1)), ErrorCode.INVALID_ARGUMENT, 'past 2^53 − 1');
  assert.deepEqual(await c.get('k'), [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER], 'the refused inc wrote nothing');
  await e.close();
  await expectError(() => c.get('k'), ErrorCode.CLOSED, 'after close');
  await expectError(() => e.instances(), ErrorCode.CLOSED, 'instances() after close');
});

test('instanceId, deadInstanceThresholdMs and instanceRetentionMs are validated before anything starts', async () => {
  const bad: Array<[object, string, typeof TypeError | typeof RangeError]> = [
    [{ instanceId: '' }, 'instanceId', RangeError],
    [{ instanceId: 'a:b' }, 'instanceId', RangeError],
    [{ instanceId: 'a#1' }, 'instanceId', RangeError],
    [{ instanceId: 'x'.repeat(240) }, 'instanceId', RangeError],
    [{ instanceId: 'a\uD800' }, 'instanceId', RangeError],
    [{ instanceId: 7 }, 'instanceId', TypeError],
    [{ deadInstanceThresholdMs: 10 }, 'deadInstanceThresholdMs', RangeError],
    [{ deadInstanceThresholdMs: '30s' }, 'deadInstanceThresholdMs', TypeError],
    [{ deadInstanceThresholdMs: 5000, instanceRetentionMs: 4000 }, 'instanceRetentionMs', RangeError],
  ];
  for (const [options, name, kind] of bad) {
    await assert.rejects(
      createEngine(options as never),
      (err: unknown) => err instanceof TallyworksError && err.code === ErrorCode.INVALID_OPTION && err instanceof kind && err.message.includes(name),
      JSON.stringify(options),
    );
  }
  const e = await open({});
  assert.match(e.instanceId, /^[0-9a-f]{16}$/, 'the default: a new random id');
  const f = await open({});
  assert.notEqual(f.instanceId, e.instanceId);
});

test('the heartbeat period is a third of the dead-instance threshold (not a fixed 15 s)', () => {
  assert.equal(heartbeatIntervalMs(30_000), 10_000);
  assert.equal(heartbeatIntervalMs(3_000), 1_000);
  assert.equal(heartbeatIntervalMs(30), 10);
});
