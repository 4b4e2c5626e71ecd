/**
 * The Redis module: ioredis's one home. Connections (from a URL, ioredis options, or a ready client), the
 * version check, the partition layout of counter data, and the failures Redis reports. The scripts every
 * counter call runs are in ./scripts.ts.
 *
 * Layout (part of the stored data: changing it strands what Redis holds). A kind of counter ("s" strict,
 * "l" lax, "is" and "il" instance-aware strict and lax) under a prefix is spread over {@link PARTITIONS}
 * hashes, `{<prefix>:<kind>:<p>}`, the whole name a hash tag, so each partition is one cluster slot and a
 * prefix's partitions spread over the cluster. A call's marker, `{<prefix>:<kind>:<p>}:m:<engine>`, shares
 * its partition's slot, and so do an instance-aware partition's registry, generations and sweep state
 * (`:r`, `:g`, `:w`; see common/scripts/ia.lua). Every script call declares every key it touches.
 *
 * Imported by the flusher thread as well as the main thread: imports nothing main-only.
 *
 * Over 350 lines because it is ioredis's one home: connection specs from every form a user may pass, the
 * connection and version checks, and the classification of Redis failures into stable codes belong together.
 */
import { lookup as dnsLookup, resolveSrv } from 'node:dns';
import { Cluster, type ClusterNode, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import { ErrorCode, optionTypeError, redactSecrets, TallyworksError } from './errors.js';
import { keyHash } from './key-hash.js';
import { APPLY, IA, IA_BEAT, INC, RATE, RATE_CLEAN } from './scripts.js';

/** Partitions (hashes, cluster slots) per kind of counter and prefix. Part of the stored layout. */
export const PARTITIONS = 16;
/**
 * The flusher's partitions: 0 … PARTITIONS − 1 hold lax counters (apply.lua), PARTITIONS … 2·PARTITIONS − 1
 * instance-aware lax counters (ia.lua), each numbered from 0 in Redis under its own kind.
 */
export const FLUSH_PARTITIONS = 2 * PARTITIONS;
/** The oldest Redis these scripts run on (GETEX-era scripting; cmsgpack in Lua). */
export const MIN_REDIS_VERSION = '6.2.0';
/**
 * How to open a connection, in a form that crosses to a worker thread (functions stripped): a URL, or
 * ioredis options, for one node or a cluster.
 */
export type ConnectionSpec =
  | { readonly kind: 'single'; readonly url?: string; readonly options: RedisOptions }
  | { readonly kind: 'cluster'; readonly nodes: ClusterNode[]; readonly options: ClusterOptions };

/** A client this engine opened (never the user's own instance: that one is only duplicated). */
export type RedisClient = Redis | Cluster;

/**
 * A ready ioredis `Redis` or `Cluster` instance as the engine and `redisSink` accept it: of this package's
 * ioredis or of the app's own (any ioredis ≥ 5). Structural, because the class types of two ioredis copies
 * are not assignable to each other.
 */
export interface IoredisClient {
  readonly options: object;
  readonly status: string;
  readonly isCluster?: boolean;
  defineCommand(name: string, definition: { lua: string; numberOfKeys?: number }): void;
  duplicate(...args: never[]): unknown;
  sendCommand(...args: never[]): unknown;
}

/** Options of every connection the engine opens: fail fast, bounded, no hidden resends. */
function ownOptions(commandTimeoutMs: number): RedisOptions {
  return {
    // Commands issued while disconnected fail at once instead of queueing without bound.
    enableOfflineQueue: false,
    // Every command has a deadline (ioredis has none by default).
    commandTimeout: commandTimeoutMs,
    // A command in flight when the connection dropped is not sent again behind our back: the caller
    // resolves it from the call's marker instead (a resend could double an INCR).
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    // The partitions' calls of one tick leave in one socket write.
    enableAutoPipelining: true,
    // Scripts of as many keys as ops begin with the key count, which a cluster's auto-pipelining takes for
    // the key (it grouped them with another node's commands: "All keys in the pipeline should belong to the
    // same slots allocation group"). They are batched per partition already.
    autoPipeliningIgnoredCommands: ['twRate', 'twRateClean'],
    retryStrategy: (attempt: number) => Math.min(20 * attempt, 500),
    // A Redis restarted from its AOF answers LOADING for a while; ioredis then re-checks after Redis's own
    // estimate, at least 1 s, up to this. Re-checking often makes the connection ready as soon as Redis
    // is, which is what the outcome of a lost call waits for (a loaded machine once waited out 5 s here).
    maxLoadingRetryTime: 50,
    lazyConnect: true,
  };
}

/**
 * Options whose functions the engine replaces with its own on every connection it opens (fail fast,
 * bounded reconnects, no hidden resends): left out of the copy rather than refused.
 */
const REPLACED = new Set(['retryStrategy', 'clusterRetryStrategy', 'reconnectOnError', 'sentinelRetryStrategy', 'sentinelReconnectStrategy']);

/** Functions ioredis fills into every client's options that the engine's own ioredis fills in again. */
function isDefaultFunction(key: string, value: unknown): boolean {
  if (key === 'dnsLookup') return value === dnsLookup;
  if (key === 'resolveSrv') return value === resolveSrv;
  // The connector ioredis picks from `sentinels` (a custom one is the user's code and cannot cross).
  if (key === 'Connector') return typeof value === 'function' && (value.name === 'StandaloneConnector' || value.name === 'SentinelConnector');
  return false;
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * A copy of `value` that crosses to the flusher thread unchanged: primitives, Buffers and typed arrays,
 * arrays and plain objects of them. Anything else (a function such as `tls.checkServerIdentity`, a class
 * instance such as `tls.secureContext`) is refused with an error naming its path under `redis`.
 */
function crossable(value: unknown, path: string): unknown {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol' && typeof value !== 'bigint')) return value;
  if (ArrayBuffer.isView(value)) return value;
  if (Array.isArray(value)) return value.map((v, i) => crossable(v, `${path}[${i}]`));
  if (typeof value === 'object' && isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = crossable(v, `${path}.${k}`);
    return out;
  }
  throw optionTypeError(
    path,
    'plain data (strings, numbers, booleans, Buffers, arrays and plain objects): the engine opens its own connections, one of them on ' +
      'its flusher thread, and a function, class instance, symbol or BigInt cannot be copied there or is no ioredis option value',
    value,
  );
}

/** The connection options of `options` that cross to a thread; the engine's replacements and ioredis's defaults are left out. */
function crossableOptions<T extends object>(options: T, path: string): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) {
    if (v === undefined || REPLACED.has(k) || isDefaultFunction(k, v)) continue;
    out[k] = k === 'redisOptions' && typeof v === 'object' && v !== null ? crossableOptions(v, `${path}.redisOptions`) : crossable(v, `${path}.${k}`);
  }
  return out as T;
}

