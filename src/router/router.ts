/**
 * The router: the lanes (one per shard) and which lane a key belongs to. Each lane's pipeline sends its own
 * open batch at the end of the turn (see ./batch-pipeline.ts).
 */
import { keyHash } from '../keys.js';
import { Lane, type LaneConfig } from './lane.js';

export class Router {
  readonly lanes: readonly Lane[];
  constructor(shards: number, config: LaneConfig, timeCell: SharedArrayBuffer, touchClock?: () => void) {
    const lanes: Lane[] = [];
    for (let i = 0; i < shards; i++) lanes.push(new Lane(i, config, timeCell, touchClock));
    this.lanes = lanes;
  }

  async start(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.start()));
  }

  /** The lane owning `key` (stable for a given shard count). */
  laneFor(key: string): Lane {
    return this.lanes[keyHash(key) % this.lanes.length]!;
  }

  /** Drains every lane, then seals them and ends their threads. Reports the first failure after all closed. */
  async close(): Promise<void> {
    const results = await Promise.allSettled(this.lanes.map((l) => l.close()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }
}
