/**
 * The engine: starts the shard actors, owns the router and the clock, hands out windows, and closes
 * everything it started.
 *
 * Over 350 lines because it is the facade of every structure: each one gets a few lines of wiring here,
 * and its share of persist() and close(), whose order (buffers, then stores, then the flusher, then the
 * shards) is the engine's own logic.
 */
import { renderMetrics, type MetricFamily } from './metrics/exposition.js';
import type { EngineStats } from './engine-stats.js';

export type { EngineShardStats, EngineStats } from './engine-stats.js';
import { collectMetrics, metricsSourceOf, type MetricsOptions } from './metrics/engine-metrics.js';
import { argumentRangeError, argumentTypeError, closedError, UndeliveredError } from '../common/errors.js';
import { StatBuffer } from './buffers/buffer.js';
import type { BufferOptions } from './buffers/buffer-options.js';
import { closeClient, PARTITIONS, partitionOf, type RedisClient } from '../common/redis.js';
import { type RedisParts, startRedis } from './redis-parts.js';
import { type Counters, CounterSet } from './counters/counters.js';
import { LaxCounters } from './counters/lax-counters.js';
import { LocalCounters } from './counters/local-counters.js';
import { CounterPersistence } from './counters/counter-persistence.js';
import { EmbeddedInstanceAware, type InstanceAwareCounters, InstanceAwareSet } from './counters/instance-aware.js';
import { LaxInstanceAware } from './counters/ia-lax.js';
import { LaxAdds } from './counters/lax-adds.js';
import type { InstancesReport } from './counters/instances.js';
import { FlusherClient } from './flusher/flusher-client.js';
import { type Clock, DecisionTime } from './clock/clock.js';
import { type EngineOptions, resolveOptions, type ResolvedOptions } from './options.js';
import { EventStore } from './events/store.js';
import type { EventStoreOptions } from './events/store-options.js';
import { Router } from './router/router.js';
import { DeciderRegistry } from './limits/deciders.js';
import { type LimiterContext, limiterName, RateLimiter, RateLimits } from './limits/rate-limiter.js';
import type { RateLimiterOptions, RateLimitsOptions } from './limits/rate-options.js';
import { Window, WindowSet } from './windows/window.js';
import { resolveSetOptions, resolveWindowOptions, type WindowOptions, type WindowSetOptions } from './windows/window-options.js';

/** Instance-aware counters (every instance owns a slice of each key; see the README). */
export interface InstanceAwareKinds {
  /** Every op atomic and immediately visible in Redis. */
  readonly strict: InstanceAwareCounters;
  /** Increments of my slice buffered in shard memory and delivered by the flusher; reads answer the local estimate. */
  readonly lax: LaxInstanceAware;
}

/** Symbol under which tests reach the engine's internals (not exported from the package). */
export const internals = Symbol('tallyworks.internals');

/** An in-process counting engine. Create with {@link createEngine}; close with `close()` or `await using`. */
export class Engine implements AsyncDisposable {
  /** The clock every window of this engine reads. */
  readonly clock: Clock;
  /** Number of shard threads. */
  readonly shards: number;
  private readonly options: ResolvedOptions;
  private readonly router: Router;
  private readonly windowSets = new Map<string, WindowSet>();
  /** The fields of the last window options resolved, and their set (see windows()); no set once closing. */
  private lastSize: unknown;
  private lastUnit: unknown;
  private lastUnitMs: unknown;
  private lastSet: WindowSet | undefined;
  private readonly stores: EventStore[] = [];
  private readonly buffers = new Map<string, StatBuffer>();
  private readonly limiters: Array<RateLimiter | RateLimits> = [];
  private limiterContext: LimiterContext | undefined;
  private closing: Promise<void> | undefined;
  /** Calendar event counts with the engine's default store options (tiny_counter parity). */
  readonly events: EventStore;
  /**
   * Strict counters: every op atomic and immediately visible in Redis (in-process when embedded).
   * Concurrent calls of one tick share one script call per partition.
   */
  readonly strict: Counters;
  /** Lax counters: increments buffered in shard memory and delivered by the flusher every `flushIntervalMs`. */
  readonly lax: LaxCounters;
  /**
   * Instance-aware counters: each op answers `[cumulative, mine]`, the sum of the live instances' slices
   * and this instance's slice. Embedded, this engine is the only instance.
   */
  readonly instanceAware: InstanceAwareKinds;
  /** This engine's id among the instances sharing its prefix (option `instanceId`). */
  readonly instanceId: string;
  private readonly redis: RedisParts | undefined;
  /** The strict counters' records without Redis (the opt-in counter metrics list their keys). */
  private readonly strictLocal: LocalCounters | undefined;
  private readonly counterStore: CounterPersistence | undefined;

