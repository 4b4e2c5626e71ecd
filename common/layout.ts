/**
 * The shared-memory layout of a shard: every index another thread reads is named here and nowhere else.
 *
 * Each shard owns two SharedArrayBuffers, both allocated by the main thread (so they outlive a shard
 * thread that dies) and handed to the shard thread when it attaches:
 *
 * ```
 *  header (fixed, HEADER_BYTES = 3 cache lines)   Int32 index         Float64 index
 *  line 0 — read by the router while it waits; written by the shard once per batch
 *  ┌──────────────────────────────┐
 *  │ appliedSeq                   │ H_APPLIED_SEQ 0   last batch fully applied (serial number, wraps)
 *  │ batchSeq                     │ H_BATCH_SEQ   1   batch being applied (journal)
 *  │ attaches                     │ H_ATTACHES    5   times a shard thread attached (1 + restarts)
 *  │ records                      │ H_RECORDS     6   records initialised
 *  line 1 — the journal: written by the shard on every op, read only by a replacement shard thread
 *  │ undoPos                      │                   HF_UNDO_POS 8   where the write in flight goes (see below)
 *  │ undoOld                      │                   HF_UNDO_OLD 9   its value before the write
 *  │ step                         │                   HF_STEP    10   journal: op · STEP_SCALE + writes done
 *  │ undoStep                     │                   HF_UNDO_STEP 11 the step the undo entry belongs to, or -1
 *  │ undoOffset                   │ H_UNDO_OFFSET 24  record whose seqlock may be left odd, or 0
 *  line 2 — the arena's bump allocator (router and shard), and the flusher's repair note
 *  │ usedWords                    │ H_USED_WORDS 32   arena words handed out (Atomics)
 *  │ flushOffset                    │ H_FLUSH_OFFSET 33   counter record whose seqlock the flusher holds, or 0
 *  └──────────────────────────────┘
 *  Separate lines because the router spins on appliedSeq while the shard applies: journal stores on the
 *  same line would bounce it between the two cores on every op.
 *  undoPos ≥ 0 is a Float64 index of the arena; −1 − p names Uint32 index p (narrow buckets, counts).

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
 *
 *  calendar record (kind KIND_CAL), R rings holding B buckets in all (shape from its calendar config)
 *  i32[2o+2] config id · i32[2o+3] wide: Float64 index of promoted buckets, 0 while narrow
 *  i32[2o+5] finest-unit index of the latest count (CAL_EMPTY_HEAD: none)
 *  f64[o+3] latest count
 *  i32[2o+8+r] ring r head unit index (CAL_EMPTY_HEAD when empty)
 *  u32[2o+8+R .. +B) buckets, ring by ring; unit index k of ring r lives at base_r + (k mod count_r)
 *  the latest count holds the events of the latest finest unit, not yet added to the rings: an event in that
 *  unit is one add to it instead of one per ring; the shard folds it into every ring (under the seqlock)
 *  when an event of a later unit arrives, and readers add it to the bucket of its unit in each ring
 *  once any bucket would pass 2^32 − 1, the shard copies all B buckets to f64[wide .. wide+B) and sets
 *  wide (under the seqlock); from then on the Float64 copy is the only one (exact to 2^53)
 *
 *  counter record (kind KIND_CNT, CNT_RECORD_WORDS words): strict, lax and instance-aware lax counters
 *  i32[2o] seqlock — held by the flusher (the shard's one write, the total, is a single aligned store)
 *  i32[2o+2] lax index: bit of this record in the shard's dirty bitmap, or -1 (no flusher: embedded)
 *  f64[o+2] total       — shard: every local delta ever applied (embedded: the value itself)
 *  f64[o+3] committed   — flusher: the part of total that has landed in Redis
 *  f64[o+4] remote      — flusher: the Redis value last read, which includes `committed`
 *  f64[o+5] remoteAt    — flusher: engine-clock ms of that read (-Infinity: never read)
 *  f64[o+6] target      — flusher: `committed` once the flush call in flight for this record lands (NaN:
 *                         none); i32[2o+3] the record's op index in that call. Written before the call is
 *                         sent, so a replacement flusher can resolve a call its dead predecessor sent
 *  f64[o+7] remoteMine  — flusher, instance-aware lax only: this instance's slice as Redis last answered
 *                         (`remote` is then the cumulative)
 *  the local estimate is remote + total − committed (instance-aware: and remoteMine + total − committed);
 *  the pending delta is total − committed
 *
 *  dirty bitmap (a second growable buffer per shard, Int32): bit i (word i >>> 5, bit i & 31) is set by the
 *  shard (Atomics.or, once per batch) after it added to the counter of lax index i; the flusher takes a
 *  word's bits with Atomics.exchange(word, 0) before it reads the totals, so an add it misses sets the bit
 *  again for the next flush
 *
 *  sliding-window decision record (kind KIND_SLIDE; see common/records/sliding.ts): deciders on any thread
 *  write it under its owner lock, the shard never does, so the journal is not involved
 *  i32[2o] owner lock: even = free (a version, so readers use it as a seqlock), odd = 2·owner + 1 held
 *  i32[2o+2] version the lock was taken at (the holder publishes it + 2) · i32[2o+3] stamp (which allocation this is: handles check it)
 *  f64[o+2] last used, ms · f64[o+3] suppression factor cached · f64[o+4] until when (ms)
 *  then one section per window, from f64[o+5]: head group index (-Infinity: empty) · total · declined ·
 *  tail: the oldest group index holding a count (Infinity: none) ·
 *  G group counts (group g at g mod G) · with suppression, G declined counts
 *
 *  fixed-window decision record (kind KIND_FIXED; see common/records/fixed-window.ts): a calendar limit's
 *  count of one id over the newest n units of one ring; only the engine's thread writes or reads it
 *  f64[o] kind · f64[o+1] head unit index · f64[o+2] total of the n buckets · f64[o+3] holds (reservations)
 *  f64[o+4] when the holds' generation began (its earliest hold), ms · f64[o+5] the newest hold, ms
 *  f64[o+6 .. o+6+n) buckets (unit k at k mod n)
 *
 *  result cells (router-allocated, 2 words each): a counter op writes f64[c] its new value (NaN when it
 *  would leave the safe-integer range) and f64[c+1] the old one
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
export const H_UNDO_OFFSET = 24;
export const H_USED_WORDS = 32;
export const H_FLUSH_OFFSET = 33;
export const H_ATTACHES = 5;
export const H_RECORDS = 6;
export const HF_UNDO_POS = 8;
export const HF_UNDO_OLD = 9;
export const HF_STEP = 10;
export const HF_UNDO_STEP = 11;
/** Bytes of one cache line: header fields written by different threads sit on different lines. */
export const CACHE_LINE_BYTES = 64;
/**
 * Journal steps: op i with w writes done is step i · STEP_SCALE + w. One Float64 store advances both, so
 * a thread that dies between two stores never leaves "op done" and "writes done" disagreeing.
 */
