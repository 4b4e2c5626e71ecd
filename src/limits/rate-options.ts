/**
 * Options of the sliding-window rate limiters (trypema's names and defaults; see docs in README):
 * `engine.rateLimiter(options)` (one window, a rate per call) and `engine.rateLimits(options)` (several
 * named windows with fixed limits, decided all-or-nothing).
 */
import { argumentRangeError, argumentTypeError, ErrorCode, TallyworksError } from '../../common/errors.js';
import { MAX_GROUPS } from '../../common/records/sliding.js';

export interface RateLimiterOptions {
  /** The limiter's name in engine.metrics() (default `rate-limiter-<n>`, n counting the engine's limiters from 1). */
  name?: string;
  /** Window length, whole seconds ≥ 1 (default 10). */
  windowSeconds?: number;
  /**
   * Width of one accounting group, ms: the window must be a whole number of groups, at most 4096. Default
   * 100 up to a 60 s window, then windowSeconds × 10 (100 groups).
   */
  groupMs?: number;
  /** Suppressed strategy: the hard limit is rate × windowSeconds × hardLimitFactor (≥ 1, default 1). */
  hardLimitFactor?: number;
  /** Suppressed strategy: how long a key's suppression factor is reused, ms (default 100). */
  suppressionFactorCacheMs?: number;
  /**
   * Keys no decision touched for this long are dropped and their memory reused, ms (default 600000). A key
   * dropped while events of it are still inside its window starts again from 0.
   */
  staleAfterMs?: number;
  /** How often the cleanup looks for stale keys, ms (default 30000). */
  cleanupIntervalMs?: number;
  /** The longest a decision waits for another thread holding the key's record, ms (default 100). */
  lockTimeoutMs?: number;
  /** Hybrid provider: how often an instance commits what it admitted and reads the total in Redis, ms (default 10). */
  syncIntervalMs?: number;
  /**
   * Redis provider, when Redis cannot decide (unreachable, or a reply lost): 'throw' (default: the
   * Promise rejects with TW_REDIS_UNAVAILABLE or TW_REDIS_OUTCOME_UNKNOWN), 'fail-closed' (a rejection
   * with `storeError`), 'fail-open' (admitted, counted nowhere), or 'local' (decided here on this
   * instance's share of the limit, as the hybrid provider does, and committed to Redis once it is back).
   */
  onStoreError?: 'throw' | 'fail-closed' | 'fail-open' | 'local';
  /**
   * Suppressed strategy: a source of uniform numbers in [0, 1) (default Math.random; tests pass their own).
   * A linked worker thread uses Math.random (a function cannot cross threads).
   */
  random?: () => number;
}

export interface NamedWindow {
  /** At most this many events in the window (a number ≥ 0). */
  limit: number;
  windowSeconds: number;
  groupMs?: number;
}

export interface RateLimitsOptions {
  /** The limiter's name in engine.metrics() (default `rate-limits-<n>`). */
  name?: string;
  /** The windows, by name, e.g. `{ perSecond: { limit: 10, windowSeconds: 1 }, perHour: { limit: 1000, windowSeconds: 3600, groupMs: 60000 } }`. */
  windows: Record<string, NamedWindow>;
  staleAfterMs?: number;
  cleanupIntervalMs?: number;
  lockTimeoutMs?: number;
}

export interface ResolvedWindow {
  readonly name: string;
  readonly limit: number;
  readonly windowSeconds: number;
  readonly windowMs: number;
  readonly groupMs: number;
}

export interface ResolvedRateOptions {
  readonly name: string | undefined;
  readonly windows: readonly ResolvedWindow[];
  readonly hardLimitFactor: number;
  readonly suppressionFactorCacheMs: number;
  readonly staleAfterMs: number;
  readonly cleanupIntervalMs: number;
  readonly lockTimeoutMs: number;
  readonly syncIntervalMs: number;
  readonly onStoreError: 'throw' | 'fail-closed' | 'fail-open' | 'local';
  readonly random: () => number;
}

const MAX_MS = 2 ** 31 - 1;

