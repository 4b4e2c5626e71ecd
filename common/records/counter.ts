/**
 * The counter record kind: a shard-held counter (embedded mode's strict and lax counters, and the shard
 * side of a lax counter flushed to Redis), every algorithm on it in one place. See common/layout.ts for
 * the fields.
 *  - Shard side: its init, its add (a lax increment), its conditional op (an embedded strict inc / set / del
 *    that answers through a result cell), and the dirty marks a batch's adds leave in the shard's dirty
 *    bitmap ({@link DirtyMarks}).
 *  - Flusher side ({@link LaxRecords}): the dirty bits it takes, each record's pending delta, the target a
 *    call in flight writes before it is sent, and the writes that commit a landed call. Every flusher write
 *    to a record is made under its seqlock, with the record's offset in the shard header's H_FLUSH_OFFSET
 *    so that a replacement flusher can release a lock a dead one left odd. The calls themselves are
 *    workers/flusher-core.ts's.
 *
 * Imported by worker threads: imports nothing main-only.
 */
import { protocolError } from '../errors.js';
import {
  CNT_CALL_OP,
  CNT_LAX,
  CNT_RECORD_WORDS,
  CNTF_COMMITTED,
  CNTF_REMOTE,
  CNTF_REMOTE_AT,
  CNTF_REMOTE_MINE,
  CNTF_TARGET,
  CNTF_TOTAL,
  H_FLUSH_OFFSET,
  refreshArenaViews,
  shardViews,
  type ShardViews,
} from '../layout.js';
import { compare, CounterMode, type CounterOp, type LaxEntryInit } from '../messages.js';
import { readBegin, writeBegin, writeEnd } from '../seqlock.js';
import type { Journal } from './journal.js';

/** Writes a fresh record: total 0, nothing committed; `lax` is its lax index (-1 for an embedded counter). */
export function initCounter(views: ShardViews, o: number, lax: number): void {
  const { i32, f64 } = views;
  i32[2 * o + CNT_LAX] = lax;
  f64[o + CNTF_TOTAL] = 0;
  f64[o + CNTF_COMMITTED] = 0;
  f64[o + CNTF_REMOTE] = 0;
  f64[o + CNTF_REMOTE_AT] = Number.NEGATIVE_INFINITY;
  f64[o + CNTF_TARGET] = Number.NaN;
  f64[o + CNTF_REMOTE_MINE] = 0;
}

/** Adds to the total (the op's only write); returns the counter's lax index, to be marked dirty, or -1. */
export function addCounter(views: ShardViews, journal: Journal, o: number, delta: number): number {
  journal.writeOnly(o + CNTF_TOTAL, views.f64[o + CNTF_TOTAL]! + delta);
  return views.i32[2 * o + CNT_LAX]!;
}

/** The counter's lax index, or -1 (embedded). */
export function laxIndexOf(views: ShardViews, o: number): number {
  return views.i32[2 * o + CNT_LAX]!;
}

/**
 * An in-process counter op. It writes [new, old] to the result cell before the journaled write of the
 * total, so a resumed op whose write was done finds its result already in the cell (and is not run again).
 */
export function counterOp(views: ShardViews, journal: Journal, op: CounterOp, shard: number): void {
  const f64 = views.f64;
  const o = op.offset;
  if (journal.resuming()) {
    journal.write(o + CNTF_TOTAL, f64[o + CNTF_TOTAL]!); // skipped: the thread that died made it
    return;
  }
  const old = f64[o + CNTF_TOTAL]!;
  let next = old;
  if (compare(op.cmp, old, op.x)) {
    if (op.mode === CounterMode.INC) next = old + op.n;
    else if (op.mode === CounterMode.SET) next = op.n;
    else if (op.mode === CounterMode.DEL) next = 0;
    else throw protocolError(`shard ${shard} counter op mode`, op.mode);
  }
  const safe = Math.abs(next) <= Number.MAX_SAFE_INTEGER;
  f64[op.cell] = safe ? next : Number.NaN;
  f64[op.cell + 1] = old;
  if (safe && next !== old) journal.write(o + CNTF_TOTAL, next);
}

// ── shard side: dirty marks ──────────────────────────────────────────────────────────────────────

/**
 * The dirty bits a shard sets for the lax counters a batch added to (see common/layout.ts, "dirty bitmap"):
 * gathered during the batch in this thread's own memory and published to the shared bitmap once per batch,
 * one Atomics.or per word, instead of a locked operation per add.
 */
