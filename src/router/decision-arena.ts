/**
 * A shard's decision memory: the SharedArrayBuffers its decision records live in (records that deciders
 * on the calling threads write and the shard never does; see common/records/sliding.ts). Allocated here,
 * on the engine's thread, so they outlive any shard thread, like the arena.
 *
 * Fixed-length buffers in segments instead of the growable arena, because V8 (Node 20) runs the decision
 * code ~3.3× slower through views of a growable SharedArrayBuffer (4.4 vs 14.3 M decisions/s in one run of
 * the same loop): a segment never grows, so its views are made once and never rebuilt.
 */
import { ErrorCode, TallyworksError } from '../../common/errors.js';
import { WORD_BYTES } from '../../common/layout.js';

/** Bytes of one segment (a record larger than that gets a segment of its own). */
export const SEGMENT_BYTES = 1 << 20;
/** Words of one cache line. */
const LINE_WORDS = 8;
/** Words reserved at the start of each segment so that offset 0 means "no record" (one line). */
const FIRST_WORD = LINE_WORDS;

/** One segment and its views. */
export interface DecisionSegment {
  /** Its index among the shard's segments (what a linked thread names it by). */
  readonly index: number;
  readonly buffer: SharedArrayBuffer;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
}

/** Where a new record went. */
export interface DecisionPlace {
  readonly segment: DecisionSegment;
  readonly offset: number;
}

export class DecisionArena {
  readonly segments: DecisionSegment[] = [];
  /** Words used in the last segment. */
  private used = 0;
  private bytes = 0;

  constructor(
    private readonly shard: number,
    private readonly maxBytes: number,
  ) {}

  /** Bytes of decision memory this shard holds. */
  get byteLength(): number {
    return this.bytes;
  }

  /**
   * `words` fresh words for a record, starting on a cache line (a record's lock word and totals then share
   * one line). Throws TW_CAPACITY (taking nothing) past `maxShardMemoryBytes`.
   */
  take(size: number): DecisionPlace {
    const words = Math.ceil(size / LINE_WORDS) * LINE_WORDS;
    let segment = this.segments[this.segments.length - 1];
    if (segment === undefined || this.used + words > segment.f64.length) {
      segment = this.addSegment(Math.max(SEGMENT_BYTES, (FIRST_WORD + words) * WORD_BYTES));
    }
    const offset = this.used;
    this.used += words;
    return { segment, offset };
  }

  private addSegment(bytes: number): DecisionSegment {
    if (this.bytes + bytes > this.maxBytes) {
      throw new TallyworksError(
        ErrorCode.CAPACITY,
        `shard ${this.shard} has no room for another ${bytes} bytes of decision records within maxShardMemoryBytes (${this.maxBytes}); nothing was created`,
      );
    }
    const buffer = new SharedArrayBuffer(bytes);
    const segment: DecisionSegment = { index: this.segments.length, buffer, i32: new Int32Array(buffer), f64: new Float64Array(buffer) };
    this.segments.push(segment);
    this.bytes += bytes;
    this.used = FIRST_WORD;
    return segment;
  }
}
