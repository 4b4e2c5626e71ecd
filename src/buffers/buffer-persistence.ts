/**
 * Opt-in storage of a stat buffer's counts (`storage` option): every `persistMs` the counts not yet
 * delivered — held, and being delivered — are saved as one entry, `buffers/<name>`; a buffer of the same
 * name made on the same storage (a restarted process) adds them back and delivers them. A process killed
 * with SIGKILL loses at most what was counted since the last persist; counts delivered after the last
 * persist are delivered again after a restart (at least once: the flush ids differ, so a sink that must not
 * count twice keeps its own record of what it applied). `close()` delivers what it can and then saves what
 * it could not (nothing, usually), so the next buffer of that name retries it.
 */
import { decode, encode } from '../../common/codec.js';
import { ErrorCode, TallyworksError } from '../../common/errors.js';
import type { Storage } from '../storage/storage.js';

/** What the persistence needs of its buffer. */
export interface PersistedBuffer {
  readonly name: string;
  /** Every key's count not yet delivered (held plus being delivered), non-zero ones only. */
  pending(): Array<[string, number]>;
  /** Adds a stored count back (as an increment would, while closing too). */
  restore(key: string, n: number): void;
}

export class BufferPersistence {
  /** Resolves once the stored counts are back in the buffer. */
  readonly ready: Promise<void>;
  private readonly key: string;
  private readonly timer: NodeJS.Timeout | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** True when the last save left an entry in the storage (so an empty buffer deletes it). */
  private stored = true;

  constructor(
    private readonly buffer: PersistedBuffer,
    private readonly storage: Storage,
    persistMs: number,
    onError: (err: Error) => void,
  ) {
    this.key = `buffers/${buffer.name}`;
    this.ready = this.load();
    this.ready.catch(onError);
    this.timer = setInterval(() => void this.persist().catch(onError), persistMs).unref();
  }

  private async load(): Promise<void> {
    const bytes = await this.storage.load(this.key);
    if (bytes === undefined) {
      this.stored = false;
      return;
    }
    let entries: unknown;
    try {
      entries = decode(bytes);
      if (!Array.isArray(entries)) throw new TypeError('not a list of [key, count] pairs');
      for (const e of entries) {
        if (!Array.isArray(e) || typeof e[0] !== 'string' || !Number.isSafeInteger(e[1])) throw new TypeError(`an entry ${JSON.stringify(e)} that is no [key, count] pair`);
      }
    } catch (err) {
      throw new TallyworksError(ErrorCode.STORAGE, `stored counts of buffer "${this.buffer.name}" cannot be read: ${(err as Error).message}`, { cause: err });
    }
    for (const [k, n] of entries as Array<[string, number]>) this.buffer.restore(k, n);
  }

  /** Saves the counts not yet delivered (`counts`, when given, instead); one persist at a time. */
  persist(counts?: Array<[string, number]>): Promise<void> {
    const run = async (): Promise<void> => {
      await this.ready.catch(() => undefined); // never save over counts that were not read back
      const entries = counts ?? this.buffer.pending();
      if (entries.length === 0) {
        if (this.stored) await this.storage.delete(this.key);
        this.stored = false;
        return;
      }
      await this.storage.save(this.key, encode(entries));
      this.stored = true;
    };
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Stops the timer and saves `undelivered` (what close() could not deliver). */
  async close(undelivered: Array<[string, number]>): Promise<void> {
    clearInterval(this.timer);
    await this.persist(undelivered);
  }
}
