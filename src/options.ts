/**
 * Engine options: types, defaults and validation. Every option is checked before anything starts; a
 * wrong type is a TypeError and a value outside its rule a RangeError, both code TW_INVALID_OPTION, and
 * the message names the option and its rule.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { asOptionError, optionRangeError, optionTypeError } from '../common/errors.js';
import { canonicalTimeZone } from '../common/calendar.js';
import { type Clock, SystemClock } from './clock/clock.js';
import { type EventStoreOptions, resolveEventStoreOptions } from './events/store-options.js';
import type { RedisOptions } from 'ioredis';
import { connectionSpec, type ConnectionSpec, type IoredisClient, isRedisClient } from '../common/redis.js';
import { MAX_KEY_BYTES } from './keys.js';
import { checkStorage, guardStorage, persistErrorReporter, type Storage } from './storage/storage.js';

export interface EngineOptions {
  /** Shard threads. Default: available parallelism − 1 (the calling thread produces), at least 1. 1–64. */
  shards?: number;
  /** Time source. Default: a {@link SystemClock}. Tests pass a {@link TestClock}. */
  clock?: Clock;
  /** Ops per batch before it is sent to its shard. Default 8192. 16–1048576. */
  batchSize?: number;
  /** Batches per shard sent but not yet applied before a producer waits. Default 4. 1–64. */
  maxInFlight?: number;
  /** How long a producer waits for a shard that applies nothing before it throws. Default 10000. */
  stallTimeoutMs?: number;
  /**
   * The most memory one shard's records may take: its record arena, and separately its decision memory
   * (rate limiters' records). Default 2 GiB each. 1 MiB–4 GiB.
   */
  maxShardMemoryBytes?: number;
  /** Consecutive deaths of a shard thread without progress before the shard is given up. Default 5. 0–100. */
  maxRestarts?: number;
  /**
   * Batches per shard held unapplied while a replacement shard thread starts, so that producers are not
   * blocked by a restart. Default 64 (512k ops at the default batch size). `maxInFlight`–4096.
   */
  restartBacklogBatches?: number;
  /** IANA time zone calendar windows align to (days at local midnight, weeks on Monday). Default `UTC`. */
  timeZone?: string;
  /** Options of the default event store, `engine.events` (its time zone defaults to `timeZone`). */
  events?: EventStoreOptions;
  /** Embedded counters (no `redis`) saved to a storage and restored by the next engine (see the README). */
  counters?: CounterStorageOptions;
  /**
   * At most this many keys of each kind of counter (strict, lax, instance-aware strict and lax) held in this
   * process: a call that needs a key past it throws TW_CAPACITY and writes nothing. Default: no bound.
   */
  maxCounterKeys?: number;
  /**
   * Where strict and lax counters coordinate: a URL (`redis://host:port/db`), ioredis options, or a ready
   * ioredis `Redis`/`Cluster` instance (the engine opens its own connections with its settings; it never
   * closes yours). Without it the engine runs embedded: counters live in this process. Redis ≥ 6.2.
   */
  redis?: string | RedisOptions | IoredisClient;
  /** Names this engine's data in Redis; engines with the same prefix share counters. Key rules, and no braces. Default `tw`. */
  prefix?: string;
  /** How often the flusher delivers lax deltas to Redis, ms. Default 20. 1–60000. */
  flushIntervalMs?: number;
  /** How old a lax counter's Redis value may be before a read fetches it again, ms. Default 20. 0–3600000. */
  allowedLagMs?: number;
  /** Deadline of every Redis command, ms. Default 1000. 10–60000. */
  redisCommandTimeoutMs?: number;
  /**
   * What `createEngine` does when Redis cannot be reached at start. `'tolerate'` (default): it starts
   * anyway and keeps connecting; lax adds are accepted and buffered (within `maxPendingKeys`), strict
   * calls fail fast with TW_REDIS_UNAVAILABLE, and the database and version checks run on the first
   * connection (a failed one closes the connection: every call then gets that error). `'require'`: it
   * rejects with TW_REDIS_UNAVAILABLE. When Redis answers at start, a configuration it refuses (credentials,
   * TLS, a database it does not have, a version before 6.2) makes `createEngine` reject either way.
   */
  redisStartup?: 'tolerate' | 'require';
  /** Lax counters that may hold undelivered deltas (during an outage) before new ones are refused. Default 1000000. */
  maxPendingKeys?: number;
  /** How long `close()` keeps trying to deliver lax deltas before it reports them undelivered, ms. Default 10000. */
  closeTimeoutMs?: number;
  /**
   * Instance-aware counters: how long an instance may go unseen in Redis (no op, no heartbeat) before its
   * slices stop counting, ms. The flusher heartbeats every third of it. Default 30000. 30–86400000.
   */
  deadInstanceThresholdMs?: number;
  /**
   * Instance-aware counters: how long the slices of an instance that stopped heartbeating are kept so that
   * it counts again, every key, when it returns (a restart with the same `instanceId`); after that they are
   * swept and it starts afresh, ms. Default 3600000. At least `deadInstanceThresholdMs`, at most 30 days.
   */
  instanceRetentionMs?: number;
  /**
   * This engine's id among the instances sharing a prefix (instance-aware counters, `engine.instances()`).
   * Key rules, and no `#`. Default: a new random id per engine. Give a process's stable name to have a
   * restarted process take its slices back.
   */
  instanceId?: string;
}

