/**
 * The router: the lanes (one per shard), which lane a key belongs to, and the end-of-tick flush.
 *
 * A batch goes out when it is full or at the end of the event-loop turn in which its first op was
 * written (setImmediate, so many short tasks of one turn share a batch instead of sending one each).
 */
import { keyHash } from '../keys.js';
import { Lane, type LaneConfig } from './lane.js';

export class Router {
  readonly lanes: readonly Lane[];
  private flushScheduled = false;
  private readonly flushAll = (): void => {
    this.flushScheduled = false;
    for (const lane of this.lanes) lane.endOfTurn();
  };
  private readonly scheduleFlush = (): void => {
    this.touchClock?.();
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flushAll).unref();
  };

  /** Called at the first op of every batch, before it is stamped (a sleeping clock refreshes its cell). */
  private readonly touchClock: (() => void) | undefined;

  constructor(shards: number, config: LaneConfig, timeCell: SharedArrayBuffer, touchClock?: () => void) {
    this.touchClock = touchClock;
    const lanes: Lane[] = [];
    for (let i = 0; i < shards; i++) lanes.push(new Lane(i, config, timeCell, this.scheduleFlush));
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
