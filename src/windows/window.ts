/**
 * Hopping windows (hops parity): "how many in the last N units".
 *
 * `engine.windows({ size, unit })` is a set of windows of one shape, addressed by string id;
 * `engine.window(id, { size, unit })` (or `set.window(id)`) is one window with its shard and record
 * resolved once — the handle to keep in the hottest loops.
 */
import { argumentRangeError, ErrorCode, TallyworksError, TallyworksRangeError } from '../../common/errors.js';
import { bucketsHop, sumHop } from '../../common/records/hop.js';
import { hopRecordWords, KIND_HOP } from '../../common/layout.js';
import { validateKey } from '../keys.js';
import type { Clock } from '../clock/clock.js';
import type { Lane } from '../router/lane.js';
import type { Router } from '../router/router.js';
import { type KeptWindow, WindowKeeper } from './window-keeper.js';
import type { ResolvedSetOptions, WindowShape } from './window-options.js';

/** Throws unless `n` is a count a window can take: a safe integer ≥ 0. */
function checkCount(n: number): void {
  if (!(typeof n === 'number' && Number.isSafeInteger(n) && n >= 0)) {
    throw argumentRangeError('n', 'a safe integer ≥ 0', n);
  }
}

/** One hopping window, resolved to its shard and record. */
export class Window implements KeptWindow {
  readonly id: string;
  readonly size: number;
  readonly unitMs: number;
  /** @internal */
  readonly lane: Lane;
  /** @internal word offset of the record in the shard's arena */
  readonly offset: number;
  /** @internal observed since the set's last pass over its windows (see window-keeper.ts) */
  touched = true;
  /** @internal let go (idle or evicted): the handle forwards to the set's window of the id */
  gone = false;
  /** @internal observed since the last persist, as of the last pass */
  dirty = false;
  /** @internal the time of the last pass that found it observed (its creation at first) */
  seenMs = 0;
  /** @internal stored buckets still being merged in (or the storage still being listed): reads wait */
  pending: Promise<void> | undefined;
  private readonly set: WindowSet;

  /** @internal use `engine.window()` or `WindowSet.window()` */
  constructor(id: string, set: WindowSet, lane: Lane, offset: number) {
    this.id = id;
    this.size = set.size;
    this.unitMs = set.unitMs;
    this.lane = lane;
    this.offset = offset;
    this.set = set;
  }

  /** Counts `n` (default 1) events now. Synchronous and allocation-free. */
  observe(n = 1): void {
    if (this.gone) {
      this.set.observe(this.id, n);
      return;
    }
    if (n !== 1) checkCount(n);
    this.touched = true;
    this.lane.batches.append(this.offset, n);
  }

  /** Events in the window now: the current unit and the W − 1 before it. */
  async value(): Promise<number> {
    while (this.pending !== undefined) await this.pending;
    if (this.gone) return this.set.value(this.id);
    return this.lane.readSettled(this.offset, this.set.clock, (v, now) => sumHop(v.f64, this.offset, now));
  }

  /** The W bucket counts now, oldest first; the last one is the current unit. */
  async buckets(): Promise<number[]> {
    while (this.pending !== undefined) await this.pending;
    if (this.gone) return this.set.buckets(this.id);
    return this.lane.readSettled(this.offset, this.set.clock, (v, now) => bucketsHop(v.f64, this.offset, now, []));
  }
}

/** Windows of one shape, by string id. */
export class WindowSet {
  readonly size: number;
  readonly unitMs: number;
  /** @internal */
  readonly shape: WindowShape;
  /** @internal */
  readonly clock: Clock;
  /** @internal the windows in memory */
  readonly byId = new Map<string, Window>();
  /** @internal storage and bounded keys, when the set has either */
  readonly keeper: WindowKeeper | undefined;
  private readonly router: Router;
  private readonly maxKeys: number;

  /** @internal use `engine.windows()` */
  constructor(shape: WindowShape, router: Router, clock: Clock, options?: ResolvedSetOptions) {
    this.shape = shape;
    this.size = shape.size;
    this.unitMs = shape.unitMs;
    this.router = router;
    this.clock = clock;
    this.maxKeys = options?.maxKeys ?? Number.POSITIVE_INFINITY;
    this.keeper = options === undefined ? undefined : new WindowKeeper(this, options);
  }

