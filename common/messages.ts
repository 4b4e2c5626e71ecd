/**
 * Every cross-thread message of the shard actors, as discriminated unions. Receivers switch exhaustively
 * and treat anything else as a protocol error.
 *
 * Imported by worker threads: imports nothing main-only.
 */
import type { MessagePort } from 'node:worker_threads';
import type { WireError } from './errors.js';
import type { KIND_CAL, KIND_CNT, KIND_HOP } from './layout.js';

/**
 * What a shard thread needs to (re)attach to its memory: sent as the piscina "lease" task when the shard
 * starts and again when a replacement thread starts. The lease stays unresolved while the thread lives; piscina
 * rejects it when the thread dies, which is how the router learns to replay.
 */
export interface AttachInfo {
  readonly shard: number;
  readonly header: SharedArrayBuffer;
  readonly arena: SharedArrayBuffer;
  /** The engine clock's time cell (Float64, ms since the Unix epoch). */
  readonly timeCell: SharedArrayBuffer;
  /** Data plane: batches in ({@link DataMessage}), acknowledgements out ({@link DataReply}). */
  readonly data: MessagePort;
  /** Control plane (comlink): {@link ShardControl}. */
  readonly control: MessagePort;
  /** Every calendar config registered so far, by id (a replacement thread needs the earlier ones). */
  readonly calendars: readonly CalConfig[];
  /** The shard's dirty bitmap of lax counters (see common/layout.ts), growable like the arena. */
  readonly dirty: SharedArrayBuffer;
}

/** The shape of a calendar store's records: its zone and rings. Registered with a shard before use. */
export interface CalConfig {
  readonly id: number;
  readonly timeZone: string;
  /** [unit code (common/calendar.ts CalUnit), bucket count], finest unit first. */
  readonly rings: ReadonlyArray<readonly [unit: number, count: number]>;
}

/** Bucket values to add (`merge`) or to write over a record (`import`), aligned by absolute unit index. */
export interface LoadOp {
  readonly type: 'merge' | 'import';
  readonly offset: number;
  readonly t: number;
  /** Per ring of the record: the unit index of values[r][0], or null when the source lacks the ring. */
  readonly heads: ReadonlyArray<number | null>;
  /** Per ring: counts, newest first. */
  readonly values: ReadonlyArray<readonly number[]>;
}

/** What a counter op does to its value (when its comparison passes). */
export const CounterMode = { INC: 1, SET: 2, DEL: 3 } as const;
export type CounterModeCode = (typeof CounterMode)[keyof typeof CounterMode];

/** Op modes of the apply script (common/scripts/apply.lua): the counter modes, plus reads, flushed lax deltas and partition clears. */
export const Mode = { GET: 0, ...CounterMode, ADD: 4, CLEAR: 5 } as const;
export type ModeCode = (typeof Mode)[keyof typeof Mode];
/** The modes a counter op of the API carries: a read or a counter mode. */
export type CounterOpMode = CounterModeCode | typeof Mode.GET;

/**
 * Op modes of the instance-aware script (common/scripts/ia.lua): the apply script's, plus the ops on the
 * caller's own slice.
 */
export const IaMode = { ...Mode, SET_MINE: 6, DEL_MINE: 7, CLEAR_MINE: 8 } as const;
export type IaModeCode = (typeof IaMode)[keyof typeof IaMode];

/** Comparators of conditional counter ops; a missing counter compares as 0. */
export const Cmp = { ALWAYS: 0, EQ: 1, LT: 2, GT: 3, NE: 4 } as const;
export type CmpCode = (typeof Cmp)[keyof typeof Cmp];

/** True when `value` passes comparator `cmp` against `x`. */
export function compare(cmp: number, value: number, x: number): boolean {
  switch (cmp) {
    case Cmp.ALWAYS:
      return true;
    case Cmp.EQ:
      return value === x;
    case Cmp.LT:
      return value < x;
    case Cmp.GT:
      return value > x;
    case Cmp.NE:
      return value !== x;
    default:
      return false;
  }
}

/**
 * A counter op on an in-process counter (embedded mode), run by the owning shard in order with the adds
 * around it. It writes [new, old] to result cell `cell`: new is NaN when the result would leave the
 * safe-integer range (nothing is written then), and equals old when the comparison fails.
 */
export interface CounterOp {
  readonly type: 'counter';
  readonly offset: number;
  readonly cell: number;
  readonly mode: number;
  readonly cmp: number;
  readonly x: number;
  readonly n: number;
}

/** The record is let go (compact): its kind is cleared so that the router can reuse its words. */
export interface ReleaseRecordOp {
  readonly type: 'release';
  readonly offset: number;
}

/** Ops that are not a plain add: they sit in the op columns as offset −1 − (index in `ctrl`). */
export type CtrlOp = LoadOp | CounterOp | ReleaseRecordOp;

/** The kinds of record a batch creates. */
export type RecordKind = typeof KIND_HOP | typeof KIND_CAL | typeof KIND_CNT;

