/**
 * The one timer structure of a stat buffer: a binary min-heap of (due time, ref) pairs in typed arrays.
 * Every key's flush, every retry, every handler timeout and the close deadline is one entry, and the buffer
 * arms a single timer for the earliest. Pushing and popping allocate nothing until the heap outgrows its
 * arrays (they double).
 *
 * Entries are never removed early: the owner checks, when an entry comes due, that it still means
 * something (the key is still scheduled for exactly that time, the attempt is still running, …).
 */
export class DueHeap {
  private due = new Float64Array(1024);
  private ref = new Float64Array(1024);
  private n = 0;

  get size(): number {
    return this.n;
  }

  /** The earliest due time, or Infinity when empty. */
  peek(): number {
    return this.n === 0 ? Infinity : this.due[0]!;
  }

  /** The ref of the entry {@link pop} removed last. */
  poppedRef = 0;

  push(due: number, ref: number): void {
    if (this.n === this.due.length) this.grow();
    let i = this.n++;
    // Sift up.
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.due[parent]! <= due) break;
      this.due[i] = this.due[parent]!;
      this.ref[i] = this.ref[parent]!;
      i = parent;
    }
    this.due[i] = due;
    this.ref[i] = ref;
  }

  /** Removes the earliest entry; returns its due time and leaves its ref in {@link poppedRef}. */
  pop(): number {
    const top = this.due[0]!;
    this.poppedRef = this.ref[0]!;
    const last = --this.n;
    if (last > 0) {
      const due = this.due[last]!;
      const ref = this.ref[last]!;
      let i = 0;
      // Sift down.
      for (;;) {
        let child = 2 * i + 1;
        if (child >= last) break;
        if (child + 1 < last && this.due[child + 1]! < this.due[child]!) child++;
        if (this.due[child]! >= due) break;
        this.due[i] = this.due[child]!;
        this.ref[i] = this.ref[child]!;
        i = child;
      }
      this.due[i] = due;
      this.ref[i] = ref;
    }
    return top;
  }

  private grow(): void {
    const due = new Float64Array(this.due.length * 2);
    const ref = new Float64Array(this.ref.length * 2);
    due.set(this.due);
    ref.set(this.ref);
    this.due = due;
    this.ref = ref;
  }
}
