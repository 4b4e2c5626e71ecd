/**
 * What a window set keeps beyond its records: persistence (warm restart) and bounded keys.
 *
 * - Every observe sets its window's `touched` flag (one store; no clock read, no timer per window). A pass
 *   over the windows — a persist, an idle sweep, the eviction hand — turns the flag into `seenMs` (the
 *   time of that pass) and, with storage, `dirty`.
 * - `persist()` saves the dirty windows (their buckets at one now) in one storage transaction.
 * - Idle eviction: `evictIdle()` (run by one unref'd timer every idleMs / 2) lets go windows whose last
 *   observe is at least `idleMs` old; with `maxKeys` and `onMaxKeys: 'evict'`, a new window evicts one
 *   chosen by the CLOCK (second-chance) hand: the first window not observed since the hand last passed it.
 * - Letting a window go: with storage its buckets are saved first; then its record is released, and its
 *   shard words are reused by the next window of the same size. The next use of an evicted or stored id
 *   makes a new record and merges the stored buckets in (adds commute: observes made meanwhile are kept).
 *   Without storage an evicted window's counts are gone (a window idle longer than its span holds none).
 */
import { decode, encode } from '../../common/codec.js';
import { ErrorCode, TallyworksError } from '../../common/errors.js';
import { bucketsHop, GO_EPOCH_OFFSET_MS, unitIndex } from '../../common/records/hop.js';
import { hopRecordWords, type ShardViews } from '../../common/layout.js';
import { MISSED } from '../router/shard-memory.js';
import type { Lane } from '../router/lane.js';
import { applyOps, type StorageOp } from '../storage/storage.js';
import type { Clock } from '../clock/clock.js';
import type { ResolvedSetOptions, WindowShape } from './window-options.js';

/** One window as stored: its buckets, oldest first, as they were at `nowMs`. */
interface StoredWindow {
  readonly unitMs: number;
  readonly size: number;
  readonly nowMs: number;
  readonly buckets: number[];
}

/** Windows per turn of the event loop in a pass over every window. */
const PASS_SLICE = 16_384;

/** What the keeper reads and marks on a window (src/windows/window.ts: Window). */
export interface KeptWindow {
  readonly id: string;
  readonly lane: Lane;
  readonly offset: number;
  touched: boolean;
  gone: boolean;
  dirty: boolean;
  seenMs: number;
  pending: Promise<void> | undefined;
}
type Window = KeptWindow;

/** What the keeper needs of its set. */
export interface KeeperHost {
  readonly shape: WindowShape;
  readonly clock: Clock;
  /** The set's windows in memory. */
  readonly byId: Map<string, Window>;
}

export class WindowKeeper {
  /** Ids in storage and not in memory. */
  readonly stored = new Set<string>();
  /** Ids being saved on their way out: a new window of the id waits for the save before it reloads. */
  private readonly evicting = new Map<string, Promise<void>>();
  readonly listing: Promise<void>;
  private listed: boolean;
  private hand: Iterator<Window> | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private persistQueue: Promise<unknown> = Promise.resolve();
  private sweeping: Promise<number> | undefined;
  /** Windows let go so far (idle or evicted at maxKeys). */
  evictions = 0;
  private readonly prefix: string;

  constructor(
    private readonly host: KeeperHost,
    readonly options: ResolvedSetOptions,
  ) {
    this.prefix = `${options.name}/`;
    this.listed = options.storage === undefined;
    this.listing = options.storage === undefined ? Promise.resolve() : this.list();
    this.listing.then(
      () => (this.listed = true),
      () => undefined, // reported by the reads that await it
    );
    if (options.autoPersistMs !== undefined) {
      this.timers.push(setInterval(() => void this.persist().catch(options.onPersistError), options.autoPersistMs).unref());
    }
    if (options.idleMs !== undefined) {
      this.timers.push(setInterval(() => void this.evictIdle().catch(options.onPersistError), Math.max(1, Math.floor(options.idleMs / 2))).unref());
    }
  }

  private async list(): Promise<void> {
    for (const key of await this.options.storage!.keys(this.prefix)) {
      const id = key.slice(this.prefix.length);
      const w = this.host.byId.get(id);
      // Made before the listing finished: merge the stored buckets into the live record.
      if (w !== undefined) this.restore(w);
      else this.stored.add(id);
    }
  }

  // ── windows coming and going ──────────────────────────────────────────────────────────────────────

