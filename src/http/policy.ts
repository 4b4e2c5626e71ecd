/**
 * The one interface the HTTP layer decides through: a policy checks (and counts) a request's key and says
 * what each of its quotas holds afterwards, which is what the RateLimit headers carry. `ratePolicy()` makes
 * one of any Tallyworks limiter; a limiter added later plugs in by implementing {@link RatePolicy}.
 */
import { argumentRangeError, argumentTypeError, ErrorCode, type ErrorCodeValue, TallyworksError } from '../../common/errors.js';
import { type Decision, LimitBuilder } from '../events/limiter.js';
import { HybridAbsolute } from '../limits/hybrid.js';
import { HybridSuppressed } from '../limits/hybrid-suppressed.js';
import { LocalAbsolute, LocalSuppressed, type RateDecision } from '../limits/providers.js';
import { RedisAbsolute } from '../limits/redis-providers.js';
import { RateLimits } from '../limits/rate-limiter.js';
import { checkRate, limitOf } from '../limits/rate-options.js';
import { prefixedKey } from './client-key.js';

/** Errors after which a calendar decision is asked again of the awaited terminal, which waits them out. */
const WAITABLE: ReadonlySet<ErrorCodeValue> = new Set([ErrorCode.NOT_READY, ErrorCode.SHARD_STALLED, ErrorCode.RECORD_BUSY]);

/** One quota of a policy after a check: the figures of one RateLimit policy item. */
export interface Quota {
  /** The policy item's name (draft-8 and later name each quota; a token or a string). */
  readonly name: string;
  /** Requests the quota allows in its window. */
  readonly limit: number;
  readonly windowSeconds: number;
  /** What is left of it after this request. */
  readonly remaining: number;
  /** Seconds until the quota frees up (a refused request: until it would fit). */
  readonly resetSeconds: number;
}

/** What a policy decided for one request. */
export interface PolicyOutcome {
  readonly allowed: boolean;
  /** Every quota the check evaluated (one header item each). */
  readonly quotas: readonly Quota[];
  /** Refused: seconds until a retry may pass (Retry-After). */
  readonly retryAfterSeconds?: number;
}

/** Checks and counts one request of `key`; refused requests count or not as the limiter defines. */
export interface RatePolicy {
  check(key: string): PolicyOutcome | Promise<PolicyOutcome>;
  /**
   * Optional: takes back the request an admitting `check` of `key` just counted, when a later policy of
   * the same check refused it (so a refusal does not use up the earlier policies' quotas).
   */
  undo?(key: string): void;
}

/** Options of {@link ratePolicy} for a limiter that takes a rate per call (the sliding-window providers). */
export interface RatePolicyOptions {
  /** Requests per second on average over the limiter's window (its quota is rate × windowSeconds). */
  rate?: number;
  /** The quota's name in the headers (default `"default"`). */
  name?: string;
  /**
   * Put before every key this policy decides on. In Redis (and so in the hybrid provider) the limiters of
   * one strategy and window share their keys: two routes limited by limiters of the same window need
   * distinct prefixes to count apart (e.g. `'login/'`). Default none.
   */
  keyPrefix?: string;
}

/** A limiter {@link ratePolicy} adapts. */
export type PolicyLimiter = LocalAbsolute | LocalSuppressed | HybridAbsolute | HybridSuppressed | RedisAbsolute | RateLimits | LimitBuilder;

const seconds = (ms: number): number => (Number.isFinite(ms) ? Math.max(0, Math.ceil(ms / 1000)) : 0);

function nameOf(options: RatePolicyOptions | undefined): string {
  const name = options?.name ?? 'default';
  if (typeof name !== 'string' || !/^[A-Za-z*][A-Za-z0-9_\-.:%*/]*$/.test(name)) {
    throw argumentTypeError('options.name', 'a token (a letter, then letters, digits or _-.:%*/), e.g. "per-minute"', name);
  }
  return name;
}

function rateOf(options: RatePolicyOptions | undefined): number {
  const rate = options?.rate;
  if (rate === undefined) throw argumentTypeError('options.rate', 'a number > 0 (requests per second over the window) for a sliding-window limiter', rate);
  checkRate(rate);
  return rate;
}