export interface ResolvedOptions {
  readonly shards: number;
  readonly clock: Clock;
  readonly batchSize: number;
  readonly maxInFlight: number;
  readonly stallTimeoutMs: number;
  readonly maxShardMemoryBytes: number;
  readonly maxRestarts: number;
  readonly restartBacklogBatches: number;
  readonly timeZone: string;
  /** Validated when the default store is created (by createEngine, before any thread starts). */
  readonly events: EventStoreOptions;
  readonly counters: ResolvedCounterStorage | undefined;
  readonly maxCounterKeys: number;
  /** How to reach Redis, or undefined: embedded. */
  readonly redis: ConnectionSpec | undefined;
  readonly prefix: string;
  readonly flushIntervalMs: number;
  readonly allowedLagMs: number;
  readonly redisCommandTimeoutMs: number;
  readonly redisStartup: 'tolerate' | 'require';
  readonly maxPendingKeys: number;
  readonly closeTimeoutMs: number;
  readonly deadInstanceThresholdMs: number;
  readonly instanceRetentionMs: number;
  readonly instanceId: string;
}

export const MAX_SHARDS = 64;
const MiB = 1 << 20;
const GiB = 1 << 30;

/** Default shard count: one thread per core, less the calling thread's. */
export function defaultShards(): number {
  return Math.max(1, Math.min(MAX_SHARDS, availableParallelism() - 1));
}

const known = [
  'shards',
  'clock',
  'batchSize',
  'maxInFlight',
  'stallTimeoutMs',
  'maxShardMemoryBytes',
  'maxRestarts',
  'restartBacklogBatches',
  'timeZone',
  'events',
  'counters',
  'maxCounterKeys',
  'redis',
  'prefix',
  'flushIntervalMs',
  'allowedLagMs',
  'redisCommandTimeoutMs',
  'redisStartup',
  'maxPendingKeys',
  'closeTimeoutMs',
  'deadInstanceThresholdMs',
  'instanceRetentionMs',
  'instanceId',
];

function integer(options: Record<string, unknown>, name: string, min: number, max: number, fallback: number): number {
  const value = options[name];
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw optionTypeError(name, `an integer from ${min} to ${max}`, value);
  if (!Number.isInteger(value) || value < min || value > max) throw optionRangeError(name, `an integer from ${min} to ${max}`, value);
  return value;
}

function oneOf<T extends string>(options: Record<string, unknown>, name: string, values: readonly T[], fallback: T): T {
  const value = options[name];
  if (value === undefined) return fallback;
  const rule = values.map((v) => JSON.stringify(v)).join(' or ');
  if (typeof value !== 'string') throw optionTypeError(name, rule, value);
  if (!(values as readonly string[]).includes(value)) throw optionRangeError(name, rule, value);
  return value as T;
}

function isClock(value: unknown): value is Clock {
  const c = value as Clock;
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof c.now === 'function' &&
    typeof c.retain === 'function' &&
    typeof c.release === 'function' &&
    c.timeCell instanceof SharedArrayBuffer &&
    c.timeCell.byteLength >= 8
  );
}

