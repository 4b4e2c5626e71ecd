/**
 * Calendar event counts (tiny_counter parity): an event store maps string ids to counters, each a ring of
 * buckets per calendar unit in the shard that owns the id. Recording is synchronous and allocation-free
 * for a known id (a directory lookup and an append to the shard's open batch); queries read the shard's
 * memory directly once it has applied what this thread sent.
 */
import { randomUUID } from 'node:crypto';
import { calReserved, evaluateChecks, OUTCOME_ALLOWED, readRing, seenAge, sumRing } from '../../common/records/calendar/read.js';
import { CalShape } from '../../common/records/calendar/shape.js';
import { CAL_MIN_MS, type CalUnitCode, inCalendarRange } from '../../common/calendar.js';
import { decode, encode } from '../../common/codec.js';
import {
  argumentRangeError,
  argumentTypeError,
  closedError,
  codedRangeError,
  ErrorCode,
  TallyworksError,
} from '../../common/errors.js';
import { KIND_CAL, type ShardViews } from '../../common/layout.js';
import { Action, type CalConfig } from '../../common/messages.js';
import type { Clock } from '../clock/clock.js';
import { validateKey } from '../keys.js';
import { type Lane, MISSED } from '../router/lane.js';
import type { Router } from '../router/router.js';
import { applyOps, type Storage, type StorageOp } from '../storage/storage.js';
import { countsOf, type IntervalCounts } from './intervals.js';
import { LimitBuilder } from './limiter.js';
import { DeltaQuery, EventQuery, RatioQuery } from './query.js';
import { type EventsExport, EXPORT_FORMAT, EXPORT_VERSION, loadOp, mapRings, validateExport } from './snapshot.js';
import { type EventStoreOptions, resolveEventStoreOptions } from './store-options.js';

/** What {@link EventStore.sumNow} returns when the read must wait. */
export const NOT_NOW: unique symbol = Symbol('not-now');

/** One id's counter: where its record lives. */
export interface EventCounter {
  readonly id: string;
  readonly lane: Lane;
  readonly slot: number;
  /** Recorded since the last persist (or clearDirty). */
  dirty: boolean;
  /** Set while the id's persisted counts are being merged back in after compact(). */
  loading: Promise<void> | undefined;
}

/** Throws unless `n` is a count an event can carry: a safe integer ≥ 0. */
function checkCount(n: unknown): void {
  if (!(typeof n === 'number' && Number.isSafeInteger(n) && n >= 0)) throw argumentRangeError('n', 'a safe integer ≥ 0', n);
}

/** Per-id persisted form: the id's buckets as a one-id export (so a changed config converts on load). */
interface StoredCounter {
  readonly timeZone: string;
  readonly intervals: IntervalCounts;
  readonly nowMs: number;
  readonly rings: number[][];
}

/** How long work over many ids (export, persist) runs before it lets the event loop turn. */
const SLICE_MS = 10;

/**
 * A function to await between the items of a long loop: it yields to the event loop (timers, I/O) once
 * {@link SLICE_MS} have passed since the last yield, so a loop over a million ids never stalls the process.
 * (Awaiting a resolved promise alone does not: microtasks run before any timer.)
 */
function timeSlicer(): () => Promise<void> | undefined {
  let since = performance.now();
  let n = 0;
  return () => {
    // The clock is read every 64 items: cheap next to reading an id's record.
    if ((++n & 63) !== 0 || performance.now() - since < SLICE_MS) return undefined;
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        since = performance.now();
        resolve();
      }),
    );
  };
}

