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
 * the instance decides on the share it holds, and refuses once it is spent.
 *
 * Over 350 lines because it is one algorithm whose parts share each key's state: the decision on a share,
 * the sync that commits and splits, the fallback while Redis is away, and what it reports of a key.
 */
import { newTally, tallied } from './tally.js';
import { closedError } from '../../common/errors.js';
import { RateStrategy } from '../../common/scripts.js';
import type { TimeSource } from '../clock/clock.js';
import { validateKey } from '../keys.js';
import { ALLOWED, type RateDecision, type Rejected } from './providers.js';
import { checkIncrement, checkRate, limitOf, type ResolvedRateOptions } from './rate-options.js';
import { type RedisRateContext, RedisSliding, redisLimiterId } from './redis-sliding.js';

/**
 * How often the live instance count is read again, ms: for this long after an instance joins, the others
 * still split by the old count (the bound holds while the count is current).
 */
const INSTANCES_EVERY_MS = 100;

/** What this instance knows of one key. */
interface HybridKey {
  readonly key: string;
  /** The limit of the last decision's rate. */
  limit: number;
  /** May admit this many until the next sync; `used` of them are spent. */
  share: number;
  used: number;
  /** Admitted and not committed yet; `sending` of them are in a commit in flight. */
  pending: number;
  sending: number;
  /** In this interval's list of keys to sync. */
  active: boolean;
  /**
   * From the last sync: the window's total (what the shares are split from), the room Redis reported
   * (refusals report it), and when one more fits (engine time, ms; 0: it fitted).
   */
  total: number;
  room: number;
  freeAt: number;
  lastUsed: number;
  /** When the share was granted (engine time): a share older than the window is renewed while syncs fail. */
  since: number;
  /** A sync (or a Redis decision) has told this instance the key's total. */
  synced: boolean;
}

export interface HybridContext {
  readonly time: TimeSource;
  readonly state: { readonly closed: boolean };
  readonly redis: RedisRateContext;
  /** The live instances sharing the prefix (1 without Redis). */
  instances(): Promise<number>;
}

export interface HybridStats {
  /** Syncs run, and those that failed (Redis away): their counts went with a later one. */
  readonly syncs: number;
  readonly failedSyncs: number;
  /** Admitted and not committed to Redis yet. */
  readonly pending: number;
  /** The live instance count the shares are split by (0 until it is first read, at start). */
  readonly instances: number;
}

/** The absolute strategy, hybrid: local decisions on a share of the limit, committed and refreshed in Redis. */
export class HybridAbsolute {
  /** @internal decisions returned on this thread with Redis, by outcome (without Redis they are the local provider's) */
  readonly decisions = newTally();
  /** @internal */
  readonly sliding: RedisSliding;
  private readonly keys = new Map<string, HybridKey>();
  private active: HybridKey[] = [];
  /** The window's length, seconds. */
  readonly windowSeconds: number;
  private readonly windowMs: number;
  /** It commits to the suppressed limiter's keys (their declined counts slide too). */
  private readonly suppressedKeys: boolean;
  private readonly hasRedis: boolean;
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private instanceCount = 1;
  private instancesAt = -Infinity;
  private nextSyncAt: number;
  private syncs = 0;
  private failedSyncs = 0;
  private lastRate = NaN;
  private lastLimit = 0;

  /** @internal `local`: what decides on an engine without Redis (this engine is the only instance). */
  constructor(
    private readonly ctx: HybridContext,
    private readonly options: Pick<ResolvedRateOptions, 'windows' | 'syncIntervalMs' | 'staleAfterMs'>,
    private readonly local: { inc(key: string, rate: number, n?: number): RateDecision; count(key: string): number; release(key: string, n?: number): number },
    /** Whose keys in Redis it commits to: the absolute limiter's (its own), or the suppressed one's (a fallback). */
    strategy: 'a' | 's' = 'a',
  ) {
    const w = options.windows[0]!;
    this.windowSeconds = w.windowSeconds;
    this.windowMs = w.windowMs;
    // The Redis provider's keys: the absolute limiter of the same window (the two share their counts).
    this.sliding = new RedisSliding(ctx.redis, redisLimiterId(strategy, options.windows), [RateStrategy.COMMIT, 1, w.windowMs, w.groupMs]);
    this.suppressedKeys = strategy === 's';
    this.nextSyncAt = ctx.time.now() + options.syncIntervalMs;
    this.hasRedis = ctx.redis.client !== undefined;
    // The count now (a decision soon after needs it); the sync timer once a key is used (decide, observe).
    if (this.hasRedis) void this.refreshInstances(ctx.time.now());
  }

  /** The sync timer: every rateLimiter() on a Redis engine has a hybrid; one nobody uses has no timer. */
  private startSyncing(): void {
    if (!this.stopped) this.timer = setInterval(() => void this.sync(), this.options.syncIntervalMs).unref();
  }

  private stopped = false;

  /** Reads the live instance count (until the first answer, a new key's share is 0: see decide). */
  private async refreshInstances(now: number): Promise<void> {
    this.instancesAt = now;
    try {
      this.instanceCount = Math.max(1, await this.ctx.instances());
      this.instancesKnown = true;
    } catch {
      // Redis away: the count stays as it was; a sync asks again INSTANCES_EVERY_MS later.
    }
  }

