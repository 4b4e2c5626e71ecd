/**
 * Strict counters in Redis: every op runs in the apply script, atomically, and is immediately visible to
 * every instance.
 *
 * Coalescing (spec FIX). Ops issued while a partition's call is in flight — or in the same event-loop
 * turn — wait in that partition's queue and go out together as one script call, so 1000 concurrent
 * callers cost ~16 calls per round trip instead of 1000 commands. Order per key is kept: one call per
 * partition is in flight at a time, and a call runs its ops in issue order.
 *
 * Failures. While Redis is unreachable a call fails at once with TW_REDIS_UNAVAILABLE (no offline queue).
 * A call that was sent but lost its reply may have applied: the client waits for Redis to come back (up to
 * `outcomeWaitMs`) and reads the partition's marker, which names the last call of this instance that
 * applied and its results — so the caller gets the real results, or TW_REDIS_UNAVAILABLE when it did not
 * apply; never a silent double. Only when Redis stays away longer is the error TW_REDIS_OUTCOME_UNKNOWN.
 */
import { ErrorCode, TallyworksError } from '../../common/errors.js';
import {
  ApplyStatus,
  dropMarkers,
  isReady,
  markerKey,
  Mode,
  PARTITIONS,
  partitionKey,
  partitionOf,
  readMarker,
  type RedisClient,
  runApply,
  unavailable,
  whenReady,
} from '../../common/redis.js';
import type { CounterBackend, CounterOpSpec } from './counters.js';

interface Waiter {
  /** Index of the waiter's first op in the call. */
  readonly from: number;
  readonly count: number;
  readonly resolve: (results: number[]) => void;
  readonly reject: (err: Error) => void;
}

interface Partition {
  readonly key: string;
  readonly marker: string;
  seq: number;
  args: Array<string | number>;
  writes: boolean;
  waiters: Waiter[];
  busy: boolean;
}

export interface StrictRedisStats {
  /** Script calls sent. */
  readonly calls: number;
  /** Ops those calls carried. */
  readonly ops: number;
}

export class StrictRedis implements CounterBackend {
  private readonly client: RedisClient;
  private readonly outcomeWaitMs: number;
  private readonly partitions: Partition[] = [];
  private scheduled = false;
  /** Calls being sent (and resolved), so close() can wait for them. */
  private readonly inflight = new Set<Promise<void>>();
  private calls = 0;
  private opsSent = 0;

  constructor(client: RedisClient, prefix: string, instance: string, outcomeWaitMs: number) {
    this.client = client;
    this.outcomeWaitMs = outcomeWaitMs;
    for (let p = 0; p < PARTITIONS; p++) {
      const key = partitionKey(prefix, 's', p);
      this.partitions.push({ key, marker: markerKey(key, instance), seq: 0, args: [], writes: false, waiters: [], busy: false });
    }
  }

  run(ops: readonly CounterOpSpec[]): Promise<number[]> {
    return this.enqueue(ops.map((op) => [partitionOf(op.key), op.mode, op.key, op.cmp, op.x, op.n]));
  }

  get(keys: readonly string[]): Promise<number[]> {
    return this.enqueue(keys.map((k) => [partitionOf(k), Mode.GET, k, 0, 0, 0])).then((r) => keys.map((_, i) => r[2 * i]!));
  }

  async clear(): Promise<void> {
    await this.enqueue(this.partitions.map((_, p) => [p, Mode.CLEAR, '', 0, 0, 0]));
  }

  /** Waits for every call in flight, then deletes this instance's markers (none is needed any more). */
  async close(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all(this.inflight);
    await dropMarkers(this.client, this.partitions.map((p) => p.marker));
  }

  stats(): StrictRedisStats {
    return { calls: this.calls, ops: this.opsSent };
  }