export class EventStore {
  /** The zone calendar units align to. */
  readonly timeZone: string;
  /** The rings kept, as bucket counts per unit. */
  readonly intervals: Readonly<IntervalCounts>;
  /** @internal */
  readonly shape: CalShape;
  /** @internal */
  readonly clock: Clock;
  private readonly config: CalConfig;
  private readonly rings: Array<[CalUnitCode, number]>;
  private readonly router: Router;
  private readonly counters = new Map<string, EventCounter>();
  private readonly registered = new Set<Lane>();
  private readonly dirtyList: EventCounter[] = [];
  private readonly storage: Storage | undefined;
  private readonly prefix: string;
  private readonly sourceId: string | undefined;
  private readonly onPersistError: (err: Error) => void;
  /** Ids persisted in storage and not in memory (compacted, or from an earlier process). */
  private readonly stored = new Set<string>();
  /** Export ids already merged (idempotent merge). */
  private readonly mergedExports = new Set<string>();
  private readonly timer: NodeJS.Timeout | undefined;
  /** Set when close() begins: new operations and writes are refused with TW_CLOSED from then on. */
  private closed = false;
  /** Operations admitted before close() began; close() waits for them before its final persist. */
  private readonly inflight = new Set<Promise<unknown>>();
  private isReady = false;
  /** Resolves once the storage's keys are listed. */
  private readonly listing: Promise<void>;
  /** Persists run one after another, so that an older snapshot never lands after a newer one. */
  private persistQueue: Promise<unknown> = Promise.resolve();
  private persisting = 0;

  /** @internal use `engine.events` or `engine.eventStore()` */
  constructor(options: EventStoreOptions, defaultZone: string, configId: number, router: Router, clock: Clock) {
    const o = resolveEventStoreOptions(options, defaultZone);
    this.rings = o.rings;
    this.timeZone = o.timeZone;
    this.intervals = Object.freeze(countsOf(this.rings));
    this.config = { id: configId, timeZone: this.timeZone, rings: this.rings, reservationTtlMs: o.reservationTtlMs };
    this.shape = new CalShape(this.config);
    this.router = router;
    this.clock = clock;
    this.storage = o.storage;
    this.prefix = o.prefix;
    this.sourceId = o.sourceId;
    this.onPersistError = o.onPersistError;
    if (o.autoPersistMs !== undefined) {
      this.timer = setInterval(() => {
        if (this.persisting > 0) return; // the last one is still writing: no pile-up behind a slow storage
        this.persist().catch((err: Error) => this.onPersistError(err));
      }, o.autoPersistMs).unref();
    }
    this.listing = this.storage === undefined ? Promise.resolve() : this.listStored();
    this.listing.then(
      () => (this.isReady = true),
      () => undefined, // reported by the first read that awaits it
    );
  }

  private async listStored(): Promise<void> {
    const meta = await this.storage!.load(`${this.prefix}.merged`);
    if (meta !== undefined) for (const id of decode<string[]>(meta)) this.mergedExports.add(id);
    for (const key of await this.storage!.keys(this.prefix)) {
      const id = key.slice(this.prefix.length);
      if (id.startsWith('.')) continue;
      const c = this.counters.get(id);
      // Recorded before the listing finished: merge the stored counts into the live record.
      if (c !== undefined) c.loading = this.reload(c);
      else this.stored.add(id);
    }
  }

  /**
   * Resolves once the store has listed the ids its storage holds (at once without storage). Reads,
   * exports and limits wait for this themselves; `has()` and `size` answer for stored ids only after it.
   * `createEngine` waits for it for `engine.events`.
   */
  ready(): Promise<void> {
    return this.listing;
  }

  // ── recording ────────────────────────────────────────────────────────────────────────────────────

  /** Counts `n` (default 1) events of `id` now. Synchronous; allocation-free for a known id. */
  record(id: string, n = 1): void {
    if (this.closed) throw closedError('event store');
    const c = this.counters.get(id) ?? this.counterFor(id, n);
    if (n !== 1) checkCount(n);
    c.lane.append(c.slot, n);
    if (!c.dirty) this.markDirty(c);
  }

