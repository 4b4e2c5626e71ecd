/**
 * What the flusher actor does: every flush interval it takes the dirty lax counters out of the shards'
 * bitmaps and commits their pending deltas to Redis, one apply-script call per partition, pipelined; it
 * also runs the ops the main thread asks for (lax set/del/incIf/setIf and cold reads), each right after
 * its counter's pending delta, in the same call. The thread entry (workers/flusher.ts) only wires ports.
 *
 * Exactly once. A counter's record holds `total` (every local delta, written by its shard) and
 * `committed` (the part Redis holds, written here only after Redis confirmed it), so the pending delta is
 * their difference and needs no hand-off with the shard. Each call carries a sequence number of this
 * instance and partition that the script records in the partition's marker, in the same script:
 *  - a call that fails before it is sent is dropped; its deltas are still pending and go in a later call;
 *  - a call that was sent but whose reply was lost is kept and re-sent unchanged (same seq, same deltas)
 *    until Redis answers; if it had landed, the script finds the seq in the marker and returns the
 *    results stored then, applying nothing. No delta is dropped, none doubled.
 * One call per partition is in flight at a time, so sequence numbers reach Redis in order.
 *
 * A replacement after the thread died. What a flusher knows that must outlive it lives in memory the main
 * thread allocated: each partition's last sequence number and the sequence of its call in flight
 * (`partitionState`), and in every record of that call the `committed` it reaches once the call lands
 * (`target`, with the op's index in the call), written before the call is sent. A replacement starts from
 * the registrations the main thread kept, finds every record with a pending delta by one full scan (the
 * dead thread may have taken dirty bits it never delivered), and resolves a partition's call in flight from
 * the instance's marker before it sends anything there: landed, its records take their target (unless
 * Redis refused that op: the marker holds the results); not landed, the deltas are simply still pending.
 * Either way nothing is dropped or doubled, and later calls carry higher sequence numbers.
 *
 * Memory during an outage is O(dirty keys): deltas aggregate in the records' totals; a partition holds at
 * most one unresolved call.
 *
 * The records' side (dirty bits, pending deltas, targets, commits) is the counter record kind's
 * (common/records/counter.ts, LaxRecords). Over 350
 * lines because the rest is one actor's state machine over per-partition state — requests queued, the
 * call built and sent, its outcome (landed, refused, lost and resent), recovery and close — which splits
 * only into modules that would share every field.
 *
 * Imported by the flusher thread: imports nothing main-only.
 */
import { ErrorCode, type ErrorCodeValue, TallyworksError, toWireError } from '../common/errors.js';
import { Cmp, type FlusherCloseReport, type FlusherOp, type FlusherReply, type FlusherStats, type LaxEntryInit } from '../common/messages.js';
import {
  closeClient,
  dropMarkers,
  followRedirect,
  isReady,
  markerKey,
  refusedByRedis,
  notReady,
  FLUSH_PARTITIONS,
  PARTITIONS,
  partitionKey,
  type RedisClient,
  redisFailure,
} from '../common/redis.js';
import { ApplyStatus, BeatMode, type IaCaller, IaMode, type IaPartitionKeys, iaPartitionKeys, Mode, readMarker, runApply, runBeat, runIa } from '../common/scripts.js';
import { type Entry, type Final, LaxRecords } from '../common/records/counter.js';

/** A request from the main thread: its ops, answered together. */
interface Request {
  readonly id: number;
  /** Result values per op: 2 for lax counters ([new, old]), 4 for instance-aware ones (see ia.lua). */
  readonly stride: number;
  readonly results: number[];
  remaining: number;
  /** Engine-clock ms (system ms for the deadline) after which an unresolved request is answered "unknown". */
  readonly deadline: number;
  answered: boolean;
}

interface QueuedOp {
  readonly request: Request;
  readonly index: number;
  /** The counter, or undefined for a CLEAR of partition `partition`. */
  readonly entry: Entry | undefined;
  readonly partition: number;
  readonly mode: number;
  readonly cmp: number;
  readonly x: number;
  readonly n: number;
}

/** One call: its ops as script arguments and what each op means for the records and requests. */
interface Call {
  readonly partition: number;
  readonly seq: number;
  readonly args: Array<string | number>;
  /** Per op: the entry it touches (undefined: CLEAR), the delta it delivers (ADD), the queued op it answers. */
  readonly entries: Array<Entry | undefined>;
  readonly deltas: number[];
  readonly answers: Array<QueuedOp | undefined>;
}

