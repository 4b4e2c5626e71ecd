/**
 * The engine's metric families (every one named and documented in the README, "Metrics"): shards (queue
 * depth, batches in flight, restarts, memory), the flusher (restarts, cycles, flush lag, pending lax
 * deltas), Redis round trips and errors per component, stat buffers, limiter decisions per limiter, and,
 * opt-in, the values of user counters up to a cardinality cap.
 */
import { argumentRangeError, argumentTypeError } from '../../common/errors.js';
import type { EngineStats } from '../engine-stats.js';
import type { StatBuffer } from '../buffers/buffer.js';
import type { DecisionTally } from '../limits/tally.js';
import type { MetricFamily, MetricType, Sample } from './exposition.js';
import type { EventStore } from '../events/store.js';
import { RateLimiter, type RateLimits } from '../limits/rate-limiter.js';
import type { RedisSliding } from '../limits/redis-sliding.js';
import type { HybridStats } from '../limits/hybrid.js';

/** Options of engine.metrics() and of the prom-client collector. */
export interface MetricsOptions {
  /**
   * Opt-in: the values of user counters this process knows (`lax`: lax counters, the local estimate;
   * `strict`: strict counters of an engine without Redis), one series per key, at most `maxSeries` in all
   * (default 1000; the rest are counted in `tallyworks_metrics_series_dropped`).
   */
  counters?: { lax?: boolean; strict?: boolean; maxSeries?: number };
}

/** A limiter's decision tallies by provider (what the metrics label `provider` says). */
export interface LimiterTallies {
  readonly name: string;
  readonly providers: ReadonlyArray<readonly [provider: string, tally: DecisionTally]>;
}

/** What the metrics read of an engine. */
export interface MetricsSource {
  stats(): Promise<EngineStats>;
  readonly buffers: Iterable<StatBuffer>;
  readonly limiters: Iterable<LimiterTallies>;
  /**
   * The hybrid providers (one per window and strategy: limiters of one window share theirs), named by their
   * limiters' names joined with ','.
   */
  readonly hybrids: ReadonlyArray<{ readonly name: string; readonly strategy: 'absolute' | 'suppressed'; stats(): HybridStats }>;
  /** Redis calls and failures of the rate limiters (the flusher's and strict counters' are in stats). */
  readonly rateRedis: { readonly calls: number; readonly failures: number };
  /** User counters by kind, for the opt-in series. */
  readonly counters: { readonly lax: CounterSource; readonly strict: CounterSource | undefined };
}

export interface CounterSource {
  keys(): Iterable<string>;
  get(key: string): Promise<number>;
}

