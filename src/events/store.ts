/**
 * Calendar event counts (tiny_counter parity): an event store maps string ids to counters, each a ring of
 * buckets per calendar unit in the shard that owns the id. Recording is synchronous and allocation-free
 * for a known id (a directory lookup and an append to the shard's open batch); queries read the shard's
 * memory directly once it has applied what this thread sent.
 *
 * The store is the facade: queries (./query.ts) and the limiter (./limiter.ts) read it through the
 * EventReader interface (./reader.ts), persistence lives in ./persistence.ts, the record's algorithms in
 * common/records/calendar/. Over 350 lines because it is the one place the public API of a store meets
 * its parts: recording, the reader methods (each a few lines over a calendar read function) and
 * export / import / merge, which read and write many counters at once.
 */
import { randomUUID } from 'node:crypto';
import { type DecisionTally, newTally } from '../limits/tally.js';
import { readRing, readRingTrimmed, ringNow, seenAge, sumRing } from '../../common/records/calendar/read.js';
import { holdsAt } from '../../common/records/fixed-window.js';
import { CalShape } from '../../common/records/calendar/shape.js';
import { CAL_MIN_MS, CalUnit, type CalUnitCode, type CalUnitName, inCalendarRange } from '../../common/calendar.js';
import {
  argumentRangeError,
  argumentTypeError,
  closedError,
  codedRangeError,
  ErrorCode,
  TallyworksError,
  TallyworksRangeError,
} from '../../common/errors.js';
import { KIND_CAL, type ShardViews } from '../../common/layout.js';
import type { CalConfig, LoadOp } from '../../common/messages.js';
import type { Clock, TimeSource } from '../clock/clock.js';
import { validateKey } from '../keys.js';
import type { DecisionPlace } from '../router/decision-arena.js';
import { type Lane, MISSED } from '../router/lane.js';
import type { Router } from '../router/router.js';
import { countsOf, type IntervalCounts } from './intervals.js';
import { EventPersistence } from './persistence.js';
import { type EventCounter, type EventReader, NOT_NOW } from './reader.js';
import { LimitBuilder } from './limiter.js';
import { type Gate, Gates, type GateWindow } from './gates.js';
import { DeltaQuery, EventQuery, rangeOf, RatioQuery } from './query.js';
import { type EventsExport, EXPORT_FORMAT, EXPORT_VERSION, loadOp, mapRings, validateExport } from './snapshot.js';
import { type EventStoreOptions, resolveEventStoreOptions } from './store-options.js';
import { timeSlicer } from './time-slicer.js';

/** Throws unless `n` is a count an event can carry: a safe integer ≥ 0. */
function checkCount(n: unknown): void {
  if (!(typeof n === 'number' && Number.isSafeInteger(n) && n >= 0)) throw argumentRangeError('n', 'a safe integer ≥ 0', n);
}

export class EventStore implements EventReader {
  /** The zone calendar units align to. */
  readonly timeZone: string;
  /** @internal limiter decisions on this store's ids that recorded or reserved, on this thread */
  readonly decisions: DecisionTally = newTally();
  /** The rings kept, as bucket counts per unit. */
  readonly intervals: Readonly<IntervalCounts>;
  /** @internal */
  readonly shape: CalShape;
  /** @internal */
  readonly clock: Clock;
  private readonly config: CalConfig;
  private readonly rings: Array<[CalUnitCode, number]>;
  private readonly router: Router;
  /** @internal Counters in memory, by id (persistence lets them go on compact). */
  readonly counters = new Map<string, EventCounter>();
  private readonly registered = new Set<Lane>();
  private readonly persistence: EventPersistence;

  /** True when the store was made with a storage (persist() works). */
  get persists(): boolean {
    return this.persistence.storage !== undefined;
  }
  private readonly sourceId: string | undefined;
  /** At most this many ids in memory (maxKeys; stored ids do not count). */
  private readonly maxKeys: number;
  /** Set when close() begins: new operations and writes are refused with TW_CLOSED from then on. */
  private closed = false;
  /** Operations admitted before close() began; close() waits for them before its final persist. */
  private readonly inflight = new Set<Promise<unknown>>();

