/**
 * The dirty bits a shard sets for the lax counters a batch added to (see common/layout.ts, "dirty bitmap"):
 * gathered during the batch in this thread's own memory and published to the shared bitmap once per batch,
 * one Atomics.or per word, instead of a locked operation per add.
 *
 * Imported by worker threads: imports nothing main-only.
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