/** Every metric family the engine exposes: its type and help (the README's "Metrics" lists the same names). */
export const METRICS = {
  shard_queued_ops: { type: 'gauge', help: 'Ops written for a shard and not applied yet (the open batch, deferred adds and batches in flight): the queue depth.' },
  shard_batches_in_flight: { type: 'gauge', help: 'Batches sent to a shard thread and not applied yet.' },
  shard_restarts_total: { type: 'counter', help: 'Times a shard thread died and was replaced.' },
  shard_records: { type: 'gauge', help: 'Records (keys) a shard holds.' },
  shard_arena_bytes: { type: 'gauge', help: "Bytes of a shard's record arena in use." },
  shard_decision_bytes: { type: 'gauge', help: "Bytes of a shard's decision memory (rate limiters' records)." },
  flusher_restarts_total: { type: 'counter', help: 'Times the flusher thread died and was replaced.' },
  flusher_cycles_total: { type: 'counter', help: 'Flush cycles the current flusher thread ran.' },
  flush_lag_seconds: { type: 'gauge', help: 'Seconds since the last flush cycle in which every call landed in Redis (0 while nothing is pending).' },
  lax_pending_keys: { type: 'gauge', help: 'Lax counter keys holding deltas not delivered to Redis yet.' },
  flusher_unresolved_calls: { type: 'gauge', help: 'Flush calls whose outcome is not known yet (sent again until it is).' },
  lax_delivered_total: { type: 'counter', help: 'Lax deltas delivered to Redis by the current flusher thread.' },
  heartbeats_total: { type: 'counter', help: 'Heartbeat rounds that reached Redis.' },
  redis_round_trips_total: { type: 'counter', help: 'Script calls sent to Redis, by component.' },
  redis_errors_total: { type: 'counter', help: 'Redis calls that failed (an error, no reply, or not sent while the connection was down), by component.' },
  buffer_pending_keys: { type: 'gauge', help: 'Stat-buffer keys holding a count not delivered yet.' },
  buffer_deliveries_in_progress: { type: 'gauge', help: 'Stat-buffer handler calls running or waiting for a retry.' },
  buffer_handler_calls_total: { type: 'counter', help: 'Stat-buffer handler calls (first attempts and retries).' },
  buffer_retries_total: { type: 'counter', help: 'Stat-buffer deliveries scheduled again after a failure.' },
  buffer_failures_total: { type: 'counter', help: 'Stat-buffer handler calls that failed or timed out.' },
  buffer_delivered_total: { type: 'counter', help: 'Stat-buffer entries (key counts) delivered.' },
  buffer_dead_letters_total: { type: 'counter', help: 'Stat-buffer entries handed to onDeadLetter (or listed by close()).' },
  hybrid_pending_events: { type: 'gauge', help: "Calls the hybrid provider decided and has not committed to Redis yet, by limiter and strategy (limiters of one window share a hybrid: their names joined with ',')." },
  hybrid_syncs_total: { type: 'counter', help: "Syncs of the hybrid provider with Redis, by limiter and strategy (each commits what it decided and refreshes this instance's shares)." },
  hybrid_failed_syncs_total: { type: 'counter', help: 'Hybrid syncs that failed (Redis away): their counts go with a later one.' },
  decisions_total: { type: 'counter', help: 'Limiter decisions returned on this thread, by limiter, provider and outcome.' },
  counter_value: { type: 'gauge', help: 'Value of a user counter (opt-in: metrics({ counters })).' },
  metrics_series_dropped: { type: 'gauge', help: 'User counter series left out by the maxSeries cap in the last exposition.' },
} as const satisfies Record<string, { readonly type: MetricType; readonly help: string }>;

export type MetricName = keyof typeof METRICS;

const DEFAULT_MAX_SERIES = 1000;

function family(name: MetricName, samples: Sample[]): MetricFamily {
  const m = METRICS[name];
  return { name: `tallyworks_${name}`, type: m.type, help: m.help, samples };
}

function resolveOptions(options: MetricsOptions | undefined): { lax: boolean; strict: boolean; maxSeries: number } {
  if (options === undefined) return { lax: false, strict: false, maxSeries: DEFAULT_MAX_SERIES };
  if (typeof options !== 'object' || options === null) throw argumentTypeError('options', 'an object', options);
  const c = options.counters;
  if (c === undefined) return { lax: false, strict: false, maxSeries: DEFAULT_MAX_SERIES };
  if (typeof c !== 'object' || c === null) throw argumentTypeError('options.counters', 'an object ({ lax?, strict?, maxSeries? })', c);
  for (const k of ['lax', 'strict'] as const) if (c[k] !== undefined && typeof c[k] !== 'boolean') throw argumentTypeError(`options.counters.${k}`, 'a boolean', c[k]);
  const maxSeries = c.maxSeries ?? DEFAULT_MAX_SERIES;
  if (!(Number.isInteger(maxSeries) && maxSeries >= 0 && maxSeries <= 1_000_000)) throw argumentRangeError('options.counters.maxSeries', 'an integer from 0 to 1000000', maxSeries);
  return { lax: c.lax === true, strict: c.strict === true, maxSeries };
}

/** Validates `options` now (a collector reports a bad option when it is made, not at the first scrape). */
export function checkMetricsOptions(options: MetricsOptions | undefined): void {
  resolveOptions(options);
}