  private instancesKnown = false;

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
      this.keys.set(key, k);
      if (this.timer === undefined) this.startSyncing();
    } else if (k.limit !== limit) {
      // Another rate for the key: a share of the new limit's room, by the total the last sync read (up
      // for a higher limit, down for a lower one; what was used since the sync counts either way).
      k.room = Math.max(0, limit - k.total);
      if (k.synced) k.share = Math.ceil(k.room / this.instanceCount);
      k.limit = limit;
    }
    if (!k.active) {
      // Once per key and interval: it goes with the next sync, and it was used now.
      k.active = true;
      k.lastUsed = this.ctx.time.now();
      this.active.push(k);
    }
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

  /** @internal true while `key` waits for its first sync here (its refusals then are not the limit's) */
  awaitsFirstSync(key: string): boolean {
    const k = this.keys.get(key);
    return this.hasRedis && k !== undefined && !k.synced;
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

  /** True while the last sync failed (Redis away). */
  private failing = false;

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
      this.keys.set(key, k);
      if (this.timer === undefined) this.startSyncing();
    }
    if (k.pending > 0 || k.sending > 0) return; // deciding locally already: its own view is newer
    k.limit = limit;
    k.synced = true;
    k.total = limit - room;
    k.room = Math.max(0, room);
    k.share = Math.ceil(k.room / this.instanceCount);
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

  /**
   * One sync now (the timer runs one every syncIntervalMs): commits every pending count and reads the
   * totals of the keys used since the last one; a sync in flight is waited for.
   */
  sync(): Promise<void> {
    this.syncing ??= this.syncNow().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async syncNow(): Promise<void> {
    const now = this.ctx.time.now();
    this.nextSyncAt = now + this.options.syncIntervalMs;
    if (this.ctx.redis.client === undefined) {
      this.active.length = 0;
      return;
    }
    // A hybrid nobody decides on (every rateLimiter() with Redis has one) reads nothing from Redis.
    if (this.keys.size > 0 && (now - this.instancesAt >= INSTANCES_EVERY_MS || !this.instancesKnown)) await this.refreshInstances(now);
    const batch = this.active;
    this.active = [];
    if (batch.length === 0) return;
    this.syncs++;
    const n = this.instanceCount;
    const keys = new Array<string>(batch.length);
    const ops = new Array<number>(3 * batch.length);
    for (let i = 0; i < batch.length; i++) {
      const k = batch[i]!;
      k.active = false;
      k.sending = k.pending;
      k.pending = 0;
      keys[i] = k.key;
      ops[3 * i] = k.sending;
      ops[3 * i + 1] = k.limit;
      ops[3 * i + 2] = this.suppressedKeys ? 1 : 0;
    }
    let failed = false;
    const again = (k: HybridKey): void => {
      // Not committed: pending again, with the next sync. (A call whose reply was lost may have landed:
      // its counts are then sent again, an overcount of what Redis holds, never an undercount.)
      failed = true;
      k.pending += k.sending;
      k.sending = 0;
      if (!k.active) {
        k.active = true;
        this.active.push(k);
      }
    };
    try {
      const r = await this.sliding.decideMany(keys, ops, 3);
      const at = this.ctx.time.now();
      for (let i = 0; i < batch.length; i++) {
        const k = batch[i]!;
        const total = r[4 * i]!;
        if (Number.isNaN(total)) {
          again(k);
          continue;
        }
        const retry = r[4 * i + 1]!;
        k.freeAt = retry < 0 ? Infinity : at + retry;
        // Admitted since the commit left count against the new share.
        k.total = total;
        k.share = Math.ceil(Math.max(0, k.limit - total) / n);
        // The room now, or, with the window full, the room once the oldest groups have left.
        k.room = Math.max(0, r[4 * i + 2]!);
        k.used = k.pending;
        k.sending = 0;
        k.since = at;
        k.synced = true;
      }
    } catch {
      for (const k of batch) again(k); // Redis not ready: nothing was sent
    }
    if (failed) this.failedSyncs++;
    this.failing = failed;
    this.dropIdle(now);
  }

  /** Forgets keys with nothing pending that no decision used for staleAfterMs (a few per sync). */
  private dropIdle(now: number): void {
    let looked = 0;
    for (const [key, k] of this.keys) {
      if (++looked > 64) break;
      // Never before a window passed: its own admissions must have left Redis's window when it meets the key again.
      if (k.pending === 0 && k.sending === 0 && !k.active && now - k.lastUsed > Math.max(this.options.staleAfterMs, this.windowMs)) this.keys.delete(key);
      else {
        // Round robin: look at the next ones next time.
        this.keys.delete(key);
        this.keys.set(key, k);
      }
    }
  }

  stats(): HybridStats {
    let pending = 0;
    for (const k of this.keys.values()) pending += k.pending + k.sending;
    return { syncs: this.syncs, failedSyncs: this.failedSyncs, pending, instances: this.instancesKnown ? this.instanceCount : 0 };
  }

  /** @internal the engine commits what is pending (one last sync) when it closes */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.sync();
    if (this.active.length > 0) await this.syncNow(); // admitted while the last one was in flight
    await this.sliding.settle();
  }
}
