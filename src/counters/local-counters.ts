/**
 * Counters held in shard memory: one counter record per key (common/layout.ts), owned by the key's shard.
 *
 * Two uses. Embedded (no Redis): the records are the counters, and this class is their backend — ops run
 * in the owning shard, in order with the adds around them, and return [new, old] through result cells.
 * With Redis: the records are lax counters' buffers — the shard adds every local delta to the record's
 * total, and the flusher delivers total − committed to Redis and writes back the Redis value it saw.
 */
import { ErrorCode, TallyworksError, TallyworksRangeError } from '../../common/errors.js';
import { CNT_RECORD_WORDS, CNTF_COMMITTED, CNTF_REMOTE, CNTF_REMOTE_AT, CNTF_TOTAL, KIND_CNT, type ShardViews } from '../../common/layout.js';
import { type CmpCode, CounterMode, type CounterOpMode } from '../../common/messages.js';
import type { Clock } from '../clock/clock.js';
import { validateKey } from '../keys.js';
import type { Lane } from '../router/lane.js';
import type { Router } from '../router/router.js';
import { type CounterBackend, type CounterOpSpec, singleViaRun } from './counters.js';

/** One counter's record: where it lives and (with a flusher) its bit in the dirty bitmap. */
export interface CounterRecord {
  readonly key: string;
  readonly lane: Lane;
  readonly offset: number;
  /** Lax index, or -1 when no flusher delivers this counter. */
  readonly lax: number;
  /** Lax with Redis: every delta this thread has added (the shard's total once applied). */
  appended: number;
  /** Lax with Redis: counted among the keys that may hold an undelivered delta (the maxPendingKeys cap). */
  capped: boolean;
}

/** A counter as read from its record: the local estimate and when its Redis part was last read. */
export interface CounterReading {
  /** remote + total − committed: the last Redis value seen plus local deltas not delivered yet. */
  readonly value: number;
  /** Engine-clock ms of the last Redis read (-Infinity: never). */
  readonly remoteAt: number;
}

function readCounter(v: ShardViews, o: number): CounterReading {
  const f64 = v.f64;
  return { value: f64[o + CNTF_REMOTE]! + f64[o + CNTF_TOTAL]! - f64[o + CNTF_COMMITTED]!, remoteAt: f64[o + CNTF_REMOTE_AT]! };
}

export class LocalCounters implements CounterBackend {
  /** Every record, by key (read directly where a known key's lookup is on the hot path). */
  readonly records: ReadonlyMap<string, CounterRecord> = new Map<string, CounterRecord>();
  private readonly router: Router;
  private readonly clock: Clock;
  /** Set when a flusher delivers these counters to Redis. */
  private readonly laxRegistrar: ((rec: CounterRecord) => void) | undefined;

  constructor(
    router: Router,
    clock: Clock,
    laxRegistrar?: (rec: CounterRecord) => void,
    /** At most this many records (engine option `maxCounterKeys`), and what they are, for its error. */
    private readonly bound: { readonly maxKeys: number; readonly kind: string } = { maxKeys: Number.POSITIVE_INFINITY, kind: 'counters' },
  ) {
    this.router = router;
    this.clock = clock;
    this.laxRegistrar = laxRegistrar;
  }

  /** The record of `key`, created (its key validated first) when missing; TW_CAPACITY past maxCounterKeys. */
  record(key: string): CounterRecord {
    let rec = this.records.get(key);
    if (rec === undefined) {
      validateKey(key);
      if (this.records.size >= this.bound.maxKeys) throw this.full(key);
      const lane = this.router.laneFor(key);
      const lax = this.laxRegistrar === undefined ? -1 : lane.allocLaxIndex();
      const offset = lane.createRecord(CNT_RECORD_WORDS, KIND_CNT, lax);
      rec = { key, lane, offset, lax, appended: 0, capped: false };
      (this.records as Map<string, CounterRecord>).set(key, rec);
      this.laxRegistrar?.(rec);
    }
    return rec;
  }

  /**
   * Throws TW_CAPACITY, before anything is written, when the records of `keys` would pass maxCounterKeys
   * (a call of several keys then writes none of them).
   */
  ensureRoom(keys: readonly string[]): void {
    const free = this.bound.maxKeys - this.records.size;
    if (keys.length <= free) return;
    const fresh = new Set<string>();
    for (const k of keys) {
      if (this.records.has(k) || fresh.has(k)) continue;
      fresh.add(k);
      if (fresh.size > free) throw this.full(k);
    }
  }

  private full(key: string): TallyworksError {
    return new TallyworksRangeError(
      ErrorCode.CAPACITY,
      `the ${this.bound.kind} hold maxCounterKeys (${this.bound.maxKeys}) keys in this process; ${JSON.stringify(key)} was not created and nothing was written`,
    );
  }

  /** Every record. */
  all(): IterableIterator<CounterRecord> {
    return this.records.values();
  }

  /** Reads a record once its shard has applied every op sent to it before the call. */
  read(rec: CounterRecord): Promise<CounterReading> {
    return rec.lane.readSettled(rec.offset, this.clock, (v) => readCounter(v, rec.offset));
  }

  /** Resolves once the shards of `recs` have applied everything sent to them so far. */
  async settle(recs: readonly CounterRecord[]): Promise<void> {
    await Promise.all([...new Set(recs.map((r) => r.lane))].map((l) => l.drain()));
  }

  // ── embedded backend ──────────────────────────────────────────────────────────────────────────────

  async run(ops: readonly CounterOpSpec[]): Promise<number[]> {
    this.ensureRoom(ops.map((op) => op.key));
    const cells: Array<[Lane, number]> = [];
    for (const op of ops) {
      const rec = this.record(op.key);
      const cell = rec.lane.allocCell();
      rec.lane.resetCell(cell);
      rec.lane.batches.appendCtrl({ type: 'counter', offset: rec.offset, cell, mode: op.mode, cmp: op.cmp, x: op.x, n: op.n });
      cells.push([rec.lane, cell]);
    }
    await Promise.all([...new Set(cells.map(([l]) => l))].map((l) => l.drain()));
    const results: number[] = [];
    for (const [lane, cell] of cells) {
      const [next, old] = lane.readCell(cell);
      lane.freeCell(cell);
      results.push(next, old);
    }
    return results;
  }

  single(key: string, mode: CounterOpMode, cmp: CmpCode, x: number, n: number, pick: number): Promise<number | [number, number]> {
    return singleViaRun(this, key, mode, cmp, x, n, pick);
  }

  async get(keys: readonly string[]): Promise<number[]> {
    return Promise.all(
      keys.map(async (k) => {
        const rec = this.records.get(k);
        return rec === undefined ? 0 : (await this.read(rec)).value;
      }),
    );
  }

  async clear(): Promise<void> {
    const ops = [...this.records.keys()].map((key): CounterOpSpec => ({ key, mode: CounterMode.DEL, cmp: 0, x: 0, n: 0 }));
    if (ops.length > 0) await this.run(ops);
  }
}
