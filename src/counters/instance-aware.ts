/**
 * Instance-aware counters (README, "Instance-aware counters"): every instance sharing a prefix owns a
 * slice of each key; the cumulative is the sum of the slices of live instances. Every op answers
 * `[cumulative, mine]`. An instance unseen for `deadInstanceThresholdMs` stops counting at once, and
 * counts again, every key, when it returns (within `instanceRetentionMs`); `close()` removes its slices.
 *
 * This module: the interface, its argument checks, and the embedded backend (one instance: the
 * cumulative is my slice). Redis backends: strict in ./strict-redis.ts (the instance-aware flavor), lax in
 * ./ia-lax.ts. The Redis model is common/scripts/ia.lua's.
 */
import { closedError } from '../../common/errors.js';
import { Cmp, type CmpCode, IaMode } from '../../common/messages.js';
import { validateKey } from '../keys.js';
import { always, type Comparator, comparator } from './comparators.js';
import { Pick, refusedError } from './counters.js';
import type { LocalCounters } from './local-counters.js';
import { iaPick, PICK_CUMULATIVE_AND_OLD_SLICE } from './flavors.js';
import { array, safeInteger } from './validate.js';

/** `[cumulative, mine]`: the sum of the live instances' slices, and this instance's slice. */
export type Slice = [cumulative: number, mine: number];
/** What a conditional op did: the key after, and before (equal when the comparison failed). */
export type SliceChange = [after: Slice, before: Slice];

/** One op for a backend: `mode` (IaMode) applied when `cmp` passes against `x`. */
export interface IaOpSpec {
  readonly key: string;
  readonly mode: number;
  readonly cmp: CmpCode;
  readonly x: number;
  readonly n: number;
}

/** Where instance-aware values live. */
export interface IaBackend {
  /** Runs `ops` in order; 4 numbers per op: cumulative after, mine after, cumulative before, mine before (after NaN: refused). */
  run(ops: readonly IaOpSpec[]): Promise<number[]>;
  /** Runs an op that takes no key (CLEAR, CLEAR_MINE) on every partition. */
  onEveryPartition(mode: number): Promise<void>;
  /** One op answered as `pick` names it (rejects when refused): the hot form, where a backend has one. */
  single?(key: string, mode: number, cmp: CmpCode, x: number, n: number, pick: number): Promise<unknown>;
}

/** Instance-aware counters, strict and lax: one interface. */
export interface InstanceAwareCounters {
  /** Adds `n` (default 1, may be negative) to my slice: `[cumulative, mine]` after. */
  inc(key: string, n?: number): Promise<Slice>;
  /** `inc(key, -n)`. */
  dec(key: string, n?: number): Promise<Slice>;
  /** `[cumulative, mine]`, 0 for a missing key or a slice a global set or del made stale. */
  get(key: string): Promise<Slice>;
  /** Sets the global total (a new epoch of the key: every other slice is dropped; mine is `value`): `[value, value]`. */
  set(key: string, value: number): Promise<Slice>;
  /** Sets my slice only (no new epoch): `[cumulative, value]`. */
  setOnInstance(key: string, value: number): Promise<Slice>;
  /** Deletes the key globally (a new epoch): the `[cumulative, mine]` it had. */
  del(key: string): Promise<Slice>;
  /** Removes my slice: `[cumulative after, the slice removed]`. */
  delOnInstance(key: string): Promise<Slice>;
  /** Removes every instance-aware counter of this kind under the prefix, every instance's slice. */
  clear(): Promise<void>;
  /** Removes every slice of mine under the prefix (others' slices stay). */
  clearOnInstance(): Promise<void>;
  /** Adds `n` to my slice if the comparison passes against the cumulative. */
  incIf(key: string, when: Comparator, n: number): Promise<SliceChange>;
  /** Sets the global total if the comparison passes against the cumulative. */
  setIf(key: string, when: Comparator, value: number): Promise<SliceChange>;
  /** Sets my slice if the comparison passes against my slice. */
  setOnInstanceIf(key: string, when: Comparator, value: number): Promise<SliceChange>;
  /** `[key, cumulative, mine]` per key, in input order. */
  getAll(keys: readonly string[]): Promise<Array<[string, number, number]>>;
  /** `[key, cumulative, mine]` after each item, in input order; duplicate keys apply in sequence. */
  incAll(items: ReadonlyArray<readonly [string, number]>): Promise<Array<[string, number, number]>>;
  setAll(items: ReadonlyArray<readonly [string, number]>): Promise<Array<[string, number, number]>>;
  setOnInstanceAll(items: ReadonlyArray<readonly [string, number]>): Promise<Array<[string, number, number]>>;
  /** `[key, after, before]` per item. */
  incAllIf(items: ReadonlyArray<readonly [string, Comparator, number]>): Promise<Array<[string, Slice, Slice]>>;
  setAllIf(items: ReadonlyArray<readonly [string, Comparator, number]>): Promise<Array<[string, Slice, Slice]>>;
  setOnInstanceAllIf(items: ReadonlyArray<readonly [string, Comparator, number]>): Promise<Array<[string, Slice, Slice]>>;
}

