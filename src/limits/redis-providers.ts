/**
 * The Redis provider's strategies (see ./redis-sliding.ts for how their decisions reach Redis):
 * `rateLimiter().redis.absolute` and `.redis.suppressed`, `rateLimits().redis`, and what each does when
 * Redis cannot decide (option `onStoreError`).
 */
import { newTally, tallied } from './tally.js';
import { ErrorCode, TallyworksError } from '../../common/errors.js';
import { RateOutcome, RateStrategy } from '../../common/scripts.js';
import { validateKey } from '../keys.js';
import { ALLOWED, type RateDecision } from './providers.js';
import { checkIncrement, checkRate, drawFrom, limitOf, type ResolvedRateOptions, type ResolvedWindow } from './rate-options.js';
import { type RedisRateContext, RedisSliding, redisLimiterId } from './redis-sliding.js';

function configOf(strategy: number, windows: readonly Pick<ResolvedWindow, 'windowMs' | 'groupMs'>[]): number[] {
  return [strategy, windows.length, ...windows.flatMap((w) => [w.windowMs, w.groupMs])];
}

/** A refusal from rl.lua's results (refused window, retry, room then). */
function rejection(r: readonly number[], windowSeconds: readonly number[], names?: readonly string[]): RateDecision {
  const k = r[1]!;
  const retryAfterMs = r[2]! < 0 ? Infinity : r[2]!;
  const d = { kind: 'rejected' as const, allowed: false as const, windowSeconds: windowSeconds[k]!, retryAfterMs, remainingAfterWaiting: r[3]! };
  return names === undefined ? d : { ...d, window: names[k]! };
}

/** What a Redis decision does when Redis cannot decide (option `onStoreError`). */
export interface StoreFallback {
  readonly choice: ResolvedRateOptions['onStoreError'];
  /** 'local': the decision on this instance's share (the hybrid provider's). */
  readonly local?: (key: string, rate: number, n: number) => RateDecision;
  /** 'local': learns the room Redis left for `key` after a decision there (the share it would decide on). */
  readonly observe?: (key: string, rate: number, room: number) => void;
  /** 'local', suppressed: learns the window's total and declined calls after a decision there. */
  readonly observeTotals?: (key: string, rate: number, total: number, declined: number) => void;
}

/** How long a 'fail-closed' rejection asks to wait, ms (Redis's return is not known). */
const STORE_ERROR_RETRY_MS = 1000;

/** The decision `fallback` makes for a Redis failure `err`; any other error is thrown. */
function onStoreError(err: unknown, fallback: StoreFallback, key: string, rate: number, n: number, windowSeconds: number): RateDecision {
  const storeFailure = err instanceof TallyworksError && (err.code === ErrorCode.REDIS_UNAVAILABLE || err.code === ErrorCode.REDIS_OUTCOME_UNKNOWN);
  if (!storeFailure || fallback.choice === 'throw') throw err;
  if (fallback.choice === 'fail-open') return ALLOWED;
  if (fallback.choice === 'local') return fallback.local!(key, rate, n);
  return { kind: 'rejected', allowed: false, windowSeconds, retryAfterMs: STORE_ERROR_RETRY_MS, remainingAfterWaiting: 0, storeError: err };
}

/** The absolute strategy in Redis: admitted while the window holds at most rate × windowSeconds, n included. */
export class RedisAbsolute {
  /** @internal decisions returned on this thread, by outcome (engine.metrics()) */
  readonly decisions = newTally();
  /** @internal */
  readonly sliding: RedisSliding;
  /** The window's length, seconds. */
  readonly windowSeconds: number;
  private readonly seconds: number[];

  /** @internal */
  constructor(
    ctx: RedisRateContext,
    options: Pick<ResolvedRateOptions, 'windows'>,
    private readonly fallback: StoreFallback = { choice: 'throw' },
  ) {
    this.sliding = new RedisSliding(ctx, redisLimiterId('a', options.windows), configOf(RateStrategy.ABSOLUTE, options.windows));
    this.windowSeconds = options.windows[0]!.windowSeconds;
    this.seconds = [this.windowSeconds];
  }

  async inc(key: string, rate: number, n = 1): Promise<RateDecision> {
    return (await this.incCounted(key, rate, n)).decision;
  }

  /**
   * @internal {@link inc}, with the window's count after an admitted decision as Redis answered it (the
   * HTTP policy's remaining quota; undefined when refused, or decided by a fallback).
   */
  async incCounted(key: string, rate: number, n = 1): Promise<{ readonly decision: RateDecision; readonly count: number | undefined }> {
    const r = await this.decideCounted(key, rate, n);
    tallied(this.decisions, r.decision);
    return r;
  }

