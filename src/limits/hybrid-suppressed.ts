/**
 * The hybrid provider of the suppressed strategy: `rateLimiter().hybrid.suppressed.inc(key, rate, n)`
 * decides synchronously on the calling thread, as the local suppressed provider does, on the window as the
 * last sync read it in Redis (total, declined, the last second's calls) plus the calls decided here since;
 * every `syncIntervalMs` it commits those calls (admitted and declined) to the suppressed Redis provider's
 * keys and reads the window back (./hybrid-sync.ts).
 *
 * FIX (as the absolute hybrid): the hard limit is split by the live instance count. After each sync an
 * instance may admit ⌈(hard − T) / N⌉ until its next one, T being the window's total it read and N the
 * live instances; a key not synced yet admits one call before its first sync. A window admits at most
 * hard + (N − 1) × ⌈hard / N⌉ + N while every sync succeeds. A spent share declines (suppressionFactor 1)
 * until the next sync, and such a call is not counted: it is this instance's refusal, not the strategy's
 * (calls the strategy declines, by the draw or the hard limit, count in the window as in every provider).
 *
 * Between syncs the suppression factor is computed here, by the strategy's formula on what this instance
 * knows (the others' calls since their last commit are not seen), and cached for suppressionFactorCacheMs.
 * When a commit fails (Redis away), the calls stay pending and go with the next sync; after a window
 * without one, the instance decides alone on a fresh window of its share.
 */
import { tallied } from './tally.js';
import { closedError } from '../../common/errors.js';
import { validateKey } from '../keys.js';
import { ALLOWED, type RateDecision, type Suppressed } from './providers.js';
import { checkIncrement, checkRate, drawFrom, limitOf, type ResolvedRateOptions } from './rate-options.js';
import { type HybridContext, type HybridStats, HybridSync, type SyncedKey } from './hybrid-sync.js';

/** What this instance knows of one key. */
interface SuppressedKey extends SyncedKey {
  /** The soft and hard limits of the last decision's rate. */
  soft: number;
  hard: number;
  /** Of the share, this many are spent. */
  used: number;
  /** Of `pending` and `sending`, the declined calls. */
  declinedPending: number;
  declinedSending: number;
  /** From the last sync: the window's total, its declined calls, the calls of its last second, and when. */
  total: number;
  declined: number;
  lastSecond: number;
  syncedAt: number;
  /** The suppression factor computed last, and until when it holds (engine time, ms). */
  sf: number;
  sfUntil: number;
}

/** A declined call when the share is spent or the hard limit is reached. */
const DECLINED: Suppressed = Object.freeze({ kind: 'suppressed', allowed: false, suppressionFactor: 1 });

/** What a limiter's suppressed options say (limiters of one window share one hybrid, each with its own). */
export type SuppressedOptions = Pick<ResolvedRateOptions, 'hardLimitFactor' | 'suppressionFactorCacheMs' | 'random'>;

/**
 * The suppressed strategy, hybrid: local decisions on a share of the hard limit, committed and refreshed in
 * Redis. One per engine and window (the keys in Redis are the window's): each limiter decides on it through
 * its own {@link HybridSuppressed}, with its own options.
 */
export class SuppressedShares extends HybridSync<SuppressedKey> {
  /** @internal */
  constructor(ctx: HybridContext, options: Pick<ResolvedRateOptions, 'windows' | 'syncIntervalMs' | 'staleAfterMs'>) {
    super(ctx, options, 's');
  }

  /** True with Redis (without it, each limiter's local provider decides). */
  get withRedis(): boolean {
    return this.hasRedis;
  }

  /** True once the engine closed. */
  get closed(): boolean {
    return this.ctx.state.closed;
  }