/** Validates `options` and fills in defaults. */
export function resolveOptions(options: unknown = {}): ResolvedOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw optionTypeError('options', 'an object', options);
  }
  const o = options as Record<string, unknown>;
  for (const name of Object.keys(o)) {
    if (!known.includes(name)) throw optionTypeError(name, `one of the known options (${known.join(', ')})`, o[name]);
  }
  let clock: Clock;
  if (o.clock === undefined) clock = new SystemClock();
  else if (isClock(o.clock)) clock = o.clock;
  else throw optionTypeError('clock', 'a Clock (SystemClock, TestClock, or an object with now, retain, release and a shared timeCell)', o.clock);
  const stall = o.stallTimeoutMs;
  if (stall !== undefined && typeof stall !== 'number') throw optionTypeError('stallTimeoutMs', 'a number of milliseconds', stall);
  if (stall !== undefined && !(stall > 0 && stall <= 2 ** 31 - 1)) {
    throw optionRangeError('stallTimeoutMs', 'greater than 0 and at most 2147483647 ms', stall);
  }
  const maxInFlight = integer(o, 'maxInFlight', 1, 64, 4);
  let timeZone = 'UTC';
  if (o.timeZone !== undefined) {
    if (typeof o.timeZone !== 'string') throw optionTypeError('timeZone', 'an IANA time zone name such as "Europe/Berlin"', o.timeZone);
    try {
      timeZone = canonicalTimeZone(o.timeZone);
    } catch {
      throw optionRangeError('timeZone', 'an IANA time zone name this Node.js knows, such as "Europe/Berlin"', o.timeZone);
    }
  }
  if (o.events !== undefined) {
    // Checked now, before any thread starts, with the store's own validator: its errors name `events.x`.
    try {
      resolveEventStoreOptions(o.events, timeZone);
    } catch (err) {
      throw asOptionError(err, 'options', 'events');
    }
  }
  const deadInstanceThresholdMs = integer(o, 'deadInstanceThresholdMs', 30, 86_400_000, 30_000);
  return {
    deadInstanceThresholdMs,
    instanceRetentionMs: integer(o, 'instanceRetentionMs', deadInstanceThresholdMs, 30 * 86_400_000, Math.max(3_600_000, deadInstanceThresholdMs)),
    instanceId: resolveInstanceId(o.instanceId),
    redis: resolveRedis(o.redis),
    prefix: resolvePrefix(o.prefix),
    flushIntervalMs: integer(o, 'flushIntervalMs', 1, 60_000, 20),
    allowedLagMs: integer(o, 'allowedLagMs', 0, 3_600_000, 20),
    redisCommandTimeoutMs: integer(o, 'redisCommandTimeoutMs', 10, 60_000, 1000),
    redisStartup: oneOf(o, 'redisStartup', ['tolerate', 'require'] as const, 'tolerate'),
    maxPendingKeys: integer(o, 'maxPendingKeys', 1, 2 ** 31 - 1, 1_000_000),
    closeTimeoutMs: integer(o, 'closeTimeoutMs', 0, 3_600_000, 10_000),
    shards: integer(o, 'shards', 1, MAX_SHARDS, defaultShards()),
    clock,
    batchSize: integer(o, 'batchSize', 16, 1 << 20, 8192),
    maxInFlight,
    restartBacklogBatches: integer(o, 'restartBacklogBatches', maxInFlight, 4096, Math.max(64, maxInFlight)),
    stallTimeoutMs: stall ?? 10_000,
    maxShardMemoryBytes: integer(o, 'maxShardMemoryBytes', MiB, 4 * GiB, 2 * GiB),
    maxRestarts: integer(o, 'maxRestarts', 0, 100, 5),
    timeZone,
    events: (o.events as EventStoreOptions | undefined) ?? {},
    counters: resolveCounterStorage(o.counters, o.redis !== undefined),
    maxCounterKeys: integer(o, 'maxCounterKeys', 1, Number.MAX_SAFE_INTEGER, Number.POSITIVE_INFINITY),
  };
}

