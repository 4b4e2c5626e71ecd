/**
 * The shared-memory layout of a shard: every index another thread reads is named here and nowhere else.
 *
 * Each shard owns two SharedArrayBuffers, both allocated by the main thread (so they outlive a shard
 * thread that dies) and handed to the shard thread when it attaches:
 *
 * ```
 *  header (fixed, HEADER_BYTES)                 Int32 index         Float64 index
 *  ┌──────────────────────────────┐
 *  │ appliedSeq                   │ H_APPLIED_SEQ 0   last batch fully applied (serial number, wraps)
 *  │ batchSeq                     │ H_BATCH_SEQ   1   batch being applied (journal)
 *  │ progress                     │ H_PROGRESS    2   ops of batchSeq fully applied (journal)
 *  │ undoOp                       │ H_UNDO_OP     3   op whose bucket write may be half done, or -1
 *  │ undoSlot                     │ H_UNDO_SLOT   4   record whose seqlock may be left odd, or 0
 *  │ attaches                     │ H_ATTACHES    5   times a shard thread attached (1 + restarts)
 *  │ records                      │ H_RECORDS     6   records initialised
 *  │ (reserved)                   │ 7
 *  │ undoPos                      │                   HF_UNDO_POS 4   arena Float64 index of that bucket
 *  │ undoOld                      │                   HF_UNDO_OLD 5   its value before the write
 *  └──────────────────────────────┘
 *
 *  arena (growable; the router allocates, the shard alone writes) — records at 8-byte word offsets
 *  ┌───────────┬───────────────────────────────────────────────────────────────┐
 *  │ words 0-7 │ reserved: offset 0 means "no record"                           │
 *  ├───────────┼───────────────────────────────────────────────────────────────┤
 *  │ record o  │ i32[2o] seqlock · i32[2o+1] kind · f64[o+1..] kind-specific     │
 *  └───────────┴───────────────────────────────────────────────────────────────┘
 *
 *  hopping-window record (kind KIND_HOP), W = size
 *  f64[o+1] unitMs · f64[o+2] W · f64[o+3] head unit index (-Infinity when empty)
 *  f64[o+4] head unit start, ms (NaN when empty) · f64[o+5] head bucket position (head mod W)
 *  f64[o+6 .. o+6+W) buckets; unit index k lives at o+6 + (k mod W)
 *  (start and position are a cache of the head for the apply fast path: no division per op)
 * ```
 *
 * The arena grows in place (`SharedArrayBuffer.prototype.grow`, the documented growth protocol): the
 * router grows it before it hands out an offset past the end, and both sides rebuild their fixed-length
 * views when they see `byteLength` change. Fixed-length views, because V8 (Node 20) increments through a
 * length-tracking view of a growable buffer ~6× slower (bench/typed-array-views: 18 vs 2.8 ns).
 *
 * Imported by worker threads: imports nothing main-only.
 */

export const H_APPLIED_SEQ = 0;
export const H_BATCH_SEQ = 1;
export const H_PROGRESS = 2;
export const H_UNDO_OP = 3;
export const H_UNDO_SLOT = 4;
export const H_ATTACHES = 5;
export const H_RECORDS = 6;
/** Int32 slots of the header in use. */
export const HEADER_I32_SLOTS = 8;
export const HF_UNDO_POS = 4;
export const HF_UNDO_OLD = 5;
/** Float64 slots of the header in use (the first four overlap the Int32 slots above). */
export const HEADER_F64_SLOTS = 6;
export const HEADER_BYTES = 64;

/** Arena words (8 bytes each) reserved at the start so that offset 0 can mean "no record". */
export const ARENA_FIRST_WORD = 8;
export const WORD_BYTES = 8;

/** Record kinds (Int32 at i32[2o+1]); 0 means "not initialised yet". */
export const KIND_NONE = 0;
export const KIND_HOP = 1;

/** Hopping-window record fields, as Float64 offsets from the record's word offset. */
export const HOP_UNIT_MS = 1;
export const HOP_SIZE = 2;
export const HOP_HEAD = 3;
export const HOP_HEAD_START = 4;
export const HOP_HEAD_POS = 5;
export const HOP_BUCKETS = 6;

/** Words a hopping window of `size` buckets occupies. */
export function hopRecordWords(size: number): number {
  return HOP_BUCKETS + size;
}

/** The largest `size` a hopping window may have (keeps one record under 8 MiB). */
export const MAX_HOP_SIZE = 1 << 20;

/** Views over a shard's memory; rebuilt whenever the arena's byteLength changes. */
export interface ShardViews {
  readonly header: Int32Array;
  readonly headerF64: Float64Array;
  i32: Int32Array;
  f64: Float64Array;
}

/** Builds views over a shard's header and the arena as it is now. */
export function shardViews(header: SharedArrayBuffer, arena: SharedArrayBuffer): ShardViews {
  const bytes = arena.byteLength;
  return {
    header: new Int32Array(header, 0, HEADER_BYTES / 4),
    headerF64: new Float64Array(header, 0, HEADER_BYTES / 8),
    i32: new Int32Array(arena, 0, bytes / 4),
    f64: new Float64Array(arena, 0, bytes / 8),
  };
}

/** Re-creates the arena views when the arena has grown since they were made. */
export function refreshArenaViews(views: ShardViews, arena: SharedArrayBuffer): void {
  if (views.f64.byteLength !== arena.byteLength) {
    const bytes = arena.byteLength;
    views.i32 = new Int32Array(arena, 0, bytes / 4);
    views.f64 = new Float64Array(arena, 0, bytes / 8);
  }
}

/**
 * Serial-number comparison for the Int32 batch sequence (it wraps after 2^31 batches): true when `a`
 * comes after `b`.
 */
export function seqAfter(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}
