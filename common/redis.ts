/**
 * The Redis module: ioredis's one home. Connections (from a URL, ioredis options, or a ready client), the
 * version check, the partition layout of counter data, and the one Lua script every counter call runs
 * (common/scripts/apply.lua).
 *
 * Layout (spec/counters.md "Redis layout rules"). A kind of counter ("s" strict, "l" lax) under a prefix is
 * spread over {@link PARTITIONS} hashes, `{<prefix>:<kind>:<p>}`, the whole name a hash tag, so each
 * partition is one cluster slot and a prefix's partitions spread over the cluster. A call's marker,
 * `{<prefix>:<kind>:<p>}:m:<instance>`, shares its partition's slot. Every script call declares both keys
 * and touches nothing else.
 *
 * Imported by the flusher thread as well as the main thread: imports nothing main-only.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Cluster, type ClusterNode, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import { decode, encode } from './codec.js';
import { ErrorCode, TallyworksError } from './errors.js';
import { keyHash } from './key-hash.js';
import { CounterMode } from './messages.js';

/** Partitions (hashes, cluster slots) per kind of counter and prefix. Part of the stored layout. */
export const PARTITIONS = 16;
/** The oldest Redis these scripts run on (GETEX-era scripting; cmsgpack in Lua). */
export const MIN_REDIS_VERSION = '6.2.0';
/** How long a call's marker outlives its last use: a call in flight longer than this could be doubled. */
export const MARKER_TTL_MS = 24 * 60 * 60 * 1000;

/** The apply script's source, and its SHA1 (what EVALSHA sends; pinned in a test). */
export const APPLY_LUA = readFileSync(new URL('../../common/scripts/apply.lua', import.meta.url), 'utf8');
export const APPLY_SHA = createHash('sha1').update(APPLY_LUA).digest('hex');

/** Op modes of the apply script: the counter modes, plus reads, flushed lax deltas and partition clears. */
export const Mode = { GET: 0, ...CounterMode, ADD: 4, CLEAR: 5 } as const;
/** Reply status of the apply script. */
export const ApplyStatus = { APPLIED: 1, DUPLICATE: 2, STALE: 3 } as const;

/**
 * How to open a connection, in a form that crosses to a worker thread (functions stripped): a URL, or
 * ioredis options, for one node or a cluster.
 */
export type ConnectionSpec =
  | { readonly kind: 'single'; readonly url?: string; readonly options: RedisOptions }
  | { readonly kind: 'cluster'; readonly nodes: ClusterNode[]; readonly options: ClusterOptions };

/** A client this engine opened (never the user's own instance: that one is only duplicated). */
export type RedisClient = Redis | Cluster;

/** Options of every connection the engine opens: fail fast, bounded, no hidden resends. */
function ownOptions(commandTimeoutMs: number): RedisOptions {
  return {
    // Commands issued while disconnected fail at once instead of queueing without bound (PEERS: #76).
    enableOfflineQueue: false,
    // Every command has a deadline (PEERS: no per-command timeout, #61).
    commandTimeout: commandTimeoutMs,
    // A command in flight when the connection dropped is not sent again behind our back: the caller
    // settles it from the call's marker instead (a resend could double an INCR).
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    // The partitions' calls of one tick leave in one socket write.
    enableAutoPipelining: true,
    retryStrategy: (attempt: number) => Math.min(20 * attempt, 500),
    lazyConnect: true,
  };
}

/** Plain-data copy of options: functions (retryStrategy, …) cannot cross to a thread and are ours to set. */
function plain<T extends object>(options: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) {
    if (typeof v === 'function' || v === undefined) continue;
    if (k === 'Connector' || k === 'redisOptions') continue;
    out[k] = v;
  }
  return out as T;
}

/** True for an ioredis client instance (Redis or Cluster). */
export function isRedisClient(value: unknown): value is RedisClient {
  return value instanceof Redis || value instanceof Cluster;
}