/** The `counters` option: embedded counters saved to a storage (see src/counters/counter-persistence.ts). */
export interface CounterStorageOptions {
  /** Where the counters are saved. */
  storage: Storage;
  /** Storage keys are `<name>/<kind>/<key>`. Default `counters`. */
  name?: string;
  /** Persist every this many ms. Default: off (the engine's close() and persist() persist). */
  autoPersistMs?: number;
  /** Called with the error of a failed background persist. Default: a process warning. */
  onPersistError?: (err: Error) => void;
}

export interface ResolvedCounterStorage {
  readonly storage: Storage;
  readonly name: string;
  readonly autoPersistMs: number | undefined;
  readonly onPersistError: (err: Error) => void;
}

const COUNTER_STORAGE_OPTIONS = ['storage', 'name', 'autoPersistMs', 'onPersistError'];

function resolveCounterStorage(value: unknown, withRedis: boolean): ResolvedCounterStorage | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw optionTypeError('counters', 'an object with a storage', value);
  if (withRedis) throw optionTypeError('counters', 'absent with redis (Redis holds the counters); it saves embedded counters', value);
  const o = value as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!COUNTER_STORAGE_OPTIONS.includes(k)) throw optionTypeError(`counters.${k}`, `a known option (${COUNTER_STORAGE_OPTIONS.join(', ')})`, o[k]);
  try {
    checkStorage(o.storage, 'counters.storage');
  } catch (err) {
    throw asOptionError(err, 'counters.storage', 'counters.storage');
  }
  const name = o.name ?? 'counters';
  if (typeof name !== 'string' || name.length === 0 || name.includes('/')) throw optionTypeError('counters.name', 'a non-empty string without "/"', o.name);
  const every = o.autoPersistMs;
  if (every !== undefined && !(typeof every === 'number' && Number.isSafeInteger(every) && every >= 1)) throw optionRangeError('counters.autoPersistMs', 'an integer number of ms ≥ 1', every);
  if (o.onPersistError !== undefined && typeof o.onPersistError !== 'function') throw optionTypeError('counters.onPersistError', 'a function', o.onPersistError);
  return {
    storage: guardStorage(o.storage as Storage),
    name,
    autoPersistMs: every as number | undefined,
    onPersistError: persistErrorReporter(o.onPersistError as ((err: Error) => void) | undefined),
  };
}

function resolveRedis(value: unknown): ConnectionSpec | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string') {
    const rule = 'a valid redis:// or rediss:// URL, with a database number as its path if any (redis://host:6379/2)';
    if (!/^rediss?:\/\//.test(value) || !URL.canParse(value) || !/^\/?(\d+)?$/.test(new URL(value).pathname)) throw optionRangeError('redis', rule, value);
    return connectionSpec(value);
  }
  if (isRedisClient(value)) return connectionSpec(value);
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return connectionSpec(value as RedisOptions);
  throw optionTypeError('redis', 'a redis:// URL, ioredis options, or an ioredis Redis or Cluster instance', value);
}

function resolveInstanceId(value: unknown): string {
  if (value === undefined) return randomBytes(8).toString('hex');
  // "#" separates an instance from its generation in Redis (common/scripts/ia.lua).
  const rule = `a non-empty, well-formed string of at most ${MAX_KEY_BYTES - 16} UTF-8 bytes without ":" or "#"`;
  if (typeof value !== 'string') throw optionTypeError('instanceId', rule, value);
  if (value.length === 0 || /[:#]/.test(value) || !value.isWellFormed() || Buffer.byteLength(value, 'utf8') > MAX_KEY_BYTES - 16) throw optionRangeError('instanceId', rule, value);
  return value;
}

function resolvePrefix(value: unknown): string {
  if (value === undefined) return 'tw';
  // Braces would change the Redis hash tag the partitions are named with.
  const rule = `a non-empty string of at most ${MAX_KEY_BYTES} UTF-8 bytes without ":", "{" or "}"`;
  if (typeof value !== 'string') throw optionTypeError('prefix', rule, value);
  if (value.length === 0 || /[:{}]/.test(value) || Buffer.byteLength(value, 'utf8') > MAX_KEY_BYTES) throw optionRangeError('prefix', rule, value);
  return value;
}
