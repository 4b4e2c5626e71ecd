/**
 * Sliding-window rate limits decided on the calling thread (trypema's local provider, with the spec's
 * FIX lines): `engine.rateLimiter(options)` gives `local.absolute.inc(key, rate, n)` and
 * `local.suppressed.inc(key, rate, n)` (./providers.ts), and `engine.rateLimits({ windows })` decides
 * several named windows of a key all-or-nothing. Both retire keys idle longer than `staleAfterMs`.
 */
import { newTally } from './tally.js';
import { argumentRangeError, closedError, ErrorCode, TallyworksError } from '../../common/errors.js';
import type { Decider } from '../../common/records/owner-lock.js';
import { ADMITTED, countInWindow, decideAbsolute, REFUSED, SlidingShape } from '../../common/records/sliding.js';
import { type Clock, SystemClock } from '../clock/clock.js';
import type { Router } from '../router/router.js';
import type { DeciderRegistry } from './deciders.js';
import { type RateLimiterLink, RateLinkHost } from './link.js';
import { ALLOWED, type DecisionContext, entryOf, LocalAbsolute, LocalSuppressed, type RateDecision, readRecord, releaseEvents, staleRecord } from './providers.js';
import { checkIncrement, type ResolvedRateOptions, resolveRateLimiterOptions, resolveRateLimitsOptions } from './rate-options.js';
import { SlidingDirectory } from './sliding-directory.js';
import { type RedisRateContext, redisLimiterId } from './redis-sliding.js';
import { RedisAbsolute, RedisSuppressed, RedisWindows } from './redis-providers.js';
import { HybridAbsolute } from './hybrid.js';
import { HybridSuppressed, SuppressedShares } from './hybrid-suppressed.js';
import type { HybridSync, SyncedKey } from './hybrid-sync.js';

export type { Allowed, Rejected, Suppressed, RateDecision } from './providers.js';
export { LocalAbsolute, LocalSuppressed } from './providers.js';
export { RedisAbsolute, RedisSuppressed, RedisWindows } from './redis-providers.js';
export { HybridAbsolute, type HybridStats } from './hybrid.js';
export { HybridSuppressed, SuppressedShares } from './hybrid-suppressed.js';

/** What every limiter of an engine shares: where records go, who decides, the clock, and whether it is closed. */
export interface LimiterContext extends DecisionContext {
  readonly router: Router;
  readonly registry: DeciderRegistry;
  readonly clock: Clock;
  /** Set when the engine closes. */
  readonly state: { closed: boolean };
  /** The engine's Redis client (absent when embedded) and prefix, for the Redis provider. */
  readonly redis: RedisRateContext;
  /** The live instances sharing the prefix (the hybrid provider splits its quotas by them). */
  instances(): Promise<number>;
  /**
   * The engine's hybrid limiters by their keys in Redis (and, suppressed, their other options): limiters
   * of the same window share one (two would each hold a share of the same keys' limits).
   */
  readonly hybrids: Map<string, HybridSync<SyncedKey>>;
}

/** The engine's hybrid named `id` (with Redis: limiters of one window share it), made by `make` if new. */
function hybridFor<H extends HybridSync<SyncedKey>>(ctx: LimiterContext, id: string, make: () => H): H {
  if (ctx.redis.client === undefined) return make();
  let hybrid = ctx.hybrids.get(id) as H | undefined;
  if (hybrid === undefined) {
    hybrid = make();
    ctx.hybrids.set(id, hybrid);
  }
  return hybrid;
}

/**
 * A new limiter's name in the metrics, unique among the engine's `limiters` and its event stores
 * (`events`, `events-<n>`): the name asked for (option `name`), else `<stem>-<n>` with the first n free.
 */