export type Reply = (reply: FlusherReply) => void;

/** Result values per op of a flusher partition's script. */
function strideOf(p: number): number {
  return p < PARTITIONS ? 2 : 4;
}

/** What the flusher needs to run instance-aware calls and heartbeats for this engine. */
export interface FlusherInstance extends IaCaller {
  readonly retentionMs: number;
}

export class FlusherCore {
  private readonly records: LaxRecords;
  private readonly time: Float64Array;
  private readonly gauges: Int32Array;
  private readonly client: RedisClient;
  private readonly commandTimeoutMs: number;
  private readonly reply: Reply;
  private readonly dirty: Array<Set<Entry>> = [];
  private readonly queued: QueuedOp[][] = [];
  /** A sent call per partition whose outcome is not known yet. */
  private readonly unresolved: Array<Call | undefined> = [];
  /** Per partition p: [2p] the last sequence number used, [2p + 1] the sequence of the call in flight (0: none). */
  private readonly state: Float64Array;
  /** Partitions whose call in flight a dead predecessor left: resolved from the marker before anything is sent. */
  private readonly recovering = new Set<number>();
  /** Set for a replacement: the first cycle scans every record for pending deltas. */
  private rescan: boolean;
  private readonly partitionKeys: string[] = [];
  private readonly markerKeys: string[] = [];
  /** Every instance-aware partition, strict ("is") and lax ("il"): heartbeats go to each. */
  private readonly beatKeys: IaPartitionKeys[] = [];
  private readonly caller: FlusherInstance;
  private cycles = 0;
  private commands = 0;
  private failures = 0;
  private delivered = 0;
  private heartbeats = 0;
  private lastSuccessAt = Date.now();
  private lastError: string | undefined;
  /** Consecutive cycles with a failed call (sets the backoff). */
  private failing = 0;
  /** Test hook: replies of this many landed calls are discarded, as if the connection dropped. */
  private repliesToLose = 0;

  constructor(
    shards: ReadonlyArray<{ header: SharedArrayBuffer; arena: SharedArrayBuffer; dirty: SharedArrayBuffer }>,
    timeCell: SharedArrayBuffer,
    gauges: SharedArrayBuffer,
    client: RedisClient,
    prefix: string,
    instance: string,
    commandTimeoutMs: number,
    reply: Reply,
    partitionState: SharedArrayBuffer,
    entries: readonly LaxEntryInit[],
    caller: FlusherInstance,
  ) {
    this.caller = caller;
    this.state = new Float64Array(partitionState);
    this.records = new LaxRecords(shards);
    this.time = new Float64Array(timeCell, 0, 1);
    this.gauges = new Int32Array(gauges);
    this.client = client;
    this.commandTimeoutMs = commandTimeoutMs;
    this.reply = reply;
    for (let p = 0; p < FLUSH_PARTITIONS; p++) {
      this.dirty.push(new Set());
      this.queued.push([]);
      this.unresolved.push(undefined);
      if (this.state[2 * p + 1] !== 0) this.recovering.add(p);
      const key = partitionKey(prefix, p < PARTITIONS ? 'l' : 'il', p % PARTITIONS);
      this.partitionKeys.push(key);
      this.markerKeys.push(markerKey(key, instance));
    }
    for (const kind of ['is', 'il']) for (let p = 0; p < PARTITIONS; p++) this.beatKeys.push(iaPartitionKeys(partitionKey(prefix, kind, p)));
    this.register(entries);
    this.rescan = entries.length > 0;
  }

  register(entries: readonly LaxEntryInit[]): void {
    this.records.register(entries);
  }

