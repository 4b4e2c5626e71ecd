/**
 * An express-rate-limit 8 `Store` on Tallyworks: `rateLimit({ windowMs, limit, store: new TallyworksStore(engine) })`.
 * It counts in a sliding window of the engine (`engine.rateLimiter` records) instead of express-rate-limit's
 * fixed buckets, so no window end resets every client at once. As express-rate-limit's own stores do, it
 * counts every hit, refused ones too (express-rate-limit decides by `totalHits > limit`, and with
 * skipFailedRequests it decrements its own 429s). Any key is accepted (`:` in IPv6 addresses and
 * `user:123` included), mapped one to one onto limiter keys.
 */
import { argumentRangeError, argumentTypeError, ErrorCode, TallyworksError } from '../../common/errors.js';
import type { Engine } from '../engine.js';
import type { LocalAbsolute } from '../limits/providers.js';
import { requestKey } from './client-key.js';

/** What express-rate-limit passes to `init` (the members used). */
export interface StoreInitOptions {
  readonly windowMs: number;
}

/** A client's count and when its window frees up, as express-rate-limit reads it. */
export interface ClientRateLimitInfo {
  totalHits: number;
  resetTime: Date | undefined;
}

export interface TallyworksStoreOptions {
  /** Width of the sliding window's groups, ms (the window must be a whole number of them; default: the rate limiter's). */
  groupMs?: number;
  /** Put before every key (express-rate-limit's `prefix` convention; each store counts in records of its own anyway). */
  prefix?: string;
}

export class TallyworksStore {
  /** Counts are this process's own (express-rate-limit uses it to detect double counting). */
  readonly localKeys = true;
  readonly prefix: string;
  private limiter: LocalAbsolute | undefined;
  /** A rate no window reaches: every hit is counted (express-rate-limit compares the count with its limit). */
  private rate = 0;
  private windowMs = 0;

  constructor(
    private readonly engine: Engine,
    private readonly options: TallyworksStoreOptions = {},
  ) {
    if (typeof options !== 'object' || options === null) throw argumentTypeError('options', 'an object', options);
    if (options.prefix !== undefined && typeof options.prefix !== 'string') throw argumentTypeError('options.prefix', 'a string', options.prefix);
    this.prefix = options.prefix ?? '';
  }

  /**
   * Called by express-rate-limit with its options: the window (whole seconds). Its `limit`, a number or a
   * function of the request, is express-rate-limit's to compare: the store counts every hit.
   */
  init(options: StoreInitOptions): void {
    const { windowMs } = options;
    if (!(Number.isInteger(windowMs) && windowMs >= 1000 && windowMs % 1000 === 0)) throw argumentRangeError('windowMs', 'a whole number of seconds in ms (≥ 1000) for TallyworksStore', windowMs);
    const windowSeconds = windowMs / 1000;
    const rl = this.engine.rateLimiter({ windowSeconds, ...(this.options.groupMs === undefined ? {} : { groupMs: this.options.groupMs }) });
    this.limiter = rl.local.absolute;
    this.rate = 2 ** 52 / windowSeconds;
    this.windowMs = windowMs;
  }

  private ready(): LocalAbsolute {
    if (this.limiter === undefined) throw new TallyworksError(ErrorCode.INVALID_OPTION, 'TallyworksStore: init() was not called, or failed (see its error): pass the store to express-rate-limit with a windowMs in whole seconds');
    return this.limiter;
  }

  private keyOf(key: string): string {
    return requestKey(this.prefix + key);
  }

  /**
   * Counts a hit; returns the client's hits in the window now and when they have all left it (wall-clock
   * time: express-rate-limit reads resetTime against Date.now(), whatever clock the engine runs on).
   */
  increment(key: string): ClientRateLimitInfo {
    const limiter = this.ready();
    const k = this.keyOf(key);
    limiter.inc(k, this.rate);
    return { totalHits: limiter.count(k), resetTime: new Date(Date.now() + this.windowMs) };
  }

  /** Takes back one counted hit (express-rate-limit's skipSuccessfulRequests / skipFailedRequests). */
  decrement(key: string): void {
    this.ready().release(this.keyOf(key));
  }

  resetKey(key: string): void {
    this.ready().reset(this.keyOf(key));
  }

  get(key: string): ClientRateLimitInfo | undefined {
    const limiter = this.ready();
    const k = this.keyOf(key);
    const hits = limiter.count(k);
    return hits === 0 ? undefined : { totalHits: hits, resetTime: new Date(Date.now() + this.windowMs) };
  }
}
