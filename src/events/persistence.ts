/**
 * An event store's persistence: listing what the storage holds, dirty tracking, the persist queue (one
 * persist at a time, in the order asked), auto-persist, compaction (let counters go from shard memory)
 * and the reload of a stored counter into a new record. The store (./store.ts) is the facade; this module
 * reads counters only through {@link PersistenceHost}.
 */
import { decode, encode, sharedMapEncoder } from '../../common/codec.js';
import { ErrorCode, TallyworksError } from '../../common/errors.js';
import type { LoadOp } from '../../common/messages.js';
import { applyOps, type Storage, type StorageOp } from '../storage/storage.js';
import type { IntervalCounts } from './intervals.js';
import type { EventCounter } from './reader.js';
import { EXPORT_FORMAT, EXPORT_VERSION, type EventsExport, validateExport } from './snapshot.js';

/** Per-id persisted form: the id's buckets as a one-id export (so a changed config converts on load). */
interface StoredCounter {
  readonly timeZone: string;
  readonly intervals: IntervalCounts;
  readonly nowMs: number;
  readonly rings: number[][];
}

/** What persistence needs of the store. */
export interface PersistenceHost {
  readonly timeZone: string;
  readonly intervals: Readonly<IntervalCounts>;
  /** Words of one counter record (what a compacted counter gives back). */
  readonly recordWords: number;
  /** Counters in memory, by id. */
  readonly counters: Map<string, EventCounter>;
  /** Reads the rings of `ids` aligned to one now, handing each id's to `take` as it is read. */
  eachRings(ids: readonly string[], take: (id: string, rings: number[][], nowMs: number) => void, trim: boolean): Promise<number>;
  /** The op that merges a one-id export into `c`'s record (throws when this store cannot take it). */
  mergeOp(c: EventCounter, exp: EventsExport): LoadOp;
  /** Retires the counter's limit gates before it goes; false (keep the counter) while one holds a live reservation. */
  letGo(c: EventCounter): boolean;
  /** The store clock's now. */
  now(): number;
}

export class EventPersistence {
  /** Ids persisted in storage and not in memory (compacted, or from an earlier process). */
  readonly stored = new Set<string>();
  /** Export ids already merged (idempotent merge), saved under `<prefix>.merged`. */
  readonly mergedExports = new Set<string>();
  /** Resolves once the storage's keys are listed. */
  readonly listing: Promise<void>;
  listed = false;
  private readonly dirtyList: EventCounter[] = [];
  /** Persists run one after another, so that an older snapshot never lands after a newer one. */
  private persistQueue: Promise<unknown> = Promise.resolve();
  private persisting = 0;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly idleTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;

  constructor(
    private readonly host: PersistenceHost,
    readonly storage: Storage | undefined,
    private readonly prefix: string,
    autoPersistMs: number | undefined,
    onPersistError: (err: Error) => void,
    private readonly idleMs?: number,
  ) {
    if (idleMs !== undefined) {
      this.idleTimer = setInterval(() => void this.evictIdle().catch(onPersistError), Math.max(1, Math.floor(idleMs / 2))).unref();
    }
    if (autoPersistMs !== undefined) {
      this.timer = setInterval(() => {
        if (this.persisting > 0) return; // the last one is still writing: no pile-up behind a slow storage
        this.persist().catch(onPersistError);
      }, autoPersistMs).unref();
    }
    // Without storage there is nothing to list: synchronous reads and decisions work from the start.
    this.listed = storage === undefined;
    this.listing = storage === undefined ? Promise.resolve() : this.listStored(storage);
    this.listing.then(
      () => (this.listed = true),
      () => undefined, // reported by the first read that awaits it
    );
  }

  private async listStored(storage: Storage): Promise<void> {
    const meta = await storage.load(`${this.prefix}.merged`);
    if (meta !== undefined) for (const id of decode<string[]>(meta)) this.mergedExports.add(id);
    for (const key of await storage.keys(this.prefix)) {
      const id = key.slice(this.prefix.length);
      if (id.startsWith('.')) continue;
      const c = this.host.counters.get(id);
      // Recorded before the listing finished: merge the stored counts into the live record.
      if (c !== undefined) c.loading = this.reload(c);
      else this.stored.add(id);
    }
  }

