/**
 * The sliding-window decision providers, on whichever thread decides (the engine's, or a linked worker's):
 * `absolute` and `suppressed`, each over a {@link RecordSource}, with the decision values they return.
 * Each decision is a few loads and stores on the key's decision record in shared memory
 * (common/records/sliding.ts), under the record's owner lock, with no message and no promise; being over
 * the limit is a value, never a thrown error.
 */
import type { TimeSource } from '../clock/clock.js';
import { closedError, ErrorCode, TallyworksError } from '../../common/errors.js';
import { type Decider, lockRecord, unlockRecord } from '../../common/records/owner-lock.js';
import {
  ADMITTED,
  clearSliding,
  countInWindow,
  decideAbsolute,
  decideSuppressed,
  releaseAbsolute,
  type SlidingShape,
  STALE,
  SUPPRESSED_ADMITTED,
  stampOf,
  SUPPRESSED_BELOW_SOFT,
  suppressionFactorAt,
} from '../../common/records/sliding.js';
import { readBegin, readValid } from '../../common/seqlock.js';
import { validateKey } from '../keys.js';
import { newTally, tallied } from './tally.js';
import { checkIncrement, checkRate, drawFrom, limitOf, type ResolvedRateOptions } from './rate-options.js';
import type { RecordSource, SlidingEntry } from './sliding-directory.js';

/** Admitted. The one object every admitted decision returns (nothing is allocated). */
export interface Allowed {
  readonly kind: 'allowed';
  readonly allowed: true;
}

/** Refused by the absolute strategy; nothing was counted. */
export interface Rejected {
  readonly kind: 'rejected';
  readonly allowed: false;
  /** The window that refused (for `rateLimits`, the one that frees last: its name is `window`). */
  readonly windowSeconds: number;
  /** After this many ms the same increment fits (Infinity when it is larger than the limit itself). */
  readonly retryAfterMs: number;
  /**
   * Room in that window once retryAfterMs has passed, if nothing else comes (≥ n, the increment fits
   * then; the whole limit when the increment is larger than the limit). One definition for every strategy.
   */
  readonly remainingAfterWaiting: number;
  /** `rateLimits` only: the name of the window that refused. */
  readonly window?: string;
  /** Redis provider with `onStoreError: 'fail-closed'`: the error that kept Redis from deciding (nothing was counted). */
  readonly storeError?: Error;
}

/** The suppressed strategy past its soft limit: admitted with probability 1 − suppressionFactor. */
export interface Suppressed {
  readonly kind: 'suppressed';
  readonly allowed: boolean;
  readonly suppressionFactor: number;
}

export type RateDecision = Allowed | Rejected | Suppressed;

export const ALLOWED: Allowed = Object.freeze({ kind: 'allowed', allowed: true });

/** What a decider needs, on any thread: the time, and whether the engine (or the link) is closed. */
export interface DecisionContext {
  /** The clock's time for decisions (SystemClock.nowRelaxed where it can). */
  readonly time: TimeSource;
  /** True once the engine (or the link) closed. */
  readonly state: { readonly closed: boolean };
}

/**
 * The key's record, created if new (the key validated first: bad input creates nothing). It reads the
 * time itself: with the decision's time passed, V8 boxed that time on every decision (measured: 6 bytes
 * a decision in one microbenchmark, none without).
 */
export function entryOf(dir: RecordSource, key: string, time: TimeSource): SlidingEntry {
  const e = dir.get(key);
  if (e !== undefined) return e;
  validateKey(key, 'key');
  return dir.getOrCreate(key, time.now());
}

/** How many times a decision looks for a key's record again after finding its handle retired. */
const STALE_RETRIES = 16;

export function staleRecord(key: string): TallyworksError {
  return new TallyworksError(
    ErrorCode.RECORD_BUSY,
    `the record of ${JSON.stringify(key)} was retired ${STALE_RETRIES} times between being found and being decided on (is staleAfterMs shorter than the time between decisions?); nothing was decided`,
  );
}

/** Seqlock read attempts before a reader takes the record's lock instead (a holder that does not let go). */
const READ_SPINS = 1 << 12;

