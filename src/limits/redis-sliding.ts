/**
 * How the Redis provider of the sliding-window limiters reaches Redis (its strategies are in
 * ./redis-providers.ts: `rateLimiter().redis.absolute.inc(key, rate, n)`, `.redis.suppressed.inc(key,
 * rate, n)` and `rateLimits().redis.inc(key, n)`, each a Promise of the local provider's decision values).
 * Every decision runs in common/scripts/rl.lua, atomically, on Redis TIME (one clock for every instance);
 * the decisions of one limiter issued in the same tick for one partition share one script call, as strict
 * counters do.
 *
 * Layout: an entity (a limiter's key) is the hash `{<prefix>:rl:<p>}:<limiter>:<key>`, p = the key's
 * partition, `<limiter>` its strategy and windows (so two processes with the same limiter share its
 * entities); the partition's index of the limiter's entities is `{<prefix>:rl:<p>}:<limiter>`. One hash
 * slot per partition. Every key carries a TTL of the longest window and a group.
 *
 * A decision that cannot reach Redis rejects with TW_REDIS_UNAVAILABLE (the call was not applied) or, when
 * its reply was lost, TW_REDIS_OUTCOME_UNKNOWN (it may have been counted). Nothing is retried.
 */
import { closedError, ErrorCode, TallyworksError } from '../../common/errors.js';
import { followRedirect, isReady, notReady, PARTITIONS, partitionKey, partitionOf, type RedisClient, redisFailure, refusedByRedis } from '../../common/redis.js';
import { RateStrategy, runRate, runRateClean } from '../../common/scripts.js';
import type { ResolvedWindow } from './rate-options.js';

/** What the Redis provider needs of the engine: its client (absent: embedded), prefix and closed state. */
export interface RedisRateContext {
  readonly client: RedisClient | undefined;
  readonly prefix: string;
  readonly state: { readonly closed: boolean };
}

/** The ops of one partition waiting for the next call. */
interface Queue {
  entities: string[];
  ops: number[];
  resolves: Array<(results: number[]) => void>;
  rejects: Array<(err: Error) => void>;
}

/**
 * Decisions per script call at most: a burst larger than this goes out in several calls, so no call runs
 * long enough inside Redis to pass the command timeout behind the others (a probe's 200k-decision burst
 * made 16 calls of ~155 ms each); with one call per partition in Redis at once, the last of them waits
 * for 15 others.
 */
const MAX_PER_CALL = 500;

/** Script calls of one partition in Redis at once, at most (the others wait for a slot, as strict counters do). */
const IN_FLIGHT = 1;

/** Entities of an index looked at per cleanup call (the oldest first). */
const CLEAN_BATCH = 256;
/** Cleanup calls per partition and run at most (a run is bounded whatever the number of stale keys). */
const CLEAN_CALLS = 64;

/** One limiter's calls to rl.lua (one strategy, its windows): decisions queued in a tick go out per partition. */
export class RedisSliding {
  private readonly client: RedisClient | undefined;
  private readonly queues: Queue[] = [];
  private readonly names: string[] = [];
  private scheduled = false;
  /** Values per op in the script's ops. */
  private readonly stride: number;
  /** Calls being sent, so the engine's close() can wait for them before it closes the client. */
  private readonly inflight = new Set<Promise<void>>();
  /** Per partition: calls in Redis, and calls waiting for a slot. */
  private readonly busy = new Int32Array(PARTITIONS);
  private readonly waiting: Array<Array<() => void>> = Array.from({ length: PARTITIONS }, () => []);
  /** Script calls sent, the decisions they carried, and the calls that failed (an error, no reply, or the connection down). */
  calls = 0;
  decisions = 0;
  failures = 0;

  constructor(
    private readonly ctx: RedisRateContext,
    /** The limiter's name in Redis: strategy and windows. */
    readonly id: string,
    private readonly config: readonly number[],
  ) {
    this.client = ctx.client;
    this.stride = config[0] === RateStrategy.ABSOLUTE ? 1 + config[1]! : config[0] === RateStrategy.SUPPRESSED ? 5 : 3;
    for (let p = 0; p < PARTITIONS; p++) {
      this.queues.push({ entities: [], ops: [], resolves: [], rejects: [] });
      this.names.push(`${partitionKey(ctx.prefix, 'rl', p)}:${id}`);
    }
  }

