/**
 * One batch of ops for one shard, as typed columns. Batches are pooled per shard: a batch is reused only
 * after the shard has applied it (the router keeps it until then, to replay it if the shard dies).
 */
import type { BatchEnvelope, CalConfig, CtrlOp, RecordInit } from '../../common/messages.js';

export class Batch {
  /** Serial number once sent; 0 while open. */
  seq = 0;
  /** Ops written. */
  n = 0;
  /** Time runs written. */
  runs = 0;
  /** Time of the last run (NaN: none yet, so the first op always opens a run). */
  lastTime = Number.NaN;
  readonly capacity: number;
  readonly offsets: Int32Array;
  readonly deltas: Float64Array;
  readonly runStarts: Int32Array;
  readonly runTimes: Float64Array;
  /** Records the shard must create before it runs the ops (new keys travel with the batch). */
  readonly inits: RecordInit[] = [];
  /** Calendar configs the shard must register before the inits. */
  readonly calendars: CalConfig[] = [];
  /** Ops that are not a plain add (decisions, loads, releases), referenced from `offsets`. */
  readonly ctrl: CtrlOp[] = [];

  constructor(capacity: number) {
    this.capacity = capacity;
    this.offsets = new Int32Array(capacity);
    this.deltas = new Float64Array(capacity);
    this.runStarts = new Int32Array(capacity);
    this.runTimes = new Float64Array(capacity);
  }

  hasContent(): boolean {
    return this.n > 0 || this.inits.length > 0 || this.calendars.length > 0;
  }

  /** The envelope fields (views over the columns, no copy; the codec copies them). */
  envelope(): BatchEnvelope {
    return {
      seq: this.seq,
      inits: this.inits,
      calendars: this.calendars,
      ctrl: this.ctrl,
      offsets: this.offsets.subarray(0, this.n),
      deltas: this.deltas.subarray(0, this.n),
      runStarts: this.runStarts.subarray(0, this.runs),
      runTimes: this.runTimes.subarray(0, this.runs),
    };
  }

  reset(): void {
    this.seq = 0;
    this.n = 0;
    this.runs = 0;
    this.lastTime = Number.NaN;
    this.inits.length = 0;
    this.calendars.length = 0;
    this.ctrl.length = 0;
  }
}

/** A batch with no room, installed as a lane's open batch once the lane is sealed or failed: the hot path's
 *  "full" check then routes every append to the slow path, which throws — at no cost to the hot path. */
export const SEALED_BATCH = new Batch(0);