  /** The decision for `key` at `rate` (n included), by the options `o` of the limiter deciding. */
  decide(key: string, rate: number, n: number, o: SuppressedOptions): RateDecision {
    checkRate(rate);
    if (n !== 1) checkIncrement(n);
    const soft = limitOf(rate, this.windowSeconds);
    const hard = soft * o.hardLimitFactor;
    const now = this.ctx.time.now();
    let k = this.keys.get(key);
    if (k === undefined) {
      validateKey(key, 'key');
      // Not synced here yet: Redis may hold calls of it already. One may go before the first sync.
      const share = this.instancesKnown && hard >= 1 ? 1 : 0;
      k = { key, soft, hard, share, used: 0, pending: 0, sending: 0, declinedPending: 0, declinedSending: 0, active: false, total: 0, declined: 0, lastSecond: 0, syncedAt: -Infinity, sf: 0, sfUntil: -Infinity, lastUsed: 0, since: now, synced: false };
      this.remember(k);
    } else if (k.soft !== soft || k.hard !== hard) {
      // Another rate or factor: a share of the new hard limit's room, by the total the last sync read.
      k.soft = soft;
      k.hard = hard;
      k.sfUntil = -Infinity;
      if (k.synced) this.reshare(k);
    }
    this.touch(k);
    if (k.used + n > k.share && this.failing && this.instancesKnown && now - k.since >= this.windowMs) {
      // Redis away for longer than a window: a fresh window here alone, of this instance's share of the
      // hard limit (the calls kept pending are committed once a sync succeeds).
      k.share = Math.ceil(hard / this.instanceCount);
      k.used = 0;
      k.since = now;
      k.total = -(k.pending + k.sending); // the window as seen here starts now
      k.declined = -(k.declinedPending + k.declinedSending);
      k.lastSecond = 0;
    }
    const calls = k.pending + k.sending;
    const total = k.total + calls + n;
    if (total > hard) return this.counted(k, n, false, DECLINED); // the strategy's: counted, as everywhere
    // This instance's share spent: its own refusal until the next sync, not counted (counted, the calls it
    // must refuse would fill the window for every instance).
    if (k.used + n > k.share) return DECLINED;
    const accepted = total - k.declined - k.declinedPending - k.declinedSending;
    if (accepted <= soft) return this.counted(k, n, true, ALLOWED);
    if (now >= k.sfUntil) {
      // The last second as the sync saw it, while that is less than a second ago, and the calls since.
      const lastSecond = (now - k.syncedAt < 1000 ? k.lastSecond : 0) + calls + n;
      const perceived = Math.max(total / this.windowSeconds, lastSecond);
      k.sf = Math.min(1, Math.max(0, 1 - soft / this.windowSeconds / perceived));
      k.sfUntil = now + o.suppressionFactorCacheMs;
    }
    // Drawn only here, where the factor decides (the other ways are certain).
    const admitted = drawFrom(o.random) >= k.sf;
    return this.counted(k, n, admitted, { kind: 'suppressed', allowed: admitted, suppressionFactor: k.sf });
  }

  /** Calls counted for `key` in the window as this instance knows it (0 for a key not decided on here). */
  count(key: string): number {
    const k = this.keys.get(key);
    return k === undefined ? 0 : Math.max(0, k.total + k.pending + k.sending);
  }

  /**
   * What the Redis provider learnt of `key` in a decision at `rate` (the window's total and declined calls
   * after it): the share this instance decides on if Redis goes away (onStoreError 'local').
   */
  observe(key: string, rate: number, o: SuppressedOptions, total: number, declined: number): void {
    const soft = limitOf(rate, this.windowSeconds);
    const now = this.ctx.time.now();
    let k = this.keys.get(key);
    if (k === undefined) {
      k = { key, soft, hard: 0, share: 0, used: 0, pending: 0, sending: 0, declinedPending: 0, declinedSending: 0, active: false, total, declined, lastSecond: 0, syncedAt: -Infinity, sf: 0, sfUntil: -Infinity, lastUsed: now, since: now, synced: true };
      this.remember(k);
    }
    if (k.pending > 0 || k.sending > 0) return; // deciding locally already: its own view is newer
    k.soft = soft;
    k.hard = soft * o.hardLimitFactor;
    k.total = total;
    k.declined = declined;
    k.synced = true;
    k.used = 0;
    k.since = now;
    this.reshare(k);
  }