  /** Queues a request; refused at once (nothing sent) when Redis is unreachable. */
  request(id: number, ops: readonly FlusherOp[]): void {
    if (!isReady(this.client)) {
      this.reply({ type: 'error', id, error: toWireError(notReady(this.client, 'the lax counter operation')) });
      return;
    }
    const first = ops[0];
    const stride = first === undefined ? 2 : strideOf(first.type === 'clear' ? first.partition : (this.records.entry(first.shard, first.lax)?.partition ?? 0));
    const request: Request = { id, stride, results: new Array<number>(ops.length * stride).fill(0), remaining: ops.length, deadline: Date.now() + this.commandTimeoutMs, answered: false };
    ops.forEach((op, index) => {
      if (op.type === 'clear') {
        this.queued[op.partition]!.push({ request, index, entry: undefined, partition: op.partition, mode: op.mode ?? Mode.CLEAR, cmp: 0, x: 0, n: 0 });
        return;
      }
      const { shard, lax, mode, cmp, x, n } = op;
      const entry = this.records.entry(shard, lax);
      if (entry === undefined) {
        this.answerError(request, ErrorCode.PROTOCOL, `flusher: no lax counter ${lax} registered on shard ${shard}`);
        return;
      }
      this.queued[entry.partition]!.push({ request, index, entry, partition: entry.partition, mode, cmp, x, n });
    });
  }

  /** True when a cycle would have something to do (dirty bits are only seen by scanning). */
  hasQueued(): boolean {
    return this.queued.some((q) => q.length > 0);
  }

  /** Delay before the next cycle: the flush interval, or a capped exponential backoff while failing. */
  nextDelayMs(intervalMs: number): number {
    return this.failing === 0 ? intervalMs : Math.max(intervalMs, Math.min(1000, 25 * 2 ** Math.min(this.failing, 6)));
  }

  /** One flush cycle: scan, build one call per partition, send them together, apply the replies. */
  async cycle(): Promise<void> {
    this.cycles++;
    if (this.rescan) this.scanAll();
    this.records.takeDirty(this.dirty);
    if (this.recovering.size > 0) await Promise.all([...this.recovering].map((p) => this.recover(p)));
    const calls: Call[] = [];
    for (let p = 0; p < FLUSH_PARTITIONS; p++) {
      if (this.recovering.has(p)) continue;
      const call = this.unresolved[p] ?? this.build(p);
      if (call !== undefined) calls.push(call);
    }
    const outcomes = await Promise.all(calls.map((c) => this.send(c)));
    this.failing = outcomes.includes(false) ? this.failing + 1 : 0;
    if (this.failing === 0 && this.recovering.size === 0) this.lastSuccessAt = Date.now();
    this.expireRequests();
    this.publishGauges();
  }

  /** A replacement's first look: every registered record with a pending delta or a call in flight is dirty. */
  private scanAll(): void {
    this.rescan = false;
    for (const e of this.records.all()) if (this.records.pending(e) !== 0 || this.records.inFlight(e)) this.dirty[e.partition]!.add(e);
  }

  /**
   * Resolves the call in flight that a dead predecessor left on partition `p`, from this instance's marker
   * (see the module comment). Redis unreachable: the partition stays blocked and this runs again next cycle.
   */
  private async recover(p: number): Promise<void> {
    const seq = this.state[2 * p + 1]!;
    let marker;
    try {
      marker = await readMarker(this.client, this.markerKeys[p]!);
    } catch (err) {
      this.failures++;
      this.lastError = redisFailure('resolving the flush call of a replaced flusher thread', err).message;
      return;
    }
    const landed = marker !== undefined && marker.seq >= seq;
    for (const e of this.records.ofPartition(p)) if (this.records.resolveTarget(e, landed, marker?.results, strideOf(p))) this.dirty[p]!.add(e);
    this.state[2 * p + 1] = 0;
    this.recovering.delete(p);
  }

  /** Writes, before a call is first sent, what each of its records' `committed` becomes once it lands. */
  private markInFlight(call: Call): void {
    for (let i = 0; i < call.entries.length; i++) {
      const e = call.entries[i];
      if (e === undefined || call.deltas[i] === 0) continue;
      this.records.markTarget(e, call.deltas[i]!, i);
    }
    this.state[2 * call.partition + 1] = call.seq;
  }

  /** Forgets a call's targets: it did not land, its deltas stay pending. */
  private unmarkInFlight(call: Call): void {
    for (let i = 0; i < call.entries.length; i++) {
      const e = call.entries[i];
      if (e === undefined || call.deltas[i] === 0) continue;
      this.records.clearTarget(e);
    }
    if (this.state[2 * call.partition + 1] === call.seq) this.state[2 * call.partition + 1] = 0;
  }

