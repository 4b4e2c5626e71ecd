/**
 * Sliding-window rate limits decided on the calling thread (trypema's local provider, with the spec's
 * FIX lines): `engine.rateLimiter(options)` gives `local.absolute.inc(key, rate, n)` and
 * `local.suppressed.inc(key, rate, n)`, and `engine.rateLimits({ windows })` decides several named windows
 * of a key all-or-nothing. Each decision is a few loads and stores on the key's decision record in its
 * shard's shared memory (common/records/sliding.ts), under the record's owner lock, with no message and
 * no promise; being over the limit is a value, never a thrown error.
 */
import { argumentRangeError, closedError, ErrorCode, protocolError, TallyworksError } from '../../common/errors.js';
import type { Decider } from '../../common/records/owner-lock.js';
import {
  ADMITTED,
  countInWindow,
  decideAbsolute,
  decideSuppressed,
  REFUSED,
  SlidingShape,
  STALE,
  SUPPRESSED_ADMITTED,
  SUPPRESSED_BELOW_SOFT,
  suppressionFactorAt,
} from '../../common/records/sliding.js';
import { readBegin, readValid } from '../../common/seqlock.js';
import type { Clock } from '../clock/clock.js';
import { validateKey } from '../keys.js';
import type { Router } from '../router/router.js';
import type { DeciderRegistry } from './deciders.js';
import { checkIncrement, checkRate, limitOf, type ResolvedRateOptions, resolveRateLimiterOptions, resolveRateLimitsOptions } from './rate-options.js';
import { type SlidingEntry, SlidingDirectory } from './sliding-directory.js';

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
  /** Room in that window once retryAfterMs has passed (the increment included: ≥ n), if nothing else comes. */
  readonly remainingAfterWaiting: number;
  /** `rateLimits` only: the name of the window that refused. */
  readonly window?: string;
}

/** The suppressed strategy past its soft limit: admitted with probability 1 − suppressionFactor. */
export interface Suppressed {
  readonly kind: 'suppressed';
  readonly allowed: boolean;
  readonly suppressionFactor: number;
}

export type RateDecision = Allowed | Rejected | Suppressed;

export const ALLOWED: Allowed = Object.freeze({ kind: 'allowed', allowed: true });

/** What every limiter of an engine shares: where records go, who decides, the clock, and whether it is closed. */
export interface LimiterContext {
  readonly router: Router;
  readonly registry: DeciderRegistry;
  readonly clock: Clock;
  /** The clock's time for decisions (SystemClock.nowRelaxed where it can). */
  readonly now: () => number;
  /** Set when the engine closes. */
  readonly state: { closed: boolean };
}

/** The key's record, created if new (the key validated first: bad input creates nothing). */
function entryOf(dir: SlidingDirectory, key: string, now: number): SlidingEntry {
  const e = dir.get(key);
  if (e !== undefined) return e;
  validateKey(key, 'key');
  return dir.getOrCreate(key, now);
}

function staleRecord(key: string): TallyworksError {
  return protocolError(`rate limiter record of ${JSON.stringify(key)}`, 'a retired record still in the directory');
}

/** Seqlock read attempts before a reader concludes the record's holder does not let go. */
const READ_SPINS = 1 << 16;

/** Reads a value of `key`'s record consistently (0 for a key never decided on). */
function readRecord(ctx: LimiterContext, dir: SlidingDirectory, key: string, read: (f64: Float64Array, o: number, now: number) => number): number {
  const e = dir.get(key);
  if (e === undefined) {
    validateKey(key, 'key');
    return 0;
  }
  const now = ctx.now();
  const { i32, f64 } = e.views;
  for (let i = 0; i < READ_SPINS; i++) {
    const s = readBegin(i32, e.offset);
    if (s === -1) continue;
    const value = read(f64, e.offset, now);
    if (readValid(i32, e.offset, s)) return value;
  }
  throw new TallyworksError(ErrorCode.RECORD_BUSY, `the record of ${JSON.stringify(key)} is held by a thread that does not let go; retry`);
}

/** Runs the sweep of `dirs` every `cleanupIntervalMs` of the clock's time (on its moves, for a test clock). */
class Cleanup {
  private timer: NodeJS.Timeout | undefined;
  private unwatch: (() => void) | undefined;
  private next: number;