/** Every metric family of the engine now. */
export async function collectMetrics(source: MetricsSource, options?: MetricsOptions): Promise<MetricFamily[]> {
  const o = resolveOptions(options);
  const stats = await source.stats();
  const now = Date.now();
  const perShard = (pick: (s: EngineStats['shards'][number]) => number): Sample[] => stats.shards.map((s) => ({ labels: { shard: String(s.shard) }, value: pick(s) }));
  const out: MetricFamily[] = [
    family('shard_queued_ops', perShard((s) => s.queuedOps)),
    family('shard_batches_in_flight', perShard((s) => s.inflight)),
    family('shard_restarts_total', perShard((s) => s.restarts)),
    family('shard_records', perShard((s) => s.records)),
    family('shard_arena_bytes', perShard((s) => s.arenaBytes)),
    family('shard_decision_bytes', perShard((s) => s.decisionBytes)),
  ];
  const f = stats.flusher;
  const redisCalls: Sample[] = [];
  const redisErrors: Sample[] = [];
  if (f !== undefined) {
    const idle = f.pendingKeys === 0 && f.unresolved === 0;
    out.push(
      family('flusher_restarts_total', [{ labels: {}, value: f.restarts }]),
      family('flusher_cycles_total', [{ labels: {}, value: f.cycles }]),
      family('flush_lag_seconds', [{ labels: {}, value: idle ? 0 : Math.max(0, (now - f.lastSuccessAt) / 1000) }]),
      family('lax_pending_keys', [{ labels: {}, value: f.pendingKeys }]),
      family('flusher_unresolved_calls', [{ labels: {}, value: f.unresolved }]),
      family('lax_delivered_total', [{ labels: {}, value: f.delivered }]),
      family('heartbeats_total', [{ labels: {}, value: f.heartbeats }]),
    );
    redisCalls.push({ labels: { component: 'flusher' }, value: f.commands });
    redisErrors.push({ labels: { component: 'flusher' }, value: f.failures });
  }
  if (stats.strict !== undefined) {
    redisCalls.push({ labels: { component: 'strict' }, value: stats.strict.calls });
    redisErrors.push({ labels: { component: 'strict' }, value: stats.strict.failures });
  }
  if (f !== undefined) {
    redisCalls.push({ labels: { component: 'rate_limiter' }, value: source.rateRedis.calls });
    redisErrors.push({ labels: { component: 'rate_limiter' }, value: source.rateRedis.failures });
  }
  out.push(
    family('redis_round_trips_total', redisCalls),
    family('redis_errors_total', redisErrors),
  );
  const buffers = [...source.buffers].map((b) => ({ name: b.name, s: b.stats() }));
  const perBuffer = (pick: (s: ReturnType<StatBuffer['stats']>) => number): Sample[] => buffers.map((b) => ({ labels: { buffer: b.name }, value: pick(b.s) }));
  out.push(
    family('buffer_pending_keys', perBuffer((s) => s.keys)),
    family('buffer_deliveries_in_progress', perBuffer((s) => s.deliveries)),
    family('buffer_handler_calls_total', perBuffer((s) => s.handlerCalls)),
    family('buffer_retries_total', perBuffer((s) => s.retries)),
    family('buffer_failures_total', perBuffer((s) => s.failures)),
    family('buffer_delivered_total', perBuffer((s) => s.delivered)),
    family('buffer_dead_letters_total', perBuffer((s) => s.deadLettered)),
  );
  const decisions: Sample[] = [];
  for (const l of source.limiters) {
    for (const [provider, t] of l.providers) {
      if (t.allowed + t.rejected === 0) continue;
      decisions.push({ labels: { limiter: l.name, provider, outcome: 'allowed' }, value: t.allowed }, { labels: { limiter: l.name, provider, outcome: 'rejected' }, value: t.rejected });
    }
  }
  out.push(family('decisions_total', decisions));
  if (f !== undefined) {
    const hybrids = source.hybrids.map((h) => ({ name: h.name, strategy: h.strategy, s: h.stats() }));
    out.push(
      family('hybrid_pending_events', hybrids.map((h) => ({ labels: { limiter: h.name, strategy: h.strategy }, value: h.s.pending }))),
      family('hybrid_syncs_total', hybrids.map((h) => ({ labels: { limiter: h.name, strategy: h.strategy }, value: h.s.syncs }))),
      family('hybrid_failed_syncs_total', hybrids.map((h) => ({ labels: { limiter: h.name, strategy: h.strategy }, value: h.s.failedSyncs }))),
    );
  }
  if (o.lax || o.strict) out.push(...(await counterFamilies(source, o)));
  return out;
}