  /** Queues ops ([partition, mode, key, cmp, x, n]); resolves with [new, old] per op in input order. */
  private enqueue(ops: ReadonlyArray<readonly [number, number, string, number, number, number]>): Promise<number[]> {
    if (!isReady(this.client)) return Promise.reject(unavailable('the strict counter operation'));
    const byPartition = new Map<number, number[]>();
    for (let i = 0; i < ops.length; i++) {
      const p = ops[i]![0];
      let list = byPartition.get(p);
      if (list === undefined) byPartition.set(p, (list = []));
      list.push(i);
    }
    const results = new Array<number>(ops.length * 2);
    const parts = [...byPartition].map(([p, indexes]) => {
      const part = this.partitions[p]!;
      const from = part.args.length / 5;
      for (const i of indexes) {
        const [, mode, key, cmp, x, n] = ops[i]!;
        part.args.push(mode, key, cmp, x, n);
        if (mode !== Mode.GET) part.writes = true;
      }
      return new Promise<void>((resolve, reject) => {
        part.waiters.push({
          from,
          count: indexes.length,
          resolve: (r) => {
            indexes.forEach((i, j) => {
              results[2 * i] = r[2 * j]!;
              results[2 * i + 1] = r[2 * j + 1]!;
            });
            resolve();
          },
          reject,
        });
      });
    });
    this.schedule();
    return Promise.all(parts).then(() => results);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // Ref'd on purpose: a caller awaits this call; it runs in this same loop turn's check phase.
    setImmediate(() => {
      this.scheduled = false;
      for (const part of this.partitions) if (!part.busy && part.waiters.length > 0) this.send(part);
    });
  }

  private send(part: Partition): void {
    const sending = this.sendNow(part);
    this.inflight.add(sending);
    void sending.finally(() => this.inflight.delete(sending));
  }

  private async sendNow(part: Partition): Promise<void> {
    part.busy = true;
    const { args, waiters, writes } = part;
    part.args = [];
    part.waiters = [];
    part.writes = false;
    const seq = writes ? ++part.seq : 0;
    try {
      const results = await this.call(part, seq, args);
      for (const w of waiters) w.resolve(results.slice(2 * w.from, 2 * (w.from + w.count)));
    } catch (err) {
      for (const w of waiters) w.reject(err as Error);
    } finally {
      part.busy = false;
      // Ops queued while this call was in flight go out together now.
      if (part.waiters.length > 0) this.send(part);
    }
  }

  /** One script call; on a lost reply, the marker decides whether it applied. */
  private async call(part: Partition, seq: number, args: Array<string | number>): Promise<number[]> {
    if (!isReady(this.client)) throw unavailable('the strict counter operation');
    this.calls++;
    this.opsSent += args.length / 5;
    let reply;
    try {
      reply = await runApply(this.client, part.key, part.marker, seq, args);
    } catch (err) {
      if (seq === 0) throw unavailable('the strict counter read', err);
      return this.resolveLost(part, seq, err);
    }
    if (reply.status === ApplyStatus.STALE) {
      throw new TallyworksError(ErrorCode.PROTOCOL, `Redis holds a newer call of this instance than seq ${seq} on ${part.key}`);
    }
    return toNumbers(reply.results);
  }

  private async resolveLost(part: Partition, seq: number, cause: unknown): Promise<number[]> {
    if (await whenReady(this.client, this.outcomeWaitMs)) {
      try {
        const marker = await readMarker(this.client, part.marker);
        if (marker !== undefined && marker.seq === seq) return toNumbers(marker.results);
        if (marker === undefined || marker.seq < seq) throw unavailable('the strict counter operation', cause);
      } catch (err) {
        if (err instanceof TallyworksError) throw err;
      }
    }
    throw new TallyworksError(
      ErrorCode.REDIS_OUTCOME_UNKNOWN,
      `Redis lost the reply to a strict counter call and did not come back within ${this.outcomeWaitMs} ms to tell whether it applied`,
      { cause },
    );
  }
}

/** Script results to numbers: a refused INC (false) becomes NaN. */
function toNumbers(results: ReadonlyArray<number | false>): number[] {
  return results.map((r) => (r === false ? Number.NaN : r));
}