  /** Counts `n` events of `id` at `when` (not later than now: TW_FUTURE_EVENT, nothing recorded). */
  recordAt(id: string, when: Date | number, n = 1): void {
    const t = when instanceof Date ? when.getTime() : when;
    if (typeof t !== 'number' || !Number.isFinite(t)) throw argumentTypeError('when', 'a Date or a time in ms since the Unix epoch', when);
    if (!inCalendarRange(t)) throw argumentRangeError('when', `a time from ${new Date(CAL_MIN_MS).toISOString()} on (the calendar's range)`, when);
    if (this.closed) throw closedError('event store');
    const now = this.clock.now();
    if (t > now) throw codedRangeError(ErrorCode.FUTURE_EVENT, 'when', `not later than now (${new Date(now).toISOString()})`, new Date(t).toISOString());
    const c = this.counters.get(id) ?? this.counterFor(id, n);
    if (n !== 1) checkCount(n);
    c.lane.appendAt(c.slot, n, t);
    if (!c.dirty) this.markDirty(c);
  }

  /** Counts `n` events of `id` at `ms` milliseconds ago (ms ≥ 0). */
  recordAgo(id: string, ms: number, n = 1): void {
    if (typeof ms !== 'number' || !(ms >= 0) || !Number.isFinite(ms)) throw argumentRangeError('ms', 'a finite number of ms ≥ 0', ms);
    this.recordAt(id, this.clock.now() - ms, n);
  }

  /** Validates a new id and count before anything is created, then creates the id's counter. */
  private counterFor(id: string, n: number): EventCounter {
    validateKey(id, 'id');
    if (n !== 1) checkCount(n);
    return this.counter(id, true)!;
  }

  /** @internal The id's counter; created (and reloaded from storage if persisted) when `create`. */
  counter(id: string, create: boolean): EventCounter | undefined {
    let c = this.counters.get(id);
    if (c !== undefined) return c;
    const wasStored = this.stored.has(id);
    if (!create && !wasStored) return undefined;
    const lane = this.router.laneFor(id);
    if (!this.registered.has(lane)) {
      lane.registerCalendar(this.config);
      this.registered.add(lane);
    }
    const slot = lane.createRecord(this.shape.words, KIND_CAL, this.config.id, 0, id);
    c = { id, lane, slot, dirty: false, loading: undefined };
    this.counters.set(id, c);
    if (wasStored) {
      this.stored.delete(id);
      c.loading = this.reload(c);
    }
    return c;
  }

  private markDirty(c: EventCounter): void {
    c.dirty = true;
    this.dirtyList.push(c);
  }

  /** True if `id` has a counter (in memory or persisted). */
  has(id: string): boolean {
    return this.counters.has(id) || this.stored.has(id);
  }

  /** Ids whose counters are in memory (compact() lets them go). */
  get size(): number {
    return this.counters.size;
  }

  // ── queries ──────────────────────────────────────────────────────────────────────────────────────

  /** Queries of one id: `query(id).lastDays(7).sum()`. */
  query(id: string): EventQuery {
    validateKey(id, 'id');
    return new EventQuery(this, [id]);
  }

  /** Queries summed over several ids, bucket by bucket. */
  queryMany(ids: readonly string[]): EventQuery {
    if (!Array.isArray(ids)) throw argumentTypeError('ids', 'an array of ids', ids);
    for (const id of ids) validateKey(id, 'ids[]');
    return new EventQuery(this, [...ids]);
  }

  /** a / b over a range: undefined when either is unknown or b's sum is 0. */
  ratio(a: string, b: string): RatioQuery {
    return new RatioQuery(this, validateKey(a, 'a'), validateKey(b, 'b'));
  }

  /** a − b over a range (0 when both are unknown). */
  delta(a: string, b: string): DeltaQuery {
    return new DeltaQuery(this, validateKey(a, 'a'), validateKey(b, 'b'));
  }

  /** Records the difference of the two ids' `ever()` sums onto the smaller, so that their delta is 0. */
  balanceDelta(a: string, b: string): Promise<void> {
    const query = this.delta(a, b);
    return this.admit(async () => {
      const d = await query.ever().compute();
      if (d > 0) this.write(b, d);
      else if (d < 0) this.write(a, -d);
    });
  }

