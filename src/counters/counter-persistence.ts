/**
 * Warm restart of embedded counters (no Redis: the counters live in shard memory). Each counter is stored
 * as its value under `<name>/<kind>/<key>` (kind: `strict`, `lax`, `ia-strict`, `ia-lax`).
 *
 * - `restore()` (run by createEngine before it hands the engine out) adds each stored value into a fresh
 *   record: an add, so it commutes with anything counted meanwhile.
 * - `persist()` reads every counter once its shard has applied what was sent to it, and saves those whose
 *   value differs from the one last saved (a counter back at 0 is deleted), in one storage transaction: no
 *   flag on the hot path, and a persist writes only what changed.
 */
import { decode, encode } from '../../common/codec.js';
import { ErrorCode, TallyworksError } from '../../common/errors.js';
import { applyOps, type StorageOp } from '../storage/storage.js';
import type { CounterRecord, LocalCounters } from './local-counters.js';
import type { ResolvedCounterStorage } from '../options.js';

export class CounterPersistence {
  private timer: NodeJS.Timeout | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** The value last saved (or restored) per record. */
  private readonly saved = new WeakMap<CounterRecord, number>();

  constructor(
    private readonly kinds: ReadonlyArray<readonly [kind: string, local: LocalCounters]>,
    private readonly options: ResolvedCounterStorage,
  ) {}

  private prefix(kind: string): string {
    return `${this.options.name}/${kind}/`;
  }

  /** Adds every stored counter into its record, then starts auto-persist; resolves to how many. */
  async restore(): Promise<number> {
    const n = await this.restoreAll();
    const every = this.options.autoPersistMs;
    if (every !== undefined) this.timer = setInterval(() => void this.persist().catch(this.options.onPersistError), every).unref();
    return n;
  }

  private async restoreAll(): Promise<number> {
    const { storage } = this.options;
    const lanes = new Set<CounterRecord['lane']>();
    let n = 0;
    for (const [kind, local] of this.kinds) {
      const prefix = this.prefix(kind);
      for (const storageKey of await storage.keys(prefix)) {
        const bytes = await storage.load(storageKey);
        if (bytes === undefined) continue;
        let value: unknown;
        let rec: CounterRecord;
        try {
          value = decode(bytes);
          if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new TypeError(`a ${typeof value}, not a safe integer`);
          rec = local.record(storageKey.slice(prefix.length));
        } catch (err) {
          if (err instanceof TallyworksError && err.code === ErrorCode.CAPACITY) throw err; // more stored keys than maxCounterKeys
          throw new TallyworksError(ErrorCode.STORAGE, `stored counter ${JSON.stringify(storageKey)} cannot be read: ${(err as Error).message}`, { cause: err });
        }
        if (value !== 0) rec.lane.batches.append(rec.offset, value);
        this.saved.set(rec, value);
        lanes.add(rec.lane);
        n++;
      }
    }
    await Promise.all([...lanes].map((l) => l.drain()));
    return n;
  }

  /** Saves the counters whose value changed since the last persist; resolves to how many were written. */
  persist(): Promise<number> {
    const run = async (): Promise<number> => {
      const ops: StorageOp[] = [];
      const written: Array<[CounterRecord, number]> = [];
      for (const [kind, local] of this.kinds) {
        const recs = [...local.all()];
        await local.settle(recs);
        for (const rec of recs) {
          const value = (await local.read(rec)).value;
          const last = this.saved.get(rec) ?? 0;
          if (value === last) continue;
          const key = this.prefix(kind) + rec.key;
          ops.push(value === 0 ? { type: 'delete', key } : { type: 'save', key, value: encode(value), owned: true });
          written.push([rec, value]);
        }
      }
      await applyOps(this.options.storage, ops);
      for (const [rec, value] of written) this.saved.set(rec, value);
      return ops.length;
    };
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Stops auto-persist and persists (the engine's close, while the shards still run). */
  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.persist();
  }
}