function objectOf(value: unknown, name: string, known: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw argumentTypeError(name, 'an object', value);
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!known.includes(key)) throw argumentTypeError(`${name}.${key}`, `one of the known options (${known.join(', ')})`, o[key]);
  }
  return o;
}

function numberIn(o: Record<string, unknown>, name: string, path: string, rule: string, ok: (v: number) => boolean, fallback: number | undefined): number {
  const value = Object.hasOwn(o, name) ? o[name] : undefined;
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number') throw argumentTypeError(`${path}.${name}`, rule, value);
  if (!ok(value)) throw argumentRangeError(`${path}.${name}`, rule, value);
  return value;
}

const integerFrom = (min: number, max: number) => ({ rule: `an integer from ${min} to ${max}`, ok: (v: number) => Number.isInteger(v) && v >= min && v <= max });
const ANY_MS = integerFrom(1, MAX_MS);
const LOCK_MS = integerFrom(1, 60_000);

function window(o: Record<string, unknown>, path: string, name: string, limit: number): ResolvedWindow {
  const seconds = integerFrom(1, 366 * 86_400);
  const windowSeconds = numberIn(o, 'windowSeconds', path, seconds.rule, seconds.ok, 10);
  const windowMs = windowSeconds * 1000;
  const groupRule = `an integer number of ms ≥ 1 that divides the window (${windowMs} ms) into at most ${MAX_GROUPS} groups`;
  // The default: trypema's 100 ms up to a minute's window (600 groups), then 100 groups of windowMs / 100.
  const fallback = windowSeconds <= 60 ? 100 : windowSeconds * 10;
  const groupMs = numberIn(o, 'groupMs', path, groupRule, (v) => Number.isInteger(v) && v >= 1 && windowMs % v === 0 && windowMs / v <= MAX_GROUPS, fallback);
  return { name, limit, windowSeconds, windowMs, groupMs };
}

function common(o: Record<string, unknown>, path: string): Pick<ResolvedRateOptions, 'staleAfterMs' | 'cleanupIntervalMs' | 'lockTimeoutMs'> {
  return {
    staleAfterMs: numberIn(o, 'staleAfterMs', path, ANY_MS.rule, ANY_MS.ok, 600_000),
    cleanupIntervalMs: numberIn(o, 'cleanupIntervalMs', path, ANY_MS.rule, ANY_MS.ok, 30_000),
    lockTimeoutMs: numberIn(o, 'lockTimeoutMs', path, LOCK_MS.rule, LOCK_MS.ok, 100),
  };
}

/** Validates `engine.rateLimiter(options)`; a bad option is a typed error naming it. */
export function resolveRateLimiterOptions(options: unknown = {}): ResolvedRateOptions {
  const path = 'options';
  const o = objectOf(options, path, ['name', 'windowSeconds', 'groupMs', 'hardLimitFactor', 'suppressionFactorCacheMs', 'staleAfterMs', 'cleanupIntervalMs', 'lockTimeoutMs', 'syncIntervalMs', 'onStoreError', 'random']);
  const random = Object.hasOwn(o, 'random') && o.random !== undefined ? o.random : Math.random;
  if (typeof random !== 'function') throw argumentTypeError('options.random', 'a function returning a number in [0, 1)', random);
  return {
    name: nameOf(o),
    windows: [window(o, path, 'window', NaN)],
    hardLimitFactor: numberIn(o, 'hardLimitFactor', path, 'a finite number ≥ 1', (v) => Number.isFinite(v) && v >= 1, 1),
    suppressionFactorCacheMs: numberIn(o, 'suppressionFactorCacheMs', path, ANY_MS.rule, ANY_MS.ok, 100),
    syncIntervalMs: numberIn(o, 'syncIntervalMs', path, integerFrom(1, 60_000).rule, integerFrom(1, 60_000).ok, 10),
    onStoreError: storeErrorChoice(o.onStoreError),
    ...common(o, path),
    random: random as () => number,
  };
}