  /** Records `n` for `id` on behalf of an admitted operation (which close() waits for). */
  private write(id: string, n: number): void {
    const c = this.counter(id, true)!;
    c.lane.append(c.slot, n);
    if (!c.dirty) this.markDirty(c);
  }

  /**
   * @internal Runs one public operation. Refused with TW_CLOSED once close() began; an operation admitted
   * before runs to its end (close() waits for it, with the shards alive), whatever it awaits meanwhile.
   */
  admit<T>(operation: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(closedError('event store'));
    const running = operation();
    this.inflight.add(running);
    const done = (): void => {
      this.inflight.delete(running);
    };
    running.then(done, done);
    return running;
  }

  /** A limiter over this store's counters: `limit().atMost(10, 'hour').checkAndRecord(id)`. */
  limit(): LimitBuilder {
    return new LimitBuilder(this, []);
  }

  /**
   * @internal The newest `n` buckets of ring `r` of `id`, newest first; undefined for an id never
   * recorded.
   */
  async bucketsOf(id: string, r: number, n: number): Promise<number[] | undefined> {
    const c = await this.settledCounter(id);
    if (c === undefined) return undefined;
    const out = new Array<number>(n);
    return c.lane.readSettled(c.slot, this.clock, (v, now) => {
      this.shape.seek(now);
      readRing(v, c.slot, this.shape, r, this.shape.ks[r]!, n, out);
      return out;
    });
  }

  /**
   * @internal Events in the newest `n` buckets of ring `r` of `id`, and its outstanding reservations, read
   * together; undefined for an id never recorded or reserved.
   */
  async usageOf(id: string, r: number, n: number): Promise<{ count: number; reserved: number } | undefined> {
    const c = await this.settledCounter(id);
    if (c === undefined) return undefined;
    return c.lane.readSettled(c.slot, this.clock, (v, now) => {
      this.shape.seek(now);
      return { count: sumRing(v, c.slot, this.shape, r, this.shape.ks[r]!, n), reserved: calReserved(v, c.slot, this.shape, now) };
    });
  }

  /** @internal Age of the newest or oldest non-zero bucket of `id`; undefined when none or unknown. */
  async seenAgeOf(id: string, oldest: boolean): Promise<number | undefined> {
    const c = await this.settledCounter(id);
    if (c === undefined) return undefined;
    return c.lane.readSettled(c.slot, this.clock, (v, now) => {
      this.shape.seek(now);
      return seenAge(v, c.slot, this.shape, now, oldest);
    });
  }

  // What the reusable sum reader reads (set just before each read: no closure per query).
  private sumSlot = 0;
  private sumRingIndex = 0;
  private sumN = 0;
  private readonly sumReader = (views: ShardViews): number =>
    sumRing(views, this.sumSlot, this.shape, this.sumRingIndex, this.shape.ks[this.sumRingIndex]!, this.sumN);

  /**
   * @internal A sum without waiting, when nothing stands between this thread and the shard's memory
   * (storage listed, the id not reloading, its shard idle): the sum of the newest `n` buckets of ring `r`,
   * undefined for an unknown id, or NOT_NOW when the caller must take the asynchronous path.
   */
  sumNow(id: string, r: number, n: number): number | undefined | typeof NOT_NOW {
    if (!this.isReady || this.closed) return NOT_NOW;
    const c = this.counters.get(id);
    if (c === undefined) return this.stored.has(id) ? NOT_NOW : undefined;
    if (c.loading !== undefined || !c.lane.isIdle()) return NOT_NOW;
    this.shape.seek(this.clock.now());
    this.sumSlot = c.slot;
    this.sumRingIndex = r;
    this.sumN = n;
    const value = c.lane.readConsistent(c.slot, this.sumReader);
    return value === MISSED ? NOT_NOW : value;
  }