  /** A new window of the set: brings its stored buckets in when it has some (or may have: still listing). */
  adopt(w: Window): void {
    w.seenMs = this.host.clock.now();
    if (this.options.storage === undefined) return;
    const leaving = this.evicting.get(w.id);
    if (leaving !== undefined) {
      const reloading: Promise<void> = leaving.then(() => this.reload(w)).finally(() => {
        if (w.pending === reloading) w.pending = undefined;
      });
      w.pending = reloading;
    }
    else if (this.stored.has(w.id)) this.restore(w);
    else if (!this.listed) {
      // The listing restores it if it is stored (replacing this wait with the reload).
      const waiting: Promise<void> = this.listing.then(() => {
        if (w.pending === waiting) w.pending = undefined;
      });
      w.pending = waiting;
    }
  }

  private restore(w: Window): void {
    this.stored.delete(w.id);
    const reloading: Promise<void> = this.reload(w).finally(() => {
      if (w.pending === reloading) w.pending = undefined;
    });
    w.pending = reloading;
  }

  /** Merges the id's stored buckets into `w`'s record. */
  private async reload(w: Window): Promise<void> {
    const bytes = await this.options.storage!.load(this.prefix + w.id);
    this.stored.delete(w.id);
    if (bytes === undefined || w.gone) return;
    const entry = this.decodeEntry(w.id, bytes);
    const head = unitIndex(entry.nowMs, entry.unitMs);
    const values: number[] = [];
    for (let i = entry.buckets.length - 1; i >= 0; i--) values.push(entry.buckets[i]!);
    w.lane.batches.appendCtrl({ type: 'merge', offset: w.offset, t: this.host.clock.now(), heads: [head], values: [values] });
    await w.lane.drainSoon();
  }

  private decodeEntry(id: string, bytes: Uint8Array): StoredWindow {
    let entry: StoredWindow;
    try {
      entry = decode<StoredWindow>(bytes);
    } catch (err) {
      throw new TallyworksError(ErrorCode.STORAGE, `stored window ${JSON.stringify(id)} cannot be read: ${(err as Error).message}`, { cause: err });
    }
    const { size, unitMs } = this.host.shape;
    if (entry?.size !== size || entry.unitMs !== unitMs || !Number.isFinite(entry.nowMs) || !Array.isArray(entry.buckets) || entry.buckets.length !== size) {
      throw new TallyworksError(ErrorCode.STORAGE, `stored window ${JSON.stringify(id)} is not a window of ${size} × ${unitMs} ms (another set's name?)`);
    }
    return entry;
  }

  /** The stored window `id` at `now`, or undefined when none is stored; nothing is created. */
  async storedBuckets(id: string): Promise<number[] | undefined> {
    if (this.options.storage === undefined) return undefined;
    await this.listing;
    await this.evicting.get(id);
    if (!this.stored.has(id)) return undefined;
    const bytes = await this.options.storage.load(this.prefix + id);
    if (bytes === undefined) return undefined;
    const entry = this.decodeEntry(id, bytes);
    const { size, unitMs } = entry;
    // Shift the stored buckets to now: the unit k of bucket i moves to position size − 1 − (kNow − k).
    const head = unitIndex(entry.nowMs, unitMs);
    const kNow = Math.max(Math.floor((this.host.clock.now() + GO_EPOCH_OFFSET_MS) / unitMs), head);
    const out = new Array<number>(size).fill(0);
    for (let i = 0; i < size; i++) {
      const at = size - 1 - (kNow - (head - (size - 1 - i)));
      if (at >= 0) out[at] = entry.buckets[i]!;
    }
    return out;
  }

  /** Marks what was observed since the last pass: seen now, and dirty when there is storage. */
  private consume(w: Window, now: number): void {
    if (!w.touched) return;
    w.touched = false;
    w.seenMs = now;
    if (this.options.storage !== undefined) w.dirty = true;
  }

  /** At maxKeys with `onMaxKeys: 'evict'`: lets go the window the CLOCK hand lands on. */
  evictOne(): void {
    const byId = this.host.byId;
    const now = this.host.clock.now();
    for (let steps = 0; steps <= 2 * byId.size; steps++) {
      let next = this.hand?.next();
      if (next === undefined || next.done === true) {
        this.hand = byId.values();
        next = this.hand.next();
        if (next.done === true) return;
      }
      const w = next.value;
      if (w.touched) this.consume(w, now);
      else if (w.pending === undefined) {
        void this.letGo(w);
        return;
      }
    }
  }

