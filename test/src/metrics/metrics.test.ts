/**
 * engine.metrics() parsed by a real Prometheus exposition parser (parse-prometheus-text-format), the same
 * families through prom-client's own Registry (registerMetrics), the opt-in user counters with their cap,
 * label escaping, and every metric named in the README. No Redis here (see metrics.redis.test.ts).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import parse from 'parse-prometheus-text-format';
import { Registry } from 'prom-client';
import { createEngine, type Engine, METRICS, registerMetrics, TestClock } from '../../../src/index.js';

let engine: Engine;
before(async () => {
  engine = await createEngine({ clock: new TestClock(), shards: 2 });
});
after(() => engine.close());

/** The samples of `name` as `labels → value`, labels written `k=v,k=v` in the parser's order. */
function samples(text: string, name: string): Map<string, number> {
  const f = parse(text).find((x) => x.name === name);
  assert.ok(f !== undefined, `${name} in the exposition`);
  return new Map(f.metrics.map((m) => [Object.entries(m.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(','), Number(m.value)]));
}

/** Turns of the event loop until `cond` holds (at most `turns`). */
async function turnsUntil(cond: () => boolean, turns = 10_000): Promise<void> {
  for (let i = 0; i < turns && !cond(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(cond());
}

test('engine.metrics(): shards and decisions per limiter, parsed by a real exposition parser; types and help as METRICS says', async () => {
  const api = engine.rateLimiter({ name: 'api', windowSeconds: 10 });
  for (let i = 0; i < 25; i++) api.local.absolute.inc('client', 2); // limit 20: 20 admitted, 5 refused
  const limits = engine.rateLimits({ windows: { s: { limit: 1, windowSeconds: 1 } } });
  limits.inc('x');
  limits.inc('x');
  const hourly = engine.events.limit().atMost(2, 'hour');
  for (let i = 0; i < 3; i++) hourly.checkAndRecordSync('u');
  const text = await engine.metrics();
  for (const f of parse(text)) {
    assert.ok(f.name.startsWith('tallyworks_'));
    const known = METRICS[f.name.slice('tallyworks_'.length) as keyof typeof METRICS];
    assert.ok(known !== undefined, `${f.name} is in METRICS`);
    assert.equal(f.type, known.type.toUpperCase());
    assert.equal(f.help, known.help);
  }
  const decisions = samples(text, 'tallyworks_decisions_total');
  assert.equal(decisions.get('limiter=api,provider=local.absolute,outcome=allowed'), 20);
  assert.equal(decisions.get('limiter=api,provider=local.absolute,outcome=rejected'), 5);
  assert.equal(decisions.get(`limiter=${limits.name},provider=local,outcome=allowed`), 1);
  assert.equal(decisions.get(`limiter=${limits.name},provider=local,outcome=rejected`), 1);
  assert.equal(decisions.get('limiter=events,provider=calendar,outcome=allowed'), 2);
  assert.equal(decisions.get('limiter=events,provider=calendar,outcome=rejected'), 1);
  assert.ok(!decisions.has('limiter=api,provider=local.suppressed,outcome=allowed'), 'a provider never used has no series');
  assert.deepEqual([...samples(text, 'tallyworks_shard_restarts_total').keys()], ['shard=0', 'shard=1']);
  const decisionBytes = samples(text, 'tallyworks_shard_decision_bytes');
  assert.ok(decisionBytes.get('shard=0')! + decisionBytes.get('shard=1')! > 0, 'the limiters hold decision memory');
  assert.ok(!text.includes('tallyworks_flush_lag_seconds'), 'no flusher without Redis');
});

test('stat buffers: pending keys, failures and retries, with a buffer name that needs escaping', async () => {
  const e = await createEngine({ shards: 1 });
  try {
    let calls = 0;
    const failing = e.buffer({ name: 'sink"1\\', intervalMs: 1000, backoffMs: 60_000, closeTimeoutMs: 50, onFlush: () => Promise.reject(new Error(`down ${++calls}`)), onDeadLetter: () => undefined });
    failing.increment('k');
    void failing.flush();
    await turnsUntil(() => failing.stats().retries === 1);
    const text = await e.metrics();
    assert.equal(samples(text, 'tallyworks_buffer_failures_total').get('buffer=sink"1\\'), 1);
    assert.equal(samples(text, 'tallyworks_buffer_retries_total').get('buffer=sink"1\\'), 1);
    assert.equal(samples(text, 'tallyworks_buffer_pending_keys').get('buffer=sink"1\\'), 1);
    assert.equal(samples(text, 'tallyworks_buffer_deliveries_in_progress').get('buffer=sink"1\\'), 1);
    assert.equal(samples(text, 'tallyworks_buffer_handler_calls_total').get('buffer=sink"1\\'), 1);
  } finally {
    await e.close();
  }
});

test('opt-in user counters: one series per key up to maxSeries, the rest counted as dropped; keys escaped', async () => {
  const e = await createEngine({ shards: 1 });
  try {
    e.lax.add('a', 3);
    e.lax.add('b\\"\n', 4);
    await e.strict.inc('s', 7);
    const all = await e.metrics({ counters: { lax: true, strict: true } });
    const values = samples(all, 'tallyworks_counter_value');
    assert.equal(values.get('kind=lax,key=a'), 3);
    assert.equal(values.get('kind=lax,key=b\\"\n'), 4);
    assert.equal(values.get('kind=strict,key=s'), 7);
    assert.equal(samples(all, 'tallyworks_metrics_series_dropped').get(''), 0);
    const capped = await e.metrics({ counters: { lax: true, strict: true, maxSeries: 2 } });
    assert.equal(samples(capped, 'tallyworks_counter_value').size, 2);
    assert.equal(samples(capped, 'tallyworks_metrics_series_dropped').get(''), 1);
    assert.ok(!(await e.metrics()).includes('tallyworks_counter_value'), 'off by default');
    await assert.rejects(e.metrics({ counters: { maxSeries: -1 } }), /options\.counters\.maxSeries/);
    await assert.rejects(e.metrics({ counters: { lax: 'yes' as never } }), /options\.counters\.lax/);
  } finally {
    await e.close();
  }
  await assert.rejects(e.metrics(), (err: { code?: string }) => err.code === 'TW_CLOSED');
});

test("registerMetrics: the same families in prom-client's own Registry; a closed engine scrapes empty", async () => {
  const e = await createEngine({ shards: 1 });
  const registry = new Registry();
  const unregister = registerMetrics(e, registry);
  const rl = e.rateLimiter({ name: 'login' });
  rl.local.absolute.inc('k', 1);
  const text = await registry.metrics();
  assert.equal(samples(text, 'tallyworks_decisions_total').get('limiter=login,provider=local.absolute,outcome=allowed'), 1);
  assert.equal(samples(text, 'tallyworks_shard_records').size, 1);
  const json = await registry.getMetricsAsJSON();
  assert.deepEqual(json.map((m) => m.name).sort(), Object.keys(METRICS).map((n) => `tallyworks_${n}`).sort());
  assert.throws(() => registerMetrics(e, registry), /already been registered/, "prom-client's registry refuses a name twice");
  assert.throws(() => registerMetrics(e, {} as never), /registry/);
  await e.close();
  const closed = await registry.metrics();
  assert.ok(!/^tallyworks_\w+(\{.*\})? /m.test(closed), 'no samples once closed, and no error');
  unregister();
  assert.equal((await registry.getMetricsAsJSON()).length, 0);
});

test('an OpenMetrics prom-client registry: counters keep one _total; limiter names are unique per engine', async () => {
  const e = await createEngine({ shards: 1 });
  try {
    const registry = new Registry<typeof Registry.OPENMETRICS_CONTENT_TYPE>();
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    registerMetrics(e, registry);
    e.rateLimiter({ name: 'om' }).local.absolute.inc('k', 1);
    const text = await registry.metrics();
    assert.match(text, /^tallyworks_decisions_total\{limiter="om",provider="local.absolute",outcome="allowed"\} 1$/m);
    assert.doesNotMatch(text, /_total_total/);
    assert.throws(() => e.rateLimiter({ name: 'om' }), /options\.name/);
    assert.throws(() => e.rateLimits({ name: 'events', windows: { a: { limit: 1, windowSeconds: 1 } } }), /options\.name/);
    e.rateLimiter({ name: 'rate-limiter-3' });
    assert.equal(e.rateLimiter().name, 'rate-limiter-4', 'a default name skips one taken');
  } finally {
    await e.close();
  }
});

test('every metric is named and documented in the README', () => {
  const readme = readFileSync(new URL('../../../../README.md', import.meta.url), 'utf8');
  for (const name of Object.keys(METRICS)) assert.ok(readme.includes(`\`tallyworks_${name}\``), `README documents tallyworks_${name}`);
});