  /** Throws at once on an engine without Redis (a configuration, not a store failure: no fallback applies). */
  requireRedis(): void {
    if (this.client === undefined) throw noRedis();
  }

  /** The entity hash of `key` in Redis. */
  entityOf(key: string): string {
    return `${this.names[partitionOf(key)]!}:${key}`;
  }

  /** Queues one decision (`op`: the script's values for it); resolves with its 4 result values. */
  decide(key: string, op: readonly number[]): Promise<number[]> {
    if (this.ctx.state.closed) return Promise.reject(closedError('rate limiter'));
    const client = this.client;
    if (client === undefined) return Promise.reject(noRedis());
    if (!isReady(client)) {
      this.failures++;
      return Promise.reject(notReady(client, 'the rate-limit decision'));
    }
    const p = partitionOf(key);
    const q = this.queues[p]!;
    return new Promise<number[]>((resolve, reject) => {
      q.entities.push(`${this.names[p]!}:${key}`);
      for (let i = 0; i < op.length; i++) q.ops.push(op[i]!);
      q.resolves.push(resolve);
      q.rejects.push(reject);
      if (q.entities.length >= MAX_PER_CALL && this.busy[p]! < IN_FLIGHT) this.sendQueue(p);
      if (!this.scheduled) {
        this.scheduled = true;
        // Ref'd on purpose: a caller awaits this call; it runs in this loop turn's check phase.
        setImmediate(() => this.sendAll());
      }
    });
  }

  /**
   * Many decisions at once (the hybrid provider's commits, also its last one while the engine closes):
   * `keys[i]`'s op is `ops[stride·i …]`; resolves
   * with 4 result values per key, in order, NaN for the keys of a partition whose call failed. One call per
   * partition, and one promise per partition.
   */
  async decideMany(keys: readonly string[], ops: readonly number[], stride: number): Promise<number[]> {
    const client = this.client;
    if (client === undefined) throw noRedis();
    if (!isReady(client)) {
      this.failures++;
      throw notReady(client, 'the rate-limit commit');
    }
    // Per partition, in calls of at most MAX_PER_CALL keys.
    const chunks: Array<[number, number[]]> = [];
    const open = new Map<number, number[]>();
    for (let i = 0; i < keys.length; i++) {
      const p = partitionOf(keys[i]!);
      let list = open.get(p);
      if (list === undefined || list.length === MAX_PER_CALL) {
        list = [];
        open.set(p, list);
        chunks.push([p, list]);
      }
      list.push(i);
    }
    const out = new Array<number>(4 * keys.length);
    const calls = chunks.map(async ([p, indexes]) => {
      const q: Queue = { entities: indexes.map((i) => `${this.names[p]!}:${keys[i]!}`), ops: indexes.flatMap((i) => ops.slice(stride * i, stride * i + stride)), resolves: [], rejects: [] };
      let results: number[] | undefined;
      let failure: Error | undefined;
      q.resolves.push((r) => (results = r));
      q.rejects.push((err) => (failure = err));
      const sending = this.send(p, q, true);
      this.inflight.add(sending);
      await sending.finally(() => this.inflight.delete(sending));
      indexes.forEach((i, j) => {
        for (let k = 0; k < 4; k++) out[4 * i + k] = failure === undefined ? results![4 * j + k]! : Number.NaN;
      });
    });
    await Promise.all(calls);
    return out;
  }

  private sendAll(): void {
    this.scheduled = false;
    for (let p = 0; p < PARTITIONS; p++) if (this.queues[p]!.entities.length > 0 && this.busy[p]! < IN_FLIGHT) this.sendQueue(p);
  }

