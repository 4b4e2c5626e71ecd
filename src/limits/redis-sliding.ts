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
 *
 * The hybrid providers' commits (commitMany) land exactly once: each call carries a sequence per engine and
 * partition that the script keeps in the engine's marker; a commit whose reply was lost is kept and sent
 * again as it was, before anything else of its partition, until Redis answers it (counted now, or found
 * counted before: then it counts nothing).
 */
import { closedError, ErrorCode, TallyworksError } from '../../common/errors.js';
import { dropMarkers, followRedirect, isReady, markerKey, notReady, PARTITIONS, partitionKey, partitionOf, type RedisClient, redisFailure, refusedByRedis } from '../../common/redis.js';
import { RateStrategy, runRate, runRateClean, runRateCommit } from '../../common/scripts.js';
import type { ResolvedWindow } from './rate-options.js';

/** What the Redis provider needs of the engine: its client (absent: embedded), prefix and closed state. */
export interface RedisRateContext {
  readonly client: RedisClient | undefined;
  readonly prefix: string;
  readonly state: { readonly closed: boolean };
  /** The engine's name in its commit markers (unique per engine). */
  readonly callerId: string;
}

/** The ops of one partition waiting for the next call (a commit: with its sequence). */
interface Queue {
  entities: string[];
  ops: number[];
  resolves: Array<(results: number[]) => void>;
  rejects: Array<(err: Error) => void>;
  seq?: number;
}

/** Numbers per key in a commit (rl.lua COMMIT): calls, limit, keys, declined. */
export const COMMIT_STRIDE = 4;