/**
 * A sliding window's outcome: admitted with `remaining` left, or refused by `d` (`remaining` then says
 * what is left, which for the hybrid provider need not be 0: this instance's share may be what ran out).
 */
function slidingOutcome(d: RateDecision, name: string, limit: number, windowSeconds: number, remaining: () => number): PolicyOutcome {
  if (d.kind === 'rejected') {
    const retry = Number.isFinite(d.retryAfterMs) ? seconds(d.retryAfterMs) : windowSeconds;
    return { allowed: false, quotas: [{ name, limit, windowSeconds, remaining: Math.max(0, Math.floor(remaining())), resetSeconds: retry }], retryAfterSeconds: retry };
  }
  if (!d.allowed) {
    // Suppressed and declined: the soft limit is passed; a retry may pass at once, with probability.
    return { allowed: false, quotas: [{ name, limit, windowSeconds, remaining: 0, resetSeconds: windowSeconds }], retryAfterSeconds: 1 };
  }
  // In a sliding window, what is counted now has all left once a whole window has passed.
  return { allowed: true, quotas: [{ name, limit, windowSeconds, remaining: Math.max(0, Math.floor(remaining())), resetSeconds: windowSeconds }] };
}

/**
 * The policy of a Tallyworks limiter:
 * - `limiter.local.absolute`, `.local.suppressed`, `.hybrid.absolute`, `.hybrid.suppressed`, `.redis.absolute` with `{ rate }`:
 *   one quota of rate × windowSeconds (suppressed: the soft limit; a declined request is a 429);
 * - `engine.rateLimits({ windows })`: every window, checked all-or-nothing, one named quota each;
 * - a calendar limiter (`events.limit().atMost(n, unit)`…): decided by `checkAndRecordSync`, its first
 *   `atMost` constraint reported as the quota (a refusal of any constraint is a 429).
 */
export function ratePolicy(limiter: PolicyLimiter, options?: RatePolicyOptions): RatePolicy {
  const prefix = options?.keyPrefix ?? '';
  if (typeof prefix !== 'string') throw argumentTypeError('options.keyPrefix', 'a string', prefix);
  const policy = adapt(limiter, options);
  if (prefix === '') return policy;
  const undo = policy.undo;
  return { check: (key) => policy.check(prefixedKey(prefix, key)), ...(undo === undefined ? {} : { undo: (key: string) => undo(prefixedKey(prefix, key)) }) };
}