  constructor(
    private readonly ctx: LimiterContext,
    private readonly options: ResolvedRateOptions,
    private readonly dirs: readonly SlidingDirectory[],
    private readonly decider: Decider,
  ) {
    this.next = ctx.clock.now() + options.cleanupIntervalMs;
    if (ctx.clock.watch !== undefined) {
      this.unwatch = ctx.clock.watch(() => {
        if (ctx.clock.now() >= this.next) this.run();
      });
    } else {
      this.timer = setInterval(() => this.run(), options.cleanupIntervalMs).unref();
    }
  }

  /** Retires every key idle longer than staleAfterMs now; returns how many. */
  run(): number {
    const now = this.ctx.now();
    this.next = now + this.options.cleanupIntervalMs;
    let retired = 0;
    for (const dir of this.dirs) retired += dir.sweep(now - this.options.staleAfterMs, this.decider);
    return retired;
  }

  stop(): void {
    clearInterval(this.timer);
    this.unwatch?.();
  }
}

/** The absolute strategy: admitted while the window holds at most rate × windowSeconds, n included. */
export class LocalAbsolute {
  private readonly limits = new Float64Array(1);
  private readonly windowSeconds: number;

  /** @internal */
  constructor(
    private readonly ctx: LimiterContext,
    /** @internal */
    readonly directory: SlidingDirectory,
    private readonly decider: Decider,
    options: ResolvedRateOptions,
  ) {
    this.windowSeconds = options.windows[0]!.windowSeconds;
  }

  /** Decides, and counts `n` if admitted: at most `rate` per second on average over the window. */
  inc(key: string, rate: number, n = 1): RateDecision {
    if (this.ctx.state.closed) throw closedError('rate limiter');
    checkRate(rate);
    if (n !== 1) checkIncrement(n);
    const now = this.ctx.now();
    const e = entryOf(this.directory, key, now);
    const shape = this.directory.shape;
    shape.at(now);
    this.limits[0] = limitOf(rate, this.windowSeconds);
    const r = decideAbsolute(e.views.i32, e.views.f64, e.offset, e.stamp, shape, this.limits, n, now, this.decider);
    if (r === ADMITTED) return ALLOWED;
    if (r !== REFUSED) throw staleRecord(key);
    return { kind: 'rejected', allowed: false, windowSeconds: this.windowSeconds, retryAfterMs: shape.retryAfterMs, remainingAfterWaiting: shape.remainingAfterWaiting };
  }

  /** Events counted for `key` in the window now (0 for a key never decided on). */
  count(key: string): number {
    const shape = this.directory.shape;
    return readRecord(this.ctx, this.directory, key, (f64, o, now) => countInWindow(f64, o, shape, 0, now));
  }
}

/**
 * The suppressed strategy (probabilistic degradation): admitted while below the soft limit (rate ×
 * windowSeconds); above it admitted with probability 1 − suppressionFactor; past the hard limit (soft ×
 * hardLimitFactor) never. Every call counts.
 */
export class LocalSuppressed {
  private readonly windowSeconds: number;

  /** @internal */
  constructor(
    private readonly ctx: LimiterContext,
    /** @internal */
    readonly directory: SlidingDirectory,
    private readonly decider: Decider,
    private readonly options: ResolvedRateOptions,
  ) {
    this.windowSeconds = options.windows[0]!.windowSeconds;
  }

  inc(key: string, rate: number, n = 1): RateDecision {
    if (this.ctx.state.closed) throw closedError('rate limiter');
    checkRate(rate);
    if (n !== 1) checkIncrement(n);
    const draw = this.options.random();
    if (!(draw >= 0 && draw < 1)) throw new TallyworksError(ErrorCode.INVALID_OPTION, `options.random returned ${String(draw)}, not a number in [0, 1); nothing was decided`);
    const now = this.ctx.now();
    const e = entryOf(this.directory, key, now);
    const shape = this.directory.shape;
    shape.at(now);
    const soft = limitOf(rate, this.windowSeconds);
    const o = this.options;
    const r = decideSuppressed(e.views.i32, e.views.f64, e.offset, e.stamp, shape, this.windowSeconds, soft, soft * o.hardLimitFactor, o.suppressionFactorCacheMs, n, draw, now, this.decider);
    if (r === SUPPRESSED_BELOW_SOFT) return ALLOWED;
    if (r === STALE) throw staleRecord(key);
    return { kind: 'suppressed', allowed: r === SUPPRESSED_ADMITTED, suppressionFactor: shape.sf };
  }

  /** The suppression factor of `key` now at `rate` (computed afresh, not the cached one; nothing counted). */
  suppressionFactor(key: string, rate: number): number {
    checkRate(rate);
    const shape = this.directory.shape;
    return readRecord(this.ctx, this.directory, key, (f64, o, now) => suppressionFactorAt(f64, o, shape, this.windowSeconds, limitOf(rate, this.windowSeconds), now));
  }