/**
 * Numbers per record in a batch's `inits` column: the arena offset, the kind and two parameters (hop:
 * unitMs and size · calendar: the config id and 0 · counter: lax 1 or 0, and 0). A column of numbers, so
 * that a batch's new records are copied as raw bytes, not encoded (and decoded) as an object each.
 */
export const INIT_STRIDE = 4;

/** A batch of ops for one shard, as encoded into the msgpack envelope. */
export interface BatchEnvelope {
  /** Serial number (Int32, wraps); the shard applies batches strictly in order. */
  readonly seq: number;
  /** Records to create first, {@link INIT_STRIDE} numbers each; new keys travel with the batch that first uses them. */
  readonly inits: Float64Array;
  /** Calendar configs to register first. */
  readonly calendars: CalConfig[];
  /** Ops that are not a plain add, referenced from `offsets` (see {@link CtrlOp}). */
  readonly ctrl: CtrlOp[];
  /** Op columns, `n` long: record offset and delta. */
  readonly offsets: Int32Array;
  readonly deltas: Float64Array;
  /** Time runs: ops [runStarts[r], runStarts[r+1]) happened at runTimes[r] (ms since the Unix epoch). */
  readonly runStarts: Int32Array;
  readonly runTimes: Float64Array;
}

/** Main → shard as a piscina task: the lease. Resolves with `detached` when the router detaches. */
export interface ShardTask {
  readonly type: 'attach';
  readonly attach: AttachInfo;
}

export interface ShardLeaseEnd {
  readonly type: 'detached';
  readonly applied: number;
}

/**
 * Main → shard on the data port. Why not piscina tasks: piscina counts a task as running until the main
 * thread has processed its reply, so a producer that never yields fills `concurrentTasksPerWorker` and
 * piscina stops posting; a port delivers while the producer keeps the main thread busy.
 */
export type DataMessage =
  | { readonly type: 'apply'; readonly envelope: Uint8Array }
  | { readonly type: 'detach' };

/** Shard → main on the data port. */
export type DataReply =
  /** The batch was applied now. */
  | { readonly type: 'applied'; readonly seq: number }
  /** The batch had been applied before (a replay after a restart); nothing was done. */
  | { readonly type: 'duplicate'; readonly seq: number }
  /** A batch before this one is missing: the router must replay from `applied + 1`. */
  | { readonly type: 'gap'; readonly seq: number; readonly applied: number }
  /** The batch cannot be applied (a shard memory limit); the shard is given up with this error. */
  | { readonly type: 'failed'; readonly seq: number; readonly error: WireError };

/** Control plane of a shard (comlink). */
export interface ShardControl {
  stats(): ShardStats;
}

export interface ShardStats {
  readonly shard: number;
  /** Last batch sequence applied. */
  readonly appliedSeq: number;
  /** Records (keys) held. */
  readonly records: number;
  /** Bytes of the arena in use by the shard's view. */
  readonly arenaBytes: number;
  /** Times a thread attached to this shard's memory (1 + restarts). */
  readonly attaches: number;
  /** The engine clock as the shard thread reads it (ms since the Unix epoch). */
  readonly clockMs: number;
}

// ── the flusher actor ───────────────────────────────────────────────────────────────────────────────

/** What the flusher thread starts with (workerData). */
export interface FlusherInit {
  /** Every shard's memory: the flusher reads totals and writes committed/remote fields of lax counters. */
  readonly shards: ReadonlyArray<{ readonly header: SharedArrayBuffer; readonly arena: SharedArrayBuffer; readonly dirty: SharedArrayBuffer }>;
  readonly timeCell: SharedArrayBuffer;
  /** Int32 cells the flusher publishes: [0] flush cycles finished (mod 2^32). */
  readonly gauges: SharedArrayBuffer;
  /** How to connect (see common/redis.ts ConnectionSpec). */
  readonly connection: unknown;
  readonly prefix: string;
  /** This engine's instance id: names its markers in Redis. */
  readonly instance: string;
  readonly flushIntervalMs: number;
  readonly commandTimeoutMs: number;
  readonly data: MessagePort;
  readonly control: MessagePort;
  /** Per partition: last sequence number, sequence of the call in flight (see workers/flusher-core.ts). */
  readonly partitionState: SharedArrayBuffer;
  /** Every lax counter registered so far (a replacement starts from them). */
  readonly entries: LaxEntryInit[];
  /** Instance-aware counters: this engine's instance id, its dead-instance threshold and retention, ms. */
  readonly instanceId: string;
  readonly deadInstanceThresholdMs: number;
  readonly instanceRetentionMs: number;
  /** How often the flusher heartbeats on every instance-aware partition, ms. */
  readonly heartbeatIntervalMs: number;
  /**
   * True for a replacement of a thread that died: it starts even while Redis is unreachable (its client
   * reconnects on its own), where the first thread's failure to connect fails createEngine.
   */
  readonly replacement: boolean;
  /**
   * Connect in the background rather than wait for Redis (a replacement, or an engine that started while
   * Redis was unreachable): the client is not ready for commands until it connected and its checks passed.
   */
  readonly connectInBackground: boolean;
}