  /** @internal The limit gates (./gates.ts). */
  readonly gates: Gates;
  /** True when the finest ring's unit nests in every other ring's (see addDecided). */
  private readonly coalesceByUnit: boolean;
  private readonly time: TimeSource;

  /** @internal use `engine.events` or `engine.eventStore()` */
  constructor(options: EventStoreOptions, defaultZone: string, configId: number, router: Router, clock: Clock, time: TimeSource) {
    const o = resolveEventStoreOptions(options, defaultZone);
    this.rings = o.rings;
    this.timeZone = o.timeZone;
    this.intervals = Object.freeze(countsOf(this.rings));
    this.config = { id: configId, timeZone: this.timeZone, rings: this.rings };
    this.shape = new CalShape(this.config, o.reservationTtlMs);
    this.gates = new Gates(this.shape);
    this.coalesceByUnit = this.shape.rings[0]!.unit <= CalUnit.day;
    this.time = time;
    this.router = router;
    this.clock = clock;
    this.sourceId = o.sourceId;
    this.maxKeys = o.maxKeys;
    this.persistence = new EventPersistence(this, o.storage, o.prefix, o.autoPersistMs, o.onPersistError, o.idleMs);
  }

  /** @internal Words of one counter record. */
  get recordWords(): number {
    return this.shape.words;
  }

  /** @internal The op that merges a one-id export (a stored counter) into `c`'s record. */
  mergeOp(c: EventCounter, exp: EventsExport): LoadOp {
    return loadOp('merge', c.offset, this.clock.now(), mapRings(exp, this.rings, this.shape.calendar), exp.counters[c.id]!, c.id);
  }

  /**
   * Resolves once the store has listed the ids its storage holds (at once without storage). Reads,
   * exports and limits wait for this themselves; `has()` and `size` answer for stored ids only after it.
   * `createEngine` waits for it for `engine.events`.
   */
  ready(): Promise<void> {
    return this.persistence.listing;
  }

  // ── recording ────────────────────────────────────────────────────────────────────────────────────

  /** Counts `n` (default 1) events of `id` now. Synchronous; allocation-free for a known id. */
  record(id: string, n = 1): void {
    if (this.closed) throw closedError('event store');
    const c = this.counters.get(id) ?? this.counterFor(id, n);
    if (n !== 1) checkCount(n);
    if (c.limits?.gates === undefined) c.lane.batches.append(c.offset, n);
    else this.addEvents(c, n, this.decisionNow());
    c.touched = true;
    if (!c.dirty) this.persistence.markDirty(c);
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
    this.addEvents(c, n, t, now);
    c.touched = true;
    if (!c.dirty) this.persistence.markDirty(c);
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
    const wasStored = this.persistence.stored.has(id);
    if (!create && !wasStored) return undefined;
    if (this.counters.size >= this.maxKeys) {
      throw new TallyworksRangeError(ErrorCode.CAPACITY, `the event store holds maxKeys (${this.maxKeys}) ids in memory; ${JSON.stringify(id)} was not created (idleMs or compact() lets ids go)`);
    }
    const lane = this.router.laneFor(id);
    if (!this.registered.has(lane)) {
      lane.registerCalendar(this.config);
      this.registered.add(lane);
    }
    const offset = lane.createRecord(this.shape.words, KIND_CAL, this.config.id);
    c = { id, lane, offset, dirty: false, loading: undefined, limits: undefined, touched: true, seenMs: this.clock.now() };
    this.counters.set(id, c);
    if (wasStored) this.persistence.restore(c);
    return c;
  }

  /** True if `id` has a counter (in memory or persisted). */
  has(id: string): boolean {
    return this.counters.has(id) || this.persistence.stored.has(id);
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
    this.addEvents(c, n, this.decisionNow());
    if (!c.dirty) this.persistence.markDirty(c);
  }