/** Reads a value of `key`'s record consistently (0 for a key no decision has touched). */
export function readRecord(ctx: DecisionContext, dir: RecordSource, key: string, decider: Decider, read: (f64: Float64Array, o: number, now: number) => number): number {
  if (ctx.state.closed) throw closedError('rate limiter');
  const now = ctx.time.now();
  for (let attempt = 0; attempt < STALE_RETRIES; attempt++) {
    const e = dir.get(key) ?? (validateKey(key, 'key'), dir.find(key));
    if (e === undefined) return 0;
    const { i32, f64 } = e.views;
    let value = 0;
    let stamp = 0;
    let consistent = false;
    for (let i = 0; i < READ_SPINS && !consistent; i++) {
      const s = readBegin(i32, e.offset);
      if (s === -1) continue;
      value = read(f64, e.offset, now);
      stamp = stampOf(i32, e.offset);
      consistent = readValid(i32, e.offset, s);
    }
    if (!consistent) {
      // A holder that does not let go: wait for it like a decision does (a dead one's lock is taken over).
      const version = lockRecord(i32, f64, e.offset, decider, dir.shape);
      value = read(f64, e.offset, now);
      stamp = stampOf(i32, e.offset);
      unlockRecord(i32, e.offset, version);
    }
    if (stamp === e.stamp) return value;
    dir.forget(key); // a linked thread's handle on a record the cleanup retired: look again
  }
  throw staleRecord(key);
}

/**
 * Runs `write` on `key`'s record under its lock (it returns STALE when the handle's record was retired: looked
 * up again). A key no decision has touched has no record: nothing to write, 0.
 */
export function writeRecord(ctx: DecisionContext, dir: RecordSource, key: string, write: (e: SlidingEntry) => number): number {
  if (ctx.state.closed) throw closedError('rate limiter');
  for (let attempt = 0; attempt < STALE_RETRIES; attempt++) {
    const e = dir.get(key) ?? (validateKey(key, 'key'), dir.find(key));
    if (e === undefined) return 0;
    const r = write(e);
    if (r !== STALE) return r;
    dir.forget(key);
  }
  throw staleRecord(key);
}

/** Takes back up to `n` events of `key` from every window of an absolute record (newest first); returns how many. */
export function releaseEvents(ctx: DecisionContext, dir: RecordSource, decider: Decider, key: string, n: number): number {
  if (n !== 1) checkIncrement(n);
  const shape = dir.shape;
  shape.at(ctx.time.now());
  return writeRecord(ctx, dir, key, (e) => releaseAbsolute(e.views.i32, e.views.f64, e.offset, e.stamp, shape, n, decider));
}

/** The absolute strategy: admitted while the window holds at most rate × windowSeconds, n included. */
export class LocalAbsolute {
  /** @internal decisions returned on this thread, by outcome (engine.metrics()) */
  readonly decisions = newTally();
  /** The last rejection returned, reused while its figures repeat. */
  private lastRejected: Rejected | undefined;

  private readonly limits = new Float64Array(1);
  /** The window's length, seconds. */
  readonly windowSeconds: number;
  private readonly shape: SlidingShape;
  /** The last rate and its limit (a caller mostly passes the same rate). */
  private lastRate = NaN;

  /** @internal */
  constructor(
    private readonly ctx: DecisionContext,
    /** @internal */
    readonly directory: RecordSource,
    private readonly decider: Decider,
    options: Pick<ResolvedRateOptions, 'windows'>,
  ) {
    this.windowSeconds = options.windows[0]!.windowSeconds;
    this.shape = directory.shape;
  }

  /** Decides, and counts `n` if admitted: at most `rate` per second on average over the window. */
  inc(key: string, rate: number, n = 1): RateDecision {
    if (this.ctx.state.closed) throw closedError('rate limiter');
    checkRate(rate);
    if (n !== 1) checkIncrement(n);
    const now = this.ctx.time.now();
    const e = this.directory.get(key) ?? entryOf(this.directory, key, this.ctx.time);
    const shape = this.shape;
    shape.at(now);
    if (rate !== this.lastRate) {
      this.limits[0] = limitOf(rate, this.windowSeconds);
      this.lastRate = rate;
    }
    let r = decideAbsolute(e.views.i32, e.views.f64, e.offset, e.stamp, shape, this.limits, n, now, this.decider);
    if (r === STALE) r = this.again(key, n);
    if (r === ADMITTED) {
      this.decisions.allowed++;
      return ALLOWED;
    }
    this.decisions.rejected++;
    // A burst of refusals within one ms has the same figures: one frozen value for all of them.
    const last = this.lastRejected;
    if (last !== undefined && last.retryAfterMs === shape.retryAfterMs && last.remainingAfterWaiting === shape.remainingAfterWaiting) return last;
    return (this.lastRejected = Object.freeze({ kind: 'rejected', allowed: false, windowSeconds: this.windowSeconds, retryAfterMs: shape.retryAfterMs, remainingAfterWaiting: shape.remainingAfterWaiting }));
  }