  /** @internal use {@link createEngine} */
  constructor(options: ResolvedOptions, router: Router, redis?: RedisParts) {
    this.options = options;
    this.clock = options.clock;
    this.shards = options.shards;
    this.router = router;
    this.redis = redis;
    this.events = this.eventStore(options.events);
    const isClosed = (): boolean => this.closing !== undefined;
    const bound = (kind: string): { maxKeys: number; kind: string } => ({ maxKeys: options.maxCounterKeys, kind });
    this.strictLocal = redis === undefined ? new LocalCounters(router, this.clock, undefined, bound('strict counters')) : undefined;
    this.strict = new CounterSet(redis?.strict ?? this.strictLocal!, isClosed);
    const flusher = redis?.flusher;
    const laxLocal = new LocalCounters(router, this.clock, flusher && ((rec) => flusher.register(rec.lane, rec.lax, rec.offset, rec.key, partitionOf(rec.key))), bound('lax counters'));
    const adds = new LaxAdds(flusher, options.maxPendingKeys);
    this.lax = new LaxCounters(laxLocal, flusher, this.clock, options.allowedLagMs, adds, isClosed);
    this.instanceId = options.instanceId;
    const iaLocal = new LocalCounters(router, this.clock, flusher && ((rec) => flusher.register(rec.lane, rec.lax, rec.offset, rec.key, PARTITIONS + partitionOf(rec.key))), bound('instance-aware lax counters'));
    const iaStrictLocal = redis === undefined ? new LocalCounters(router, this.clock, undefined, bound('instance-aware strict counters')) : undefined;
    this.instanceAware = {
      strict: new InstanceAwareSet(redis?.strictInstanceAware ?? new EmbeddedInstanceAware(iaStrictLocal!), isClosed),
      lax: new LaxInstanceAware(iaLocal, flusher, this.clock, options.allowedLagMs, adds, new EmbeddedInstanceAware(iaLocal), isClosed),
    };
    // Embedded only (the options refuse `counters` with `redis`): every local counter set, by kind.
    this.counterStore =
      options.counters === undefined || redis !== undefined
        ? undefined
        : new CounterPersistence(
            [
              ['strict', this.strictLocal!],
              ['lax', laxLocal],
              ['ia-strict', iaStrictLocal!],
              ['ia-lax', iaLocal],
            ],
            options.counters,
          );
  }

  /** @internal createEngine: brings stored embedded counters back before the engine is handed out */
  restoreCounters(): Promise<number> {
    return this.counterStore?.restore() ?? Promise.resolve(0);
  }

  /**
   * Persists everything that has a storage: every event store, every window set, and the embedded
   * counters (the `counters` option). Resolves to the number of entries written.
   */
  async persist(): Promise<number> {
    if (this.closing !== undefined) throw closedError('engine');
    const counts = await Promise.all([
      ...this.stores.filter((st) => st.persists).map((st) => st.persist()),
      ...[...this.windowSets.values()].filter((set) => set.keeper?.options.storage !== undefined).map((set) => set.persist()),
      this.counterStore?.persist() ?? 0,
    ]);
    return counts.reduce((a, b) => a + b, 0);
  }

  /**
   * A new event store with its own ids, rings and time zone (the engine's `timeZone` by default). Every
   * store is persisted (when it has storage) and closed with the engine.
   */
  eventStore(options: EventStoreOptions = {}): EventStore {
    if (this.closing !== undefined) throw closedError('engine');
    const store = new EventStore(options, this.options.timeZone, this.stores.length + 1, this.router, this.clock, this.limiterContextOf().time);
    this.stores.push(store);
    return store;
  }

  /**
   * A stat buffer: per-key counts, each handed to `onFlush` (or `onFlushBatch`) one `intervalMs` after its
   * first increment, retried until delivered. Names are unique among the engine's open buffers; the engine
   * closes (and so flushes) every buffer first when it closes.
   */
  buffer(options: BufferOptions): StatBuffer {
    if (this.closing !== undefined) throw closedError('engine');
    const name = (options as { name?: unknown } | undefined)?.name;
    if (typeof name === 'string' && this.buffers.get(name)?.closed === false) {
      throw argumentRangeError('options.name', 'a name no other open buffer of this engine has', name);
    }
    const buffer = new StatBuffer(options, this.clock);
    this.buffers.set(buffer.name, buffer);
    return buffer;
  }

  /**
   * A sliding-window rate limiter (one window; a rate per call): `local.absolute.inc(key, rate, n)` and
   * `local.suppressed.inc(key, rate, n)` decide synchronously on the calling thread.
   */
  rateLimiter(options: RateLimiterOptions = {}): RateLimiter {
    if (this.closing !== undefined) throw closedError('engine');
    const limiter = new RateLimiter(this.limiterContextOf(), options, limiterName(this.limiters, options, 'rate-limiter'));
    this.limiters.push(limiter);
    return limiter;
  }

