/**
 * Strict counters in Redis: every op runs in the apply script, atomically, and is immediately visible to
 * every instance.
 *
 * Coalescing. Ops issued while a partition's call is in flight — or in the same event-loop
 * turn — wait in that partition's queue and go out together as one script call, so 1000 concurrent
 * callers cost ~16 calls per round trip instead of 1000 commands. Order per key is kept: one call per
 * partition is in flight at a time, and a call runs its ops in issue order.
 *
 * Failures. While Redis is unreachable a call fails at once with TW_REDIS_UNAVAILABLE (no offline queue).
 * A call that was sent but lost its reply may have applied: the client waits for Redis to come back (up to
 * `outcomeWaitMs`) and reads the partition's marker, which names the last call of this instance that
 * applied and its results — so the caller gets the real results, or TW_REDIS_UNAVAILABLE when it did not
 * apply; never a silent double. Only when Redis stays away longer is the error TW_REDIS_OUTCOME_UNKNOWN.
 */
import { ErrorCode, TallyworksError } from '../../common/errors.js';
import {
  dropMarkers,
  followRedirect,
  isReady,
  markerKey,
  PARTITIONS,
  partitionKey,
  partitionOf,
  type RedisClient,
  refusedByRedis,
  notReady,
  redisFailure,
  whenReady,
} from '../../common/redis.js';
import type { CmpCode } from '../../common/messages.js';
import { ApplyStatus, Mode, readMarkerRaw } from '../../common/scripts.js';
import { STRICT, type StrictFlavor } from './flavors.js';
import { type CounterBackend, type CounterOpSpec, refusedError } from './counters.js';

/** One caller's request: its ops may span partitions; it is answered when every partition answered. */
interface Request {
  readonly results: number[];
  remaining: number;
  readonly resolve: (results: number[]) => void;
  readonly reject: (err: Error) => void;
  failed: boolean;
}

/** A request's ops in one partition's call: ops [from, from + count) of the call. */
interface Waiter {
  readonly request: Request;
  readonly from: number;
  readonly count: number;
  /** Input index of each of those ops, or undefined when they are the request's ops 0…count−1. */
  readonly indexes: number[] | undefined;
}

interface Partition {
  readonly key: string;
  readonly marker: string;
  seq: number;
  args: Array<string | number>;
  writes: boolean;
  waiters: Waiter[];
  /**
   * Single-op callers (the hot form), flat, 4 values each: op index in the call, what to answer (a
   * {@link Pick}), resolve, reject. No object per op; the op's key and n are in `args`.
   */
  singles: unknown[];
  busy: boolean;
}

export interface StrictRedisStats {
  /** Script calls sent. */
  readonly calls: number;
  /** Calls that failed: an error from Redis, no reply, or not sent because the connection was down. */
  readonly failures: number;
  /** Ops those calls carried. */
  readonly ops: number;
}

export class StrictRedis implements CounterBackend {
  private readonly client: RedisClient;
  private readonly flavor: StrictFlavor;
  private readonly outcomeWaitMs: number;
  private readonly partitions: Partition[] = [];
  private scheduled = false;
  /** Calls being sent (and resolved), so close() can wait for them. */
  private readonly inflight = new Set<Promise<void>>();
  private calls = 0;
  private failures = 0;
  private opsSent = 0;
  private readyWait: Promise<boolean> | undefined;

  constructor(client: RedisClient, prefix: string, instance: string, outcomeWaitMs: number, flavor: StrictFlavor = STRICT) {
    this.client = client;
    this.flavor = flavor;
    this.outcomeWaitMs = outcomeWaitMs;
    for (let p = 0; p < PARTITIONS; p++) {
      const key = partitionKey(prefix, flavor.kind, p);
      this.partitions.push({ key, marker: markerKey(key, instance), seq: 0, args: [], writes: false, waiters: [], singles: [], busy: false });
    }
  }

  run(ops: ReadonlyArray<Omit<CounterOpSpec, 'mode'> & { readonly mode: number }>): Promise<number[]> {
    return this.enqueue(ops.map((op) => [partitionOf(op.key), op.mode, op.key, op.cmp, op.x, op.n]));
  }