  /** The key's record was retired while a linked thread held its handle: decide again on its record now. */
  private again(key: string, n: number): number {
    const now = this.shape.now; // the decision's (not passed: see entryOf)
    for (let attempt = 0; attempt < STALE_RETRIES; attempt++) {
      this.directory.forget(key);
      const e = this.directory.getOrCreate(key, now);
      const r = decideAbsolute(e.views.i32, e.views.f64, e.offset, e.stamp, this.shape, this.limits, n, now, this.decider);
      if (r !== STALE) return r;
    }
    throw staleRecord(key);
  }

  /** Events counted for `key` in the window now (0 for a key never decided on). */
  count(key: string): number {
    const shape = this.directory.shape;
    return readRecord(this.ctx, this.directory, key, this.decider, (f64, o, now) => countInWindow(f64, o, shape, 0, now));
  }

  /** @internal the window's count right after the last decision of this thread (the HTTP policy's remaining) */
  lastCount(): number {
    return this.shape.totals[0]!;
  }

  /**
   * Takes back up to `n` events counted for `key` (the newest first), e.g. for a request that should not
   * count after all; returns how many were taken back (fewer if the window held fewer).
   */
  release(key: string, n = 1): number {
    return releaseEvents(this.ctx, this.directory, this.decider, key, n);
  }

  /** Forgets every event counted for `key`: its next decision sees an empty window. */
  reset(key: string): void {
    const shape = this.shape;
    writeRecord(this.ctx, this.directory, key, (e) => clearSliding(e.views.i32, e.views.f64, e.offset, e.stamp, shape, this.decider));
  }
}

/**
 * The suppressed strategy (probabilistic degradation): admitted while below the soft limit (rate ×
 * windowSeconds); above it admitted with probability 1 − suppressionFactor; past the hard limit (soft ×
 * hardLimitFactor) never. Every call counts.
 */
export class LocalSuppressed {
  /** @internal decisions returned on this thread, by outcome (engine.metrics()) */
  readonly decisions = newTally();
  /** The window's length, seconds. */
  readonly windowSeconds: number;

  /** @internal */
  constructor(
    private readonly ctx: DecisionContext,
    /** @internal */
    readonly directory: RecordSource,
    private readonly decider: Decider,
    private readonly options: Pick<ResolvedRateOptions, 'windows' | 'hardLimitFactor' | 'suppressionFactorCacheMs' | 'random'>,
  ) {
    this.windowSeconds = options.windows[0]!.windowSeconds;
  }

  inc(key: string, rate: number, n = 1): RateDecision {
    if (this.ctx.state.closed) throw closedError('rate limiter');
    checkRate(rate);
    if (n !== 1) checkIncrement(n);
    const draw = drawFrom(this.options.random);
    const now = this.ctx.time.now();
    const shape = this.directory.shape;
    shape.at(now);
    const soft = limitOf(rate, this.windowSeconds);
    const o = this.options;
    let r = STALE;
    for (let attempt = 0; r === STALE; attempt++) {
      if (attempt === STALE_RETRIES) throw staleRecord(key);
      if (attempt > 0) this.directory.forget(key);
      const e = entryOf(this.directory, key, this.ctx.time);
      r = decideSuppressed(e.views.i32, e.views.f64, e.offset, e.stamp, shape, this.windowSeconds, soft, soft * o.hardLimitFactor, o.suppressionFactorCacheMs, n, draw, now, this.decider);
    }
    if (r === SUPPRESSED_BELOW_SOFT) {
      this.decisions.allowed++;
      return ALLOWED;
    }
    return tallied(this.decisions, { kind: 'suppressed', allowed: r === SUPPRESSED_ADMITTED, suppressionFactor: shape.sf });
  }

  /** The suppression factor of `key` now at `rate` (computed afresh, not the cached one; nothing counted). */
  suppressionFactor(key: string, rate: number): number {
    checkRate(rate);
    const shape = this.directory.shape;
    return readRecord(this.ctx, this.directory, key, this.decider, (f64, o, now) => suppressionFactorAt(f64, o, shape, this.windowSeconds, limitOf(rate, this.windowSeconds), now));
  }

  /** Calls counted for `key` in the window now, admitted or declined (0 for a key never decided on). */
  count(key: string): number {
    const shape = this.directory.shape;
    return readRecord(this.ctx, this.directory, key, this.decider, (f64, o, now) => countInWindow(f64, o, shape, 0, now));
  }
}