  /** Several named sliding windows per key with fixed limits (e.g. 10 a second and 1000 an hour), decided all-or-nothing. */
  rateLimits(options: RateLimitsOptions): RateLimits {
    if (this.closing !== undefined) throw closedError('engine');
    const limits = new RateLimits(this.limiterContextOf(), options, limiterName(this.limiters, options, 'rate-limits'));
    this.limiters.push(limits);
    return limits;
  }

  private limiterContextOf(): LimiterContext {
    if (this.limiterContext === undefined) {
      const clock = this.clock;
      const state = { closed: false };
      this.limiterContext = {
        router: this.router,
        registry: new DeciderRegistry(),
        clock,
        time: new DecisionTime(clock),
        state,
        redis: { client: this.redis?.client, prefix: this.options.prefix, state, callerId: this.redis?.callerId ?? this.instanceId },
        instances: async () => (await this.instances()).count,
        hybrids: new Map(),
      };
    }
    return this.limiterContext;
  }

  /**
   * The set of hopping windows of this shape; the same object for the same shape. `setOptions` (storage,
   * auto-persist, idle eviction, maxKeys) are given once, by the call that makes the set.
   */
  windows(options: WindowOptions, setOptions?: WindowSetOptions): WindowSet {
    if (this.closing !== undefined) throw closedError('engine');
    if (setOptions !== undefined) return this.windowSetOf(options, setOptions);
    if (typeof options !== 'object' || options === null) return this.windowSetOf(options);
    // The shape is a function of these three fields alone: the same three as the last call are the same set,
    // with no validation and no name string (what makes `engine.window(id, shape)` as cheap as a set's own).
    const { size, unit, unitMs } = options;
    const last = this.lastSet;
    if (last !== undefined && size === this.lastSize && unit === this.lastUnit && unitMs === this.lastUnitMs) return last;
    const set = this.windowSetOf({ size, unit, unitMs });
    this.lastSize = size;
    this.lastUnit = unit;
    this.lastUnitMs = unitMs;
    this.lastSet = set;
    return set;
  }

  private windowSetOf(options: unknown, setOptions?: unknown): WindowSet {
    const shape = resolveWindowOptions(options);
    const resolved = setOptions === undefined ? undefined : resolveSetOptions(setOptions, shape);
    const name = `${shape.size}x${shape.unitMs}`;
    let set = this.windowSets.get(name);
    if (set !== undefined && resolved !== undefined) {
      throw argumentTypeError('setOptions', `absent: the window set of ${shape.size} × ${shape.unitMs} ms exists (set options are given by the call that makes the set)`, setOptions);
    }
    if (set === undefined) {
      set = new WindowSet(shape, this.router, this.clock, resolved);
      this.windowSets.set(name, set);
    }
    return set;
  }

  /** The hopping window `id` of this shape (windows of different shapes never share counts). */
  window(id: string, options: WindowOptions): Window {
    // The hot case inline (the shape of the last call, the engine open): as cheap as the set's own `window(id)`.
    const last = this.lastSet;
    if (last !== undefined && options != null && options.size === this.lastSize && options.unit === this.lastUnit && options.unitMs === this.lastUnitMs) {
      // The creating call apart: a set's window() inlines its creation path, too big to inline again here.
      return last.byId.get(id) ?? last.window(id);
    }
    return this.windows(options).window(id);
  }

  /**
   * The live instances sharing this engine's prefix in Redis (this one included): those seen within
   * `deadInstanceThresholdMs`. Embedded, just this engine. Rejects with TW_REDIS_UNAVAILABLE while Redis is
   * unreachable.
   */
  async instances(): Promise<InstancesReport> {
    if (this.closing !== undefined) throw closedError('engine');
    if (this.redis === undefined) return { count: 1, ids: [this.instanceId] };
    return this.redis.registry.live();
  }

  /** Resolves once every shard has applied every op observed before the call. */
  async flush(): Promise<void> {
    if (this.closing !== undefined) throw closedError('engine');
    await Promise.all(this.router.lanes.map((l) => l.drain()));
  }

  /** Figures from every shard actor (over the control plane). */
  async stats(): Promise<EngineStats> {
    if (this.closing !== undefined) throw closedError('engine');
    const shards = await Promise.all(this.router.lanes.map((l) => l.stats()));
    if (this.redis === undefined) return { shards };
    const flusher = await this.redis.flusher.stats();
    return { shards, flusher: { ...flusher, restarts: this.redis.flusher.threadRestarts }, strict: this.redis.strict.stats() };
  }

  /**
   * The engine's own figures as Prometheus text exposition (format 0.0.4): shard queue depth, batches in
   * flight and restarts, the flusher's restarts, flush lag and pending lax deltas, Redis round trips and
   * errors, stat buffers, limiter decisions; with `counters`, the values of user counters (capped). Every
   * metric is listed in the README ("Metrics"). For a prom-client registry, see `registerMetrics()`.
   */
  async metrics(options?: MetricsOptions): Promise<string> {
    return renderMetrics(await this.metricFamilies(options));
  }