  /**
   * @internal Appends `n` events at `t` (now: `now`) to the counter's record and adds them to its gates
   * (but the one of window index `skip`), both stamped with the same time, so the limit and the calendar
   * agree on the unit.
   */
  addEvents(c: EventCounter, n: number, t: number, now = t, skip = -1): void {
    c.lane.batches.appendAt(c.offset, n, t);
    const l = c.limits;
    if (l?.gates !== undefined && (skip === -1 || l.gateCount > 1)) {
      this.shape.seek(now);
      if (t === now) this.gates.addNow(l.gates, n, skip);
      else this.gates.addAt(l.gates, t, n);
    }
  }

  /**
   * @internal Before a decision counts anything for `c` at `t` (the decision's time): sends the id's deferred
   * adds of an earlier finest unit, and checks that the pipeline takes ops. Throws what an append
   * throws; nothing is counted then. {@link addDecided} follows it, with no other write between.
   */
  readyToAdd(c: EventCounter, t: number): void {
    const shape = this.shape;
    shape.seek(t);
    const l = c.limits;
    if (l === undefined || l.unsent === 0) {
      c.lane.batches.check();
    } else if (l.unsentUnit !== (this.coalesceByUnit ? shape.ks[0]! : t)) {
      c.lane.batches.appendAt(c.offset, l.unsent, l.unsentAt);
      l.unsent = 0;
    }
  }

  /**
   * @internal Counts one event a limit admitted at `t`, after {@link readyToAdd}(c, t) (so it throws
   * nothing): added to the counter's gates but the one of window index `skip` (the decision counted it
   * there), and to its record through the pipeline's deferred adds, so that the id's admitted events of one
   * finest unit (a minute by default) travel as one op until anything reads or the turn ends.
   */
  addDecided(c: EventCounter, t: number, skip: number): void {
    const l = c.limits ?? this.gates.limitsOf(c);
    if (l.unsent === 0) {
      c.lane.batches.defer(l);
      l.unsentAt = t;
      // Any instant of one finest unit lands in the same bucket of every ring, when that unit nests in all
      // of them (up to a day; a week does not nest in a month): then the unit's index is the coalescing key.
      l.unsentUnit = this.coalesceByUnit ? this.shape.ks[0]! : t;
    }
    l.unsent++;
    if (l.gateCount > (skip === -1 ? 0 : 1)) this.gates.addNow(l.gates!, 1, skip);
    if (!c.dirty) this.persistence.markDirty(c);
  }