  /** Calls counted for `key` in the window now, admitted or declined (0 for a key never decided on). */
  count(key: string): number {
    const shape = this.directory.shape;
    return readRecord(this.ctx, this.directory, key, (f64, o, now) => countInWindow(f64, o, shape, 0, now));
  }
}

/** `engine.rateLimiter(options)`: one sliding window, a rate per call. */
export class RateLimiter {
  /** In-process decisions, on the calling thread. */
  readonly local: { readonly absolute: LocalAbsolute; readonly suppressed: LocalSuppressed };
  readonly windowSeconds: number;
  readonly groupMs: number;
  private readonly cleanupRun: Cleanup;

  /** @internal use `engine.rateLimiter()` */
  constructor(ctx: LimiterContext, options: unknown) {
    const o = resolveRateLimiterOptions(options);
    const w = o.windows[0]!;
    this.windowSeconds = w.windowSeconds;
    this.groupMs = w.groupMs;
    const decider = ctx.registry.mainDecider(o.lockTimeoutMs);
    const absolute = new SlidingDirectory(ctx.router, new SlidingShape([w], false), ctx.registry);
    const suppressed = new SlidingDirectory(ctx.router, new SlidingShape([w], true), ctx.registry);
    this.local = Object.freeze({ absolute: new LocalAbsolute(ctx, absolute, decider, o), suppressed: new LocalSuppressed(ctx, suppressed, decider, o) });
    this.cleanupRun = new Cleanup(ctx, o, [absolute, suppressed], decider);
  }

  /** Drops every key idle longer than staleAfterMs now (the cleanup also runs every cleanupIntervalMs); returns how many. */
  cleanup(): number {
    return this.cleanupRun.run();
  }

  /** @internal the engine stops the cleanup when it closes */
  stop(): void {
    this.cleanupRun.stop();
  }
}

/** `engine.rateLimits({ windows })`: several named windows per key with fixed limits, decided all-or-nothing. */
export class RateLimits {
  readonly windows: readonly string[];
  private readonly directory: SlidingDirectory;
  private readonly decider: Decider;
  private readonly limits: Float64Array;
  private readonly seconds: readonly number[];
  private readonly cleanupRun: Cleanup;

  /** @internal use `engine.rateLimits()` */
  constructor(
    private readonly ctx: LimiterContext,
    options: unknown,
  ) {
    const o = resolveRateLimitsOptions(options);
    this.windows = Object.freeze(o.windows.map((w) => w.name));
    this.seconds = o.windows.map((w) => w.windowSeconds);
    this.limits = Float64Array.from(o.windows, (w) => w.limit);
    this.decider = ctx.registry.mainDecider(o.lockTimeoutMs);
    this.directory = new SlidingDirectory(ctx.router, new SlidingShape(o.windows, false), ctx.registry);
    this.cleanupRun = new Cleanup(ctx, o, [this.directory], this.decider);
  }

  /** Counts `n` in every window if every window has room for it; otherwise counts nothing. */
  inc(key: string, n = 1): RateDecision {
    if (this.ctx.state.closed) throw closedError('rate limits');
    if (n !== 1) checkIncrement(n);
    const now = this.ctx.now();
    const e = entryOf(this.directory, key, now);
    const shape = this.directory.shape;
    shape.at(now);
    const r = decideAbsolute(e.views.i32, e.views.f64, e.offset, e.stamp, shape, this.limits, n, now, this.decider);
    if (r === ADMITTED) return ALLOWED;
    if (r !== REFUSED) throw staleRecord(key);
    const k = shape.refused;
    return { kind: 'rejected', allowed: false, window: this.windows[k]!, windowSeconds: this.seconds[k]!, retryAfterMs: shape.retryAfterMs, remainingAfterWaiting: shape.remainingAfterWaiting };
  }

  /** Events counted for `key` now in the window named `window`. */
  count(key: string, window: string): number {
    const k = this.windows.indexOf(window);
    if (k === -1) throw argumentRangeError('window', `one of the windows (${this.windows.join(', ')})`, window);
    const shape = this.directory.shape;
    return readRecord(this.ctx, this.directory, key, (f64, o, now) => countInWindow(f64, o, shape, k, now));
  }

  cleanup(): number {
    return this.cleanupRun.run();
  }

  /** @internal */
  stop(): void {
    this.cleanupRun.stop();
  }
}
