/**
 * The hybrid provider of the sliding-window limiter: `rateLimiter().hybrid.absolute.inc(key, rate, n)`
 * decides synchronously on the calling thread from a share of the limit this instance holds per key, and
 * every `syncIntervalMs` it commits what it admitted to Redis (the same keys as the Redis provider, so the
 * two agree) and reads the window's total there.
 *
 * FIX (the seed lets every instance spend the whole remaining quota, so N instances admit N × remaining in
 * one interval): after each sync an instance may admit ⌈R / N⌉ until its next one, R being the room it
 * read (of the limit's whole part) and N the live instances of the registry (re-read every second). What
 * it cannot see is what the others admitted since their last commit, at most their shares; and a key it
 * has not synced yet admits one event before its first sync. A window admits at most
 * limit + (N − 1) × ⌈limit / N⌉ + N while every sync succeeds, against the seed's N × limit.
 *
 * When a commit fails (Redis away), the admitted counts stay pending and go with the next sync; meanwhile
 * the instance decides on the share it holds, and refuses once it is spent. A commit whose reply was lost
 * is sent again as it was until Redis answers it, and lands once (./redis-sliding.ts commitMany).
 *
 * The sync itself, the instance count and the keys' upkeep are ./hybrid-sync.ts's, shared with the
 * suppressed strategy (./hybrid-suppressed.ts).
 */
import { tallied } from './tally.js';
import { closedError } from '../../common/errors.js';
import { validateKey } from '../keys.js';
import { ALLOWED, type RateDecision, type Rejected } from './providers.js';
import { checkIncrement, checkRate, limitOf, type ResolvedRateOptions } from './rate-options.js';
import { type HybridContext, HybridSync, type SyncedKey } from './hybrid-sync.js';

export type { HybridContext, HybridStats } from './hybrid-sync.js';

/** What this instance knows of one key. */
interface HybridKey extends SyncedKey {
  /** The limit of the last decision's rate. */
  limit: number;
  /** Of the share, this many are spent. */
  used: number;
  /**
   * From the last sync: the window's total (what the shares are split from), the room Redis reported
   * (refusals report it), and when one more fits (engine time, ms; 0: it fitted).
   */
  total: number;
  room: number;
  freeAt: number;
}

/** The absolute strategy, hybrid: local decisions on a share of the limit, committed and refreshed in Redis. */
export class HybridAbsolute extends HybridSync<HybridKey> {
  private lastRate = NaN;
  private lastLimit = 0;

  /** @internal `local`: what decides on an engine without Redis (this engine is the only instance). */
  constructor(
    ctx: HybridContext,
    options: Pick<ResolvedRateOptions, 'windows' | 'syncIntervalMs' | 'staleAfterMs'>,
    private readonly local: { inc(key: string, rate: number, n?: number): RateDecision; count(key: string): number; release(key: string, n?: number): number },
  ) {
    super(ctx, options, 'a');
  }

  /**
   * Decides at once, on this instance's share of the key's limit (rate × windowSeconds, n included).
   * Without Redis it is the local provider's decision.
   */
  inc(key: string, rate: number, n = 1): RateDecision {
    if (!this.hasRedis) return this.local.inc(key, rate, n);
    if (this.ctx.state.closed) throw closedError('rate limiter');
    return tallied(this.decisions, this.decide(key, rate, n));
  }

  /** @internal {@link inc} without the closed check: the Redis provider's fallback for a decision issued before close. */
  decide(key: string, rate: number, n = 1): RateDecision {
    checkRate(rate);
    if (n !== 1) checkIncrement(n);
    if (rate !== this.lastRate) {
      // Events are whole: a limit of 1.5 admits 1.
      this.lastLimit = Math.floor(limitOf(rate, this.windowSeconds));
      this.lastRate = rate;
    }
    const limit = this.lastLimit;
    let k = this.keys.get(key);
    if (k === undefined) {
      validateKey(key, 'key');
      // A key this instance has not synced: Redis may hold counts of it already (other instances, an
      // earlier life of this one). One event may go before its first sync, the rest waits for it.
      const share = this.instancesKnown && limit >= 1 ? 1 : 0;
      k = { key, limit, share, used: 0, pending: 0, sending: 0, active: false, total: 0, room: limit, freeAt: 0, lastUsed: 0, since: this.ctx.time.now(), synced: false };
      this.remember(k);
    } else if (k.limit !== limit) {
      // Another rate for the key: a share of the new limit's room, by the total the last sync read (up
      // for a higher limit, down for a lower one; what was used since the sync counts either way).
      k.room = Math.max(0, limit - k.total);
      k.limit = limit;
      if (k.synced) this.reshare(k);
    }
    this.touch(k);
    if (k.used + n <= k.share) {
      k.used += n;
      k.pending += n;
      return ALLOWED;
    }
    const now = this.ctx.time.now();
    const most = Math.ceil(limit / this.instanceCount); // the largest share an instance holds
    if (this.failing && this.instancesKnown && now - k.since >= this.windowMs && n <= most) {
      // Redis away for longer than a window: a new window's share, decided here alone (a fixed window of
      // ⌈limit / N⌉ per instance until a sync succeeds; what it admits is committed then).
      k.share = most;
      k.used = n;
      k.pending += n;
      k.since = now;
      return ALLOWED;
    }
    return this.rejected(k, now, n > most);
  }