  /** @internal The id's counter once its storage reload is done; undefined when unknown. */
  async settledCounter(id: string): Promise<EventCounter | undefined> {
    await this.listing;
    const c = this.counter(id, false);
    if (c?.loading !== undefined) await c.loading;
    return c;
  }

  /** @internal Evaluates shard checks on this thread (read-only): the failing index, or -1. */
  async evaluateOwn(c: EventCounter, checks: readonly number[]): Promise<{ index: number; retryAfterMs: number | undefined }> {
    const retry = new Float64Array(1);
    const index = await c.lane.readSettled(c.slot, this.clock, (v, now) => {
      this.shape.seek(now);
      return evaluateChecks(v, c.slot, this.shape, now, checks, retry);
    });
    return { index, retryAfterMs: retry[0] };
  }

  /**
   * @internal Sends a decision to the shard owning `id` (creating the id) and waits for its outcome:
   * [outcome, retry-after ms]. The shard decides in order with every record of the id.
   */
  async decideInShard(id: string, checks: readonly number[], action: number): Promise<[outcome: number, retryAfterMs: number, t: number]> {
    const c = this.counter(id, true)!;
    if (c.loading !== undefined) await c.loading;
    const lane = c.lane;
    const cell = lane.allocCell();
    lane.resetCell(cell);
    const t = this.clock.now();
    lane.appendCtrl({ type: 'decide', slot: c.slot, cell, t, action, checks });
    await lane.drain();
    const result = lane.readCell(cell);
    lane.freeCell(cell);
    if (result[0] === OUTCOME_ALLOWED && action === Action.RECORD && !c.dirty) this.markDirty(c);
    return [result[0], result[1], t];
  }

  /** @internal Ends a granted reservation: `commit` records 1, `cancel` only releases it. */
  async endReservation(id: string, type: 'commit' | 'cancel', reservedAt: number): Promise<void> {
    const c = this.counter(id, true)!;
    c.lane.appendCtrl({ type, slot: c.slot, t: this.clock.now(), reservedAt });
    if (type === 'commit' && !c.dirty) this.markDirty(c);
    await c.lane.drain();
  }

  // ── export, import, merge ────────────────────────────────────────────────────────────────────────

  /** Every counter's buckets, aligned to now. */
  export(): Promise<EventsExport> {
    return this.admit(() => this.exportIds(undefined));
  }

  /** Only the counters recorded since the last persist or clearDirty(). */
  exportDirty(): Promise<EventsExport> {
    return this.admit(() => this.exportIds(this.dirtyIds()));
  }

  private async exportIds(only: readonly string[] | undefined): Promise<EventsExport> {
    const counters: Record<string, number[][]> = {};
    const nowMs = await this.eachRings(only, (id, rings) => {
      // Defined, not assigned: an id such as "__proto__" is an own property like any other.
      Object.defineProperty(counters, id, { value: rings, enumerable: true, writable: true, configurable: true });
    });
    const source = this.sourceId === undefined ? undefined : { id: this.sourceId, exportId: randomUUID() };
    return { format: EXPORT_FORMAT, version: EXPORT_VERSION, ...(source && { source }), timeZone: this.timeZone, intervals: { ...this.intervals }, nowMs, counters };
  }

  /**
   * Reads the rings of `only` (every id when undefined, stored ones brought back) aligned to one `now`, and
   * hands each id's to `take` as it is read, in slices that let the event loop turn. Returns that now.
   */
  private async eachRings(only: readonly string[] | undefined, take: (id: string, rings: number[][], nowMs: number) => void): Promise<number> {
    await this.listing;
    if (only === undefined) {
      // Stored ids are part of the store: bring them back to export them.
      for (const id of [...this.stored]) this.counter(id, false);
    }
    const ids = only ?? [...this.counters.keys()];
    const nowMs = this.clock.now();
    const slice = timeSlicer();
    for (const id of ids) {
      await slice();
      const c = await this.settledCounter(id);
      if (c === undefined) continue;
      const rings = await c.lane.readSettled(c.slot, this.clock, (v) => {
        this.shape.seek(nowMs);
        return this.shape.rings.map((ring, r) => {
          const out = new Array<number>(ring.count);
          readRing(v, c.slot, this.shape, r, this.shape.ks[r]!, ring.count, out);
          return out;
        });
      });
      take(id, rings, nowMs);
    }
    return nowMs;
  }