export function limiterName(limiters: ReadonlyArray<{ readonly name: string }>, options: unknown, stem: string): string {
  const taken = (n: string): boolean => limiters.some((l) => l.name === n) || /^events(-\d+)?$/.test(n);
  const asked = (options as { name?: unknown } | undefined)?.name;
  if (typeof asked === 'string') {
    if (taken(asked)) throw argumentRangeError('options.name', 'a name no other limiter of this engine has (nor events, events-<n>)', asked);
    return asked;
  }
  let n = limiters.length + 1;
  while (taken(`${stem}-${n}`)) n++;
  return `${stem}-${n}`;
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
    private readonly remote: ReadonlyArray<{ readonly sliding: { clean(staleAfterMs: number): Promise<number> } }> = [],
  ) {
    this.next = ctx.clock.now() + options.cleanupIntervalMs;
    if (ctx.clock.watch !== undefined) {
      this.unwatch = ctx.clock.watch(() => {
        if (ctx.clock.now() >= this.next) this.timed();
      });
    } else {
      this.timer = setInterval(() => this.timed(), options.cleanupIntervalMs).unref();
    }
  }

  /**
   * A timed run: a record it could not take (TW_RECORD_BUSY) is left for the next run, never thrown from a
   * timer; so is a Redis cleanup that failed (Redis away: the keys' TTLs still end them).
   */
  private timed(): void {
    try {
      this.run();
    } catch (err) {
      if (!(err instanceof TallyworksError && err.code === ErrorCode.RECORD_BUSY)) throw err;
    }
    if (this.remote.length > 0 && this.ctx.redis.client !== undefined && this.cleaning === undefined) {
      this.cleaning = this.runRemote()
        .catch(() => 0)
        .finally(() => (this.cleaning = undefined));
    }
  }

  private cleaning: Promise<number> | undefined;

  /** Deletes the Redis entities idle longer than staleAfterMs (Redis time); returns how many. */
  async runRemote(): Promise<number> {
    let deleted = 0;
    for (const r of this.remote) deleted += await r.sliding.clean(this.options.staleAfterMs);
    return deleted;
  }

  /** Retires every key idle longer than staleAfterMs now; returns how many. */
  run(): number {
    const now = this.ctx.time.now();
    this.next = now + this.options.cleanupIntervalMs;
    let retired = 0;
    for (const dir of this.dirs) retired += dir.sweep(now - this.options.staleAfterMs);
    return retired;
  }

  /** Stops the timer; waits for a Redis cleanup in flight. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.unwatch?.();
    await this.cleaning;
  }
}

/** `engine.rateLimiter(options)`: one sliding window, a rate per call. */
export class RateLimiter {
  /** In-process decisions, on the calling thread. */
  readonly local: { readonly absolute: LocalAbsolute; readonly suppressed: LocalSuppressed };
  /** Decisions in Redis, shared by every engine on the prefix (a Promise each; needs the `redis` option). */
  readonly redis: { readonly absolute: RedisAbsolute; readonly suppressed: RedisSuppressed };
  /** Synchronous decisions on this instance's share of each limit, synced with Redis every syncIntervalMs. */
  readonly hybrid: { readonly absolute: HybridAbsolute; readonly suppressed: HybridSuppressed };
  readonly windowSeconds: number;
  readonly groupMs: number;
  /** Its name in engine.metrics() (option `name`). */
  readonly name: string;
  private readonly cleanupRun: Cleanup;
  /** This thread's decider on the limiter's records (alone until the first link). */
  private readonly decider: Decider;
  private readonly links: RateLinkHost;
  private readonly linkFields: Omit<RateLimiterLink, 'port' | 'owner' | 'wake'>;