export const STEP_SCALE = 2 ** 21;
export const HEADER_BYTES = 3 * CACHE_LINE_BYTES;

/** Arena words (8 bytes each) reserved at the start so that offset 0 can mean "no record". */
export const ARENA_FIRST_WORD = 8;
export const WORD_BYTES = 8;

/** Record kinds (Int32 at i32[2o+1]); 0 means "not initialised yet". */
export const KIND_NONE = 0;
export const KIND_HOP = 1;
export const KIND_CAL = 2;
export const KIND_CNT = 3;
/** A sliding-window decision record: written by deciders on the calling threads, never by the shard. */
export const KIND_SLIDE = 4;
/** A calendar limit's decision record (fixed calendar windows): written by deciders, never by the shard. */
export const KIND_FIXED = 5;

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

/** Calendar record fields, as Int32 offsets from 2·o (the record's first Int32). */
export const CAL_CONFIG = 2;
export const CAL_WIDE = 3;
/** (Int32 4 is unused; 5 the latest unit.) */
export const CAL_LATEST_K = 5;
export const CAL_RINGS = 8;
/** Calendar record fields, as Float64 offsets from o. */
export const CALF_LATEST = 3;
/** Head of a ring that holds nothing yet. */
export const CAL_EMPTY_HEAD = -(2 ** 31);
/** The largest count a narrow (Uint32) bucket holds. */
export const NARROW_MAX = 0xffff_ffff;

/** Words a calendar record of `rings` rings and `buckets` buckets occupies. */
export function calRecordWords(rings: number, buckets: number): number {
  return CAL_RINGS / 2 + Math.ceil((rings + buckets) / 2);
}

/** Uint32 index of bucket 0 of a calendar record at word offset `o`. */
export function calBucketBase(o: number, rings: number): number {
  return 2 * o + CAL_RINGS + rings;
}

/** Counter record fields: Int32 offset from 2·o, Float64 offsets from o. */
export const CNT_LAX = 2;
/** Int32 offset: the record's op index in the flush call of CNTF_TARGET (its result in the call's marker). */
export const CNT_CALL_OP = 3;
export const CNTF_TOTAL = 2;
export const CNTF_COMMITTED = 3;
export const CNTF_REMOTE = 4;
export const CNTF_REMOTE_AT = 5;
export const CNTF_TARGET = 6;
export const CNTF_REMOTE_MINE = 7;
/** Words a counter record occupies. */
export const CNT_RECORD_WORDS = 8;