  private async decideCounted(key: string, rate: number, n: number): Promise<{ readonly decision: RateDecision; readonly count: number | undefined }> {
    validateKey(key, 'key');
    checkRate(rate);
    if (n !== 1) checkIncrement(n);
    this.sliding.requireRedis();
    let r;
    try {
      r = await this.sliding.decide(key, [n, limitOf(rate, this.windowSeconds)]);
    } catch (err) {
      return { decision: onStoreError(err, this.fallback, key, rate, n, this.windowSeconds), count: undefined };
    }
    this.fallback.observe?.(key, rate, r[0] === 1 ? limitOf(rate, this.windowSeconds) - r[1]! : 0);
    return r[0] === 1 ? { decision: ALLOWED, count: r[1]! } : { decision: rejection(r, this.seconds), count: undefined };
  }
}

/** The suppressed strategy in Redis: the hard limit holds at once (the same call), not one cache period late. */
export class RedisSuppressed {
  /** @internal decisions returned on this thread, by outcome (engine.metrics()) */
  readonly decisions = newTally();
  /** @internal */
  readonly sliding: RedisSliding;
  /** The window's length, seconds. */
  readonly windowSeconds: number;

  /** @internal */
  constructor(
    ctx: RedisRateContext,
    private readonly options: Pick<ResolvedRateOptions, 'windows' | 'hardLimitFactor' | 'suppressionFactorCacheMs' | 'random'>,
    private readonly fallback: StoreFallback = { choice: 'throw' },
  ) {
    this.sliding = new RedisSliding(ctx, redisLimiterId('s', options.windows), configOf(RateStrategy.SUPPRESSED, options.windows));
    this.windowSeconds = options.windows[0]!.windowSeconds;
  }

  async inc(key: string, rate: number, n = 1): Promise<RateDecision> {
    return tallied(this.decisions, await this.decide(key, rate, n));
  }

  private async decide(key: string, rate: number, n: number): Promise<RateDecision> {
    validateKey(key, 'key');
    checkRate(rate);
    if (n !== 1) checkIncrement(n);
    const draw = drawFrom(this.options.random);
    const soft = limitOf(rate, this.windowSeconds);
    this.sliding.requireRedis();
    let r;
    try {
      r = await this.sliding.decide(key, [n, soft, soft * this.options.hardLimitFactor, this.options.suppressionFactorCacheMs, draw]);
    } catch (err) {
      // Locally, on this instance's share of the soft limit: admitted, or declined (the strategy's shapes).
      const d = onStoreError(err, this.fallback, key, rate, n, this.windowSeconds);
      return d.kind !== 'rejected' || d.storeError !== undefined ? d : { kind: 'suppressed', allowed: false, suppressionFactor: 1 };
    }
    this.fallback.observeTotals?.(key, rate, r[2]!, r[3]!);
    if (r[0] === RateOutcome.BELOW_SOFT) return ALLOWED;
    return { kind: 'suppressed', allowed: r[0] === RateOutcome.ADMITTED, suppressionFactor: r[1]! };
  }
}

/** Several named windows with fixed limits, in one Redis call per decision batch, all-or-nothing. */
export class RedisWindows {
  /** @internal decisions returned on this thread, by outcome (engine.metrics()) */
  readonly decisions = newTally();
  /** @internal */
  readonly sliding: RedisSliding;
  private readonly limits: number[];
  private readonly seconds: number[];

  /** @internal */
  constructor(
    ctx: RedisRateContext,
    windows: readonly ResolvedWindow[],
    private readonly names: readonly string[],
  ) {
    this.sliding = new RedisSliding(ctx, redisLimiterId('m', windows), configOf(RateStrategy.ABSOLUTE, windows));
    this.limits = windows.map((w) => w.limit);
    this.seconds = windows.map((w) => w.windowSeconds);
  }

  /** Counts `n` in every window if every window has room for it (in Redis, atomically); otherwise nothing. */
  async inc(key: string, n = 1): Promise<RateDecision> {
    validateKey(key, 'key');
    if (n !== 1) checkIncrement(n);
    const r = await this.sliding.decide(key, [n, ...this.limits]);
    return tallied(this.decisions, r[0] === 1 ? ALLOWED : rejection(r, this.seconds, this.names));
  }
}