async function counterFamilies(source: MetricsSource, o: { lax: boolean; strict: boolean; maxSeries: number }): Promise<MetricFamily[]> {
  const samples: Sample[] = [];
  let dropped = 0;
  const kinds: Array<[string, CounterSource | undefined]> = [];
  if (o.lax) kinds.push(['lax', source.counters.lax]);
  if (o.strict) kinds.push(['strict', source.counters.strict]);
  for (const [kind, counters] of kinds) {
    if (counters === undefined) continue;
    const keys: string[] = [];
    for (const key of counters.keys()) {
      if (samples.length + keys.length < o.maxSeries) keys.push(key);
      else dropped++;
    }
    const values = await Promise.all(keys.map((k) => counters.get(k)));
    keys.forEach((key, i) => samples.push({ labels: { kind, key }, value: values[i]! }));
  }
  return [
    family('counter_value', samples),
    family('metrics_series_dropped', [{ labels: {}, value: dropped }]),
  ];
}

/** The parts of an engine the metrics read (the engine hands them over: see Engine.metrics()). */
export interface EngineParts {
  stats(): Promise<EngineStats>;
  readonly buffers: Iterable<StatBuffer>;
  readonly limiters: ReadonlyArray<RateLimiter | RateLimits>;
  readonly stores: readonly EventStore[];
  readonly counters: MetricsSource['counters'];
}

/** The metrics source of an engine's parts: each limiter's providers, the rate limiters' Redis calls. */
export function metricsSourceOf(parts: EngineParts): MetricsSource {
  const limiters: LimiterTallies[] = [];
  const hybrids: Array<{ name: string; strategy: 'absolute' | 'suppressed'; stats(): HybridStats }> = [];
  const hybridOf = new Map<object, { name: string }>();
  const hybridDecisions: Array<[{ name: string; strategy: string }, DecisionTally]> = [];
  // Limiters of one window share their hybrid (and its Redis calls): it is reported once, under the first.
  const seen = new Set<object>();
  const slidings: RedisSliding[] = [];
  const once = <T extends object>(x: T): T | undefined => {
    if (seen.has(x)) return undefined;
    seen.add(x);
    return x;
  };
  for (const l of parts.limiters) {
    if (l instanceof RateLimiter) {
      const providers: Array<readonly [string, DecisionTally]> = [
        ['local.absolute', l.local.absolute.decisions],
        ['local.suppressed', l.local.suppressed.decisions],
        ['redis.absolute', l.redis.absolute.decisions],
        ['redis.suppressed', l.redis.suppressed.decisions],
      ];
      limiters.push({ name: l.name, providers });
      slidings.push(l.redis.absolute.sliding, l.redis.suppressed.sliding);
      for (const [strategy, h] of [['absolute', l.hybrid.absolute], ['suppressed', l.hybrid.suppressed.shared]] as const) {
        const shared = hybridOf.get(h);
        if (shared !== undefined) shared.name += `,${l.name}`;
        const hybrid = once(h);
        if (hybrid === undefined) continue;
        const entry = { name: l.name, strategy, stats: () => hybrid.stats() };
        hybrids.push(entry);
        hybridOf.set(hybrid, entry);
        // Under the hybrid's own name (its limiters' names joined, known once every limiter is seen).
        hybridDecisions.push([entry, hybrid.decisions]);
        slidings.push(hybrid.sliding);
      }
    } else {
      limiters.push({ name: l.name, providers: [['local', l.decisions], ['redis', l.redis.decisions]] });
      slidings.push(l.redis.sliding);
    }
  }
  for (const [entry, tally] of hybridDecisions) limiters.push({ name: entry.name, providers: [[`hybrid.${entry.strategy}`, tally]] });
  parts.stores.forEach((st, i) => limiters.push({ name: i === 0 ? 'events' : `events-${i + 1}`, providers: [['calendar', st.decisions]] }));
  return {
    stats: () => parts.stats(),
    buffers: parts.buffers,
    limiters,
    hybrids,
    rateRedis: {
      calls: slidings.reduce((n, s) => n + s.calls, 0),
      failures: slidings.reduce((n, s) => n + s.failures, 0),
    },
    counters: parts.counters,
  };
}