/** A worker thread's stat buffer client → the buffer (src/buffers/link.ts). */
export type BufferLinkToHost =
  /** Counts to add: msgpack [keys, counts]. */
  | { readonly t: 'add'; readonly data: Uint8Array }
  /** Asks for `synced` once every add before it is applied. */
  | { readonly t: 'sync'; readonly id: number }
  /** The client closed its end. */
  | { readonly t: 'bye' };

/** The buffer → a worker thread's client. */
export type BufferLinkToClient = { readonly t: 'synced'; readonly id: number } | { readonly t: 'close' };

/** A worker thread's rate limiter link → the engine's thread (src/limits/link.ts). */
export type RateLinkToHost =
  /** Where is the record of `key` for this strategy (made if new when `create`). */
  | { readonly t: 'resolve'; readonly id: number; readonly strategy: 'absolute' | 'suppressed'; readonly key: string; readonly create: boolean }
  /** The client closed its end. */
  | { readonly t: 'bye' };

/** The engine's thread → a worker thread's rate limiter link. */
export type RateLinkToClient =
  | {
      readonly t: 'resolved';
      readonly id: number;
      /** The decision-memory segment the record is in (shared, not copied), its id (shard · 2^16 + index), and where in it. */
      readonly segment: SharedArrayBuffer;
      readonly segmentId: number;
      readonly offset: number;
      readonly stamp: number;
    }
  /** The key has no record (a `resolve` without `create`). */
  | { readonly t: 'absent'; readonly id: number }
  | { readonly t: 'failed'; readonly id: number; readonly error: WireError };

/** A lax counter the flusher must know. */
export interface LaxEntryInit {
  readonly shard: number;
  /** Its bit in the shard's dirty bitmap. */
  readonly lax: number;
  /** Its record's arena offset. */
  readonly offset: number;
  readonly key: string;
  /** Its Redis partition (see common/redis.ts). */
  readonly partition: number;
}

/**
 * An op the main thread asks the flusher to run in Redis: on one lax counter, after its pending delta, or
 * the clear of one partition (after every pending delta of it).
 */
export type FlusherOp =
  | { readonly type: 'counter'; readonly shard: number; readonly lax: number; readonly mode: CounterOpMode; readonly cmp: CmpCode; readonly x: number; readonly n: number }
  /** Every counter of one flusher partition: CLEAR, or (instance-aware) CLEAR_MINE; the default is CLEAR. */
  | { readonly type: 'clear'; readonly partition: number; readonly mode?: number };

/** Main → flusher on the data port. */
export type FlusherMessage =
  | { readonly type: 'register'; readonly entries: LaxEntryInit[] }
  | { readonly type: 'request'; readonly id: number; readonly ops: FlusherOp[] };

/** Flusher → main on the data port. */
export type FlusherReply =
  /** [new, old] per op of request `id`; new is NaN where an INC would have left the safe-integer range. */
  | { readonly type: 'result'; readonly id: number; readonly results: number[] }
  | { readonly type: 'error'; readonly id: number; readonly error: WireError };

export interface FlusherStats {
  /** Flush cycles run. */
  readonly cycles: number;
  /** Script calls sent to Redis (each one round trip, pipelined across partitions). */
  readonly commands: number;
  /** Calls that failed (not sent, or no reply). */
  readonly failures: number;
  /** Deltas delivered. */
  readonly delivered: number;
  /** Keys holding deltas not yet delivered. */
  readonly pendingKeys: number;
  /** Partitions holding a call whose outcome is not known yet (re-sent until it is). */
  readonly unresolved: number;
  /** Heartbeat rounds that reached Redis (one call per instance-aware partition each). */
  readonly heartbeats: number;
  /** When the last cycle ended in which every call landed (ms since the Unix epoch; the flusher's start before one did). */
  readonly lastSuccessAt: number;
  readonly lastError: string | undefined;
}

export interface FlusherCloseReport {
  /** [key, delta] of every lax delta that could not be delivered before the deadline. */
  readonly undelivered: Array<[string, number]>;
}

/** Control plane of the flusher (comlink). */
export interface FlusherControl {
  /**
   * Runs flush cycles until everything dirty when called has been offered to Redis once, after the first
   * `registrationsSent` registration messages of the data port arrived (the two ports keep no order between them).
   */
  flushNow(registrationsSent: number): Promise<FlusherStats>;
  stats(): FlusherStats;
  /**
   * Flushes until nothing is pending or `timeoutMs` passed, closes the connection, reports the rest (after
   * the first `registrationsSent` registration messages arrived, as for flushNow).
   */
  close(timeoutMs: number, registrationsSent: number): Promise<FlusherCloseReport>;
  /** Test hook: the next `count` calls that land in Redis lose their reply, as if the connection dropped. */
  loseRepliesForTest(count: number): void;
  /** Test hook: stops (true) or resumes the heartbeats, as a process that froze would. */
  pauseHeartbeatsForTest(paused: boolean): Promise<void>;
}