  /** Overwrites each id of `exp` with its buckets (other ids are left alone). */
  import(exp: EventsExport): Promise<void> {
    return this.admit(async () => this.load('import', validateExport(exp)));
  }

  /**
   * Adds `exp` bucket by bucket (unknown ids are created). An export carrying a source id is merged once:
   * merging it again returns `{ merged: false }` and changes nothing.
   */
  merge(exp: EventsExport): Promise<{ merged: boolean }> {
    return this.admit(() => this.mergeNow(exp));
  }

  private async mergeNow(exp: EventsExport): Promise<{ merged: boolean }> {
    const e = validateExport(exp);
    await this.listing;
    const exportId = e.source?.exportId;
    if (exportId !== undefined) {
      if (this.mergedExports.has(exportId)) return { merged: false };
      // Claimed before the first await, so that a concurrent merge of the same export sees it.
      this.mergedExports.add(exportId);
    }
    try {
      await this.load('merge', e);
    } catch (err) {
      // A refused export changed nothing (load checks everything first): it may be merged again.
      if (exportId !== undefined && !(err instanceof TallyworksError && err.code === ErrorCode.CLOSED)) this.mergedExports.delete(exportId);
      throw err;
    }
    if (exportId !== undefined && this.storage !== undefined) await this.storage.save(`${this.prefix}.merged`, encode([...this.mergedExports]));
    return { merged: true };
  }

  private async load(type: 'merge' | 'import', e: EventsExport): Promise<void> {
    await this.listing;
    const mapping = mapRings(e, this.rings, this.shape.calendar);
    const t = this.clock.now();
    const ids = Object.keys(e.counters);
    // Check everything before anything is written: a bad export changes nothing.
    for (const id of ids) {
      validateKey(id, 'export.counters id');
      loadOp(type, 0, t, mapping, e.counters[id]!, id);
    }
    const lanes = new Set<Lane>();
    for (const id of ids) {
      const c = await this.settledCounter(id) ?? this.counter(id, true)!;
      c.lane.appendCtrl(loadOp(type, c.slot, t, mapping, e.counters[id]!, id));
      if (!c.dirty) this.markDirty(c);
      lanes.add(c.lane);
    }
    await Promise.all([...lanes].map((l) => l.drain()));
  }

  // ── dirty tracking and persistence ───────────────────────────────────────────────────────────────

  /** Ids recorded since the last persist() or clearDirty(). */
  dirtyIds(): string[] {
    return this.dirtyList.filter((c) => c.dirty).map((c) => c.id);
  }

  /** Forgets which ids are dirty (without saving them). */
  clearDirty(): void {
    for (const c of this.dirtyList) c.dirty = false;
    this.dirtyList.length = 0;
  }

  /**
   * Saves the dirty counters to storage (one transaction when the storage has them). Returns how many.
   * Persists run one at a time, in the order they were asked for.
   */
  persist(): Promise<number> {
    return this.admit(() => this.queued(() => this.persistDirty()));
  }

  /** Saves every counter in memory. Returns how many. */
  persistAll(): Promise<number> {
    return this.admit(() => this.queued(() => this.persistEvery()));
  }

  private queued(run: () => Promise<number>): Promise<number> {
    this.persisting++;
    const next = this.persistQueue.then(run, run).finally(() => this.persisting--);
    this.persistQueue = next.catch(() => undefined);
    return next;
  }