  private build(p: number): Call | undefined {
    const args: Array<string | number> = [];
    const entries: Array<Entry | undefined> = [];
    const deltas: number[] = [];
    const answers: Array<QueuedOp | undefined> = [];
    const included = new Set<Entry>();
    let writes = false;
    const add = (entry: Entry): void => {
      included.add(entry);
      const d = this.records.pending(entry);
      if (d === 0) return;
      args.push(Mode.ADD, entry.key, 0, 0, d);
      entries.push(entry);
      deltas.push(d);
      answers.push(undefined);
      writes = true;
    };
    for (const entry of this.dirty[p]!) add(entry);
    this.dirty[p]!.clear();
    for (const op of this.queued[p]!) {
      if (op.request.answered) continue;
      if (op.entry === undefined) {
        // A clear: deliver every pending delta of the partition first (they came before it).
        for (const e of this.records.ofPartition(p)) if (!included.has(e)) add(e);
      } else if (!included.has(op.entry)) {
        add(op.entry);
      }
      args.push(op.mode, op.entry?.key ?? '', op.cmp, op.x, op.n);
      entries.push(op.entry);
      deltas.push(0);
      answers.push(op);
      if (op.mode !== Mode.GET) writes = true;
    }
    this.queued[p]!.length = 0;
    if (args.length === 0) return undefined;
    let seq = 0;
    if (writes) {
      seq = this.state[2 * p]! + 1;
      this.state[2 * p] = seq;
    }
    return { partition: p, seq, args, entries, deltas, answers };
  }

  /** Sends a call; true when its outcome is known (applied now or before), false when it failed. */
  private async send(call: Call): Promise<boolean> {
    const p = call.partition;
    if (!isReady(this.client)) {
      const failure = notReady(this.client, 'the lax counter operation');
      // A call sent before may have landed: it stays unresolved (its requests wait for their deadline).
      if (this.unresolved[p] === call) {
        this.failures++;
        this.lastError = failure.message;
      } else {
        this.dropUnsent(call, failure);
      }
      return false;
    }
    this.commands++;
    if (call.seq !== 0 && this.unresolved[p] !== call) this.markInFlight(call);
    let reply;
    try {
      reply =
        p < PARTITIONS
          ? await runApply(this.client, this.partitionKeys[p]!, this.markerKeys[p]!, call.seq, call.args)
          : await runIa(this.client, this.beatKeys[p]!, this.markerKeys[p]!, call.seq, this.caller, call.args);
    } catch (err) {
      followRedirect(this.client, err);
      const failure = redisFailure('the lax counter operation', err);
      // Refused by Redis before it ran, and no earlier send of it may have landed: its deltas are pending
      // again and its requests fail with Redis's reason. A read-only call has nothing to protect either.
      // Otherwise (sent, or possibly sent, reply lost) it may have landed: keep it to send again unchanged.
      if (call.seq === 0 || (refusedByRedis(err) && this.unresolved[p] !== call)) {
        this.dropUnsent(call, failure);
      } else {
        this.failures++;
        this.lastError = failure.message;
        this.unresolved[p] = call;
      }
      return false;
    }
    if (this.repliesToLose > 0 && call.seq !== 0) {
      this.repliesToLose--;
      this.failures++;
      this.lastError = 'reply discarded by loseRepliesForTest';
      this.unresolved[p] = call;
      return false;
    }
    this.unresolved[p] = undefined;
    if (reply.status === ApplyStatus.STALE) {
      // Cannot happen while sequence numbers only grow; deliver nothing rather than guess.
      this.lastError = `partition ${p}: Redis holds a newer call of this instance than seq ${call.seq}`;
      this.dropUnsent(call, new TallyworksError(ErrorCode.PROTOCOL, `${this.lastError}; the lax counter operation was not applied`));
      return false;
    }
    this.land(call, reply.results);
    if (this.state[2 * p + 1] === call.seq) this.state[2 * p + 1] = 0;
    return true;
  }

  /** A call that did not reach Redis: its deltas stay pending (dirty again); its requests fail. */
  private dropUnsent(call: Call, failure: TallyworksError): void {
    if (call.seq !== 0) this.unmarkInFlight(call);
    this.failures++;
    this.lastError = failure.message;
    for (let i = 0; i < call.entries.length; i++) {
      const op = call.answers[i];
      if (op === undefined) this.dirty[call.partition]!.add(call.entries[i]!); // an ADD: always has an entry
      else this.answerWith(op.request, failure);
    }
  }