  /** Counts `n` (default 1) events now in window `id`, creating it on first use. */
  observe(id: string, n = 1): void {
    const w = this.byId.get(id);
    if (w !== undefined) {
      w.observe(n);
      return;
    }
    if (n !== 1) checkCount(n); // before the window is created: bad input writes nothing
    this.window(id).observe(n);
  }

  /** The window `id`, created if new: keep it to skip the id lookup on every observe. */
  window(id: string): Window {
    const existing = this.byId.get(id);
    return existing !== undefined ? existing : this.create(id);
  }

  /** A new window `id` (apart from window(), so the hot lookup stays small enough to inline). */
  private create(id: string): Window {
    validateKey(id, 'id');
    if (this.byId.size >= this.maxKeys) {
      if (this.keeper?.options.onMaxKeys !== 'evict') {
        throw new TallyworksRangeError(ErrorCode.CAPACITY, `the window set holds maxKeys (${this.maxKeys}) windows; window ${JSON.stringify(id)} was not created (onMaxKeys: 'evict' lets an old one go instead)`);
      }
      this.keeper.evictOne();
    }
    const lane = this.router.laneFor(id);
    const offset = lane.createRecord(hopRecordWords(this.shape.size), KIND_HOP, this.shape.unitMs, this.shape.size);
    const w = new Window(id, this, lane, offset);
    this.byId.set(id, w);
    this.keeper?.adopt(w);
    return w;
  }

  /** Events in window `id` now (0 for an id never observed); a stored window is read without loading it. */
  value(id: string): Promise<number> {
    const w = this.byId.get(id);
    if (w !== undefined) return w.value();
    validateKey(id, 'id'); // bad ids throw at once, as they did before sets had storage
    return this.valueOut(id);
  }

  private async valueOut(id: string): Promise<number> {
    const stored = await this.keeper?.storedBuckets(id);
    // Observed while the stored one was read: the window in memory now holds it.
    const now = this.byId.get(id);
    if (now !== undefined) return now.value();
    return stored === undefined ? 0 : stored.reduce((a, b) => a + b, 0);
  }

  /** The W bucket counts of window `id` now, oldest first (W zeros for an id never observed). */
  buckets(id: string): Promise<number[]> {
    const w = this.byId.get(id);
    if (w !== undefined) return w.buckets();
    validateKey(id, 'id');
    return this.bucketsOut(id);
  }

  private async bucketsOut(id: string): Promise<number[]> {
    const stored = await this.keeper?.storedBuckets(id);
    const now = this.byId.get(id);
    if (now !== undefined) return now.buckets();
    return stored ?? new Array<number>(this.size).fill(0);
  }

  /** Saves the windows observed since the last persist (needs `storage`); resolves to how many. */
  persist(): Promise<number> {
    return this.keeper?.persist() ?? Promise.reject(new TallyworksError(ErrorCode.INVALID_ARGUMENT, 'persist() needs a window set created with the storage option'));
  }

  /** Saves every window in memory (needs `storage`); resolves to how many. */
  persistAll(): Promise<number> {
    return this.keeper?.persist(true) ?? Promise.reject(new TallyworksError(ErrorCode.INVALID_ARGUMENT, 'persistAll() needs a window set created with the storage option'));
  }

  /** Lets go now every window idle for `idleMs` (the set's timer does this every idleMs / 2); resolves to how many. */
  evictIdle(): Promise<number> {
    if (this.keeper?.options.idleMs === undefined) return Promise.reject(new TallyworksError(ErrorCode.INVALID_ARGUMENT, 'evictIdle() needs a window set created with the idleMs option'));
    return this.keeper.evictIdle();
  }

  /** Windows let go so far (idle, or evicted at maxKeys). */
  get evictions(): number {
    return this.keeper?.evictions ?? 0;
  }

  /** Resolves once the set's storage is listed (at once without storage). */
  ready(): Promise<void> {
    return this.keeper?.listing ?? Promise.resolve();
  }

  /** @internal the engine's close: stops the timers and persists what is dirty */
  close(): Promise<void> {
    return this.keeper?.close() ?? Promise.resolve();
  }

  /** True if window `id` is in memory. */
  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** Number of windows in memory. */
  get count(): number {
    return this.byId.size;
  }
}