  /** Counts the call (admitted, or declined) in what goes with the next sync; returns `d`. */
  private counted(k: SuppressedKey, n: number, admitted: boolean, d: RateDecision): RateDecision {
    k.pending += n;
    if (admitted) k.used += n;
    else k.declinedPending += n;
    return d;
  }

  protected reshare(k: SuppressedKey): void {
    k.share = Math.ceil(Math.max(0, k.hard - k.total) / this.instanceCount);
  }

  protected doubted(k: SuppressedKey): void {
    // Counted in Redis once its commit is answered.
    k.total += k.sending;
    k.declined += k.declinedSending;
    k.declinedSending = 0;
  }

  protected commitLimit(k: SuppressedKey): number {
    return k.hard;
  }

  protected override declinedOf(k: SuppressedKey): number {
    return k.declinedSending;
  }

  protected override beginSend(k: SuppressedKey): void {
    super.beginSend(k);
    k.declinedSending = k.declinedPending;
    k.declinedPending = 0;
  }

  protected override resend(k: SuppressedKey): void {
    super.resend(k);
    k.declinedPending += k.declinedSending;
    k.declinedSending = 0;
  }

  protected learn(k: SuppressedKey, r: readonly number[], at: number, now: number): void {
    k.total = r[at]!;
    k.declined = r[at + 1]!;
    k.lastSecond = r[at + 2]!;
    k.syncedAt = now;
    k.declinedSending = 0;
    // Admitted since the commit left count against the new share.
    this.reshare(k);
    k.used = k.pending - k.declinedPending;
  }
}

/**
 * `rateLimiter().hybrid.suppressed`: a limiter's decisions on its window's {@link SuppressedShares}, with
 * its own hardLimitFactor, suppressionFactorCacheMs and random; without Redis, its local provider's.
 */
export class HybridSuppressed {
  /** The window's length, seconds. */
  readonly windowSeconds: number;

  /** @internal */
  constructor(
    /** @internal the engine's hybrid of this window, shared by its limiters */
    readonly shared: SuppressedShares,
    private readonly o: SuppressedOptions,
    private readonly local: { inc(key: string, rate: number, n?: number): RateDecision; count(key: string): number },
  ) {
    this.windowSeconds = shared.windowSeconds;
  }

  /** Decides at once (Allowed below the soft limit, else Suppressed); without Redis, the local provider's decision. */
  inc(key: string, rate: number, n = 1): RateDecision {
    if (!this.shared.withRedis) return this.local.inc(key, rate, n);
    if (this.shared.closed) throw closedError('rate limiter');
    return tallied(this.shared.decisions, this.shared.decide(key, rate, n, this.o));
  }

  /** @internal {@link inc} without the closed check: the Redis provider's fallback for a decision issued before close. */
  decide(key: string, rate: number, n = 1): RateDecision {
    return this.shared.decide(key, rate, n, this.o);
  }

  /** @internal see SuppressedShares.observe */
  observe(key: string, rate: number, total: number, declined: number): void {
    this.shared.observe(key, rate, this.o, total, declined);
  }

  /**
   * Calls counted for `key` in the window as this instance knows it: the total of the last sync and the
   * calls decided here since (0 for a key not decided on here). Without Redis, the local provider's count.
   */
  count(key: string): number {
    return this.shared.withRedis ? this.shared.count(key) : this.local.count(key);
  }

  /** One sync now (see the absolute hybrid's): commits what was decided and reads the windows back. */
  sync(): Promise<void> {
    return this.shared.sync();
  }

  stats(): HybridStats {
    return this.shared.stats();
  }

  /** @internal true while `key` waits for its first sync here (its refusals then are not the limit's) */
  awaitsFirstSync(key: string): boolean {
    return this.shared.awaitsFirstSync(key);
  }
}
