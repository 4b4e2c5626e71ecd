/**
 * Instance-aware lax counters: increments of my slice are buffered in shard memory like lax counters and
 * delivered to Redis by the flusher (exactly once, the same calls and markers; common/scripts/ia.lua on
 * the "il" partitions). Reads return the local estimate — the cumulative and my slice as Redis last
 * answered, plus my deltas not delivered yet — with no Redis I/O while that answer is younger than
 * `allowedLagMs`. Every other op (set, del, the conditional ops, the slice ops, clears) delivers the key's
 * pending delta and then runs atomically in Redis, in the same call. Embedded, it is the embedded
 * instance-aware backend with a synchronous `add`.
 */
import { ErrorCode, TallyworksError } from '../../common/errors.js';
import { CNTF_COMMITTED, CNTF_REMOTE, CNTF_REMOTE_AT, CNTF_REMOTE_MINE, CNTF_TOTAL } from '../../common/layout.js';
import { Cmp, type FlusherOp, IaMode } from '../../common/messages.js';
import { PARTITIONS } from '../../common/redis.js';
import type { Clock } from '../clock/clock.js';
import type { FlusherClient } from '../flusher/flusher-client.js';
import { refusedError } from './counters.js';
import { type IaBackend, type IaOpSpec, InstanceAwareSet, type Slice } from './instance-aware.js';
import { badDelta, type LaxAdds } from './lax-adds.js';
import type { CounterRecord, LocalCounters } from './local-counters.js';

/** An instance-aware record as read: the estimate of the cumulative and of my slice, and the age of its Redis part. */
interface IaReading {
  readonly cumulative: number;
  readonly mine: number;
  readonly remoteAt: number;
}

function read(clock: Clock, rec: CounterRecord): Promise<IaReading> {
  return rec.lane.readSettled(rec.offset, clock, (v) => {
    const o = rec.offset;
    const pending = v.f64[o + CNTF_TOTAL]! - v.f64[o + CNTF_COMMITTED]!;
    return { cumulative: v.f64[o + CNTF_REMOTE]! + pending, mine: v.f64[o + CNTF_REMOTE_MINE]! + pending, remoteAt: v.f64[o + CNTF_REMOTE_AT]! };
  });
}

/** The Redis backend: ops go to the flusher, each after its key's pending delta. */
class IaLaxRedis implements IaBackend {
  constructor(
    private readonly local: LocalCounters,
    private readonly flusher: FlusherClient,
    private readonly clock: Clock,
    private readonly allowedLagMs: number,
  ) {}

  async run(ops: readonly IaOpSpec[]): Promise<number[]> {
    if (ops.every((op) => op.mode === IaMode.GET)) return this.read(ops.map((op) => op.key));
    this.local.ensureRoom(ops.map((op) => op.key));
    const recs = ops.map((op) => this.local.record(op.key));
    // The shards apply every earlier add first, so the delta delivered before each op includes them.
    await this.local.settle(recs);
    return this.flusher.request(ops.map((op, i): FlusherOp => ({ type: 'counter', shard: recs[i]!.lane.index, lax: recs[i]!.lax, mode: op.mode as never, cmp: op.cmp, x: op.x, n: op.n })));
  }

  /** The local estimates, refreshed from Redis where older than `allowedLagMs` (kept as they are while Redis is away). */
  private async read(keys: readonly string[]): Promise<number[]> {
    this.local.ensureRoom(keys);
    const recs = keys.map((k) => this.local.record(k));
    await this.local.settle(recs);
    let readings = await Promise.all(recs.map((r) => read(this.clock, r)));
    const now = this.clock.now();
    const stale = recs.filter((_, i) => now - readings[i]!.remoteAt > this.allowedLagMs);
    if (stale.length > 0) {
      try {
        await this.flusher.request(stale.map((r): FlusherOp => ({ type: 'counter', shard: r.lane.index, lax: r.lax, mode: IaMode.GET, cmp: Cmp.ALWAYS, x: 0, n: 0 })));
        readings = await Promise.all(recs.map((r) => read(this.clock, r)));
      } catch (err) {
        if (!(err instanceof TallyworksError) || (err.code !== ErrorCode.REDIS_UNAVAILABLE && err.code !== ErrorCode.REDIS_OUTCOME_UNKNOWN)) throw err;
      }
    }
    return readings.flatMap((r) => [r.cumulative, r.mine, r.cumulative, r.mine]);
  }

  async onEveryPartition(mode: number): Promise<void> {
    await this.local.settle([...this.local.all()]);
    await this.flusher.request(Array.from({ length: PARTITIONS }, (_, p): FlusherOp => ({ type: 'clear', partition: PARTITIONS + p, mode })));
  }
}

export class LaxInstanceAware extends InstanceAwareSet {
  /** @internal created by the engine; `local` registers its records on the flusher's instance-aware partitions. */
  constructor(
    private readonly local: LocalCounters,
    private readonly flusher: FlusherClient | undefined,
    clock: Clock,
    allowedLagMs: number,
    private readonly adds: LaxAdds,
    embedded: IaBackend,
    isClosed: () => boolean,
  ) {
    super(flusher === undefined ? embedded : new IaLaxRedis(local, flusher, clock, allowedLagMs), isClosed);
  }

  /**
   * Adds `n` (default 1) to my slice of `key` without waiting: synchronous, no I/O, allocation-free for a
   * known key; TW_CAPACITY as `lax.add` (the two share `maxPendingKeys`).
   */
  add(key: string, n = 1): void {
    if (typeof n !== 'number' || !Number.isSafeInteger(n)) badDelta(n);
    this.open();
    this.adds.add(this.local.records.get(key) ?? this.local.record(key), n);
  }

  /** Adds `n`, then returns the local estimate `[cumulative, mine]` (no Redis I/O while the key is warm). */
  override async inc(key: string, n = 1): Promise<Slice> {
    if (this.flusher === undefined) return super.inc(key, n);
    const [cumulative, mine] = await this.get(key);
    if (typeof n === 'number' && Number.isSafeInteger(n) && (!Number.isSafeInteger(cumulative + n) || !Number.isSafeInteger(mine + n))) throw refusedError(key, n);
    this.add(key, n);
    return this.get(key);
  }

  /** Delivers every pending delta now (one flush cycle). */
  async flush(): Promise<void> {
    this.open();
    if (this.flusher === undefined) return;
    await this.local.settle([...this.local.all()]);
    await this.flusher.flushNow();
  }
}
