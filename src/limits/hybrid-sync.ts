/**
 * What both hybrid providers (./hybrid.ts absolute, ./hybrid-suppressed.ts suppressed) share: the keys
 * this instance decided on, the live instance count their shares are split by, and the sync that every
 * `syncIntervalMs` commits what was decided here to Redis (the Redis provider's keys, so the providers
 * agree) and reads each key's window back. A strategy says what a key commits and what it learns.
 */
import { newTally } from './tally.js';
import { RateStrategy } from '../../common/scripts.js';
import type { TimeSource } from '../clock/clock.js';
import type { ResolvedRateOptions } from './rate-options.js';
import { COMMIT_STRIDE, Committed, type RedisRateContext, RedisSliding, redisLimiterId } from './redis-sliding.js';

/**
 * How often the live instance count is read again, ms: for this long after an instance joins, the others
 * still split by the old count (the bound holds while the count is current).
 */
const INSTANCES_EVERY_MS = 100;

/** How long close() keeps syncing what is left while Redis answers but has not taken it all, ms. */
const CLOSE_WAIT_MS = 5000;

/** Values per key in a commit's reply (rl.lua). */
const REPLY_STRIDE = 4;

/** What a hybrid knows of one key, whatever its strategy. */
export interface SyncedKey {
  readonly key: string;
  /** Calls counted here and not committed yet; `sending` of them are in a commit in flight. */
  pending: number;
  sending: number;
  /** May admit this many until the next sync (of the room the last one read). */
  share: number;
  /** In this interval's list of keys to sync. */
  active: boolean;
  lastUsed: number;
  /** When the share was granted (engine time): a share older than the window is renewed while syncs fail. */
  since: number;
  /** A sync (or a Redis decision) has told this instance the key's window. */
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
  /** Calls decided here and not committed to Redis yet (those of a commit whose reply was lost included, until Redis answers it). */
  readonly pending: number;
  /** The live instance count the shares are split by (0 until it is first read, at start). */
  readonly instances: number;
}

export abstract class HybridSync<K extends SyncedKey> {
  /** @internal decisions returned on this thread with Redis, by outcome (without Redis they are the local provider's) */
  readonly decisions = newTally();
  /** @internal */
  readonly sliding: RedisSliding;
  /** The window's length, seconds. */
  readonly windowSeconds: number;
  protected readonly windowMs: number;
  protected readonly keys = new Map<string, K>();
  protected readonly hasRedis: boolean;
  protected instanceCount = 1;
  protected instancesKnown = false;
  /** True while the last sync failed (Redis away). */
  protected failing = false;
  protected nextSyncAt: number;
  private active: K[] = [];
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private instancesAt = -Infinity;
  private syncs = 0;
  private failedSyncs = 0;
  private stopped = false;

  /** rl.lua COMMIT's `keys`: 0 the absolute limiter's, 1 the suppressed one's (its declined counts slide too). */
  private readonly keysKind: 0 | 1;

  /** `strategy`: whose keys in Redis it commits to, the absolute limiter's or the suppressed one's. */
  constructor(
    protected readonly ctx: HybridContext,
    protected readonly options: Pick<ResolvedRateOptions, 'windows' | 'syncIntervalMs' | 'staleAfterMs'>,
    strategy: 'a' | 's',
  ) {
    this.keysKind = strategy === 'a' ? 0 : 1;
    const w = options.windows[0]!;
    this.windowSeconds = w.windowSeconds;
    this.windowMs = w.windowMs;
    // The Redis provider's keys of the same window (the two share their counts).
    this.sliding = new RedisSliding(ctx.redis, redisLimiterId(strategy, options.windows), [RateStrategy.COMMIT, 1, w.windowMs, w.groupMs]);
    this.nextSyncAt = ctx.time.now() + options.syncIntervalMs;
    this.hasRedis = ctx.redis.client !== undefined;
    // The count now (a decision soon after needs it); the sync timer once a key is used.
    if (this.hasRedis) void this.refreshInstances(ctx.time.now());
  }

  /** The limit a commit of `k` reports its room under (rl.lua). */
  protected abstract commitLimit(k: K): number;
  /** How many of `k`'s `sending` calls were declined (the suppressed strategy's). */
  protected declinedOf(_k: K): number {
    return 0;
  }
  /** What the reply of a commit (values r[at …]) tells of `k`, at engine time `now`. */
  protected abstract learn(k: K, r: readonly number[], at: number, now: number): void;

  /** Moves `k`'s pending calls into the commit about to go (a strategy moves what else it keeps pending). */
  protected beginSend(k: K): void {
    k.sending = k.pending;
    k.pending = 0;
  }

  /** Not committed: `k`'s calls in the failed commit are pending again. */
  protected resend(k: K): void {
    k.pending += k.sending;
    k.sending = 0;
  }

  /**
   * `k`'s commit lost its reply: the sliding sends it again until Redis answers (exactly once), so its
   * calls are no longer this key's to send; a strategy counts them in its view of the window meanwhile.
   */
  protected abstract doubted(k: K): void;