  /** Applies a call's results to the records (under each record's seqlock) and answers its requests. */
  private land(call: Call, results: ReadonlyArray<number | false>): void {
    const now = this.time[0]!;
    // Results per op: [new, old] (lax), or [cumulative, mine] after, then before (instance-aware).
    const stride = strideOf(call.partition);
    const half = stride / 2;
    // Per record, in op order: what now counts as delivered, and the Redis value after its last op.
    const finals = new Map<Entry, Final>();
    const track = (entry: Entry, delivered: number, remote: number, remoteMine: number): void => {
      const f = finals.get(entry) ?? { delivered: 0, remote, remoteMine };
      f.delivered += delivered;
      f.remote = remote;
      f.remoteMine = remoteMine;
      finals.set(entry, f);
    };
    /** Result `k` of op `i` as it stands after the op: its "before" value where the op was refused. */
    const after = (i: number, k: number): number => {
      const v = results[stride * i + k];
      return v === false || v === undefined ? (results[stride * i + half + k] as number) : v;
    };
    const overwritten = overwrites(call, results, stride);
    for (let i = 0; i < call.entries.length; i++) {
      const entry = call.entries[i];
      const refused = results[stride * i] === false;
      const value = after(i, 0);
      const mine = half === 2 ? after(i, 1) : 0;
      if (entry === undefined && call.answers[i]!.mode === IaMode.CLEAR_MINE) {
        // My slices are gone: each cumulative lost my slice (as last known), and my slice is 0.
        for (const e of this.records.ofPartition(call.partition)) {
          const f = finals.get(e);
          const [remote, remoteMine] = f === undefined ? this.records.remote(e) : [f.remote, f.remoteMine];
          track(e, 0, remote - remoteMine, 0);
        }
      } else if (entry === undefined) {
        for (const e of this.records.ofPartition(call.partition)) track(e, 0, 0, 0); // a clear left the partition empty
      } else if (refused && call.deltas[i] !== 0 && !overwritten(entry)) {
        // A refused ADD (the Redis value would leave ±(2^53 − 1)) delivered nothing: it stays pending (and
        // dirty, so it counts and is offered again), and close() reports it if it never fits.
        this.lastError = `Redis refused a delta of ${call.deltas[i]} for lax counter "${entry.key}" (its value would leave ±(2^53 − 1))`;
        this.dirty[call.partition]!.add(entry);
        track(entry, 0, value, mine);
      } else {
        track(entry, call.deltas[i]!, value, mine);
      }
    }
    // Records first, answers after: a caller that reads the record once answered must see this call.
    this.delivered += this.records.commit(finals, now);
    for (let i = 0; i < call.entries.length; i++) {
      const op = call.answers[i];
      if (op === undefined) continue;
      const r = op.request;
      if (r.answered) continue;
      for (let k = 0; k < stride; k++) {
        const v = results[stride * i + k];
        r.results[stride * op.index + k] = v === false ? Number.NaN : k < half ? after(i, k) : (v as number);
      }
      if (--r.remaining === 0) {
        r.answered = true;
        this.reply({ type: 'result', id: r.id, results: r.results });
      }
    }
  }

  private answerError(r: Request, code: ErrorCodeValue, message: string): void {
    this.answerWith(r, new TallyworksError(code, message));
  }

  private answerWith(r: Request, failure: TallyworksError): void {
    if (r.answered) return;
    r.answered = true;
    this.reply({ type: 'error', id: r.id, error: toWireError(failure) });
  }

  /**
   * Requests past their deadline. Still queued (behind an unresolved call of their partition): never sent,
   * so not applied. Inside an unresolved call: the caller learns the outcome is unknown.
   */
  private expireRequests(): void {
    const now = Date.now();
    for (let p = 0; p < FLUSH_PARTITIONS; p++) {
      const queue = this.queued[p]!;
      if (queue.length === 0) continue;
      for (const op of queue) {
        if (!op.request.answered && now >= op.request.deadline) {
          this.answerError(op.request, ErrorCode.REDIS_UNAVAILABLE, `Redis did not take calls for ${this.commandTimeoutMs} ms; the lax counter operation was not applied`);
        }
      }
      this.queued[p] = queue.filter((op) => !op.request.answered);
    }
    for (const call of this.unresolved) {
      if (call === undefined) continue;
      for (const op of call.answers) {
        if (op !== undefined && !op.request.answered && now >= op.request.deadline) {
          this.answerError(
            op.request,
            ErrorCode.REDIS_OUTCOME_UNKNOWN,
            `Redis did not answer within ${this.commandTimeoutMs} ms; the lax counter operation may or may not have been applied (its pending deltas are delivered exactly once either way)`,
          );
        }
      }
    }
  }