/** The spec of a user's `redis` option: a URL string, ioredis options, or a Redis/Cluster instance. */
export function connectionSpec(redis: string | RedisOptions | RedisClient): ConnectionSpec {
  if (typeof redis === 'string') return { kind: 'single', url: redis, options: {} };
  if (redis instanceof Cluster) {
    const nodes = (redis as unknown as { startupNodes: ClusterNode[] }).startupNodes;
    const options = plain(redis.options);
    if (options.redisOptions === undefined && redis.options.redisOptions !== undefined) {
      (options as { redisOptions?: RedisOptions }).redisOptions = plain(redis.options.redisOptions);
    }
    return { kind: 'cluster', nodes, options };
  }
  if (redis instanceof Redis) return { kind: 'single', options: plain(redis.options) };
  return { kind: 'single', options: plain(redis) };
}

/** Opens a connection of `spec` with this engine's options, registers the script, and connects. */
export async function openClient(spec: ConnectionSpec, commandTimeoutMs: number): Promise<RedisClient> {
  const own = ownOptions(commandTimeoutMs);
  let client: RedisClient;
  if (spec.kind === 'cluster') {
    client = new Cluster(spec.nodes, {
      ...spec.options,
      ...own,
      redisOptions: { ...spec.options.redisOptions, ...own },
      clusterRetryStrategy: (attempt: number) => Math.min(20 * attempt, 500),
    });
  } else if (spec.url !== undefined) {
    client = new Redis(spec.url, { ...spec.options, ...own });
  } else {
    client = new Redis({ ...spec.options, ...own });
  }
  client.defineCommand('twApply', { numberOfKeys: 2, lua: APPLY_LUA });
  // Errors surface through the commands that fail; without a listener ioredis would log each reconnect.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    throw unavailable('connect', err);
  }
  return client;
}

/** Rejects Redis older than {@link MIN_REDIS_VERSION} (code TW_INCOMPATIBLE). */
export async function checkVersion(client: RedisClient): Promise<string> {
  const info = await client.info('server');
  const version = /redis_version:([\d.]+)/.exec(info)?.[1] ?? '0';
  if (compareVersions(version, MIN_REDIS_VERSION) < 0) {
    throw new TallyworksError(ErrorCode.INCOMPATIBLE, `tallyworks needs Redis ${MIN_REDIS_VERSION} or newer; the server runs ${version}`);
  }
  return version;
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** True when commands sent now reach the server (otherwise they fail at once: no offline queue). */
export function isReady(client: RedisClient): boolean {
  return client.status === 'ready';
}

/** Resolves once the client is ready again, or false after `timeoutMs`. */
export function whenReady(client: RedisClient, timeoutMs: number): Promise<boolean> {
  if (isReady(client)) return Promise.resolve(true);
  if (client.status === 'end') return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      client.off('ready', onReady);
      resolve(ok);
    };
    const onReady = (): void => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    timer.unref();
    client.on('ready', onReady);
  });
}

/** The partition hash of kind `kind` ("s" or "l") and partition `p` under `prefix`. */
export function partitionKey(prefix: string, kind: string, p: number): string {
  return `{${prefix}:${kind}:${p}}`;
}

/** The marker of `instance`'s calls on a partition (same slot as the partition). */
export function markerKey(partition: string, instance: string): string {
  return `${partition}:m:${instance}`;
}

/** A counter key's partition: its hash mod {@link PARTITIONS}. */
export function partitionOf(key: string): number {
  return keyHash(key) % PARTITIONS;
}

export interface ApplyReply {
  readonly status: number;
  /** new, old per op (new is false for an INC refused as out of the safe-integer range). */
  readonly results: Array<number | false>;
}

interface ApplyCommand {
  twApplyBuffer(partition: string, marker: string, seq: number, ttlMs: number, ops: Buffer): Promise<[number, Buffer]>;
}

/** The stat buffer Redis sink's script (common/scripts/buffer-sink.lua). */
export const BUFFER_SINK_LUA = readFileSync(new URL('../../common/scripts/buffer-sink.lua', import.meta.url), 'utf8');

interface BufferSinkCommand {
  twBufferSink(hash: string, marker: string, ttlMs: number, entries: Buffer): Promise<number>;
}

