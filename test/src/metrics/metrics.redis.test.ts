/**
 * The metrics of an engine on a private redis-server: the flusher's (cycles, delivered deltas, pending
 * keys, flush lag), Redis round trips and errors per component (flusher, strict counters, rate limiters),
 * decisions of the Redis and hybrid providers; then the server is killed and the lag and error figures
 * show it, parsed by a real exposition parser.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import parse from 'parse-prometheus-text-format';
import { type RedisServer, startRedisServer } from '../../../bench/redis-server.js';
import { type Engine } from '../../../src/index.js';
import { open } from '../../helpers/engines.js';
import { until } from '../../helpers/counter-scenarios.js';

let server: RedisServer;
before(async () => {
  server = await startRedisServer();
});
after(() => server?.stop());

function value(text: string, name: string, labels = ''): number | undefined {
  const f = parse(text).find((x) => x.name === name);
  const m = f?.metrics.find((s) => Object.entries(s.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',') === labels);
  return m === undefined ? undefined : Number(m.value);
}

test('with Redis: flusher, round trips per component, Redis and hybrid decisions; a killed server shows as errors and a growing flush lag', { timeout: 60_000 }, async () => {
  const engine: Engine = await open({ redis: server.url, prefix: 'metrics', flushIntervalMs: 20, redisCommandTimeoutMs: 300 });
  for (let i = 0; i < 10; i++) engine.lax.add(`k${i}`, 1);
  await engine.lax.flush();
  await engine.strict.inc('s', 2);
  const rl = engine.rateLimiter({ name: 'shared', windowSeconds: 10 });
  assert.equal((await rl.redis.absolute.inc('r', 0.1)).allowed, true);
  assert.equal((await rl.redis.absolute.inc('r', 0.1)).allowed, false);
  rl.hybrid.absolute.inc('h', 100);
  let text = await engine.metrics();
  assert.equal(value(text, 'tallyworks_lax_delivered_total'), 10);
  assert.equal(value(text, 'tallyworks_lax_pending_keys'), 0);
  assert.equal(value(text, 'tallyworks_flush_lag_seconds'), 0);
  assert.equal(value(text, 'tallyworks_flusher_restarts_total'), 0);
  assert.ok(value(text, 'tallyworks_flusher_cycles_total')! >= 1);
  assert.ok(value(text, 'tallyworks_redis_round_trips_total', 'component=flusher')! >= 1);
  assert.ok(value(text, 'tallyworks_redis_round_trips_total', 'component=strict')! >= 1);
  assert.ok(value(text, 'tallyworks_redis_round_trips_total', 'component=rate_limiter')! >= 2);
  assert.equal(value(text, 'tallyworks_redis_errors_total', 'component=flusher'), 0);
  assert.equal(value(text, 'tallyworks_decisions_total', 'limiter=shared,provider=redis.absolute,outcome=allowed'), 1);
  assert.equal(value(text, 'tallyworks_decisions_total', 'limiter=shared,provider=redis.absolute,outcome=rejected'), 1);
  assert.equal(value(text, 'tallyworks_decisions_total', 'limiter=shared,provider=hybrid.absolute,outcome=allowed'), 1);
  // A second limiter of the same window shares the hybrid: its series carry both names.
  engine.rateLimiter({ name: 'twin', windowSeconds: 10 }).hybrid.absolute.inc('h2', 100);
  text = await engine.metrics();
  assert.equal(value(text, 'tallyworks_decisions_total', 'limiter=shared,provider=hybrid.absolute,outcome=allowed'), undefined);
  assert.equal(value(text, 'tallyworks_decisions_total', 'limiter=shared,twin,provider=hybrid.absolute,outcome=allowed'), 2);
  assert.ok(value(text, 'tallyworks_hybrid_syncs_total', 'limiter=shared,twin,strategy=absolute')! >= 0);
  // The suppressed hybrid has series of its own, labelled by strategy.
  assert.equal(rl.hybrid.suppressed.inc('hs', 100).allowed, true);
  await rl.hybrid.suppressed.sync();
  text = await engine.metrics();
  assert.equal(value(text, 'tallyworks_decisions_total', 'limiter=shared,twin,provider=hybrid.suppressed,outcome=allowed'), 1);
  assert.ok(value(text, 'tallyworks_hybrid_syncs_total', 'limiter=shared,twin,strategy=suppressed')! >= 1);
  assert.equal(value(text, 'tallyworks_hybrid_pending_events', 'limiter=shared,twin,strategy=suppressed'), 0, 'committed by the sync');

  await server.kill();
  engine.lax.add('after', 1);
  await assert.rejects(engine.strict.inc('s', 1));
  await assert.rejects(rl.redis.absolute.inc('r2', 1));
  // The flusher keeps trying: its failures and the lag grow while the delta stays pending.
  await until(async () => {
    text = await engine.metrics();
    return value(text, 'tallyworks_redis_errors_total', 'component=flusher')! > 0 && value(text, 'tallyworks_flush_lag_seconds')! > 0.2;
  }, 20_000, 'the flusher reports Redis away');
  assert.equal(value(text, 'tallyworks_lax_pending_keys'), 1);
  assert.ok(value(text, 'tallyworks_redis_errors_total', 'component=strict')! >= 1);
  assert.ok(value(text, 'tallyworks_redis_errors_total', 'component=rate_limiter')! >= 1);
  await server.restart();
  await until(async () => value(await engine.metrics(), 'tallyworks_lax_pending_keys') === 0, 20_000, 'delivered once Redis is back');
  assert.equal(value(await engine.metrics(), 'tallyworks_flush_lag_seconds'), 0);
});