  /** @internal use `engine.rateLimiter()` */
  constructor(
    private readonly ctx: LimiterContext,
    options: unknown,
    defaultName: string,
  ) {
    const o = resolveRateLimiterOptions(options);
    this.name = o.name ?? defaultName;
    const w = o.windows[0]!;
    this.windowSeconds = w.windowSeconds;
    this.groupMs = w.groupMs;
    const decider = ctx.registry.mainDecider(o.lockTimeoutMs);
    decider.alone = true; // until link()
    this.decider = decider;
    const absolute = new SlidingDirectory(ctx.router, new SlidingShape([w], false), ctx.registry, decider);
    const suppressed = new SlidingDirectory(ctx.router, new SlidingShape([w], true), ctx.registry, decider);
    this.local = Object.freeze({ absolute: new LocalAbsolute(ctx, absolute, decider, o), suppressed: new LocalSuppressed(ctx, suppressed, decider, o) });
    const local = this.local;
    // The suppressed one decides on the window's shares with this limiter's own factor, cache and random.
    const shares = hybridFor(ctx, redisLimiterId('s', o.windows), () => new SuppressedShares(ctx, o));
    this.hybrid = Object.freeze({
      absolute: hybridFor(ctx, redisLimiterId('a', o.windows), () => new HybridAbsolute(ctx, o, local.absolute)),
      suppressed: new HybridSuppressed(shares, o, local.suppressed),
    });
    // onStoreError 'local': each Redis strategy decides on its hybrid's shares (their keys are the same).
    const hybrid = this.hybrid.absolute;
    const sf = o.onStoreError === 'local' ? this.hybrid.suppressed : undefined;
    this.redis = Object.freeze({
      absolute: new RedisAbsolute(ctx.redis, o, {
        choice: o.onStoreError,
        local: (key, rate, n) => hybrid.decide(key, rate, n),
        observe: o.onStoreError === 'local' ? (key, rate, room) => hybrid.observe(key, rate, room) : undefined,
      }),
      suppressed: new RedisSuppressed(ctx.redis, o, { choice: o.onStoreError, local: sf && ((key, rate, n) => sf.decide(key, rate, n)), observeTotals: sf && ((key, rate, total, declined) => sf.observe(key, rate, total, declined)) }),
    });
    this.cleanupRun = new Cleanup(ctx, o, [absolute, suppressed], [this.redis.absolute, this.redis.suppressed]);
    this.links = new RateLinkHost({ absolute, suppressed }, ctx.time, (owner) => ctx.registry.markDead(owner));
    this.linkFields = {
      owners: ctx.registry.owners.buffer as SharedArrayBuffer,
      timeCell: ctx.clock.timeCell,
      clock: ctx.clock instanceof SystemClock ? 'system' : 'cell',
      windowSeconds: w.windowSeconds,
      groupMs: w.groupMs,
      hardLimitFactor: o.hardLimitFactor,
      suppressionFactorCacheMs: o.suppressionFactorCacheMs,
      lockTimeoutMs: o.lockTimeoutMs,
    };
  }

  /**
   * A link for an app worker thread (pass it with its port in the transfer list; `connectRateLimiter(link)`
   * there): the worker decides synchronously on the same records, exactly, alongside this thread.
   */
  link(): RateLimiterLink {
    if (this.ctx.state.closed) throw closedError('rate limiter');
    const owner = this.ctx.registry.register();
    this.decider.alone = false; // from now on another thread may decide on these records
    return this.links.open(owner, this.linkFields);
  }

  /** Drops every key idle longer than staleAfterMs now (the cleanup also runs every cleanupIntervalMs); returns how many. */
  cleanup(): number {
    if (this.ctx.state.closed) throw closedError('rate limiter');
    return this.cleanupRun.run();
  }

  /**
   * Deletes the limiter's keys in Redis that no decision used for longer than staleAfterMs (Redis time),
   * as the cleanup does every cleanupIntervalMs; returns how many.
   */
  cleanupRedis(): Promise<number> {
    if (this.ctx.state.closed) return Promise.reject(closedError('rate limiter'));
    return this.cleanupRun.runRemote();
  }

  /** @internal the engine stops the cleanup, ends the links and waits for Redis decisions in flight when it closes */
  async stop(): Promise<void> {
    this.links.close();
    await this.cleanupRun.stop();
    await Promise.all([this.redis.absolute.sliding.settle(), this.redis.suppressed.sliding.settle(), this.hybrid.absolute.stop(), this.hybrid.suppressed.shared.stop()]);
  }
}

