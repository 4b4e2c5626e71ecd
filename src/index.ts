/**
 * Tallyworks: an actor-style worker-thread counting engine.
 * @packageDocumentation
 */
export { createEngine, Engine, type EngineStats, type EngineShardStats, type InstanceAwareKinds } from './engine.js';
export { closeOnSignals, type Closable, type CloseOnSignalsOptions } from './signals.js';
export type { EngineOptions } from './options.js';
export { type Clock, SystemClock, TestClock, SPEC_START } from './clock/clock.js';
export { Window, WindowSet } from './windows/window.js';
export { WINDOW_UNITS, type MaxKeysPolicy, type WindowOptions, type WindowSetOptions, type WindowUnit } from './windows/window-options.js';
export { validateKey, sanitizeKey, MAX_KEY_BYTES } from './keys.js';
export { EventStore } from './events/store.js';
export type { EventStoreOptions } from './events/store-options.js';
export { Intervals, DEFAULT_INTERVALS, MAX_RING_BUCKETS, type IntervalCounts } from './events/intervals.js';
export { EventQuery, EventRange, RatioQuery, DeltaQuery, DeltaRange } from './events/query.js';
export { LimitBuilder, LimitExceededError, type Decision, type Reservation, type Usage, type WindowArg } from './events/limiter.js';
export { Schedule } from './events/schedule.js';
export {
  RateLimiter,
  RateLimits,
  LocalAbsolute,
  LocalSuppressed,
  RedisAbsolute,
  RedisSuppressed,
  RedisWindows,
  HybridAbsolute,
  HybridSuppressed,
  type HybridStats,
  type RateDecision,
  type Allowed,
  type Rejected,
  type Suppressed,
} from './limits/rate-limiter.js';
export type { RateLimiterOptions, RateLimitsOptions, NamedWindow } from './limits/rate-options.js';
export { connectRateLimiter, LinkedRateLimiter, type RateLimiterLink } from './limits/link.js';
export type { EventsExport } from './events/snapshot.js';
export type { Storage, StorageOp } from './storage/storage.js';
export { MemoryStorage } from './storage/memory-storage.js';
export { FileStorage, type FileStorageOptions } from './storage/file-storage.js';
export { SqliteStorage, type SqliteStorageOptions } from './storage/sqlite-storage.js';
export { migrateStorage, type MigrateOptions } from './storage/migrate.js';
export type { CounterStorageOptions } from './options.js';
export type { Counters } from './counters/counters.js';
export { LaxCounters, type LaxHandle } from './counters/lax-counters.js';
export type { StrictRedisStats } from './counters/strict-redis.js';
export type { InstanceAwareCounters, Slice, SliceChange } from './counters/instance-aware.js';
export { LaxInstanceAware } from './counters/ia-lax.js';
export type { InstancesReport } from './counters/instances.js';
export { type Comparator, eq, lt, gt, ne, always } from './counters/comparators.js';
export { StatBuffer, type BufferStats } from './buffers/buffer.js';
export type { BufferOptions, BufferEntry, DeadLetter, FlushHandler, FlushBatchHandler } from './buffers/buffer-options.js';
export { connectBuffer, BufferClient, type BufferLink } from './buffers/link.js';
export { redisSink, asyncSink, asyncBatchSink, type RedisSinkOptions } from './buffers/sinks.js';
export type { FlusherStats } from '../common/messages.js';
export { MIN_REDIS_VERSION, PARTITIONS, type IoredisClient } from '../common/redis.js';
export {
  ErrorCode,
  type ErrorCodeValue,
  TallyworksError,
  TallyworksTypeError,
  TallyworksRangeError,
  UndeliveredError,
} from '../common/errors.js';
export { ratePolicy, type RatePolicy, type RatePolicyOptions, type PolicyLimiter, type PolicyOutcome, type Quota } from './http/policy.js';
export { rateLimitHeaders, type HeaderDraft } from './http/headers.js';
export { ipKey, prefixedKey, requestKey } from './http/client-key.js';
export type { HttpRateLimitOptions, LimitedHandler } from './http/middleware.js';
export {
  expressRateLimit,
  fastifyRateLimit,
  withRateLimit,
  type ExpressRequestLike,
  type ExpressResponseLike,
  type ExpressNext,
  type FastifyRequestLike,
  type FastifyReplyLike,
} from './http/adapters.js';
export { TallyworksStore, type TallyworksStoreOptions, type ClientRateLimitInfo, type StoreInitOptions } from './http/erl-store.js';
export { METRICS, type MetricName, type MetricsOptions } from './metrics/engine-metrics.js';
export { registerMetrics, type PromRegistryLike } from './metrics/prom-client.js';