  /** Saves the merged export ids (after a merge of an export that carries a source). */
  async saveMergedExports(): Promise<void> {
    if (this.storage !== undefined) await this.storage.save(`${this.prefix}.merged`, encode([...this.mergedExports]));
  }

  // ── dirty tracking ────────────────────────────────────────────────────────────────────────────────

  markDirty(c: EventCounter): void {
    c.dirty = true;
    this.dirtyList.push(c);
  }

  /** Ids recorded since the last persist() or clearDirty(). */
  dirtyIds(): string[] {
    return this.dirtyList.filter((c) => c.dirty).map((c) => c.id);
  }

  /** Forgets which ids are dirty (without saving them). */
  clearDirty(): void {
    for (const c of this.dirtyList) c.dirty = false;
    this.dirtyList.length = 0;
  }

  // ── persisting ────────────────────────────────────────────────────────────────────────────────────

  /** Saves the dirty counters; returns how many. Queued behind any persist still running. */
  persist(): Promise<number> {
    return this.queued(() => this.persistDirty());
  }

  /** Saves every counter in memory; returns how many. */
  persistAll(): Promise<number> {
    return this.queued(() => this.persistEvery());
  }

  private queued(run: () => Promise<number>): Promise<number> {
    this.persisting++;
    const next = this.persistQueue.then(run, run).finally(() => this.persisting--);
    this.persistQueue = next.catch(() => undefined);
    return next;
  }

  private persistDirty(): Promise<number> {
    const dirty = this.dirtyList.splice(0).filter((c) => c.dirty);
    for (const c of dirty) c.dirty = false;
    return this.saveOrRemark(dirty);
  }

  private persistEvery(): Promise<number> {
    const all = [...this.host.counters.values()];
    this.clearDirty();
    return this.saveOrRemark(all);
  }

  /** Saves `counters` (their dirty flags already cleared); not saved, they are dirty again for the next persist. */
  private async saveOrRemark(counters: readonly EventCounter[]): Promise<number> {
    try {
      return await this.save(counters);
    } catch (err) {
      for (const c of counters) if (!c.dirty && this.host.counters.get(c.id) === c) this.markDirty(c);
      throw err;
    }
  }

  private async save(counters: readonly EventCounter[]): Promise<number> {
    const storage = this.requireStorage('persist');
    const ops: StorageOp[] = [];
    const intervals = { ...this.host.intervals };
    const timeZone = this.host.timeZone;
    // An id's entry is { timeZone, intervals, nowMs, rings } (StoredCounter): the first three are the
    // persist's, encoded once; each id encodes its rings.
    let encoder: ((rings: number[][]) => Uint8Array) | undefined;
    let encoderNow = Number.NaN;
    // Each id is encoded as soon as it is read: no export of every id is held at once (a million ids of
    // number arrays would mean a heap of gigabytes and long garbage-collection pauses).
    await this.host.eachRings(
      counters.map((c) => c.id),
      (id, rings, nowMs) => {
        if (nowMs !== encoderNow) {
          const shared: Omit<StoredCounter, 'rings'> = { timeZone, intervals, nowMs };
          encoder = sharedMapEncoder(shared, 'rings');
          encoderNow = nowMs;
        }
        ops.push({ type: 'save', key: this.prefix + id, value: encoder!(rings), owned: true });
      },
      // Older buckets that hold 0 are left off (a load reads a missing bucket as 0): an id counted in a
      // few units encodes in tens of bytes instead of one number per bucket of every ring.
      true,
    );
    await applyOps(storage, ops);
    return ops.length;
  }

  // ── compaction and reload ─────────────────────────────────────────────────────────────────────────