/**
 * True for an ioredis `Redis` or `Cluster` instance, of this package's ioredis or of the app's own (any
 * ioredis ≥ 5): recognised by shape, since `instanceof` fails across two copies of ioredis.
 */
export function isRedisClient(value: unknown): value is IoredisClient {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.defineCommand === 'function' &&
    typeof v.duplicate === 'function' &&
    typeof v.sendCommand === 'function' &&
    typeof v.status === 'string' &&
    typeof v.options === 'object' &&
    v.options !== null
  );
}

/** True for an ioredis Cluster instance (of any copy of ioredis). */
function isClusterClient(value: IoredisClient): boolean {
  return (value as { isCluster?: unknown }).isCluster === true;
}

/**
 * The spec of a user's `redis` option: a URL string, ioredis options, or a Redis/Cluster instance (whose
 * options and startup nodes are copied; the instance itself stays the user's). Options that cannot cross
 * to the flusher thread are refused, naming them (`TW_INVALID_OPTION`).
 */
export function connectionSpec(redis: string | RedisOptions | IoredisClient): ConnectionSpec {
  if (typeof redis === 'string') return { kind: 'single', url: redis, options: {} };
  if (isRedisClient(redis)) {
    if (isClusterClient(redis)) {
      const nodes = crossable((redis as unknown as { startupNodes: ClusterNode[] }).startupNodes, 'redis.startupNodes') as ClusterNode[];
      return { kind: 'cluster', nodes, options: crossableOptions(redis.options as ClusterOptions, 'redis.options') };
    }
    return { kind: 'single', options: crossableOptions(redis.options as RedisOptions, 'redis.options') };
  }
  return { kind: 'single', options: crossableOptions(redis, 'redis') };
}

/**
 * Opens a connection of `spec` with this engine's options, registers the scripts, connects and checks the
 * database it is in (rejects when Redis cannot be reached: see {@link openClientInBackground}).
 */
export async function openClient(spec: ConnectionSpec, commandTimeoutMs: number): Promise<RedisClient> {
  const client = newClient(spec, commandTimeoutMs);
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    throw redisFailure('connect', lastErrors.get(client) ?? err);
  }
  if (spec.kind === 'single') await checkDatabase(client as Redis, spec);
  return client;
}

