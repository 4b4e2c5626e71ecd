/**
 * The instance registry as the main thread sees it: which instances sharing the prefix are live
 * (`engine.instances()`), and this engine leaving it at close. The heartbeats that keep an instance live
 * are the flusher's (workers/flusher-core.ts, `beat`); the registry itself is common/scripts/ia-beat.lua's.
 */
import { PARTITIONS, partitionKey, type RedisClient, isReady, notReady, redisFailure } from '../../common/redis.js';
import { BeatMode, type IaCaller, iaPartitionKeys, runBeat } from '../../common/scripts.js';

/** The live instances sharing this engine's prefix. */
export interface InstancesReport {
  readonly count: number;
  /** Their instance ids, sorted. */
  readonly ids: string[];
}

export class InstanceRegistry {
  constructor(
    private readonly client: RedisClient,
    private readonly prefix: string,
    private readonly caller: IaCaller,
    private readonly retentionMs: number,
  ) {}

  /** Heartbeats on the first strict instance-aware partition and answers who is live there (every instance beats every partition). */
  async live(): Promise<InstancesReport> {
    if (!isReady(this.client)) throw notReady(this.client, 'reading the live instances');
    let ids;
    try {
      ids = await runBeat(this.client, iaPartitionKeys(partitionKey(this.prefix, 'is', 0)), this.caller, this.retentionMs, BeatMode.BEAT);
    } catch (err) {
      throw redisFailure('reading the live instances', err);
    }
    ids.sort();
    return { count: ids.length, ids };
  }

  /**
   * Leaves every instance-aware partition: this instance's slices stop counting at once and are swept. Best
   * effort: with Redis away, they stop counting once the dead-instance threshold passes instead.
   */
  async leave(): Promise<void> {
    if (!isReady(this.client)) return;
    const keys = ['is', 'il'].flatMap((kind) => Array.from({ length: PARTITIONS }, (_, p) => iaPartitionKeys(partitionKey(this.prefix, kind, p))));
    await Promise.allSettled(keys.map((k) => runBeat(this.client, k, this.caller, this.retentionMs, BeatMode.LEAVE)));
  }
}
