/** What a bench scenario is: its sides, what one run measures, and what a run is given. */
import type { BenchRedis } from '../redis.js';

export interface BenchContext {
  readonly keys: readonly string[];
  readonly shards: number;
  /** Present with `--redis` (or a private server in tests). */
  readonly redis: BenchRedis | undefined;
}

export interface Measurement {
  readonly ops: number;
  readonly ms: number;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
  /** Memory per key: shard and decision memory in use (Tallyworks) or heap growth after a full GC (peers). */
  readonly bytesPerKey?: number;
  /** Commands Redis ran during the timed part (INFO commandstats). */
  readonly redisCommands?: number;
  /** Redis server CPU per op during the timed part, µs (INFO cpu; meaningful on a Redis nobody else uses). */
  readonly redisCpuUsPerOp?: number;
  /** What was checked, e.g. "10,000 keys exact". */
  readonly verified: string;
}

export interface Side {
  readonly name: string;
  run(ctx: BenchContext, ops: number): Promise<Measurement>;
}

export interface Scenario {
  readonly name: string;
  readonly title: string;
  /** Needs Redis (runs only with --redis). */
  readonly redis: boolean;
  /** Ops of the Tallyworks side at the default size (about 2–5 s on 2 cores). */
  readonly defaultOps: number;
  /** The peer runs this fraction of the ops (for peers much slower per op); ratios use ops per second. */
  readonly peerShare: number;
  readonly ours: Side;
  readonly peer: Side;
  /** A third side the ours side is also compared with (e.g. the app without a limiter), in the same rounds. */
  readonly baseline?: Side;
  /** Minutes and GiB at the default size: run only when named with --scenario. */
  readonly heavy?: boolean;
  /** Packages every side needs (dev dependencies: an installed package skips the scenario without them). */
  readonly requires?: readonly string[];
}