/**
 * A client of `spec` that connects (and reconnects) in the background: for a thread that must start while
 * Redis is unreachable. It is not ready for commands ({@link isReady}) until it has connected and the checks
 * a waiting start makes (the database, the Redis version) have passed on its first connection; a check
 * Redis fails (an old Redis, a database it does not have) closes it for good, and every command is then
 * refused with that reason ({@link notReady}).
 */
export function openClientInBackground(spec: ConnectionSpec, commandTimeoutMs: number): RedisClient {
  const client = newClient(spec, commandTimeoutMs);
  unverified.add(client);
  const verify = async (): Promise<void> => {
    if (client.status === 'end') return; // closed meanwhile
    try {
      if (spec.kind === 'single') await checkDatabase(client as Redis, spec);
      await checkVersion(client);
      unverified.delete(client);
      client.emit('tw-verified');
    } catch (err) {
      // A connection lost during the checks says nothing of the configuration: check on the next one.
      if (err instanceof TallyworksError && (err.code === ErrorCode.INVALID_OPTION || err.code === ErrorCode.INCOMPATIBLE)) {
        refusals.set(client, err);
        client.disconnect();
      } else if (client.status === 'ready') {
        // A check that timed out on a live connection: no new 'ready' will come, so check again shortly.
        setTimeout(() => void verify(), CHECK_RETRY_MS).unref();
      } else {
        client.once('ready', () => void verify());
      }
    }
  };
  client.once('ready', () => void verify());
  client.connect().catch(() => undefined); // retried by the retry strategy; commands fail fast meanwhile
  return client;
}

/** How long a background client waits to check again after its checks failed on a live connection, ms. */
const CHECK_RETRY_MS = 100;

/** Clients of {@link openClientInBackground} whose first connection's checks have not passed yet. */
const unverified = new WeakSet<object>();
/** Clients whose checks Redis failed: what every command is refused with. */
const refusals = new WeakMap<object, TallyworksError>();

function newClient(spec: ConnectionSpec, commandTimeoutMs: number): RedisClient {
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
  APPLY.define(client);
  INC.define(client);
  IA.define(client);
  IA_BEAT.define(client);
  RATE.define(client);
  RATE_CLEAN.define(client);
  // Errors surface through the commands that fail; without a listener ioredis would log each reconnect.
  // The last one is kept: a failed connect() only says "Connection is closed.", and the reason (a refused
  // password, a certificate, a refused port) came as an 'error' event before it.
  client.on('error', (err: unknown) => lastErrors.set(client, err));
  client.on('ready', () => lastErrors.delete(client));
  return client;
}

/** Each client's last connection error since it was last ready: why a command cannot be sent now. */
const lastErrors = new WeakMap<object, unknown>();

/**
 * Why `client` is not ready, as a typed error for operation `what`: the connection's last error (a
 * rotated password is WRONGPASS, not "unreachable"), or plain unavailability.
 */
export function notReady(client: RedisClient, what: string): TallyworksError {
  const refused = refusals.get(client);
  if (refused !== undefined) return refused;
  return redisFailure(what, lastErrors.get(client));
}