  /** @internal Waits until the ids' counters are loaded and their shards applied what this thread sent. */
  async settle(ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      const c = await this.loadedCounter(id);
      if (c !== undefined) await c.lane.drain();
    }
  }

  /** @internal The clock's time for decisions (SystemClock.nowRelaxed where it can). */
  decisionNow(): number {
    return this.time.now();
  }

  /** @internal The clock's now (persistence's idle passes). */
  now(): number {
    return this.clock.now();
  }

  /** @internal Marks the counter recorded since the last persist. */
  markDirty(c: EventCounter): void {
    c.touched = true;
    if (!c.dirty) this.persistence.markDirty(c);
  }

  /** @internal Retires the counter's gates before compaction lets it go; false (keep it) while one holds a live reservation or it has unsent admitted events. */
  letGo(c: EventCounter): boolean {
    // Admitted events not yet in a batch would follow the release op onto a record no longer the id's.
    const l = c.limits;
    if (l === undefined) return true;
    if (l.unsent !== 0) return false;
    const t = this.decisionNow();
    for (const g of l.gates ?? []) if (g !== undefined && this.holdsOf(g, t) > 0) return false;
    for (const h of l.carried ?? []) if (h !== undefined && holdsAt(h, 0, t, this.shape.reservationTtlMs) > 0) return false;
    this.gates.retire(c);
    return true;
  }

  /** @internal Whether close() began. */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * @internal The gate of window `w` for `id`, made (and seeded from the id's calendar record) when the id
   * has none; undefined for an id never recorded. Throws like {@link seedGates}.
   */
  gateFor(id: string, w: GateWindow): Gate | undefined {
    const known = this.counters.get(id)?.limits?.gates?.[w.index];
    if (known !== undefined) return known;
    this.seedGates(id, [{ id: undefined, window: w }]);
    return this.counters.get(id)?.limits?.gates?.[w.index];
  }

  /**
   * @internal Makes the gates of `limits` (each on its own id, or on `id`) for the ids that are counted and
   * lack them, each seeded from its id's calendar record. All or none: every gate's words are taken and every seed
   * read before the first is made, so a throw leaves nothing made. Throws TW_CAPACITY past the shard's
   * memory budget, TW_NOT_READY while the store lists its storage or reloads an id (the first call starts
   * the reload), and what {@link readNow} throws when a seed must wait for the shard.
   */
  seedGates(id: string, limits: ReadonlyArray<{ readonly id: string | undefined; readonly window: GateWindow }>): void {
    const made: Array<{ c: EventCounter; w: GateWindow; place: DecisionPlace | undefined; head: number; seed: number[] }> = [];
    try {
      for (const limit of limits) {
        const w = limit.window;
        const of = limit.id ?? id;
        if (this.counters.get(of)?.limits?.gates?.[w.index] !== undefined) continue;
        const c = this.counterNow(of);
        if (c === undefined || made.some((m) => m.c === c && m.w === w)) continue;
        const m = { c, w, place: undefined as DecisionPlace | undefined, head: 0, seed: new Array<number>(w.n) };
        made.push(m);
        m.place = this.gates.take(c.lane, w);
        this.shape.seek(this.decisionNow());
        // Seeded at the ring's own now: the newest unit it holds when the clock was set back since.
        m.head = this.shape.ks[w.ring]!;
        this.readNow(c, (v, now) => {
          this.shape.seek(now);
          m.head = ringNow(v, c.offset, this.shape, w.ring, Math.max(m.head, this.shape.ks[w.ring]!));
          readRing(v, c.offset, this.shape, w.ring, m.head, w.n, m.seed);
        });
      }
    } catch (err) {
      for (const m of made) if (m.place !== undefined) this.gates.giveBack(m.c.lane, m.w, m.place);
      throw err;
    }
    for (const m of made) this.gates.makeAt(m.c, m.w, m.head, m.seed, m.place!);
  }

  /**
   * @internal The counter of a valid `id` for a decision that writes, created if new; a new one gets empty
   * gates for `windows` (a known id has them from the decision's reads).
   */
  counterWith(id: string, windows: readonly GateWindow[]): EventCounter {
    const known = this.counters.get(id);
    if (known !== undefined) return known;
    if (windows.length === 0 || this.persistence.stored.has(id)) return this.counter(id, true)!; // a reload: no gates yet
    // Every gate's words first: TW_CAPACITY then leaves nothing behind, no counter and no gate.
    const lane = this.router.laneFor(id);
    const unique = [...new Set(windows)];
    const places: DecisionPlace[] = [];
    try {
      for (const w of unique) places.push(this.gates.take(lane, w));
    } catch (err) {
      places.forEach((p, i) => this.gates.giveBack(lane, unique[i]!, p));
      throw err;
    }
    const c = this.counter(id, true)!;
    this.shape.seek(this.decisionNow());
    unique.forEach((w, i) => this.gates.makeAt(c, w, this.shape.ks[w.ring]!, undefined, places[i]!));
    return c;
  }

  /** @internal Outstanding holds of a gate now. */
  holdsOf(g: Gate, t: number): number {
    return holdsAt(g.f64, g.offset, t, this.shape.reservationTtlMs);
  }

  /**
   * @internal Reads the counter's record synchronously once its shard has applied every op this thread
   * sent (sending them and spinning for at most `stallTimeoutMs` when it has not: TW_SHARD_STALLED while
   * the shard thread is being replaced, which needs the event loop). TW_RECORD_BUSY when the shard kept
   * the record locked through three tries.
   */
  readNow<T>(c: EventCounter, read: (views: ShardViews, now: number) => T): T {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (!c.lane.isIdle()) c.lane.batches.settleSync();
      const now = this.clock.now();
      const value = c.lane.readConsistent(c.offset, (v) => read(v, now));
      if (value !== MISSED) return value;
    }
    throw new TallyworksError(ErrorCode.RECORD_BUSY, `the record of ${JSON.stringify(c.id)} stayed locked by its shard; use the awaited call`);
  }

  /**
   * @internal The counter of `id` for a synchronous read: undefined for an id never recorded; TW_NOT_READY
   * while the store lists its storage or reloads the id (the first such call starts the reload).
   */
  counterNow(id: string): EventCounter | undefined {
    this.requireListed(id);
    const c = this.counters.get(id);
    if (c !== undefined && c.loading === undefined) return c;
    if (c === undefined && !this.persistence.stored.has(id)) return undefined;
    this.counter(id, false);
    throw this.notReady(id);
  }

  private requireListed(id: string): void {
    if (!this.persistence.listed) throw this.notReady(id);
  }

  private notReady(id: string): TallyworksError {
    return new TallyworksError(ErrorCode.NOT_READY, `the store is still ${this.persistence.listed ? `reloading ${JSON.stringify(id)} (started)` : 'listing its storage'}; await the awaited call once, or ready()`);
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
    const c = await this.loadedCounter(id);
    if (c === undefined) return undefined;
    const out = new Array<number>(n);
    return c.lane.readSettled(c.offset, this.clock, (v, now) => {
      this.shape.seek(now);
      readRing(v, c.offset, this.shape, r, this.shape.ks[r]!, n, out);
      return out;
    });
  }

  /** @internal Age of the newest or oldest non-zero bucket of `id`; undefined when none or unknown. */
  async seenAgeOf(id: string, oldest: boolean): Promise<number | undefined> {
    const c = await this.loadedCounter(id);
    if (c === undefined) return undefined;
    return c.lane.readSettled(c.offset, this.clock, (v, now) => {
      this.shape.seek(now);
      return seenAge(v, c.offset, this.shape, now, oldest);
    });
  }

  // What the reusable sum reader reads (set just before each read: no closure per query).
  private sumOffset = 0;
  private sumRingIndex = 0;
  private sumN = 0;
  private readonly sumReader = (views: ShardViews): number =>
    sumRing(views, this.sumOffset, this.shape, this.sumRingIndex, this.shape.ks[this.sumRingIndex]!, this.sumN);

  /**
   * @internal A sum without waiting, when nothing stands between this thread and the shard's memory
   * (storage listed, the id not reloading, its shard idle): the sum of the newest `n` buckets of ring `r`,
   * undefined for an unknown id, or NOT_NOW when the caller must take the asynchronous path.
   */
  sumNow(id: string, r: number, n: number): number | undefined | typeof NOT_NOW {
    if (!this.persistence.listed || this.closed) return NOT_NOW;
    const c = this.counters.get(id);
    if (c === undefined) return this.persistence.stored.has(id) ? NOT_NOW : undefined;
    if (c.loading !== undefined || !c.lane.isIdle()) return NOT_NOW;
    return this.readSum(c, r, n);
  }

  /** The sum of the newest `n` buckets of ring `r` of a loaded counter now, or NOT_NOW if its record stayed locked. */
  private readSum(c: EventCounter, r: number, n: number): number | typeof NOT_NOW {
    this.shape.seek(this.time.now()); // the clock's time, touching the ticker once per tick (see nowRelaxed)
    this.sumOffset = c.offset;
    this.sumRingIndex = r;
    this.sumN = n;
    const value = c.lane.readConsistent(c.offset, this.sumReader);
    return value === MISSED ? NOT_NOW : value;
  }

  /**
   * The events of `id` in the newest `n` units of `unit` (`sumSync(id, 'day', 7)` is
   * `query(id).lastDays(7).sum()`), synchronously and without a builder: undefined for an id never
   * recorded or a unit the store does not track. It sees every record issued before it: when the id's
   * shard still holds ops of this thread, it sends them and spins until they are applied (at most
   * `stallTimeoutMs` for the send and the apply; TW_SHARD_STALLED while the shard thread is being
   * replaced). Throws TW_NOT_READY while the store is still listing its storage (await `ready()`) or
   * reloading the id from it (the first such call starts the reload; the awaited query waits for it).
   */
  sumSync(id: string, unit: CalUnitName, n: number): number | undefined {
    const c = this.counters.get(id);
    // The unit and n of the last fast sum, checked then: a caller mostly asks the same question.
    let ring = this.lastSumRing;
    if (unit !== this.lastSumUnit || n !== this.lastSumCount) {
      ring = typeof unit === 'string' && Object.hasOwn(CalUnit, unit) ? this.shape.ringOf(CalUnit[unit]) : -2;
      if (!(ring >= 0 && Number.isInteger(n) && n >= 1 && n <= this.shape.rings[ring]!.count)) ring = -2;
      else {
        this.lastSumUnit = unit;
        this.lastSumCount = n;
        this.lastSumRing = ring;
      }
    }
    if (ring >= 0 && c !== undefined && c.loading === undefined && this.persistence.listed && !this.closed && c.lane.isIdle()) {
      // The common case: a known id, its shard idle. One consistent read, nothing else.
      const value = this.readSum(c, ring, n);
      if (value !== NOT_NOW) return value;
    }
    return this.sumSyncSlow(id, unit, n);
  }

  private lastSumUnit: unknown = undefined;
  private lastSumCount = 0;
  private lastSumRing = -2;

  private sumSyncSlow(id: string, unit: CalUnitName, n: number): number | undefined {
    if (this.closed) throw closedError('event store');
    if (typeof unit !== 'string' || !Object.hasOwn(CalUnit, unit)) throw argumentTypeError('unit', `a unit (${Object.keys(CalUnit).join(', ')})`, unit);
    const { ring, n: count } = rangeOf(this, unit, n);
    if (!this.counters.has(id)) validateKey(id, 'id');
    if (ring === -1) return undefined;
    const c = this.counterNow(id);
    if (c === undefined) return undefined;
    return this.readNow(c, (v, now) => {
      this.shape.seek(now);
      return sumRing(v, c.offset, this.shape, ring, this.shape.ks[ring]!, count);
    });
  }

  /** @internal The id's counter once its storage reload is done; undefined when unknown. */
  async loadedCounter(id: string): Promise<EventCounter | undefined> {
    await this.persistence.listing;
    const c = this.counter(id, false);
    if (c?.loading !== undefined) await c.loading;
    return c;
  }

  // ── export, import, merge ────────────────────────────────────────────────────────────────────────

  /** Every counter's buckets, aligned to now. */
  export(): Promise<EventsExport> {
    return this.admit(() => this.exportIds(undefined));
  }

  /** Only the counters recorded since the last persist or clearDirty(). */
  exportDirty(): Promise<EventsExport> {
    return this.admit(() => this.exportIds(this.persistence.dirtyIds()));
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
   * With `trim`, each ring (newest first) ends at its oldest non-zero bucket (a load reads the rest as 0).
   */
  /** @internal */
  async eachRings(only: readonly string[] | undefined, take: (id: string, rings: number[][], nowMs: number) => void, trim = false): Promise<number> {
    await this.persistence.listing;
    if (only === undefined) {
      // Stored ids are part of the store: bring them back to export them.
      for (const id of [...this.persistence.stored]) this.counter(id, false);
    }
    const ids = only ?? [...this.counters.keys()];
    const nowMs = this.clock.now();
    // Trimmed: each ring is read into a scratch array and copied up to its oldest non-zero bucket.
    const scratch = trim ? this.shape.rings.map((ring) => new Array<number>(ring.count)) : undefined;
    const read = (c: EventCounter) => (v: ShardViews): number[][] => {
      this.shape.seek(nowMs);
      return this.shape.rings.map((ring, r) => {
        if (scratch === undefined) {
          const out = new Array<number>(ring.count);
          readRing(v, c.offset, this.shape, r, this.shape.ks[r]!, ring.count, out);
          return out;
        }
        const n = readRingTrimmed(v, c.offset, this.shape, r, this.shape.ks[r]!, ring.count, scratch[r]!);
        return scratch[r]!.slice(0, n);
      });
    };
    // Every lane applies what it holds once, up front: the reads below need no round trip each while
    // nothing else is recorded meanwhile.
    const lanes = new Set<Lane>();
    for (const id of ids) {
      const lane = this.counters.get(id)?.lane;
      if (lane !== undefined) lanes.add(lane);
    }
    await Promise.all([...lanes].map((l) => l.drain()));
    const slice = timeSlicer();
    for (const id of ids) {
      await slice();
      let c = this.counters.get(id);
      if (c === undefined || c.loading !== undefined) c = await this.loadedCounter(id);
      if (c === undefined) continue;
      // Read at once only while the lane is idle: a batch the shard is still applying would show some of
      // its ops and not others (a persist must never store one id past another recorded with it).
      let rings = c.lane.isIdle() ? c.lane.readConsistent(c.offset, read(c)) : MISSED;
      if (rings === MISSED) rings = await c.lane.readSettled(c.offset, this.clock, read(c));
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
    await this.persistence.listing;
    const exportId = e.source?.exportId;
    if (exportId !== undefined) {
      if (this.persistence.mergedExports.has(exportId)) return { merged: false };
      // Claimed before the first await, so that a concurrent merge of the same export sees it.
      this.persistence.mergedExports.add(exportId);
    }
    try {
      await this.load('merge', e);
    } catch (err) {
      // A refused export changed nothing (load checks everything first): it may be merged again.
      if (exportId !== undefined && !(err instanceof TallyworksError && err.code === ErrorCode.CLOSED)) this.persistence.mergedExports.delete(exportId);
      throw err;
    }
    if (exportId !== undefined) await this.persistence.saveMergedExports();
    return { merged: true };
  }

  private async load(type: 'merge' | 'import', e: EventsExport): Promise<void> {
    await this.persistence.listing;
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
      const c = await this.loadedCounter(id) ?? this.counter(id, true)!;
      // Admitted events still deferred go first (an import overwrites them, like any event before it); the
      // id's gates no longer hold its events: the next decision seeds new ones (holds are handed on).
      const l = c.limits;
      if (l !== undefined && l.unsent !== 0) {
        c.lane.batches.appendAt(c.offset, l.unsent, l.unsentAt);
        l.unsent = 0;
      }
      this.gates.retire(c);
      c.lane.batches.appendCtrl(loadOp(type, c.offset, t, mapping, e.counters[id]!, id));
      if (!c.dirty) this.persistence.markDirty(c);
      lanes.add(c.lane);
    }
    await Promise.all([...lanes].map((l) => l.drain()));
  }

  // ── dirty tracking and persistence (./persistence.ts) ────────────────────────────────────────────

  /** Ids recorded since the last persist() or clearDirty(). */
  dirtyIds(): string[] {
    return this.persistence.dirtyIds();
  }

  /** Forgets which ids are dirty (without saving them). */
  clearDirty(): void {
    this.persistence.clearDirty();
  }

  /**
   * Saves the dirty counters to storage (one transaction when the storage has them). Returns how many.
   * Persists run one at a time, in the order they were asked for.
   */
  persist(): Promise<number> {
    return this.admit(() => this.persistence.persist());
  }

  /** Saves every counter in memory. Returns how many. */
  persistAll(): Promise<number> {
    return this.admit(() => this.persistence.persistAll());
  }

  /**
   * Persists every counter, then lets them go from shard memory (their words are reused by new ids).
   * Every later use of an id (record, query, limit) brings its counter back from storage first.
   */
  /**
   * Lets go now the ids not recorded for `idleMs` (saved first; the store's timer does this every
   * idleMs / 2); resolves to how many. Needs a store made with `storage` and `idleMs`.
   */
  evictIdle(): Promise<number> {
    return this.admit(() => this.persistence.evictIdle());
  }

  compact(): Promise<void> {
    return this.admit(() => this.persistence.compact());
  }

  /**
   * @internal Stops auto-persist, refuses new operations and writes, waits for the operations admitted
   * before, and persists what is dirty (engine.close() calls this; the final persist therefore holds every
   * write the store accepted).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    // Queued behind a background persist still writing, so that close() resolves after it landed.
    await this.persistence.close();
  }
}