/**
 * Sliding-window decision record fields (kind KIND_SLIDE). Int32 offsets from 2·o: the owner lock word
 * (i32[2o], common/records/owner-lock.ts) and the kind, then these; Float64 offsets from o.
 */
export const SL_VERSION = 2;
export const SL_STAMP = 3;
export const SLF_LAST_USED = 2;
export const SLF_SF = 3;
export const SLF_SF_UNTIL = 4;
/** Where the first window's section starts (Float64 offset from o). */
export const SLF_WINDOWS = 5;
/** Window section fields, as Float64 offsets from the section's start. */
export const SLW_HEAD = 0;
export const SLW_TOTAL = 1;
export const SLW_DECLINED = 2;
/** The oldest group index holding a count (Infinity: none), where a refusal's wait is counted from. */
export const SLW_TAIL = 3;
export const SLW_GROUPS = 4;

/** Fixed-window decision record fields (kind KIND_FIXED), as Float64 offsets from o. */
export const FXF_KIND = 0;
export const FXF_HEAD = 1;
export const FXF_TOTAL = 2;
export const FXF_HOLDS = 3;
/** The series the outstanding holds belong to (see holdFixed in common/records/fixed-window.ts). */
export const FXF_HOLDS_SERIES = 4;
export const FXF_HOLDS_LAST = 5;
export const FXF_BUCKETS = 6;

/** Initial size of a shard's dirty bitmap; it grows with the lax counters. */
export const DIRTY_INITIAL_BYTES = 1024;

/** Words one result cell occupies (outcome, retry-after). */
export const CELL_WORDS = 2;

/** Views over a shard's memory; rebuilt whenever the arena's byteLength changes. */
export interface ShardViews {
  readonly header: Int32Array;
  readonly headerF64: Float64Array;
  i32: Int32Array;
  u32: Uint32Array;
  f64: Float64Array;
}

/** Builds views over a shard's header and the arena as it is now. */
export function shardViews(header: SharedArrayBuffer, arena: SharedArrayBuffer): ShardViews {
  const bytes = arena.byteLength;
  return {
    header: new Int32Array(header, 0, HEADER_BYTES / 4),
    headerF64: new Float64Array(header, 0, HEADER_BYTES / 8),
    i32: new Int32Array(arena, 0, bytes / 4),
    u32: new Uint32Array(arena, 0, bytes / 4),
    f64: new Float64Array(arena, 0, bytes / 8),
  };
}

/** Re-creates the arena views when the arena has grown since they were made. */
export function refreshArenaViews(views: ShardViews, arena: SharedArrayBuffer): void {
  if (views.f64.byteLength !== arena.byteLength) {
    const bytes = arena.byteLength;
    views.i32 = new Int32Array(arena, 0, bytes / 4);
    views.u32 = new Uint32Array(arena, 0, bytes / 4);
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

/**
 * Hands out `words` arena words: a bump allocator in the header, shared by the router (new records) and the
 * shard (promoted buckets), growing the arena when the words pass its end. Returns the word offset, or -1
 * when the arena would pass its maximum (nothing is taken then).
 */
export function allocWords(header: Int32Array, arena: SharedArrayBuffer, words: number): number {
  for (;;) {
    const used = Atomics.load(header, H_USED_WORDS);
    const end = used + words;
    if (end * WORD_BYTES > arena.maxByteLength) return -1;
    if (Atomics.compareExchange(header, H_USED_WORDS, used, end) !== used) continue;
    ensureArenaBytes(arena, end * WORD_BYTES);
    return used;
  }
}

/**
 * Grows the arena to at least `bytes` (a whole number of words, at most its maximum: see allocWords),
 * doubling, capped at its maximum's last whole word (a maximum such as 1.5 MiB + 4 is not one); safe when
 * two threads race.
 */
function ensureArenaBytes(arena: SharedArrayBuffer, bytes: number): void {
  const cap = Math.floor(arena.maxByteLength / WORD_BYTES) * WORD_BYTES;
  while (arena.byteLength < bytes) {
    const before = arena.byteLength;
    const target = Math.min(cap, Math.max(bytes, arena.byteLength * 2));
    try {
      arena.grow(Math.ceil(target / WORD_BYTES) * WORD_BYTES);
    } catch (err) {
      // The other thread grew it first (grow refuses to shrink); loop and look again.
      if (arena.byteLength === before) throw err;
    }
  }
}