/** The database a single-node spec asks for (URL path or `db`), 0 by default. */
function requestedDatabase(spec: ConnectionSpec & { kind: 'single' }): number {
  if (spec.options.db !== undefined) return spec.options.db;
  const path = spec.url === undefined ? '' : new URL(spec.url).pathname.replace(/^\//, '');
  return path === '' ? 0 : Number(path);
}

/**
 * ioredis reports a failed SELECT (a database the server does not have) only as an 'error' event and goes
 * on in database 0: the engine would then count in the wrong database. So the connection states its
 * database, and a mismatch is refused.
 */
async function checkDatabase(client: Redis, spec: ConnectionSpec & { kind: 'single' }): Promise<void> {
  const want = requestedDatabase(spec);
  const info = String(await client.call('CLIENT', 'INFO'));
  const db = Number(/\bdb=(\d+)/.exec(info)?.[1] ?? 0);
  if (db === want) return;
  client.disconnect();
  const reason = lastErrors.get(client);
  throw new TallyworksError(
    ErrorCode.INVALID_OPTION,
    `option "redis" asks for database ${want}, which this Redis refused${reason instanceof Error ? ` (${reason.message})` : ''}; nothing was written`,
    { cause: reason },
  );
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

/**
 * Redis's refusals of a command before it runs: permissions, a key on another cluster node, memory, a
 * read-only replica, loading, a busy script. A script refused so has not run, so nothing of it applied.
 */
const REFUSED_REPLY = /^(NOPERM|NOAUTH|WRONGPASS|MOVED|ASK|CROSSSLOT|CLUSTERDOWN|TRYAGAIN|OOM|READONLY|MASTERDOWN|LOADING|BUSY|MISCONF|NOREPLICAS|NOSCRIPT)\b/;

/**
 * True for the error of a command that certainly did not apply: Redis answered it with a refusal before
 * running it. Any other failure (a dropped connection, a timeout, even ioredis's "Stream isn't writeable")
 * is treated as possibly applied, and the call's marker decides: that costs a wait, never a double.
 */
export function refusedByRedis(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError' && REFUSED_REPLY.test(err.message);
}

/**
 * After a cluster refused a command with MOVED or ASK (the slot is served elsewhere now: a failover, a
 * resharding), refreshes the client's slot map, so the next send goes where the slot is. ioredis follows a
 * redirect of a lone command itself, but not of commands it auto-pipelined to one node among others: after
 * a failover the flusher's calls kept going to the old master (found by the cluster failover test).
 */
export function followRedirect(client: RedisClient, err: unknown): void {
  const root = rootCause(err);
  if (client instanceof Cluster && root instanceof Error && /^(MOVED|ASK) /.test(root.message)) {
    client.refreshSlotsCache(() => undefined);
  }
}

/** True when commands sent now reach the server (otherwise they fail at once: no offline queue). */
export function isReady(client: RedisClient): boolean {
  return client.status === 'ready' && !unverified.has(client);
}

/** Resolves once the client is ready again, or false after `timeoutMs`. */
export function whenReady(client: RedisClient, timeoutMs: number): Promise<boolean> {
  if (isReady(client)) return Promise.resolve(true);
  if (client.status === 'end' || refusals.has(client)) return Promise.resolve(false);
  // A background client is ready for commands once its first connection's checks passed.
  const event = unverified.has(client) ? 'tw-verified' : 'ready';
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      client.off(event, onReady);
      resolve(ok);
    };
    const onReady = (): void => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    timer.unref();
    client.on(event, onReady);
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

/** Redis's replies to a client it will not serve: bad credentials, no credentials, an ACL denial. */
const AUTH_REPLY = /^(WRONGPASS|NOAUTH|NOPERM)\b|^ERR (invalid password|AUTH|Client sent AUTH)/;

/** The root of an error: a cluster's "Failed to refresh slots cache." carries the node's own error. */
function rootCause(cause: unknown): unknown {
  const last = (cause as { lastNodeError?: unknown } | undefined)?.lastNodeError;
  return last instanceof Error ? last : cause;
}

/**
 * ioredis attaches the failed command to its errors (`err.command`): for AUTH and HELLO … AUTH its
 * arguments are the password. They are masked in place, so that logging the cause shows no secret.
 */
function scrubCommand(err: unknown): void {
  const command = (err as { command?: { name?: unknown; args?: unknown } } | undefined)?.command;
  if (command === undefined || typeof command.name !== 'string' || !Array.isArray(command.args)) return;
  const name = command.name.toLowerCase();
  if (name === 'auth') command.args = command.args.map(() => '***');
  else if (name === 'hello') {
    const at = command.args.findIndex((a) => String(a).toUpperCase() === 'AUTH');
    if (at >= 0) command.args = command.args.map((a, i) => (i > at ? '***' : a));
  }
}

function isTlsFailure(err: Error): boolean {
  const code = (err as { code?: unknown }).code;
  return (
    (typeof code === 'string' && (/^ERR_(SSL|TLS)_/.test(code) || /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)/.test(code))) ||
    /certificate|SSL routines|TLS/i.test(err.message)
  );
}

/**
 * A typed error for a Redis operation (`what`) that did not apply, keeping Redis's own reason and `cause`:
 * `TW_REDIS_AUTH` for refused credentials or ACL permissions, `TW_REDIS_TLS` for a failed TLS handshake,
 * otherwise `TW_REDIS_UNAVAILABLE`. Passwords in the reason are masked.
 */
export function redisFailure(what: string, cause?: unknown): TallyworksError {
  const root = rootCause(cause);
  scrubCommand(root);
  const reason = root instanceof Error ? redactSecrets(root.message) : undefined;
  const tail = reason === undefined ? '' : `: ${reason}`;
  if (root instanceof Error && AUTH_REPLY.test(root.message)) {
    return new TallyworksError(ErrorCode.REDIS_AUTH, `Redis refused this client's credentials or permissions; ${what} was not applied${tail}`, { cause: root });
  }
  if (root instanceof Error && isTlsFailure(root)) {
    return new TallyworksError(ErrorCode.REDIS_TLS, `the TLS handshake with Redis failed; ${what} was not applied${tail}`, { cause: root });
  }
  return new TallyworksError(ErrorCode.REDIS_UNAVAILABLE, `Redis is unreachable; ${what} was not applied${tail}`, { cause: root });
}
