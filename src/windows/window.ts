/**
 * Hopping windows (hops parity): "how many in the last N units".
 *
 * `engine.windows({ size, unit })` is a set of windows of one shape, addressed by string id;
 * `engine.window(id, { size, unit })` (or `set.window(id)`) is one window with its shard and record
 * resolved once — the handle to keep in the hottest loops.
 */
import { argumentRangeError } from '../../common/errors.js';
import { bucketsHop, sumHop } from '../../common/records/hop.js';
import { hopRecordWords, KIND_HOP } from '../../common/layout.js';
import { validateKey } from '../keys.js';
import type { Clock } from '../clock/clock.js';
import type { Lane } from '../router/lane.js';
import type { Router } from '../router/router.js';
import type { WindowShape } from './window-options.js';

/** Throws unless `n` is a count a window can take: a safe integer ≥ 0. */
function checkCount(n: number): void {
  if (!(typeof n === 'number' && Number.isSafeInteger(n) && n >= 0)) {
    throw argumentRangeError('n', 'a safe integer ≥ 0', n);
  }
}

/** One hopping window, resolved to its shard and record. */
export class Window {
  readonly id: string;
  readonly size: number;
  readonly unitMs: number;
  /** @internal */
  readonly lane: Lane;
  /** @internal word offset of the record in the shard's arena */
  readonly offset: number;
  private readonly clock: Clock;

  /** @internal use `engine.window()` or `WindowSet.window()` */
  constructor(id: string, shape: WindowShape, lane: Lane, offset: number, clock: Clock) {
    this.id = id;
    this.size = shape.size;
    this.unitMs = shape.unitMs;
    this.lane = lane;
    this.offset = offset;
    this.clock = clock;
  }

  /** Counts `n` (default 1) events now. Synchronous and allocation-free. */
  observe(n = 1): void {
    if (n !== 1) checkCount(n);
    this.lane.batches.append(this.offset, n);
  }

  /** Events in the window now: the current unit and the W − 1 before it. */
  value(): Promise<number> {
    return this.lane.readSettled(this.offset, this.clock, (v, now) => sumHop(v.f64, this.offset, now));
  }

  /** The W bucket counts now, oldest first; the last one is the current unit. */
  buckets(): Promise<number[]> {
    return this.lane.readSettled(this.offset, this.clock, (v, now) => bucketsHop(v.f64, this.offset, now, []));
  }
}

/** Windows of one shape, by string id. */
export class WindowSet {
  readonly size: number;
  readonly unitMs: number;
  private readonly shape: WindowShape;
  private readonly router: Router;
  private readonly clock: Clock;
  private readonly byId = new Map<string, Window>();

  /** @internal use `engine.windows()` */
  constructor(shape: WindowShape, router: Router, clock: Clock) {
    this.shape = shape;
    this.size = shape.size;
    this.unitMs = shape.unitMs;
    this.router = router;
    this.clock = clock;
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
    if (existing !== undefined) return existing;
    validateKey(id, 'id');
    const lane = this.router.laneFor(id);
    const offset = lane.createRecord(hopRecordWords(this.shape.size), { kind: KIND_HOP, key: id, unitMs: this.shape.unitMs, size: this.shape.size });
    const w = new Window(id, this.shape, lane, offset, this.clock);
    this.byId.set(id, w);
    return w;
  }

  /** Events in window `id` now (0 for an id never observed). */
  value(id: string): Promise<number> {
    const w = this.byId.get(id);
    if (w === undefined) {
      validateKey(id, 'id');
      return Promise.resolve(0);
    }
    return w.value();
  }

  /** The W bucket counts of window `id` now, oldest first (W zeros for an id never observed). */
  buckets(id: string): Promise<number[]> {
    const w = this.byId.get(id);
    if (w === undefined) {
      validateKey(id, 'id');
      return Promise.resolve(new Array<number>(this.size).fill(0));
    }
    return w.buckets();
  }

  /** True if window `id` exists. */
  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** Number of windows in the set. */
  get count(): number {
    return this.byId.size;
  }
}