  single<T = number | [number, number]>(key: string, mode: number, cmp: CmpCode, x: number, n: number, pick: number): Promise<T> {
    if (!isReady(this.client)) return Promise.reject(this.unready());
    const part = this.partitions[partitionOf(key)]!;
    return new Promise<T>((resolve, reject) => {
      part.singles.push(part.args.length / 5, pick, resolve, reject);
      part.args.push(mode, key, cmp, x, n);
      if (mode !== Mode.GET) part.writes = true;
      this.schedule();
    });
  }

  get(keys: readonly string[]): Promise<number[]> {
    return this.enqueue(keys.map((k) => [partitionOf(k), Mode.GET, k, 0, 0, 0])).then((r) => keys.map((_, i) => r[2 * i]!));
  }

  async clear(): Promise<void> {
    await this.onEveryPartition(Mode.CLEAR);
  }

  /** Runs an op that takes no key (a CLEAR, an instance-aware CLEAR_MINE) on every partition. */
  async onEveryPartition(mode: number): Promise<void> {
    await this.enqueue(this.partitions.map((_, p) => [p, mode, '', 0, 0, 0]));
  }

  /** Waits for every call in flight, then deletes this instance's markers (none is needed any more). */
  async close(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all(this.inflight);
    await dropMarkers(this.client, this.partitions.map((p) => p.marker));
  }

  /** An op refused because the connection is down: a failure of Redis, counted as such. */
  private unready(): Error {
    this.failures++;
    return notReady(this.client, 'the strict counter operation');
  }

  stats(): StrictRedisStats {
    return { calls: this.calls, failures: this.failures, ops: this.opsSent };
  }

  /** Queues ops ([partition, mode, key, cmp, x, n]); resolves with [new, old] per op in input order. */
  private enqueue(ops: ReadonlyArray<readonly [number, number, string, number, number, number]>): Promise<number[]> {
    if (!isReady(this.client)) return Promise.reject(this.unready());
    return new Promise((resolve, reject) => {
      const request: Request = { results: new Array<number>(ops.length * this.flavor.stride), remaining: 0, resolve, reject, failed: false };
      const first = ops[0]![0];
      if (ops.every((op) => op[0] === first)) {
        this.add(request, this.partitions[first]!, ops, undefined);
      } else {
        const byPartition = new Map<number, number[]>();
        ops.forEach((op, i) => {
          const list = byPartition.get(op[0]);
          if (list === undefined) byPartition.set(op[0], [i]);
          else list.push(i);
        });
        for (const [p, indexes] of byPartition) this.add(request, this.partitions[p]!, ops, indexes);
      }
      this.schedule();
    });
  }

  private add(
    request: Request,
    part: Partition,
    ops: ReadonlyArray<readonly [number, number, string, number, number, number]>,
    indexes: number[] | undefined,
  ): void {
    const count = indexes?.length ?? ops.length;
    part.waiters.push({ request, from: part.args.length / 5, count, indexes });
    request.remaining++;
    for (let j = 0; j < count; j++) {
      const [, mode, key, cmp, x, n] = ops[indexes === undefined ? j : indexes[j]!]!;
      part.args.push(mode, key, cmp, x, n);
      if (mode !== Mode.GET) part.writes = true;
    }
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // Ref'd on purpose: a caller awaits this call; it runs in this same loop turn's check phase.
    setImmediate(() => {
      this.scheduled = false;
      for (const part of this.partitions) if (!part.busy && (part.waiters.length > 0 || part.singles.length > 0)) this.send(part);
    });
  }

  private send(part: Partition): void {
    const sending = this.sendNow(part);
    this.inflight.add(sending);
    void sending.finally(() => this.inflight.delete(sending));
  }