function adapt(limiter: PolicyLimiter, options: RatePolicyOptions | undefined): RatePolicy {
  if (limiter instanceof LocalAbsolute || limiter instanceof LocalSuppressed || limiter instanceof HybridAbsolute || limiter instanceof HybridSuppressed) {
    const rate = rateOf(options);
    const name = nameOf(options);
    const windowSeconds = limiter.windowSeconds;
    const limit = limitOf(rate, windowSeconds);
    if (limiter instanceof HybridAbsolute || limiter instanceof HybridSuppressed) {
      const remaining = limiter instanceof HybridAbsolute ? (key: string) => limiter.remainingEstimate(key, rate) : (key: string) => limit - limiter.count(key);
      const outcome = (key: string, d: RateDecision): PolicyOutcome => slidingOutcome(d, name, Math.floor(limit), windowSeconds, () => remaining(key));
      const policy: RatePolicy = {
        check: (key) => {
          const d = limiter.inc(key, rate);
          // A key this instance has not synced yet admits one request, then waits for its first sync (at
          // most syncIntervalMs): the request waits for it too instead of being refused.
          if (d.allowed || !limiter.awaitsFirstSync(key)) return outcome(key, d);
          // (A sync already running may have started before the key came: then the next one.)
          return limiter
            .sync()
            .then(() => (limiter.awaitsFirstSync(key) ? limiter.sync() : undefined))
            .then(() => outcome(key, limiter.inc(key, rate)));
        },
      };
      // The suppressed strategy counts every call, admitted or not: nothing to take back.
      return limiter instanceof HybridAbsolute ? { ...policy, undo: (key) => void limiter.release(key) } : policy;
    }
    // The absolute strategy: the count its decision left (read right after it, on this thread).
    const remaining = limiter instanceof LocalAbsolute ? () => limit - limiter.lastCount() : (key: string) => limit - limiter.count(key);
    const check = (key: string): PolicyOutcome => slidingOutcome(limiter.inc(key, rate), name, limit, windowSeconds, () => remaining(key));
    // The suppressed strategy counts every call, admitted or not: nothing to take back.
    return limiter instanceof LocalAbsolute ? { check, undo: (key) => void limiter.release(key) } : { check };
  }
  if (limiter instanceof RedisAbsolute) {
    const rate = rateOf(options);
    const name = nameOf(options);
    const windowSeconds = limiter.windowSeconds;
    const limit = limitOf(rate, windowSeconds);
    return {
      check: async (key) => {
        const r = await limiter.incCounted(key, rate);
        return slidingOutcome(r.decision, name, limit, windowSeconds, () => (r.count === undefined ? 0 : limit - r.count));
      },
    };
  }
  if (limiter instanceof RateLimits) {
    if (options?.rate !== undefined) throw argumentRangeError('options.rate', 'not given for rateLimits (each window has its limit)', options.rate);
    const windows = limiter.windowLimits;
    const index = new Map(windows.map((w, k) => [w.name, k]));
    for (const w of windows) nameOf({ name: w.name });
    return {
      check: (key) => {
        const d = limiter.inc(key);
        const quotas = windows.map((w): Quota => {
          if (d.kind === 'rejected' && d.window === w.name) return { name: w.name, limit: w.limit, windowSeconds: w.windowSeconds, remaining: 0, resetSeconds: seconds(d.retryAfterMs) };
          return { name: w.name, limit: w.limit, windowSeconds: w.windowSeconds, remaining: Math.max(0, w.limit - limiter.lastCount(index.get(w.name)!)), resetSeconds: w.windowSeconds };
        });
        if (d.kind !== 'rejected') return { allowed: true, quotas };
        const retry = Number.isFinite(d.retryAfterMs) ? seconds(d.retryAfterMs) : d.windowSeconds;
        return { allowed: false, quotas, retryAfterSeconds: retry };
      },
      undo: (key) => void limiter.release(key),
    };
  }
  if (limiter instanceof LimitBuilder) {
    if (options?.rate !== undefined) throw argumentRangeError('options.rate', 'not given for a calendar limiter (its atMost constraints hold the limits)', options.rate);
    const name = nameOf(options);
    if (!limiter.hasAtMost) throw argumentTypeError('limiter', 'a calendar limiter with an atMost constraint (its quota)', limiter);
    const outcome = (key: string, d: Decision): PolicyOutcome => {
      const q = limiter.quotaSync(key);
      const windowSeconds = seconds(q.windowMs);
      if (d.allowed) return { allowed: true, quotas: [{ name, limit: q.limit, windowSeconds, remaining: q.remaining, resetSeconds: seconds(q.resetMs) }] };
      const retry = d.retryAfterMs === undefined ? seconds(q.resetMs) : seconds(d.retryAfterMs);
      return { allowed: false, quotas: [{ name, limit: q.limit, windowSeconds, remaining: 0, resetSeconds: retry }], retryAfterSeconds: retry };
    };
    return {
      check: (key) => {
        let d: Decision;
        try {
          d = limiter.checkAndRecordSync(key);
        } catch (err) {
          // The store reloading (from its storage, or a compaction) or a shard catching up: the awaited
          // terminal waits for it, as the events API does.
          if (!(err instanceof TallyworksError && WAITABLE.has(err.code))) throw err;
          return limiter.checkAndRecord(key).then((awaited) => outcome(key, awaited));
        }
        return outcome(key, d);
      },
    };
  }
  throw argumentTypeError('limiter', 'a Tallyworks limiter (a rateLimiter provider, rateLimits, or events.limit()…)', limiter);
}