export class DirtyMarks {
  private dirty: Int32Array;
  /** Bits gathered during the batch, and the words they touch. */
  private marks = new Int32Array(32);
  private readonly markedWords: number[] = [];

  /** `buffer`: the shard's dirty bitmap (it grows when the router hands out more lax indexes). */
  constructor(private readonly buffer: SharedArrayBuffer) {
    this.dirty = new Int32Array(buffer);
  }

  mark(lax: number): void {
    const w = lax >>> 5;
    if (w >= this.marks.length) {
      const grown = new Int32Array(Math.max(w + 1, this.marks.length * 2));
      grown.set(this.marks);
      this.marks = grown;
    }
    if (this.marks[w] === 0) this.markedWords.push(w);
    this.marks[w]! |= 1 << (lax & 31);
  }

  /**
   * Sets the batch's bits in the shared bitmap. After every total the batch wrote (the locked Atomics.or
   * orders them), so a flusher that takes a bit reads totals that include the adds behind it; before
   * appliedSeq, so a replay of the batch never depends on this thread's memory.
   */
  publish(): void {
    if (this.markedWords.length === 0) return;
    if (this.marks.length > this.dirty.length) this.dirty = new Int32Array(this.buffer);
    for (const w of this.markedWords) {
      Atomics.or(this.dirty, w, this.marks[w]!);
      this.marks[w] = 0;
    }
    this.markedWords.length = 0;
  }
}

// ── flusher side ─────────────────────────────────────────────────────────────────────────────────

/** A lax counter as the flusher knows it. */
export interface Entry {
  readonly shard: number;
  readonly offset: number;
  readonly key: string;
  readonly partition: number;
}

/**
 * What Redis did with a record of a landed call: what now counts as delivered, and its value after (for an
 * instance-aware counter, the cumulative and this instance's slice).
 */
export interface Final {
  delivered: number;
  remote: number;
  remoteMine: number;
}

interface Shard {
  readonly views: ShardViews;
  readonly arena: SharedArrayBuffer;
  readonly dirtyBuffer: SharedArrayBuffer;
  dirty: Int32Array;
  /** Entries by lax index. */
  readonly entries: Array<Entry | undefined>;
}

export class LaxRecords {
  private readonly shards: Shard[];

  constructor(shards: ReadonlyArray<{ header: SharedArrayBuffer; arena: SharedArrayBuffer; dirty: SharedArrayBuffer }>) {
    this.shards = shards.map((s) => ({
      views: shardViews(s.header, s.arena),
      arena: s.arena,
      dirtyBuffer: s.dirty,
      dirty: new Int32Array(s.dirty),
      entries: [],
    }));
    for (const s of this.shards) this.releaseLeftLock(s);
  }

  /** A flusher that died holding a record's seqlock left it odd: end that write (its fields are whole). */
  private releaseLeftLock(s: Shard): void {
    const offset = s.views.header[H_FLUSH_OFFSET]!;
    if (offset === 0) return;
    refreshArenaViews(s.views, s.arena);
    if (readBegin(s.views.i32, offset) === -1) writeEnd(s.views.i32, offset);
    s.views.header[H_FLUSH_OFFSET] = 0;
  }

  register(entries: readonly LaxEntryInit[]): void {
    for (const { shard, lax, offset, key, partition } of entries) {
      this.shards[shard]!.entries[lax] = { shard, offset, key, partition };
    }
  }

  /** The entry of lax counter `lax` of shard `shard`, or undefined when it is not registered. */
  entry(shard: number, lax: number): Entry | undefined {
    return this.shards[shard]?.entries[lax];
  }

  /** Every registered counter. */
  *all(): Iterable<Entry> {
    for (const s of this.shards) for (const e of s.entries) if (e !== undefined) yield e;
  }

  /** Every registered counter of partition `p`. */
  *ofPartition(p: number): Iterable<Entry> {
    for (const e of this.all()) if (e.partition === p) yield e;
  }

  /** Takes every set bit of every shard's dirty bitmap (cleared before the totals are read) into `dirty`. */
  takeDirty(dirty: ReadonlyArray<Set<Entry>>): void {
    for (const s of this.shards) {
      if (s.dirty.byteLength !== s.dirtyBuffer.byteLength) s.dirty = new Int32Array(s.dirtyBuffer);
      const words = s.dirty;
      for (let w = 0; w < words.length; w++) {
        if (words[w] === 0) continue;
        let bits = Atomics.exchange(words, w, 0);
        while (bits !== 0) {
          const bit = 31 - Math.clz32(bits & -bits);
          bits &= bits - 1;
          const entry = s.entries[w * 32 + bit];
          // Not registered yet (its message is still queued): keep the bit for the next cycle.
          if (entry === undefined) Atomics.or(words, w, 1 << bit);
          else dirty[entry.partition]!.add(entry);
        }
      }
    }
  }