  /** `k`'s share of the room its last sync read, split by the live instance count now. */
  protected abstract reshare(k: K): void;

  /** A key new to this instance, kept from now on (the sync timer starts with the first). */
  protected remember(k: K): void {
    this.keys.set(k.key, k);
    if (this.timer === undefined && !this.stopped) this.timer = setInterval(() => void this.sync(), this.options.syncIntervalMs).unref();
  }

  /** `k` was decided on now: it goes with the next sync (listed once per interval). */
  protected touch(k: K): void {
    if (k.active) return;
    k.active = true;
    k.lastUsed = this.ctx.time.now();
    this.active.push(k);
  }

  /** @internal true while `key` waits for its first sync here (its refusals then are not the limit's) */
  awaitsFirstSync(key: string): boolean {
    const k = this.keys.get(key);
    return this.hasRedis && k !== undefined && !k.synced;
  }

  /** Reads the live instance count (until the first answer, a new key's share is 0: see the strategies). */
  private async refreshInstances(now: number): Promise<void> {
    this.instancesAt = now;
    try {
      const count = Math.max(1, await this.ctx.instances());
      const changed = count !== this.instanceCount;
      this.instanceCount = count;
      this.instancesKnown = true;
      // Every key's share shrinks to its part of a larger count now (found by a probe: a key idle since an
      // instance joined kept the share of the old count until its next use, past the bound); a share grows
      // only with its key's next sync (grown from the total an idle key's last sync read, it went past the
      // bound once instances left).
      if (changed) {
        for (const k of this.keys.values()) {
          if (!k.synced) continue;
          const share = k.share;
          this.reshare(k);
          if (k.share > share) k.share = share;
        }
      }
    } catch {
      // Redis away: the count stays as it was; a sync asks again INSTANCES_EVERY_MS later.
    }
  }

  /**
   * One sync now (the timer runs one every syncIntervalMs): commits every pending count and reads the
   * windows of the keys used since the last one; a sync in flight is waited for.
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
    if (batch.length === 0) {
      // Nothing new: a commit whose reply was lost is still sent again.
      if (this.sliding.inDoubt > 0) await this.sliding.commitMany([], []).catch(() => undefined);
      return;
    }
    this.syncs++;
    const keys = new Array<string>(batch.length);
    const ops = new Array<number>(COMMIT_STRIDE * batch.length);
    for (let i = 0; i < batch.length; i++) {
      const k = batch[i]!;
      k.active = false;
      this.beginSend(k);
      keys[i] = k.key;
      ops[COMMIT_STRIDE * i] = k.sending;
      ops[COMMIT_STRIDE * i + 1] = this.commitLimit(k);
      ops[COMMIT_STRIDE * i + 2] = this.keysKind;
      ops[COMMIT_STRIDE * i + 3] = this.declinedOf(k);
    }
    let failed = false;
    const again = (k: K): void => {
      // Not sent: pending again, with the next sync.
      failed = true;
      this.resend(k);
      if (!k.active) {
        k.active = true;
        this.active.push(k);
      }
    };
    try {
      const { results: r, status } = await this.sliding.commitMany(keys, ops);
      const at = this.ctx.time.now();
      for (let i = 0; i < batch.length; i++) {
        const k = batch[i]!;
        if (status[i] === Committed.NOT_SENT) {
          again(k);
          continue;
        }
        if (status[i] === Committed.IN_DOUBT) {
          failed = true;
          this.doubted(k);
          k.sending = 0;
          continue;
        }
        this.learn(k, r, REPLY_STRIDE * i, at);
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
      // Never before a window passed: its own calls must have left Redis's window when it meets the key again.
      if (k.pending === 0 && k.sending === 0 && !k.active && now - k.lastUsed > Math.max(this.options.staleAfterMs, this.windowMs)) this.keys.delete(key);
      else {
        // Round robin: look at the next ones next time.
        this.keys.delete(key);
        this.keys.set(key, k);
      }
    }
  }

  stats(): HybridStats {
    let pending = this.sliding.inDoubt;
    for (const k of this.keys.values()) pending += k.pending + k.sending;
    return { syncs: this.syncs, failedSyncs: this.failedSyncs, pending, instances: this.instancesKnown ? this.instanceCount : 0 };
  }

  /** @internal the engine commits what is pending (one last sync) when it closes */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.sync();
    // Decided while the last one was in flight, or held back behind a commit in doubt (found by a probe:
    // they were dropped once that commit was answered): syncs go on while Redis answers, for at most
    // CLOSE_WAIT_MS; with Redis away, what is left is dropped at once (stats().pending said how much).
    const deadline = performance.now() + CLOSE_WAIT_MS;
    while ((this.active.length > 0 || this.sliding.inDoubt > 0) && this.sliding.reachable && performance.now() < deadline) await this.syncNow();
    await this.sliding.finishCommits();
    await this.sliding.settle();
  }
}