/** {@link InstanceAwareCounters} over a backend: validates every argument before anything is written. */
export class InstanceAwareSet implements InstanceAwareCounters {
  constructor(
    protected readonly backend: IaBackend,
    protected readonly isClosed: () => boolean,
  ) {}

  protected open(): void {
    if (this.isClosed()) throw closedError('engine');
  }

  inc(key: string, n = 1): Promise<Slice> {
    return this.one(key, IaMode.INC, always, n, 'n', Pick.NEW) as Promise<Slice>;
  }

  dec(key: string, n = 1): Promise<Slice> {
    return this.inc(key, typeof n === 'number' ? -n : n);
  }

  get(key: string): Promise<Slice> {
    return this.one(key, IaMode.GET, always, 0, 'n', Pick.NEW) as Promise<Slice>;
  }

  set(key: string, value: number): Promise<Slice> {
    return this.one(key, IaMode.SET, always, value, 'value', Pick.NEW) as Promise<Slice>;
  }

  setOnInstance(key: string, value: number): Promise<Slice> {
    return this.one(key, IaMode.SET_MINE, always, value, 'value', Pick.NEW) as Promise<Slice>;
  }

  del(key: string): Promise<Slice> {
    return this.one(key, IaMode.DEL, always, 0, 'n', Pick.OLD) as Promise<Slice>;
  }

  delOnInstance(key: string): Promise<Slice> {
    return this.one(key, IaMode.DEL_MINE, always, 0, 'n', PICK_CUMULATIVE_AND_OLD_SLICE) as Promise<Slice>;
  }

  async clear(): Promise<void> {
    this.open();
    await this.backend.onEveryPartition(IaMode.CLEAR);
  }

  async clearOnInstance(): Promise<void> {
    this.open();
    await this.backend.onEveryPartition(IaMode.CLEAR_MINE);
  }

  incIf(key: string, when: Comparator, n: number): Promise<SliceChange> {
    return this.one(key, IaMode.INC, when, n, 'n', Pick.PAIR) as Promise<SliceChange>;
  }

  setIf(key: string, when: Comparator, value: number): Promise<SliceChange> {
    return this.one(key, IaMode.SET, when, value, 'value', Pick.PAIR) as Promise<SliceChange>;
  }

  setOnInstanceIf(key: string, when: Comparator, value: number): Promise<SliceChange> {
    return this.one(key, IaMode.SET_MINE, when, value, 'value', Pick.PAIR) as Promise<SliceChange>;
  }

  async getAll(keys: readonly string[]): Promise<Array<[string, number, number]>> {
    this.open();
    const ops = array<string>(keys, 'keys').map((k, i): IaOpSpec => ({ key: validateKey(k, `keys[${i}]`), mode: IaMode.GET, cmp: Cmp.ALWAYS, x: 0, n: 0 }));
    return flat(ops, await this.runAll(ops));
  }

  async incAll(items: ReadonlyArray<readonly [string, number]>): Promise<Array<[string, number, number]>> {
    const ops = this.ops(items, IaMode.INC, false);
    return flat(ops, await this.runAll(ops));
  }

  async setAll(items: ReadonlyArray<readonly [string, number]>): Promise<Array<[string, number, number]>> {
    const ops = this.ops(items, IaMode.SET, false);
    return flat(ops, await this.runAll(ops));
  }

  async setOnInstanceAll(items: ReadonlyArray<readonly [string, number]>): Promise<Array<[string, number, number]>> {
    const ops = this.ops(items, IaMode.SET_MINE, false);
    return flat(ops, await this.runAll(ops));
  }

  async incAllIf(items: ReadonlyArray<readonly [string, Comparator, number]>): Promise<Array<[string, Slice, Slice]>> {
    const ops = this.ops(items, IaMode.INC, true);
    return changes(ops, await this.runAll(ops));
  }

