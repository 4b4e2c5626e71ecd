/** What `engine.stats()` answers (and engine.metrics() reads). */
import type { FlusherStats, ShardStats } from '../common/messages.js';
import type { StrictRedisStats } from './counters/strict-redis.js';

/** Per-shard figures from the shard actors' control plane. */
export interface EngineShardStats extends ShardStats {
  /** Times the shard thread was replaced after dying. */
  readonly restarts: number;
  /** Batches sent and not yet acknowledged. */
  readonly inflight: number;
  /** Ops waiting for the shard (the queue depth): written and not applied yet, in the open batch or in flight. */
  readonly queuedOps: number;
  /** Bytes of the shard's decision memory (rate limiters' records). */
  readonly decisionBytes: number;
}

export interface EngineStats {
  readonly shards: readonly EngineShardStats[];
  /** The flusher's figures (with Redis), and how often its thread was replaced after dying. */
  readonly flusher?: FlusherStats & { readonly restarts: number };
  /** Strict counter script calls and the ops they carried (with Redis). */
  readonly strict?: StrictRedisStats;
}
