/**
 * A shard's memory as the router holds it: the header, the arena and the dirty bitmap (allocated here, on
 * the calling thread, so they outlive a shard thread that dies), the arena's allocator with its free lists
 * (released records, result cells), the lax indexes, and consistent reads of records (seqlock).
 * See common/layout.ts for what lives where.
 */
import { ErrorCode, TallyworksError } from '../../common/errors.js';
import {
  allocWords,
  ARENA_FIRST_WORD,
  CELL_WORDS,
  DIRTY_INITIAL_BYTES,
  H_APPLIED_SEQ,
  H_USED_WORDS,
  HEADER_BYTES,
  refreshArenaViews,
  shardViews,
  type ShardViews,
} from '../../common/layout.js';
import { readBegin, readValid } from '../../common/seqlock.js';

/** Initial arena size; it grows by doubling up to `maxShardMemoryBytes`. */
const INITIAL_ARENA_BYTES = 1 << 20;
/** Seqlock read attempts before a reader concludes the writer died mid-write and yields. */
const READ_SPINS = 1 << 16;
/** Result cells allocated at a time. */
const CELL_BLOCK = 1024;
/** What a result cell holds until the shard writes it. */
const CELL_UNWRITTEN = -1;

/** What {@link ShardMemory.readConsistent} returns when a writer held the record for the whole spin. */
export const MISSED: unique symbol = Symbol('missed');

export class ShardMemory {
  readonly header: SharedArrayBuffer;
  readonly arena: SharedArrayBuffer;
  /** The dirty bitmap of this shard's lax counters (see common/layout.ts). */
  readonly dirty: SharedArrayBuffer;
  private readonly views: ShardViews;
  /** Lax indexes handed out (bits of `dirty` in use). */
  private laxCount = 0;
  /** Result cells not in use (Float64 indexes into the arena). */
  private readonly freeCells: number[] = [];
  /** Offsets of released records, by record size, reusable once the release is applied. */
  private readonly freeRecords = new Map<number, number[]>();

  constructor(
    private readonly shard: number,
    private readonly maxBytes: number,
  ) {
    this.header = new SharedArrayBuffer(HEADER_BYTES);
    this.arena = new SharedArrayBuffer(Math.min(INITIAL_ARENA_BYTES, maxBytes), { maxByteLength: maxBytes });
    this.views = shardViews(this.header, this.arena);
    this.views.header[H_USED_WORDS] = ARENA_FIRST_WORD;
    this.dirty = new SharedArrayBuffer(DIRTY_INITIAL_BYTES, { maxByteLength: Math.max(DIRTY_INITIAL_BYTES, maxBytes / 64) });
  }

  /** The last batch the shard has fully applied (published by the shard with Atomics.store). */
  appliedSeq(): number {
    return Atomics.load(this.views.header, H_APPLIED_SEQ);
  }

  /** The arena offset of `words` words for a new record: a released one of that size, or fresh words. */
  takeRecord(words: number): number {
    return this.freeRecords.get(words)?.pop() ?? this.allocate(words, 'record');
  }

  /** Gives a released record's words back (once the shard has applied the release). */
  returnRecord(offset: number, words: number): void {
    let list = this.freeRecords.get(words);
    if (list === undefined) this.freeRecords.set(words, (list = []));
    list.push(offset);
  }

  private allocate(words: number, what: string): number {
    const offset = allocWords(this.views.header, this.arena, words);
    if (offset === -1) {
      throw new TallyworksError(
        ErrorCode.CAPACITY,
        `shard ${this.shard} has no room for a ${what} of ${words * 8} bytes within maxShardMemoryBytes (${this.maxBytes}); nothing was created`,
      );
    }
    return offset;
  }

  /**
   * The next lax index: the counter's bit in the dirty bitmap, which grows (before the index is handed out,
   * so the shard and the flusher find the bit inside the buffer).
   */
  allocLaxIndex(): number {
    const index = this.laxCount;
    const bytes = ((index >>> 5) + 1) * 4;
    if (bytes > this.dirty.byteLength) {
      if (bytes > this.dirty.maxByteLength) {
        throw new TallyworksError(ErrorCode.CAPACITY, `shard ${this.shard} has no room for another lax counter within maxShardMemoryBytes; nothing was created`);
      }
      this.dirty.grow(Math.min(this.dirty.maxByteLength, Math.max(bytes, this.dirty.byteLength * 2)));
    }
    this.laxCount++;
    return index;
  }

  /** A result cell (Float64 index) for one counter op; give it back with freeCell once read. */
  allocCell(): number {
    if (this.freeCells.length === 0) {
      const base = this.allocate(CELL_BLOCK * CELL_WORDS, 'block of result cells');
      for (let c = CELL_BLOCK - 1; c >= 0; c--) this.freeCells.push(base + c * CELL_WORDS);
    }
    return this.freeCells.pop()!;
  }

  freeCell(cell: number): void {
    this.freeCells.push(cell);
  }

  /** Reads a result cell the shard has written: [new value, old value]. */
  readCell(cell: number): [number, number] {
    this.refreshViews();
    return [this.views.f64[cell]!, this.views.f64[cell + 1]!];
  }

  /** Marks a result cell unwritten before its op is sent. */
  resetCell(cell: number): void {
    this.refreshViews();
    this.views.f64[cell] = CELL_UNWRITTEN;
  }

  /**
   * Runs `read` over the shard's memory until it ran while no writer held the seqlock of the record at
   * `offset` (see common/seqlock.ts), and returns its result; MISSED if a writer held it for the whole spin.
   */
  readConsistent<T>(offset: number, read: (views: ShardViews) => T): T | typeof MISSED {
    this.refreshViews();
    const i32 = this.views.i32;
    for (let i = 0; i < READ_SPINS; i++) {
      const s = readBegin(i32, offset);
      if (s === -1) continue;
      // After readBegin: buckets the shard promoted before it are in words it allocated before it.
      this.refreshViews();
      const value = read(this.views);
      if (readValid(i32, offset, s)) return value;
    }
    return MISSED;
  }

  /**
   * Rebuilds the views if the arena may have grown. A plain read of the bump allocator instead of the
   * arena's byteLength (≈ 24 ns a check): words are handed out before the arena grows, and a reader reaches
   * words the shard allocated (promoted buckets) only through a seqlock read, whose atomic loads order them.
   */
  private refreshViews(): void {
    // `length`, not `byteLength`: the latter measured 13–18 ns a read, the former about nothing (Node 20).
    if (this.views.header[H_USED_WORDS]! > this.views.f64.length) refreshArenaViews(this.views, this.arena);
  }
}