  async setAllIf(items: ReadonlyArray<readonly [string, Comparator, number]>): Promise<Array<[string, Slice, Slice]>> {
    const ops = this.ops(items, IaMode.SET, true);
    return changes(ops, await this.runAll(ops));
  }

  async setOnInstanceAllIf(items: ReadonlyArray<readonly [string, Comparator, number]>): Promise<Array<[string, Slice, Slice]>> {
    const ops = this.ops(items, IaMode.SET_MINE, true);
    return changes(ops, await this.runAll(ops));
  }

  /** One op; bad arguments reject (never throw synchronously), before anything is sent. */
  protected one(key: string, mode: number, when: Comparator, n: number, argument: string, pick: number): Promise<unknown> {
    try {
      this.open();
      const c = comparator(when, 'when');
      return this.single(validateKey(key), mode, c.cmp, c.x, safeInteger(n, argument), pick);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** A checked op: the backend's answer as `pick` names it; a refused op rejects naming the key. */
  protected async single(key: string, mode: number, cmp: CmpCode, x: number, n: number, pick: number): Promise<unknown> {
    if (this.backend.single !== undefined) return this.backend.single(key, mode, cmp, x, n, pick);
    const results = await this.backend.run([{ key, mode, cmp, x, n }]);
    const value = iaPick(results, 0, pick);
    if (value === undefined) throw refusedError(key, n, results[2]);
    return value;
  }

  private runAll(ops: readonly IaOpSpec[]): Promise<number[]> {
    return ops.length === 0 ? Promise.resolve([]) : this.backend.run(ops);
  }

  /** Items are [key, n] or, when `conditional`, [key, comparator, n]. */
  private ops(items: ReadonlyArray<readonly unknown[]>, mode: number, conditional: boolean): IaOpSpec[] {
    this.open();
    return array<readonly unknown[]>(items, 'items').map((item, i): IaOpSpec => {
      const at = `items[${i}]`;
      const tuple = array<unknown>(item, at);
      const key = validateKey(tuple[0], `${at}[0]`);
      const when = conditional ? comparator(tuple[1], `${at}[1]`) : always;
      const n = safeInteger(tuple[conditional ? 2 : 1], `${at}[${conditional ? 2 : 1}]`);
      return { key, mode, cmp: when.cmp, x: when.x, n };
    });
  }
}

function refusedAt(results: readonly number[], ops: readonly IaOpSpec[], i: number): void {
  if (!Number.isSafeInteger(results[4 * i])) throw refusedError(ops[i]!.key, ops[i]!.n, results[4 * i + 2]);
}

function flat(ops: readonly IaOpSpec[], results: readonly number[]): Array<[string, number, number]> {
  return ops.map((op, i) => {
    refusedAt(results, ops, i);
    return [op.key, results[4 * i]!, results[4 * i + 1]!];
  });
}

function changes(ops: readonly IaOpSpec[], results: readonly number[]): Array<[string, Slice, Slice]> {
  return ops.map((op, i) => {
    refusedAt(results, ops, i);
    return [op.key, [results[4 * i]!, results[4 * i + 1]!], [results[4 * i + 2]!, results[4 * i + 3]!]];
  });
}

/**
 * Embedded (no Redis): this engine is the only instance, so the cumulative is my slice; the values are
 * shard-held counters ({@link LocalCounters}), and a set/del "on the instance" is a plain set/del.
 */
export class EmbeddedInstanceAware implements IaBackend {
  constructor(private readonly local: LocalCounters) {}

  async run(ops: readonly IaOpSpec[]): Promise<number[]> {
    const plain = ops.map((op) => ({
      key: op.key,
      mode: (op.mode === IaMode.SET_MINE ? IaMode.SET : op.mode === IaMode.DEL_MINE ? IaMode.DEL : op.mode) as typeof IaMode.INC,
      cmp: op.cmp,
      x: op.x,
      n: op.n,
    }));
    const gets = plain.every((op) => (op.mode as number) === IaMode.GET);
    const results = gets ? (await this.local.get(plain.map((op) => op.key))).flatMap((v) => [v, v]) : await this.local.run(plain);
    const out: number[] = [];
    for (let i = 0; i < ops.length; i++) {
      const next = results[2 * i]!;
      const old = results[2 * i + 1]!;
      out.push(next, Number.isNaN(next) ? Number.NaN : next, old, old);
    }
    return out;
  }

  async onEveryPartition(): Promise<void> {
    // CLEAR and CLEAR_MINE are the same here: every slice is mine.
    await this.local.clear();
  }
}
