/**
 * Lax counters: increments are buffered in shard memory and delivered to Redis by the flusher every flush
 * interval; reads return the local estimate (the last Redis value seen plus local deltas not delivered
 * yet) with no Redis I/O while that Redis value is younger than `allowedLagMs`.
 *
 * `set`, `del`, `incIf`, `setIf` and `clear` deliver the counter's pending delta and then run atomically in
 * Redis, in the same script call (correct before fast). Embedded (no Redis), a lax counter is an
 * in-process counter with the same API.
 */
import { ErrorCode, TallyworksError } from '../../common/errors.js';
import { Cmp, type CmpCode, type CounterOpMode, type FlusherOp, Mode } from '../../common/messages.js';
import { PARTITIONS } from '../../common/redis.js';
import type { Clock } from '../clock/clock.js';
import type { FlusherClient } from '../flusher/flusher-client.js';
import { validateKey } from '../keys.js';
import { type CounterBackend, type CounterOpSpec, CounterSet, refusedError, singleViaRun } from './counters.js';
import { badDelta, type LaxAdds } from './lax-adds.js';
import type { CounterRecord, LocalCounters } from './local-counters.js';

/** A lax counter resolved once, for hot loops: `add` skips the key lookup. */
export interface LaxHandle {
  readonly key: string;
  /** Adds `n` (default 1): synchronous, allocation-free, no I/O. */
  add(n?: number): void;
}

/** Lax counters backed by Redis through the flusher. */
class LaxRedis implements CounterBackend {
  constructor(
    private readonly local: LocalCounters,
    private readonly flusher: FlusherClient,
    private readonly clock: Clock,
    private readonly allowedLagMs: number,
  ) {}

  async run(ops: readonly CounterOpSpec[]): Promise<number[]> {
    this.local.ensureRoom(ops.map((op) => op.key));
    const recs = ops.map((op) => this.local.record(op.key));
    // The shards apply every earlier add first, so the delta delivered before each op includes them.
    await this.local.settle(recs);
    return this.flusher.request(ops.map((op, i): FlusherOp => ({ type: 'counter', shard: recs[i]!.lane.index, lax: recs[i]!.lax, mode: op.mode, cmp: op.cmp, x: op.x, n: op.n })));
  }

  single(key: string, mode: CounterOpMode, cmp: CmpCode, x: number, n: number, pick: number): Promise<number | [number, number]> {
    return singleViaRun(this, key, mode, cmp, x, n, pick);
  }

  async get(keys: readonly string[]): Promise<number[]> {
    this.local.ensureRoom(keys);
    const recs = keys.map((k) => this.local.record(k));
    await this.local.settle(recs);
    let readings = await Promise.all(recs.map((r) => this.local.read(r)));
    const now = this.clock.now();
    const stale = recs.filter((_, i) => now - readings[i]!.remoteAt > this.allowedLagMs);
    if (stale.length > 0) {
      try {
        await this.flusher.request(stale.map((r): FlusherOp => ({ type: 'counter', shard: r.lane.index, lax: r.lax, mode: Mode.GET, cmp: Cmp.ALWAYS, x: 0, n: 0 })));
        readings = await Promise.all(recs.map((r) => this.local.read(r)));
      } catch (err) {
        // Redis unreachable: the local estimate is the answer (spec: reads return it during an outage).
        if (!(err instanceof TallyworksError) || (err.code !== ErrorCode.REDIS_UNAVAILABLE && err.code !== ErrorCode.REDIS_OUTCOME_UNKNOWN)) throw err;
      }
    }
    return readings.map((r) => r.value);
  }

  async clear(): Promise<void> {
    const recs = [...this.local.all()];
    await this.local.settle(recs);
    await this.flusher.request(Array.from({ length: PARTITIONS }, (_, p): FlusherOp => ({ type: 'clear', partition: p })));
  }
}

export class LaxCounters extends CounterSet {
  private readonly local: LocalCounters;
  /** The local counters' records by key: a known key's add looks it up here, in this file. */
  private readonly records: ReadonlyMap<string, CounterRecord>;
  private readonly flusher: FlusherClient | undefined;
  private readonly adds: LaxAdds;

  /** @internal created by the engine */
  constructor(local: LocalCounters, flusher: FlusherClient | undefined, clock: Clock, allowedLagMs: number, adds: LaxAdds, isClosed: () => boolean) {
    super(flusher === undefined ? local : new LaxRedis(local, flusher, clock, allowedLagMs), isClosed);
    this.local = local;
    this.records = local.records;
    this.flusher = flusher;
    this.adds = adds;
  }

  /** @internal the keys this process has counted (the opt-in counter metrics) */
  keys(): IterableIterator<string> {
    return this.records.keys();
  }

  /**
   * Adds `n` (default 1) to `key` without waiting: synchronous, no I/O, allocation-free for a known key.
   * Throws TW_CAPACITY when Redis has been unreachable so long that `maxPendingKeys` keys hold undelivered
   * deltas and `key` is not one of them (its delta would need new memory); nothing is added then.
   */
  add(key: string, n = 1): void {
    if (typeof n !== 'number' || !Number.isSafeInteger(n)) badDelta(n);
    this.open();
    this.adds.add(this.records.get(key) ?? this.local.record(key), n);
  }

  /** A handle on `key` for hot loops: `handle.add(n)` skips the key lookup. */
  handle(key: string): LaxHandle {
    this.open();
    const rec = this.local.record(validateKey(key));
    const add = (n = 1): void => {
      if (typeof n !== 'number' || !Number.isSafeInteger(n)) badDelta(n);
      this.open();
      this.adds.add(rec, n);
    };
    return { key: rec.key, add };
  }

  /**
   * With Redis: adds `n`, then returns the local estimate (no Redis I/O while the key is warm). An `n` that
   * would take the estimate past ±(2^53 − 1) is refused (TW_INVALID_ARGUMENT) and adds nothing.
   */
  override async inc(key: string, n = 1): Promise<number> {
    if (this.flusher === undefined) return super.inc(key, n);
    const before = await this.get(key);
    if (typeof n === 'number' && Number.isSafeInteger(n) && !Number.isSafeInteger(before + n)) throw refusedError(key, n);
    this.add(key, n);
    return this.get(key);
  }

  /** Delivers every pending delta now (one flush cycle) and resolves when Redis answered or the cycle failed. */
  async flush(): Promise<void> {
    this.open();
    if (this.flusher === undefined) return;
    await this.local.settle([...this.local.all()]);
    await this.flusher.flushNow();
  }
}