  /** Lets go every window idle for `idleMs` or more; resolves to how many. One pass at a time. */
  evictIdle(): Promise<number> {
    this.sweeping ??= this.sweep().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweep(): Promise<number> {
    const idleMs = this.options.idleMs;
    if (idleMs === undefined) return 0;
    const now = this.host.clock.now();
    const saved: Array<Promise<void>> = [];
    // Without storage, records go back per lane in one release call each (no promise per window).
    const offsets = new Map<Lane, number[]>();
    let n = 0;
    let i = 0;
    for (const w of this.host.byId.values()) {
      this.consume(w, now);
      if (now - w.seenMs >= idleMs && w.pending === undefined) {
        n++;
        if (this.options.storage !== undefined) saved.push(this.letGo(w));
        else {
          this.take(w);
          let list = offsets.get(w.lane);
          if (list === undefined) offsets.set(w.lane, (list = []));
          list.push(w.offset);
        }
      }
      if ((++i % PASS_SLICE) === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    // Resolved once their words can be reused (the shard applied the releases).
    const words = hopRecordWords(this.host.shape.size);
    await Promise.all([...saved, ...[...offsets].map(([lane, list]) => lane.releaseRecords(list, words).catch(() => undefined))]);
    return n;
  }

  /** Takes `w` out of the set: its handle turns into a lookup of the id. */
  private take(w: Window): void {
    this.host.byId.delete(w.id);
    w.gone = true;
    this.evictions++;
  }

  /**
   * Takes `w` out of the set (its handle turns into a lookup of the id), saving it first with storage.
   * Resolves once its words are back for reuse; never rejects (a failed save goes to onPersistError, and a
   * lane that failed reports that itself on its next op).
   */
  private letGo(w: Window): Promise<void> {
    this.take(w);
    const words = hopRecordWords(this.host.shape.size);
    if (this.options.storage === undefined) return w.lane.releaseRecord(w.offset, words).catch(() => undefined);
    const id = w.id;
    const leaving = (async () => {
      try {
        if (w.touched || w.dirty) await applyOps(this.options.storage!, [await this.saveOp(w)]);
        this.stored.add(id);
      } finally {
        this.evicting.delete(id);
        await w.lane.releaseRecord(w.offset, words);
      }
    })();
    this.evicting.set(id, leaving);
    return leaving.catch(this.options.onPersistError);
  }

  /** The save of window `w`'s buckets now. */
  private async saveOp(w: Window): Promise<StorageOp> {
    const entry = await w.lane.readSettled(w.offset, this.host.clock, (v, now) => ({
      unitMs: this.host.shape.unitMs,
      size: this.host.shape.size,
      nowMs: now,
      buckets: bucketsHop(v.f64, w.offset, now, []),
    }));
    return { type: 'save', key: this.prefix + w.id, value: encode(entry satisfies StoredWindow), owned: true };
  }

  // ── persisting ────────────────────────────────────────────────────────────────────────────────────

  /** Saves the windows observed since the last persist (all of them with `all`); resolves to how many. */
  persist(all = false): Promise<number> {
    const run = async (): Promise<number> => {
      const storage = this.options.storage;
      if (storage === undefined) throw new TallyworksError(ErrorCode.INVALID_ARGUMENT, 'persist() needs a window set created with the storage option');
      await this.listing;
      const now = this.host.clock.now();
      const dirty: Window[] = [];
      for (const w of this.host.byId.values()) {
        this.consume(w, now);
        if (w.dirty || all) {
          w.dirty = false;
          dirty.push(w);
        }
      }
      try {
        const lanes = new Set(dirty.map((w) => w.lane));
        await Promise.all([...lanes].map((l) => l.drain()));
        const ops: StorageOp[] = [];
        for (const w of dirty) {
          if (w.pending !== undefined) await w.pending;
          // At once only while the lane is idle: a batch being applied would show some of its ops only.
          const read = (v: ShardViews): Uint8Array => encode({ unitMs: this.host.shape.unitMs, size: this.host.shape.size, nowMs: now, buckets: bucketsHop(v.f64, w.offset, now, []) } satisfies StoredWindow);
          const value = w.lane.isIdle() ? w.lane.readConsistent(w.offset, read) : MISSED;
          ops.push(value === MISSED ? await this.saveOp(w) : { type: 'save', key: this.prefix + w.id, value, owned: true });
        }
        await applyOps(storage, ops);
        return ops.length;
      } catch (err) {
        for (const w of dirty) if (!w.gone) w.dirty = true; // not saved: the next persist retries them
        throw err;
      }
    };
    const next = this.persistQueue.then(run, run);
    this.persistQueue = next.catch(() => undefined);
    return next;
  }

  /** Stops the timers, waits for windows on their way out, and persists what is dirty. */
  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await this.sweeping?.catch(() => undefined);
    await Promise.allSettled([...this.evicting.values()]);
    if (this.options.storage !== undefined) await this.persist();
  }
}