  private views(entry: Entry): ShardViews {
    const s = this.shards[entry.shard]!;
    if (entry.offset + CNT_RECORD_WORDS > s.views.f64.length) refreshArenaViews(s.views, s.arena);
    return s.views;
  }

  /** The record's pending delta: every local delta minus what Redis confirmed. */
  pending(entry: Entry): number {
    const f64 = this.views(entry).f64;
    return f64[entry.offset + CNTF_TOTAL]! - f64[entry.offset + CNTF_COMMITTED]!;
  }

  /** The Redis value last seen, and (instance-aware) this instance's slice then. */
  remote(entry: Entry): [number, number] {
    const f64 = this.views(entry).f64;
    return [f64[entry.offset + CNTF_REMOTE]!, f64[entry.offset + CNTF_REMOTE_MINE]!];
  }

  /** True when a call in flight (maybe a dead predecessor's) wrote this record's target. */
  inFlight(entry: Entry): boolean {
    return !Number.isNaN(this.views(entry).f64[entry.offset + CNTF_TARGET]!);
  }

  /**
   * Opens a change of the record readers must see whole, noted in the header for a replacement (see the
   * module comment); returns its views. Close it with {@link end}.
   */
  private begin(entry: Entry): ShardViews {
    const views = this.views(entry);
    views.header[H_FLUSH_OFFSET] = entry.offset;
    writeBegin(views.i32, entry.offset);
    return views;
  }

  private end(entry: Entry, views: ShardViews): void {
    writeEnd(views.i32, entry.offset);
    views.header[H_FLUSH_OFFSET] = 0;
  }

  /** Before a call is first sent: what the record's `committed` becomes once it lands, and its op index. */
  markTarget(entry: Entry, delta: number, op: number): void {
    const v = this.begin(entry);
    const o = entry.offset;
    v.f64[o + CNTF_TARGET] = v.f64[o + CNTF_COMMITTED]! + delta;
    v.i32[2 * o + CNT_CALL_OP] = op;
    this.end(entry, v);
  }

  /** The call did not land: forget the target (the delta stays pending). */
  clearTarget(entry: Entry): void {
    this.views(entry).f64[entry.offset + CNTF_TARGET] = Number.NaN;
  }

  /**
   * Resolves a record of a call a dead predecessor left in flight: `landed` with the marker's `results`
   * (`stride` values per op), or not. Landed and not refused, the record takes its target. Returns false
   * when it had no target.
   */
  resolveTarget(entry: Entry, landed: boolean, results: ReadonlyArray<number | false> | undefined, stride: number): boolean {
    if (!this.inFlight(entry)) return false;
    const v = this.begin(entry);
    const o = entry.offset;
    const refused = landed && results![stride * v.i32[2 * o + CNT_CALL_OP]!] === false;
    if (landed && !refused) {
      v.f64[o + CNTF_COMMITTED] = v.f64[o + CNTF_TARGET]!;
      v.f64[o + CNTF_REMOTE_AT] = Number.NEGATIVE_INFINITY; // the value after it is not known: read it again
    }
    v.f64[o + CNTF_TARGET] = Number.NaN;
    this.end(entry, v);
    return true;
  }

  /** Commits a landed call's records; returns how many had a delta delivered. */
  commit(finals: ReadonlyMap<Entry, Final>, now: number): number {
    let delivered = 0;
    for (const [entry, f] of finals) {
      const v = this.begin(entry);
      const o = entry.offset;
      v.f64[o + CNTF_COMMITTED] = v.f64[o + CNTF_COMMITTED]! + f.delivered;
      v.f64[o + CNTF_REMOTE] = f.remote;
      v.f64[o + CNTF_REMOTE_MINE] = f.remoteMine;
      v.f64[o + CNTF_REMOTE_AT] = now;
      v.f64[o + CNTF_TARGET] = Number.NaN;
      this.end(entry, v);
      if (f.delivered !== 0) delivered++;
    }
    return delivered;
  }

  /** Every counter with a pending delta, by a full scan of the registered entries. */
  undelivered(): Array<[string, number]> {
    const out: Array<[string, number]> = [];
    for (const e of this.all()) {
      const d = this.pending(e);
      if (d !== 0) out.push([e.key, d]);
    }
    return out;
  }
}