/** Validates `engine.rateLimits(options)`. */
export function resolveRateLimitsOptions(options: unknown): ResolvedRateOptions {
  const o = objectOf(options, 'options', ['name', 'windows', 'staleAfterMs', 'cleanupIntervalMs', 'lockTimeoutMs']);
  const windowsOption = Object.hasOwn(o, 'windows') ? o.windows : undefined;
  const named = objectOf(windowsOption, 'options.windows', Object.keys((windowsOption as object | null) ?? {}));
  const names = Object.keys(named);
  if (names.length === 0 || names.length > 16) throw argumentRangeError('options.windows', 'from 1 to 16 named windows', windowsOption);
  const windows = names.map((name) => {
    const path = `options.windows.${name}`;
    const w = objectOf(named[name], path, ['limit', 'windowSeconds', 'groupMs']);
    if (!Object.hasOwn(w, 'windowSeconds')) throw argumentTypeError(`${path}.windowSeconds`, 'an integer from 1 to 31622400', undefined);
    const limit = numberIn(w, 'limit', path, 'a finite number ≥ 0', (v) => Number.isFinite(v) && v >= 0, undefined);
    return window(w, path, name, limit);
  });
  return { name: nameOf(o), windows, hardLimitFactor: 1, suppressionFactorCacheMs: 100, syncIntervalMs: 10, onStoreError: 'throw', ...common(o, 'options'), random: Math.random };
}

function nameOf(o: Record<string, unknown>): string | undefined {
  const name = o.name;
  if (name === undefined) return undefined;
  if (typeof name !== 'string' || name.length === 0 || name.length > 128) throw argumentTypeError('options.name', 'a string of 1 to 128 characters', name);
  return name;
}

const STORE_ERROR_CHOICES = ['throw', 'fail-closed', 'fail-open', 'local'] as const;

function storeErrorChoice(value: unknown): ResolvedRateOptions['onStoreError'] {
  if (value === undefined) return 'throw';
  if (typeof value !== 'string') throw argumentTypeError('options.onStoreError', `one of ${STORE_ERROR_CHOICES.map((c) => `'${c}'`).join(', ')}`, value);
  if (!(STORE_ERROR_CHOICES as readonly string[]).includes(value)) throw argumentRangeError('options.onStoreError', `one of ${STORE_ERROR_CHOICES.map((c) => `'${c}'`).join(', ')}`, value);
  return value as ResolvedRateOptions['onStoreError'];
}

/** Throws unless `rate` is events per second a limiter can take: a finite number > 0. */
export function checkRate(rate: unknown): void {
  if (!(typeof rate === 'number' && rate > 0 && rate < Infinity)) {
    if (typeof rate !== 'number') throw argumentTypeError('rate', 'a finite number of events per second > 0', rate);
    throw argumentRangeError('rate', 'a finite number of events per second > 0', rate);
  }
}

/** Throws unless `n` is an increment a limiter can take: a safe integer ≥ 1. */
export function checkIncrement(n: unknown): void {
  if (!(typeof n === 'number' && Number.isSafeInteger(n) && n >= 1)) {
    if (typeof n !== 'number') throw argumentTypeError('n', 'a safe integer ≥ 1', n);
    throw argumentRangeError('n', 'a safe integer ≥ 1', n);
  }
}

/**
 * rate × windowSeconds, the window's limit; snapped to the integer it misses by a rounding error
 * (250 / 3600 × 3600 is 250.00000000000003), so a rate given as limit / window means that limit exactly.
 */
export function limitOf(rate: number, windowSeconds: number): number {
  const limit = rate * windowSeconds;
  const whole = Math.round(limit);
  return Math.abs(limit - whole) <= 1e-9 * Math.max(1, whole) ? whole : limit;
}

/** A draw of `random` for a suppressed decision (option `random`), checked to be in [0, 1). */
export function drawFrom(random: () => number): number {
  const draw = random();
  if (!(draw >= 0 && draw < 1)) throw new TallyworksError(ErrorCode.INVALID_OPTION, `options.random returned ${String(draw)}, not a number in [0, 1); nothing was decided`);
  return draw;
}