/** What {@link RedisSliding.commitMany} says of each key. */
export const Committed = {
  /** Counted now: its 4 result values are given. */
  DONE: 0,
  /** Not sent (Redis away, or its partition waits for a commit in doubt): commit it again. */
  NOT_SENT: 1,
  /** Its reply was lost: the sliding keeps the commit and sends it again itself (do not). */
  IN_DOUBT: 2,
} as const;

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
  /** Commits: this engine's markers by partition, their last sequences, the partitions committed to. */
  private readonly markers: string[];
  private readonly seqs = new Float64Array(PARTITIONS);
  private readonly committedTo = new Set<number>();
  /** Per partition, a commit whose reply was lost (sent again, first, until Redis answers it), and its calls. */
  private readonly doubt: Array<{ readonly q: Queue; readonly calls: number } | undefined> = new Array(PARTITIONS);

  constructor(
    private readonly ctx: RedisRateContext,
    /** The limiter's name in Redis: strategy and windows. */
    readonly id: string,
    private readonly config: readonly number[],
  ) {
    this.client = ctx.client;
    this.stride = config[0] === RateStrategy.ABSOLUTE ? 1 + config[1]! : config[0] === RateStrategy.SUPPRESSED ? 5 : COMMIT_STRIDE;
    for (let p = 0; p < PARTITIONS; p++) {
      this.queues.push({ entities: [], ops: [], resolves: [], rejects: [] });
      this.names.push(`${partitionKey(ctx.prefix, 'rl', p)}:${id}`);
    }
    this.markers = this.names.map((index) => markerKey(index, ctx.callerId));
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
   * The hybrid providers' commits (their last one too, while the engine closes): `keys[i]`'s op is
   * `ops[COMMIT_STRIDE·i …]`. Resolves with 4 result values per key (NaN where not DONE) and a status per
   * key ({@link Committed}). One call per partition and MAX_PER_CALL keys, a partition's calls one after
   * the other; after one whose reply was lost, the rest of its partition is NOT_SENT.
   */
  async commitMany(keys: readonly string[], ops: readonly number[]): Promise<{ readonly results: number[]; readonly status: Uint8Array }> {
    const client = this.client;
    if (client === undefined) throw noRedis();
    if (!isReady(client)) {
      this.failures++;
      throw notReady(client, 'the rate-limit commit');
    }
    const byPartition = new Map<number, number[][]>();
    for (let i = 0; i < keys.length; i++) {
      const p = partitionOf(keys[i]!);
      let chunks = byPartition.get(p);
      if (chunks === undefined) byPartition.set(p, (chunks = [[]]));
      if (chunks.at(-1)!.length === MAX_PER_CALL) chunks.push([]);
      chunks.at(-1)!.push(i);
    }
    const results = new Array<number>(4 * keys.length).fill(Number.NaN);
    const status = new Uint8Array(keys.length).fill(Committed.NOT_SENT);
    // Partitions with a commit in doubt and nothing new: it is sent again all the same.
    for (let p = 0; p < PARTITIONS; p++) if (this.doubt[p] !== undefined && !byPartition.has(p)) byPartition.set(p, []);
    const partitions = [...byPartition].map(async ([p, chunks]) => {
      if (!(await this.resolveDoubt(p))) return; // still in doubt: nothing new goes to p before it
      for (const indexes of chunks) {
        const seq = ++this.seqs[p]!;
        this.committedTo.add(p);
        const q: Queue = { entities: indexes.map((i) => `${this.names[p]!}:${keys[i]!}`), ops: indexes.flatMap((i) => ops.slice(COMMIT_STRIDE * i, COMMIT_STRIDE * i + COMMIT_STRIDE)), resolves: [], rejects: [], seq };
        const failure = await this.sendTracked(p, q, (r) => indexes.forEach((i, j) => {
          for (let k = 0; k < 4; k++) results[4 * i + k] = r[4 * j + k]!;
          status[i] = Committed.DONE;
        }));
        if (failure === undefined) continue;
        if (failure.code === ErrorCode.REDIS_OUTCOME_UNKNOWN) {
          this.doubt[p] = { q, calls: indexes.reduce((n, i) => n + ops[COMMIT_STRIDE * i]!, 0) };
          for (const i of indexes) status[i] = Committed.IN_DOUBT;
        }
        return; // the rest of p's keys go with the next commit
      }
    });
    await Promise.all(partitions);
    return { results, status };
  }

  /** Calls in commits whose reply was lost and that Redis has not answered since (see commitMany). */
  get inDoubt(): number {
    return this.doubt.reduce((n, d) => n + (d?.calls ?? 0), 0);
  }

  /** Sends partition `p`'s commit in doubt again, as it was: true once Redis answered it (or there is none). */
  private async resolveDoubt(p: number): Promise<boolean> {
    const d = this.doubt[p];
    if (d === undefined) return true;
    const failure = await this.sendTracked(p, { ...d.q, resolves: [], rejects: [] }, () => (this.doubt[p] = undefined));
    // Refused now or lost again: the first call may still have counted, so it stays in doubt.
    return failure === undefined;
  }

  /** True while Redis takes calls (a commit then has a chance). */
  get reachable(): boolean {
    return this.client !== undefined && isReady(this.client);
  }

  /** The engine closes: with no commit in doubt left, this engine's markers are dropped (else their TTL ends them). */
  async finishCommits(): Promise<void> {
    if (this.client === undefined || !isReady(this.client) || this.inDoubt > 0) return;
    await dropMarkers(this.client, [...this.committedTo].map((p) => this.markers[p]!));
  }

  /** One call of `q` (tracked for settle()), `done` given its results; resolves with its failure, if any. */
  private async sendTracked(p: number, q: Queue, done: (results: number[]) => void): Promise<TallyworksError | undefined> {
    let failure: TallyworksError | undefined;
    q.resolves.push(done);
    q.rejects.push((err) => (failure = err as TallyworksError));
    const sending = this.send(p, q, true);
    this.inflight.add(sending);
    await sending.finally(() => this.inflight.delete(sending));
    return failure;
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
      results = q.seq === undefined ? await runRate(client, this.names[p]!, q.entities, this.config, q.ops) : await runRateCommit(client, this.names[p]!, this.markers[p]!, q.seq, q.entities, this.config, q.ops);
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