  private async persistDirty(): Promise<number> {
    const dirty = this.dirtyList.splice(0).filter((c) => c.dirty);
    for (const c of dirty) c.dirty = false;
    try {
      return await this.save(dirty);
    } catch (err) {
      // Not saved: dirty again, so the next persist retries them.
      for (const c of dirty) if (!c.dirty && this.counters.get(c.id) === c) this.markDirty(c);
      throw err;
    }
  }

  private async persistEvery(): Promise<number> {
    const all = [...this.counters.values()];
    this.clearDirty();
    try {
      return await this.save(all);
    } catch (err) {
      for (const c of all) if (!c.dirty && this.counters.get(c.id) === c) this.markDirty(c);
      throw err;
    }
  }

  private async save(counters: readonly EventCounter[]): Promise<number> {
    const storage = this.requireStorage('persist');
    const ops: StorageOp[] = [];
    const intervals = { ...this.intervals };
    // Each id is encoded as soon as it is read: no export of every id is held at once (a million ids of
    // number arrays would mean a heap of gigabytes and long garbage-collection pauses).
    await this.eachRings(
      counters.map((c) => c.id),
      (id, rings, nowMs) => {
        const entry: StoredCounter = { timeZone: this.timeZone, intervals, nowMs, rings };
        ops.push({ type: 'save', key: this.prefix + id, value: encode(entry), owned: true });
      },
    );
    await applyOps(storage, ops);
    return ops.length;
  }

  /**
   * Persists every counter, then lets them go from shard memory (their words are reused by new ids).
   * Every later use of an id (record, query, limit) brings its counter back from storage first.
   */
  compact(): Promise<void> {
    return this.admit(() => this.compactNow());
  }

  private async compactNow(): Promise<void> {
    this.requireStorage('compact');
    await this.queued(() => this.persistEvery());
    const releases: Array<Promise<void>> = [];
    for (const c of [...this.counters.values()]) {
      if (c.dirty || c.loading !== undefined) continue; // recorded during the persist: keep it
      this.counters.delete(c.id);
      this.stored.add(c.id);
      releases.push(c.lane.releaseRecord(c.slot, this.shape.words));
    }
    await Promise.all(releases);
  }

  /** Merges the id's stored counts into its (new) record. */
  private async reload(c: EventCounter): Promise<void> {
    const bytes = await this.requireStorage('reload').load(this.prefix + c.id);
    if (bytes !== undefined) {
      let op: ReturnType<typeof loadOp>;
      try {
        const entry = decode<StoredCounter>(bytes);
        const exp = validateExport({ format: EXPORT_FORMAT, version: EXPORT_VERSION, timeZone: entry.timeZone, intervals: entry.intervals, nowMs: entry.nowMs, counters: { [c.id]: entry.rings } }, 'stored counter');
        op = loadOp('merge', c.slot, this.clock.now(), mapRings(exp, this.rings, this.shape.calendar), entry.rings, c.id);
      } catch (err) {
        // Bytes that are no stored counter, or one this store cannot take (another zone, other units).
        throw new TallyworksError(ErrorCode.STORAGE, `stored counter ${JSON.stringify(c.id)} cannot be read: ${(err as Error).message}`, { cause: err });
      }
      c.lane.appendCtrl(op);
      await c.lane.drain();
    }
    c.loading = undefined;
  }

  private requireStorage(what: string): Storage {
    if (this.storage === undefined) throw new TallyworksError(ErrorCode.INVALID_ARGUMENT, `${what}() needs a store created with the storage option`);
    return this.storage;
  }

  /**
   * @internal Stops auto-persist, refuses new operations and writes, waits for the operations admitted
   * before, and persists what is dirty (engine.close() calls this; the final persist therefore holds every
   * write the store accepted).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    // Queued behind a background persist still writing, so that close() resolves after it landed.
    if (this.storage !== undefined) await this.queued(() => this.persistDirty());
  }
}