  /**
   * Takes back up to `n` events this instance admitted for `key` and has not committed to Redis yet (the
   * next sync then commits fewer); returns how many. Without Redis, the local provider's release.
   */
  release(key: string, n = 1): number {
    if (n !== 1) checkIncrement(n);
    if (!this.hasRedis) return this.local.release(key, n);
    const k = this.keys.get(key);
    if (k === undefined) return 0;
    const back = Math.min(n, k.pending, k.used);
    k.pending -= back;
    k.used -= back;
    return back;
  }

  /**
   * @internal The room left for `key` as this instance knows it: the limit less the window's total at the
   * last sync and what this instance admitted since (the HTTP policy's remaining quota; other instances'
   * events since the sync are not known here). The whole limit for a key not decided on.
   */
  remainingEstimate(key: string, rate: number): number {
    const limit = Math.floor(limitOf(rate, this.windowSeconds));
    if (!this.hasRedis) return Math.max(0, limit - this.local.count(key)); // the local provider decides
    const k = this.keys.get(key);
    if (k === undefined) return limit;
    return Math.max(0, limit - k.total - k.pending - k.sending);
  }

  /**
   * What the Redis provider learnt of `key` in a decision (the room left under the limit of `rate`): the
   * share this instance decides on if Redis goes away (onStoreError 'local').
   */
  observe(key: string, rate: number, room: number): void {
    const limit = Math.floor(limitOf(rate, this.windowSeconds));
    room = Math.floor(room);
    let k = this.keys.get(key);
    if (k === undefined) {
      k = { key, limit, share: 0, used: 0, pending: 0, sending: 0, active: false, total: limit - room, room, freeAt: 0, lastUsed: this.ctx.time.now(), since: this.ctx.time.now(), synced: true };
      this.remember(k);
    }
    if (k.pending > 0 || k.sending > 0) return; // deciding locally already: its own view is newer
    k.limit = limit;
    k.synced = true;
    k.total = limit - room;
    k.room = Math.max(0, room);
    this.reshare(k);
    k.used = 0;
    k.since = this.ctx.time.now();
  }

  /** `never`: n is larger than any share an instance holds (⌈limit / N⌉): the hybrid never admits it. */
  private rejected(k: HybridKey, now: number, never: boolean): Rejected {
    // When Redis said one more fits, or, with room in the window, the next sync (this instance's share
    // is spent); the room is what Redis reported.
    const retryAfterMs = never ? Infinity : Math.max(0, k.freeAt - now, this.nextSyncAt - now);
    return { kind: 'rejected', allowed: false, windowSeconds: this.windowSeconds, retryAfterMs, remainingAfterWaiting: never ? k.limit : Math.max(0, k.room) };
  }

  protected reshare(k: HybridKey): void {
    k.share = Math.ceil(Math.max(0, k.limit - k.total) / this.instanceCount);
  }

  protected doubted(k: HybridKey): void {
    k.total += k.sending; // counted in Redis once its commit is answered
  }

  protected commitLimit(k: HybridKey): number {
    return k.limit;
  }

  protected learn(k: HybridKey, r: readonly number[], at: number, now: number): void {
    const total = r[at]!;
    const retry = r[at + 1]!;
    k.freeAt = retry < 0 ? Infinity : now + retry;
    // Admitted since the commit left count against the new share.
    k.total = total;
    this.reshare(k);
    // The room now, or, with the window full, the room once the oldest groups have left.
    k.room = Math.max(0, r[at + 2]!);
    k.used = k.pending;
  }
}