/** `engine.rateLimits({ windows })`: several named windows per key with fixed limits, decided all-or-nothing. */
export class RateLimits {
  /** @internal decisions returned on this thread, by outcome (engine.metrics()) */
  readonly decisions = newTally();
  readonly windows: readonly string[];
  /** Its name in engine.metrics() (option `name`). */
  readonly name: string;
  /** Each window's name, limit and length, in the order given. */
  readonly windowLimits: ReadonlyArray<{ readonly name: string; readonly limit: number; readonly windowSeconds: number }>;
  private readonly directory: SlidingDirectory;
  private readonly decider: Decider;
  private readonly limits: Float64Array;
  private readonly seconds: readonly number[];
  private readonly cleanupRun: Cleanup;
  /** Decisions in Redis on every window at once, all-or-nothing (a Promise each; needs the `redis` option). */
  readonly redis: RedisWindows;

  /** @internal use `engine.rateLimits()` */
  constructor(
    private readonly ctx: LimiterContext,
    options: unknown,
    defaultName: string,
  ) {
    const o = resolveRateLimitsOptions(options);
    this.name = o.name ?? defaultName;
    this.windows = Object.freeze(o.windows.map((w) => w.name));
    this.windowLimits = Object.freeze(o.windows.map((w) => Object.freeze({ name: w.name, limit: w.limit, windowSeconds: w.windowSeconds })));
    this.seconds = o.windows.map((w) => w.windowSeconds);
    this.limits = Float64Array.from(o.windows, (w) => w.limit);
    this.decider = ctx.registry.mainDecider(o.lockTimeoutMs);
    this.decider.alone = true; // rate limits are not linked to other threads
    this.directory = new SlidingDirectory(ctx.router, new SlidingShape(o.windows, false), ctx.registry, this.decider);
    this.redis = new RedisWindows(ctx.redis, o.windows, this.windows);
    this.cleanupRun = new Cleanup(ctx, o, [this.directory], [this.redis]);
  }

  /** Counts `n` in every window if every window has room for it; otherwise counts nothing. */
  inc(key: string, n = 1): RateDecision {
    if (this.ctx.state.closed) throw closedError('rate limits');
    if (n !== 1) checkIncrement(n);
    const now = this.ctx.time.now();
    const e = entryOf(this.directory, key, this.ctx.time);
    const shape = this.directory.shape;
    shape.at(now);
    const r = decideAbsolute(e.views.i32, e.views.f64, e.offset, e.stamp, shape, this.limits, n, now, this.decider);
    if (r === ADMITTED) {
      this.decisions.allowed++;
      return ALLOWED;
    }
    if (r !== REFUSED) throw staleRecord(key);
    this.decisions.rejected++;
    const k = shape.refused;
    return { kind: 'rejected', allowed: false, window: this.windows[k]!, windowSeconds: this.seconds[k]!, retryAfterMs: shape.retryAfterMs, remainingAfterWaiting: shape.remainingAfterWaiting };
  }

  /** @internal window `k`'s count right after the last decision of this thread (the HTTP policy's remaining) */
  lastCount(k: number): number {
    return this.directory.shape.totals[k]!;
  }

  /** Takes back up to `n` events counted for `key` in every window (the newest first); returns how many. */
  release(key: string, n = 1): number {
    return releaseEvents(this.ctx, this.directory, this.decider, key, n);
  }

  /** Events counted for `key` now in the window named `window`. */
  count(key: string, window: string): number {
    const k = this.windows.indexOf(window);
    if (k === -1) throw argumentRangeError('window', `one of the windows (${this.windows.join(', ')})`, window);
    const shape = this.directory.shape;
    return readRecord(this.ctx, this.directory, key, this.decider, (f64, o, now) => countInWindow(f64, o, shape, k, now));
  }

  cleanup(): number {
    if (this.ctx.state.closed) throw closedError('rate limits');
    return this.cleanupRun.run();
  }

  /** Deletes the windows' keys in Redis idle longer than staleAfterMs (Redis time); returns how many. */
  cleanupRedis(): Promise<number> {
    if (this.ctx.state.closed) return Promise.reject(closedError('rate limits'));
    return this.cleanupRun.runRemote();
  }

  /** @internal */
  async stop(): Promise<void> {
    await this.cleanupRun.stop();
    await this.redis.sliding.settle();
  }
}