  /** Keys holding undelivered deltas: dirty, or in an unresolved call (a key may be both: counted once). */
  private pendingKeys(): number {
    const keys = new Set<Entry>();
    for (let p = 0; p < FLUSH_PARTITIONS; p++) {
      for (const e of this.dirty[p]!) keys.add(e);
      const call = this.unresolved[p];
      if (call !== undefined) call.entries.forEach((e, i) => e !== undefined && call.deltas[i] !== 0 && keys.add(e));
    }
    return keys.size;
  }

  private publishGauges(): void {
    Atomics.store(this.gauges, 0, this.cycles | 0);
  }

  /** True when nothing is dirty (as of the last scan), queued or unresolved. */
  idle(): boolean {
    return this.pendingKeys() === 0 && !this.hasQueued();
  }

  stats(): FlusherStats {
    return {
      cycles: this.cycles,
      commands: this.commands,
      failures: this.failures,
      delivered: this.delivered,
      pendingKeys: this.pendingKeys(),
      unresolved: this.unresolved.filter((c) => c !== undefined).length,
      heartbeats: this.heartbeats,
      lastSuccessAt: this.lastSuccessAt,
      lastError: this.lastError,
    };
  }

  /**
   * One heartbeat round: ia-beat.lua on every instance-aware partition, pipelined (each also does a bounded
   * step of that partition's upkeep). A failure is counted, never thrown: the next round tries again.
   */
  async beat(): Promise<void> {
    if (!isReady(this.client)) return;
    const rounds = await Promise.allSettled(this.beatKeys.map((k) => runBeat(this.client, k, this.caller, this.caller.retentionMs, BeatMode.BEAT)));
    const failed = rounds.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed === undefined) {
      this.heartbeats++;
      return;
    }
    followRedirect(this.client, failed.reason);
    this.failures++;
    this.lastError = redisFailure('the heartbeat', failed.reason).message;
  }

  /** Test hook: the next `count` calls that land lose their reply (the seed's partial-failure case). */
  loseRepliesForTest(count: number): void {
    this.repliesToLose = count;
  }

  /** Cycles until idle or `timeoutMs` passed; then reports what is left and closes the connection. */
  async close(timeoutMs: number): Promise<FlusherCloseReport> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.cycle();
      this.records.takeDirty(this.dirty);
      if (this.idle() || Date.now() >= deadline) break;
      const wait = Math.min(this.nextDelayMs(0), deadline - Date.now());
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait).unref());
    }
    for (let p = 0; p < FLUSH_PARTITIONS; p++) {
      for (const op of this.queued[p]!) this.answerError(op.request, ErrorCode.CLOSED, 'the engine closed before the lax counter operation ran');
      this.queued[p]!.length = 0;
    }
    const report = { undelivered: this.records.undelivered() };
    if (this.unresolved.every((c) => c === undefined)) await dropMarkers(this.client, this.markerKeys);
    await closeClient(this.client);
    return report;
  }
}

/**
 * Which entries of a call an unconditional set or del (also on the instance) after their ADD overwrote,
 * or a clear (also of my slices) did. A refused ADD of such an entry counts as delivered: it came before
 * the write that replaced the value, so it would have been overwritten (kept pending, it would have
 * landed on the new value later).
 */
function overwrites(call: Call, results: ReadonlyArray<number | false>, stride: number): (entry: Entry) => boolean {
  let all = false;
  let some: Set<Entry> | undefined;
  for (let i = 0; i < call.answers.length; i++) {
    const op = call.answers[i];
    if (op === undefined || results[stride * i] === false) continue;
    if (op.mode === Mode.CLEAR || op.mode === IaMode.CLEAR_MINE) all = true;
    else if (op.cmp === Cmp.ALWAYS && (op.mode === Mode.SET || op.mode === Mode.DEL || op.mode === IaMode.SET_MINE || op.mode === IaMode.DEL_MINE)) (some ??= new Set()).add(op.entry!);
  }
  return (entry) => all || some?.has(entry) === true;
}