/**
 * The hash tag Redis hashes `key` by: the text between the first `{` and the first `}` after it, when that
 * is not empty; undefined when the key has no tag (Redis then hashes the whole key).
 */
export function hashTag(key: string): string | undefined {
  const open = key.indexOf('{');
  if (open < 0) return undefined;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : undefined;
}

/**
 * The marker name for flush `flushId` of `hash`, in the hash's cluster slot: under the hash's own tag, or
 * with the whole hash name as the tag. `hash` must not hold braces unless it has a tag (see redisSink).
 */
export function sinkMarkerKey(hash: string, flushId: string): string {
  return `{${hashTag(hash) ?? hash}}:tw-flush:${flushId}`;
}

/**
 * Adds `entries` ([key, count] pairs) to `hash` with HINCRBY, once per `flushId`: true when added now,
 * false when that flush id had been added before. Registers the script on `client` on first use.
 */
export async function addFlush(client: RedisClient, hash: string, flushId: string, ttlMs: number, entries: Array<string | number>): Promise<boolean> {
  const c = client as unknown as BufferSinkCommand & RedisClient;
  if (typeof c.twBufferSink !== 'function') c.defineCommand('twBufferSink', { numberOfKeys: 2, lua: BUFFER_SINK_LUA });
  return (await c.twBufferSink(hash, sinkMarkerKey(hash, flushId), ttlMs, encodeOps(entries))) === 1;
}

/** Ops as one msgpack argument; an unsafe-to-truncate copy is made because ioredis writes it later. */
function encodeOps(ops: ReadonlyArray<string | number>): Buffer {
  const bytes = encode(ops);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Runs the apply script: `ops` are 5 values per op (see common/scripts/apply.lua), sent as one msgpack argument. */
export async function runApply(
  client: RedisClient,
  partition: string,
  marker: string,
  seq: number,
  ops: Array<string | number>,
): Promise<ApplyReply> {
  const [status, packed] = await (client as unknown as ApplyCommand).twApplyBuffer(partition, marker, seq, MARKER_TTL_MS, encodeOps(ops));
  const results = status === ApplyStatus.STALE ? [] : numbers(decode<Array<number | bigint | false>>(packed));
  return { status: Number(status), results };
}

/** Reads the marker: the last sequence of `instance` applied on the partition, and its results. */
export async function readMarker(client: RedisClient, marker: string): Promise<{ seq: number; results: Array<number | false> } | undefined> {
  const stored = await client.getBuffer(marker);
  if (stored === null) return undefined;
  const colon = stored.indexOf(0x3a);
  return { seq: Number(stored.subarray(0, colon).toString('latin1')), results: numbers(decode<Array<number | bigint | false>>(stored.subarray(colon + 1))) };
}

/** msgpack gives 64-bit integers past 2^53 as BigInt (a value someone else wrote): as the nearest number. */
function numbers(results: Array<number | bigint | false>): Array<number | false> {
  return results.map((r) => (typeof r === 'bigint' ? Number(r) : r));
}

/** Deletes this instance's markers once no call of it is in flight (hygiene: they would expire anyway). */
export async function dropMarkers(client: RedisClient, markers: readonly string[]): Promise<void> {
  if (!isReady(client)) return;
  // One DEL per key: each marker sits in its own partition's slot.
  await Promise.all(markers.map((m) => client.del(m))).catch(() => undefined);
}

/** Closes a client this engine opened: QUIT when connected (replies in flight arrive first), else drop. */
export async function closeClient(client: RedisClient): Promise<void> {
  if (isReady(client)) {
    try {
      await client.quit();
      return;
    } catch {
      // Fall through: the connection went away while quitting.
    }
  }
  client.disconnect();
}

/** A typed error for Redis being unreachable; `what` names the operation. */
export function unavailable(what: string, cause?: unknown): TallyworksError {
  const reason = cause instanceof Error ? `: ${cause.message}` : '';
  return new TallyworksError(ErrorCode.REDIS_UNAVAILABLE, `Redis is unreachable; ${what} was not applied${reason}`, { cause });
}