  /** Sends partition `p`'s queued decisions as one call. */
  private sendQueue(p: number): void {
    let q = this.queues[p]!;
    if (q.entities.length <= MAX_PER_CALL) {
      this.queues[p] = { entities: [], ops: [], resolves: [], rejects: [] };
    } else {
      // The first MAX_PER_CALL go now; the rest when this call's slot frees (see release).
      const rest = q;
      const n = MAX_PER_CALL;
      q = { entities: rest.entities.splice(0, n), ops: rest.ops.splice(0, n * this.stride), resolves: rest.resolves.splice(0, n), rejects: rest.rejects.splice(0, n) };
    }
    const sending = this.send(p, q);
    this.inflight.add(sending);
    void sending.finally(() => this.inflight.delete(sending));
  }

  /** One call; each queued caller gets its 4 values (`whole`: the one caller gets the call's results). */
  private async send(p: number, q: Queue, whole = false): Promise<void> {
    const client = this.client!;
    // At most IN_FLIGHT calls per partition in Redis: a larger burst waits here, not in Redis's queue, where
    // the last calls of a 200k-decision burst passed the command timeout (found by a probe).
    if (this.busy[p]! < IN_FLIGHT) this.busy[p]!++;
    else await new Promise<void>((resolve) => this.waiting[p]!.push(resolve)); // handed a slot by release()
    this.calls++;
    this.decisions += q.entities.length;
    let results: number[];
    try {
      results = await runRate(client, this.names[p]!, q.entities, this.config, q.ops);
    } catch (err) {
      this.failures++;
      this.release(p);
      followRedirect(client, err);
      // Refused before it ran (or never sent): not applied. Otherwise the reply was lost: it may have been.
      const error = refusedByRedis(err)
        ? redisFailure('the rate-limit decision', err)
        : new TallyworksError(ErrorCode.REDIS_OUTCOME_UNKNOWN, 'the reply to a rate-limit decision was lost: it may have been counted', { cause: err });
      for (const reject of q.rejects) reject(error);
      return;
    }
    this.release(p);
    if (whole) q.resolves[0]!(results);
    else for (let i = 0; i < q.resolves.length; i++) q.resolves[i]!(results.slice(4 * i, 4 * i + 4));
  }

  /**
   * One call of partition `p` ended: its slot goes to the next waiting call (a commit batch), or to the
   * decisions queued meanwhile, all in one call, or is free.
   */
  private release(p: number): void {
    const next = this.waiting[p]!.shift();
    if (next !== undefined) return next();
    this.busy[p]!--;
    if (this.queues[p]!.entities.length > 0) this.sendQueue(p);
  }

  /** Waits for every call in flight (and those queued this tick). */
  async settle(): Promise<void> {
    while (this.scheduled || this.inflight.size > 0) {
      if (this.scheduled) await new Promise((resolve) => setImmediate(resolve));
      else await Promise.all(this.inflight);
    }
  }

  /** Deletes the entities idle longer than `staleAfterMs` (Redis time), oldest first; returns how many. */
  async clean(staleAfterMs: number): Promise<number> {
    const client = this.client;
    if (client === undefined) return 0;
    let deleted = 0;
    for (const index of this.names) {
      for (let call = 0; call < CLEAN_CALLS; call++) {
        const oldest = await client.zrange(index, '0', String(CLEAN_BATCH - 1));
        if (oldest.length === 0) break;
        const n = await runRateClean(client, index, oldest, staleAfterMs);
        deleted += n;
        if (n < oldest.length) break; // the rest of the index is fresher
      }
    }
    return deleted;
  }
}

export function noRedis(): TallyworksError {
  return new TallyworksError(ErrorCode.REDIS_UNAVAILABLE, 'this engine was created without the `redis` option: the Redis rate-limit provider has no server to decide in');
}

/** The limiter's name in Redis: its strategy and windows (window ms / group ms each). */
export function redisLimiterId(strategy: 'a' | 's' | 'm', windows: readonly Pick<ResolvedWindow, 'windowMs' | 'groupMs'>[]): string {
  return `${strategy}${windows.map((w) => `${w.windowMs}/${w.groupMs}`).join(',')}`;
}
