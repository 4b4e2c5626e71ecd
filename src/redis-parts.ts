/**
 * What an engine with `redis` connects at start: its client (checked, or connecting in the background),
 * the strict and instance-aware strict clients over it, the instance registry, and the flusher thread.
 */
import { randomBytes } from 'node:crypto';
import { ErrorCode, TallyworksError } from '../common/errors.js';
import { checkVersion, closeClient, openClient, openClientInBackground, type RedisClient } from '../common/redis.js';
import type { Clock } from './clock/clock.js';
import { instanceAware } from './counters/flavors.js';
import { InstanceRegistry } from './counters/instances.js';
import { StrictRedis } from './counters/strict-redis.js';
import { FlusherClient } from './flusher/flusher-client.js';
import type { ResolvedOptions } from './options.js';
import type { Router } from './router/router.js';

/** What createEngine connected to Redis (absent when embedded). */
export interface RedisParts {
  readonly client: RedisClient;
  readonly strict: StrictRedis;
  readonly strictInstanceAware: StrictRedis;
  readonly registry: InstanceRegistry;
  readonly flusher: FlusherClient;
  /** This engine's name in its call markers (unique per engine, even when a restart reuses the instance id). */
  readonly callerId: string;
}

/**
 * The engine's Redis client: connected and checked, or, when Redis cannot be reached now and
 * `redisStartup` is 'tolerate', connecting in the background (checked on its first connection). A
 * configuration Redis refuses (credentials, TLS, a database, its version) is an error either way.
 */
async function startClient(resolved: ResolvedOptions): Promise<{ client: RedisClient; inBackground: boolean }> {
  const spec = resolved.redis!;
  let client: RedisClient | undefined;
  try {
    client = await openClient(spec, resolved.redisCommandTimeoutMs);
    await checkVersion(client);
    return { client, inBackground: false };
  } catch (err) {
    if (client !== undefined) await closeClient(client);
    const unreachable = err instanceof TallyworksError && err.code === ErrorCode.REDIS_UNAVAILABLE;
    if (!unreachable || resolved.redisStartup === 'require') throw err;
  }
  return { client: openClientInBackground(spec, resolved.redisCommandTimeoutMs), inBackground: true };
}

/**
 * Connects the Redis parts of an engine. `opened` learns the client as soon as it exists, so that the
 * caller can close it if a later step fails.
 */
export async function startRedis(resolved: ResolvedOptions, router: Router, opened: (client: RedisClient) => void): Promise<RedisParts> {
  const clock: Clock = resolved.clock;
  const started = await startClient(resolved);
  const client = started.client;
  opened(client);
  // Names this engine's call markers: unique per engine, even when a restart reuses the instance id.
  const instance = randomBytes(8).toString('hex');
  const outcomeWaitMs = Math.max(5000, 5 * resolved.redisCommandTimeoutMs);
  const caller = { instanceId: resolved.instanceId, thresholdMs: resolved.deadInstanceThresholdMs };
  const strict = new StrictRedis(client, resolved.prefix, instance, outcomeWaitMs);
  const strictInstanceAware = new StrictRedis(client, resolved.prefix, instance, outcomeWaitMs, instanceAware(caller));
  const registry = new InstanceRegistry(client, resolved.prefix, caller, resolved.instanceRetentionMs);
  const flusher = await FlusherClient.start(router.lanes, clock.timeCell, {
    connection: resolved.redis!,
    instance,
    prefix: resolved.prefix,
    flushIntervalMs: resolved.flushIntervalMs,
    commandTimeoutMs: resolved.redisCommandTimeoutMs,
    maxRestarts: resolved.maxRestarts,
    connectInBackground: started.inBackground,
    instanceId: resolved.instanceId,
    deadInstanceThresholdMs: resolved.deadInstanceThresholdMs,
    instanceRetentionMs: resolved.instanceRetentionMs,
  });
  return { client, strict, strictInstanceAware, registry, flusher, callerId: instance };
}