  private async sendNow(part: Partition): Promise<void> {
    part.busy = true;
    const { args, waiters, singles, writes } = part;
    part.args = [];
    part.waiters = [];
    part.singles = [];
    part.writes = false;
    const seq = writes ? ++part.seq : 0;
    try {
      const results = await this.call(part, seq, args);
      const stride = this.flavor.stride;
      for (let s = 0; s < singles.length; s += 4) {
        const from = singles[s] as number;
        const value = this.flavor.pick(results, from, singles[s + 1] as number);
        if (value !== undefined) (singles[s + 2] as (value: unknown) => void)(value);
        else (singles[s + 3] as (err: Error) => void)(refusedError(args[5 * from + 1] as string, args[5 * from + 4] as number, results[stride * from + stride / 2]));
      }
      for (const w of waiters) {
        const r = w.request;
        for (let j = 0; j < w.count; j++) {
          const i = w.indexes === undefined ? j : w.indexes[j]!;
          for (let k = 0; k < stride; k++) r.results[stride * i + k] = results[stride * (w.from + j) + k]!;
        }
        if (--r.remaining === 0 && !r.failed) r.resolve(r.results);
      }
    } catch (err) {
      for (let s = 3; s < singles.length; s += 4) (singles[s] as (err: Error) => void)(err as Error);
      for (const w of waiters) {
        if (w.request.failed) continue;
        w.request.failed = true;
        w.request.reject(err as Error);
      }
    } finally {
      part.busy = false;
      // Ops queued while this call was in flight go out together now.
      if (part.waiters.length > 0 || part.singles.length > 0) this.send(part);
    }
  }

  /**
   * One script call (`args`: 5 values per op, see apply.lua; a call that writes and holds only
   * unconditional increments runs inc.lua instead); on a lost reply, the marker decides whether it applied.
   */
  private async call(part: Partition, seq: number, args: Array<string | number>): Promise<number[]> {
    if (!isReady(this.client)) throw this.unready();
    this.calls++;
    this.opsSent += args.length / 5;
    let reply;
    try {
      reply = await this.flavor.send(this.client, part.key, part.marker, seq, args);
    } catch (err) {
      this.failures++;
      followRedirect(this.client, err);
      if (seq === 0) throw redisFailure('the strict counter read', err);
      // Refused by Redis before it ran: it did not apply, and there is no outcome to wait for.
      if (refusedByRedis(err)) throw redisFailure('the strict counter operation', err);
      return this.resolveLost(part, seq, err, args);
    }
    if (reply.status === ApplyStatus.STALE) {
      throw new TallyworksError(ErrorCode.PROTOCOL, `Redis holds a newer call of this instance than seq ${seq} on ${part.key}`);
    }
    return toNumbers(reply.results);
  }

  /** One wait for the connection shared by every call whose reply was lost (one 'ready' listener). */
  private waitReady(timeoutMs: number): Promise<boolean> {
    this.readyWait ??= whenReady(this.client, timeoutMs).finally(() => {
      this.readyWait = undefined;
    });
    return this.readyWait;
  }

  /**
   * Reads the marker until it tells, within `outcomeWaitMs`. The read can fail too — Redis down again, or so
   * slow that the read times out (it queues behind the lost call on the same connection) — and is retried.
   */
  private async resolveLost(part: Partition, seq: number, cause: unknown, args: ReadonlyArray<string | number>): Promise<number[]> {
    const deadline = Date.now() + this.outcomeWaitMs;
    for (let remaining = this.outcomeWaitMs; remaining > 0; remaining = deadline - Date.now()) {
      if (!(await this.waitReady(remaining))) break;
      let marker;
      try {
        marker = await readMarkerRaw(this.client, part.marker);
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 20).unref());
        continue;
      }
      // The marker holds the results as the script that ran this call packed them.
      if (marker !== undefined && marker.seq === seq) return toNumbers(this.flavor.fromMarker(marker.packed, args));
      if (marker === undefined || marker.seq < seq) throw redisFailure('the strict counter operation', cause);
      break; // a newer call of this instance landed: cannot happen with one call in flight per partition
    }
    throw new TallyworksError(
      ErrorCode.REDIS_OUTCOME_UNKNOWN,
      `Redis lost the reply to a strict counter call and did not come back within ${this.outcomeWaitMs} ms to tell whether it applied`,
      { cause },
    );
  }
}

/** Script results to numbers, in place: a refused INC (false) becomes NaN. */
function toNumbers(results: Array<number | false>): number[] {
  for (let i = 0; i < results.length; i++) if (results[i] === false) results[i] = Number.NaN;
  return results as number[];
}