  /**
   * Persists every counter, then lets them go from shard memory (their words are reused by new ids).
   * Every later use of an id (record, query, limit) brings its counter back from storage first.
   */
  async compact(): Promise<void> {
    this.requireStorage('compact');
    await this.queued(() => this.persistEvery());
    await this.release([...this.host.counters.values()]);
  }

  /** Lets go those of `counters` saved and untouched since (kept: recorded meanwhile, loading, or reserved). */
  private async release(counters: readonly EventCounter[]): Promise<number> {
    const releases: Array<Promise<void>> = [];
    for (const c of counters) {
      if (c.dirty || c.loading !== undefined) continue; // recorded during the persist: keep it
      if (this.host.counters.get(c.id) !== c) continue;
      if (!this.host.letGo(c)) continue; // a reservation is held on it
      this.host.counters.delete(c.id);
      this.stored.add(c.id);
      releases.push(c.lane.releaseRecord(c.offset, this.host.recordWords));
    }
    await Promise.all(releases);
    return releases.length;
  }

  /**
   * One idle pass (idleMs): notes the ids recorded since the last pass, then saves and lets go those not
   * recorded for idleMs. One pass at a time. Never lets an id go before idleMs after its last record.
   */
  async evictIdle(): Promise<number> {
    this.requireStorage('evictIdle');
    if (this.idleMs === undefined) throw new TallyworksError(ErrorCode.INVALID_ARGUMENT, 'evictIdle() needs a store created with the idleMs option');
    this.sweeping ??= this.sweep(this.idleMs).finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweep(idleMs: number): Promise<number> {
    const now = this.host.now();
    const idle: EventCounter[] = [];
    for (const c of this.host.counters.values()) {
      if (c.touched !== false) {
        c.touched = false;
        c.seenMs = now;
      } else if (now - (c.seenMs ?? now) >= idleMs && c.loading === undefined) idle.push(c);
    }
    if (idle.length === 0) return 0;
    const dirty = idle.filter((c) => c.dirty);
    if (dirty.length > 0) {
      await this.queued(() => {
        for (const c of dirty) c.dirty = false;
        return this.saveOrRemark(dirty);
      });
    }
    // Recorded while saving: touched again, so kept.
    return this.release(idle.filter((c) => c.touched === false));
  }

  /** A stored id got a new record: merge its stored counts in (reads wait for `c.loading`). */
  restore(c: EventCounter): void {
    this.stored.delete(c.id);
    c.loading = this.reload(c);
  }

  /** Merges the id's stored counts into its (new) record. */
  private async reload(c: EventCounter): Promise<void> {
    const bytes = await this.requireStorage('reload').load(this.prefix + c.id);
    if (bytes !== undefined) {
      let op: LoadOp;
      try {
        const entry = decode<StoredCounter>(bytes);
        const exp = validateExport(
          { format: EXPORT_FORMAT, version: EXPORT_VERSION, timeZone: entry.timeZone, intervals: entry.intervals, nowMs: entry.nowMs, counters: { [c.id]: entry.rings } },
          'stored counter',
        );
        op = this.host.mergeOp(c, exp);
      } catch (err) {
        // Bytes that are no stored counter, or one this store cannot take (another zone, other units).
        throw new TallyworksError(ErrorCode.STORAGE, `stored counter ${JSON.stringify(c.id)} cannot be read: ${(err as Error).message}`, { cause: err });
      }
      c.lane.batches.appendCtrl(op);
      await c.lane.drainSoon();
    }
    c.loading = undefined;
  }

  requireStorage(what: string): Storage {
    if (this.storage === undefined) throw new TallyworksError(ErrorCode.INVALID_ARGUMENT, `${what}() needs a store created with the storage option`);
    return this.storage;
  }

  /** Stops auto-persist and persists what is dirty (queued behind a background persist still writing). */
  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    if (this.idleTimer !== undefined) clearInterval(this.idleTimer);
    await this.sweeping?.catch(() => undefined);
    if (this.storage !== undefined) await this.persist();
  }
}