  /** @internal the families engine.metrics() renders (the prom-client collector reads them too) */
  metricFamilies(options?: MetricsOptions): Promise<MetricFamily[]> {
    if (this.closing !== undefined) return Promise.reject(closedError('engine'));
    const strict = this.strictLocal;
    return collectMetrics(
      metricsSourceOf({
        stats: () => this.stats(),
        buffers: [...this.buffers.values()].filter((b) => !b.closed),
        limiters: this.limiters,
        stores: this.stores,
        counters: {
          lax: { keys: () => this.lax.keys(), get: (k) => this.lax.get(k) },
          strict: strict === undefined ? undefined : { keys: () => Array.from(strict.all(), (r) => r.key), get: (k) => this.strict.get(k) },
        },
      }),
      options,
    );
  }

  /**
   * Closes every stat buffer (each delivers its counts, for up to its own `closeTimeoutMs`), applies every
   * batch, delivers every lax delta to Redis (for up to `closeTimeoutMs`), then ends every shard thread, the
   * flusher, the Redis connections and the clock's ticker. Idempotent: every call returns the same promise.
   * Rejects, after everything is closed anyway, with the first buffer or shard failure, or with an
   * {@link UndeliveredError} listing what was not delivered.
   */
  close(): Promise<void> {
    this.lastSet = undefined; // engine.window() then takes the way that throws
    this.closing ??= (async () => {
      try {
        if (this.limiterContext !== undefined) this.limiterContext.state.closed = true;
        // Redis decisions in flight finish before the client closes (awaited below).
        const limitersStopped = Promise.allSettled(this.limiters.map((l) => l.stop()));
        // Buffers deliver first: their handlers may still use the engine.
        const buffered = await Promise.allSettled([...this.buffers.values()].map((b) => b.close()));
        // Stores and window sets persist next: reading their counters needs the shards.
        const persisted = await Promise.allSettled([
          ...this.stores.map((st) => st.close()),
          ...[...this.windowSets.values()].map((set) => set.close()),
          this.counterStore?.close() ?? Promise.resolve(),
        ]);
        // The flusher's final flush reads the totals: every lane applies what it holds first.
        await Promise.allSettled(this.router.lanes.map((l) => l.drain()));
        const delivered = this.redis === undefined ? undefined : await settled(this.redis.flusher.close(this.options.closeTimeoutMs));
        await this.router.close();
        await limitersStopped;
        if (this.redis !== undefined) {
          await this.redis.strict.close();
          await this.redis.strictInstanceAware.close();
          // Last, once nothing of this engine can write a slice again: its slices stop counting.
          await this.redis.registry.leave();
          await closeClient(this.redis.client);
        }
        const failed = [...buffered, ...persisted].find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed !== undefined) throw failed.reason;
        if (delivered?.status === 'rejected') throw delivered.reason;
        if (delivered?.status === 'fulfilled' && delivered.value.undelivered.length > 0) {
          throw new UndeliveredError(delivered.value.undelivered, this.redis?.flusher.failed);
        }
      } finally {
        await this.clock.release();
      }
    })();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal test access */
  get [internals](): { router: Router; options: ResolvedOptions; flusher: FlusherClient | undefined } {
    return { router: this.router, options: this.options, flusher: this.redis?.flusher };
  }
}

function settled<T>(p: Promise<T>): Promise<PromiseSettledResult<T>> {
  return p.then(
    (value) => ({ status: 'fulfilled', value }),
    (reason: unknown) => ({ status: 'rejected', reason }),
  );
}

/**
 * Validates `options`, starts the shard threads (and, with `redis`, connects, checks the Redis version and
 * starts the flusher), and resolves once every part answers.
 */
export async function createEngine(options: EngineOptions = {}): Promise<Engine> {
  const resolved = resolveOptions(options);
  const { clock } = resolved;
  clock.retain();
  const router = new Router(resolved.shards, resolved, clock.timeCell, clock.touch?.bind(clock));
  let client: RedisClient | undefined;
  let flusher: FlusherClient | undefined;
  try {
    await router.start();
    let redis: RedisParts | undefined;
    if (resolved.redis !== undefined) {
      redis = await startRedis(resolved, router, (started) => (client = started));
      flusher = redis.flusher;
    }
    const engine = new Engine(resolved, router, redis);
    await engine.events.ready();
    await engine.restoreCounters();
    return engine;
  } catch (err) {
    await flusher?.close(0).catch(() => undefined);
    if (client !== undefined) await closeClient(client);
    await router.close().catch(() => undefined);
    await clock.release();
    throw err;
  }
}
