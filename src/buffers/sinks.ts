/**
 * Ready-made sinks for stat buffers. Each returns the handler option to spread into `engine.buffer()`:
 *
 *   engine.buffer({ name: 'views', ...redisSink(redis, { hash: 'views:daily' }) })
 *
 * The contract every sink works under is at-least-once: a handler call that failed or timed out is called
 * again with the same counts and the same flush id, so a sink that remembers flush ids applies each once.
 */
import { argumentRangeError, argumentTypeError } from '../../common/errors.js';
import { hashTag, type IoredisClient, isRedisClient, sinkMarkerKey } from '../../common/redis.js';
import { addFlush, MARKER_TTL_MS } from '../../common/scripts.js';
import type { BufferEntry, FlushBatchHandler, FlushHandler } from './buffer-options.js';

export interface RedisSinkOptions {
  /** The hash the counts are added to (HINCRBY, field = buffer key). */
  hash: string;
  /**
   * How long a flush id is remembered (default 24 h). Keep it longer than a count can be retried for (the
   * buffer's backoff schedule up to `maxAttempts`, or its `closeTimeoutMs`).
   */
  dedupeTtlMs?: number;
}

/**
 * Adds each flush to a Redis hash with HINCRBY, exactly once per flush id: one script call per handler call
 * sets a marker `{hash}:tw-flush:<flushId>` (with a TTL, in the hash's slot) and adds the counts only if the
 * marker was new. A retry of a call whose reply was lost therefore adds nothing. A flush is added whole or
 * not at all: a field holding no integer (or a sum past 64 bits) rejects the call and writes nothing, and
 * the buffer retries it or dead-letters it. Uses your ioredis client
 * (Redis or Cluster; it stays yours to close) and registers one script on it.
 */
export function redisSink(redis: IoredisClient, options: RedisSinkOptions): { onFlushBatch: FlushBatchHandler } {
  if (!isRedisClient(redis)) throw argumentTypeError('redis', 'an ioredis (≥ 5) Redis or Cluster instance', redis);
  if (typeof options !== 'object' || options === null) throw argumentTypeError('options', 'an object with a hash name', options);
  const { hash, dedupeTtlMs = MARKER_TTL_MS } = options;
  const hashRule = 'a non-empty string, without "{" or "}" unless it holds a hash tag such as "{views}:daily"';
  if (typeof hash !== 'string') throw argumentTypeError('options.hash', hashRule, hash);
  // Braces that are no tag would give the marker a slot other than the hash's (CROSSSLOT on a cluster).
  if (hash.length === 0 || (/[{}]/.test(hash) && hashTag(hash) === undefined)) throw argumentRangeError('options.hash', hashRule, hash);
  if (typeof dedupeTtlMs !== 'number') throw argumentTypeError('options.dedupeTtlMs', 'an integer of at least 1000 ms', dedupeTtlMs);
  if (!Number.isInteger(dedupeTtlMs) || dedupeTtlMs < 1000) throw argumentRangeError('options.dedupeTtlMs', 'an integer of at least 1000 ms', dedupeTtlMs);
  return {
    onFlushBatch: async (entries, flushId) => {
      const flat: Array<string | number> = [];
      for (const e of entries) flat.push(e.key, e.count);
      await addFlush(redis, hash, sinkMarkerKey(hash, flushId), dedupeTtlMs, flat);
    },
  };
}

/**
 * Calls with the same flush id never overlap: a retry that starts while an earlier call of its flush id is
 * still running (it timed out, but may yet succeed) waits for that call instead of starting a second one;
 * if that call then succeeds, the retry succeeds without calling `fn` again.
 */
function joinById<A extends unknown[]>(fn: (...args: A) => unknown, idOf: (args: A) => string): (...args: A) => Promise<void> {
  const running = new Map<string, Promise<void>>();
  const call = async (args: A): Promise<void> => {
    await fn(...args);
  };
  return async (...args: A): Promise<void> => {
    const id = idOf(args);
    const earlier = running.get(id);
    if (earlier !== undefined) {
      try {
        await earlier;
        return;
      } catch {
        // The earlier call failed: this one tries again (below), unless another retry already did.
        const current = running.get(id);
        if (current !== undefined && current !== earlier) return current;
      }
    }
    const p = call(args);
    running.set(id, p);
    try {
      await p;
    } finally {
      if (running.get(id) === p) running.delete(id);
    }
  };
}

/**
 * A sink for any async function `fn(key, count, flushId)`. In this process each flush id reaches `fn`
 * once at a time: a timed-out call that is still running is joined, not repeated, so a slow `fn` is not
 * called twice for the same count (a sink shared by several processes still needs to check `flushId`).
 */
export function asyncSink(fn: FlushHandler): { onFlush: FlushHandler } {
  if (typeof fn !== 'function') throw argumentTypeError('fn', 'a function (key, count, flushId) => Promise', fn);
  return { onFlush: joinById(fn, (args) => args[2]) };
}

/** {@link asyncSink} for a batch function `fn(entries, flushId)`. */
export function asyncBatchSink(fn: (entries: BufferEntry[], flushId: string) => unknown): { onFlushBatch: FlushBatchHandler } {
  if (typeof fn !== 'function') throw argumentTypeError('fn', 'a function (entries, flushId) => Promise', fn);
  return { onFlushBatch: joinById(fn, (args) => args[1]) };
}
