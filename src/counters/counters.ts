/**
 * The counter interface strict and lax counters share (README, "Strict and lax counters"), and its
 * argument checks. Where the values live — Redis, or this process — is a backend's job.
 *
 * Batches keep input order, apply duplicate keys in sequence, and are atomic per item, not as a whole
 * (a batch is one pipelined call per partition, not a MULTI).
 */
import { argumentRangeError, closedError, ErrorCode, TallyworksError } from '../../common/errors.js';
import { type CmpCode, CounterMode, type CounterOpMode } from '../../common/messages.js';
import { validateKey } from '../keys.js';
import { always, type Comparator, comparator } from './comparators.js';
import { array, safeInteger } from './validate.js';

/** One op for a backend: `mode` (CounterMode) applied when `cmp` (Cmp) passes against `x`. */
export interface CounterOpSpec {
  readonly key: string;
  readonly mode: CounterOpMode;
  readonly cmp: CmpCode;
  readonly x: number;
  readonly n: number;
}

/** What a single op resolves with: its new value, its old value, or [new, old]. */
export const Pick = { NEW: 0, OLD: 1, PAIR: 2 } as const;

/** Where counter values live. */
export interface CounterBackend {
  /** Runs `ops` in order; returns [new, old] per op, flat. `new` is NaN where an op was refused. */
  run(ops: readonly CounterOpSpec[]): Promise<number[]>;
  /**
   * Runs one op and resolves with what `pick` names; rejects with a RangeError where the op was refused.
   * (The hot form: a backend may answer it without the arrays and promises of `run`.)
   */
  single(key: string, mode: CounterOpMode, cmp: CmpCode, x: number, n: number, pick: number): Promise<number | [number, number]>;
  /** Current values, 0 for a missing counter. */
  get(keys: readonly string[]): Promise<number[]>;
  /** Removes every counter of this kind under the prefix. */
  clear(): Promise<void>;
}

/** Strict and lax counters: one interface. Values are safe integers and may go negative. */
export interface Counters {
  /** Adds `n` (default 1, may be negative) and returns the new value. */
  inc(key: string, n?: number): Promise<number>;
  /** `inc(key, -n)`. */
  dec(key: string, n?: number): Promise<number>;
  /** The value, or 0 for a missing counter. */
  get(key: string): Promise<number>;
  /** Sets the value and returns it. */
  set(key: string, value: number): Promise<number>;
  /** Removes the counter and returns its previous value (0 if missing). */
  del(key: string): Promise<number>;
  /** Removes every counter of this kind under the prefix (other prefixes are untouched). */
  clear(): Promise<void>;
  /** Adds `n` if the comparison passes: [new, old]; a failed comparison writes nothing: [old, old]. */
  incIf(key: string, when: Comparator, n: number): Promise<[number, number]>;
  /** Sets `value` if the comparison passes: [new, old]; a failed comparison writes nothing: [old, old]. */
  setIf(key: string, when: Comparator, value: number): Promise<[number, number]>;
  /** [key, value] per key, in input order. */
  getAll(keys: readonly string[]): Promise<Array<[string, number]>>;
  /** [key, new value] per item, in input order; duplicate keys apply in sequence. */
  incAll(items: ReadonlyArray<readonly [string, number]>): Promise<Array<[string, number]>>;
  /** [key, value] per item: each item's own result, also for duplicate keys. */
  setAll(items: ReadonlyArray<readonly [string, number]>): Promise<Array<[string, number]>>;
  /** [key, new, old] per item. */
  incAllIf(items: ReadonlyArray<readonly [string, Comparator, number]>): Promise<Array<[string, number, number]>>;
  /** [key, new, old] per item: each item's own result, also for duplicate keys. */
  setAllIf(items: ReadonlyArray<readonly [string, Comparator, number]>): Promise<Array<[string, number, number]>>;
}

/** {@link Counters} over a backend: validates every argument before anything is written. */
export class CounterSet implements Counters {
  protected readonly backend: CounterBackend;
  protected readonly isClosed: () => boolean;

  constructor(backend: CounterBackend, isClosed: () => boolean) {
    this.backend = backend;
    this.isClosed = isClosed;
  }

  protected open(): void {
    if (this.isClosed()) throw closedError('engine');
  }

  inc(key: string, n = 1): Promise<number> {
    return this.runOne(key, CounterMode.INC, always, n, 'n', Pick.NEW) as Promise<number>;
  }

  dec(key: string, n = 1): Promise<number> {
    // A non-number goes through unchanged so that inc rejects it naming `n`.
    return this.inc(key, typeof n === 'number' ? -n : n);
  }

  async get(key: string): Promise<number> {
    this.open();
    return (await this.backend.get([validateKey(key)]))[0]!;
  }

  set(key: string, value: number): Promise<number> {
    return this.runOne(key, CounterMode.SET, always, value, 'value', Pick.NEW) as Promise<number>;
  }

  del(key: string): Promise<number> {
    return this.runOne(key, CounterMode.DEL, always, 0, 'n', Pick.OLD) as Promise<number>;
  }

  async clear(): Promise<void> {
    this.open();
    await this.backend.clear();
  }

  incIf(key: string, when: Comparator, n: number): Promise<[number, number]> {
    return this.runOne(key, CounterMode.INC, when, n, 'n', Pick.PAIR) as Promise<[number, number]>;
  }

  setIf(key: string, when: Comparator, value: number): Promise<[number, number]> {
    return this.runOne(key, CounterMode.SET, when, value, 'value', Pick.PAIR) as Promise<[number, number]>;
  }

  async getAll(keys: readonly string[]): Promise<Array<[string, number]>> {
    this.open();
    const checked = array<string>(keys, 'keys').map((k, i) => validateKey(k, `keys[${i}]`));
    if (checked.length === 0) return [];
    const values = await this.backend.get(checked);
    return checked.map((k, i) => [k, values[i]!]);
  }

  async incAll(items: ReadonlyArray<readonly [string, number]>): Promise<Array<[string, number]>> {
    const results = await this.runMany(items, 'items', CounterMode.INC, false);
    return results.map(([k, next]) => [k, next]);
  }

  async setAll(items: ReadonlyArray<readonly [string, number]>): Promise<Array<[string, number]>> {
    const results = await this.runMany(items, 'items', CounterMode.SET, false);
    return results.map(([k, next]) => [k, next]);
  }

  incAllIf(items: ReadonlyArray<readonly [string, Comparator, number]>): Promise<Array<[string, number, number]>> {
    return this.runMany(items, 'items', CounterMode.INC, true);
  }

  setAllIf(items: ReadonlyArray<readonly [string, Comparator, number]>): Promise<Array<[string, number, number]>> {
    return this.runMany(items, 'items', CounterMode.SET, true);
  }

  /** One op; bad arguments reject (never throw synchronously), before anything is sent. */
  private runOne(key: string, mode: CounterOpMode, when: Comparator, n: number, argument: string, pick: number): Promise<number | [number, number]> {
    try {
      this.open();
      const c = comparator(when, 'when');
      return this.backend.single(validateKey(key), mode, c.cmp, c.x, safeInteger(n, argument), pick);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Items are [key, n] or, when `conditional`, [key, comparator, n]. */
  private async runMany(
    items: ReadonlyArray<readonly unknown[]>,
    argument: string,
    mode: CounterOpMode,
    conditional: boolean,
  ): Promise<Array<[string, number, number]>> {
    this.open();
    const ops = array<readonly unknown[]>(items, argument).map((item, i): CounterOpSpec => {
      const at = `${argument}[${i}]`;
      const tuple = array<unknown>(item, at);
      const key = validateKey(tuple[0], `${at}[0]`);
      const when = conditional ? comparator(tuple[1], `${at}[1]`) : always;
      const n = safeInteger(tuple[conditional ? 2 : 1], `${at}[${conditional ? 2 : 1}]`);
      return { key, mode, cmp: when.cmp, x: when.x, n };
    });
    if (ops.length === 0) return [];
    const results = await this.backend.run(ops);
    return ops.map((op, i) => [op.key, refused(results[2 * i]!, op.key, op.n), results[2 * i + 1]!]);
  }
}

/** The error for an op a backend refused: it would have left the safe-integer range, and wrote nothing. */
export function refusedError(key: string, n: number, before?: number): Error {
  if (before !== undefined && !Number.isSafeInteger(before)) {
    // Only instance-aware counters get here: an instance that returned made the live slices add up past the range.
    return new TallyworksError(
      ErrorCode.UNSAFE_TOTAL,
      `the live slices of counter "${key}" add up to ${before}, outside ±(2^53 − 1) (an instance that returned counts again); set or del the key to start it afresh (nothing was written)`,
    );
  }
  return argumentRangeError('n', `a delta that keeps counter "${key}" within ±(2^53 − 1) (nothing was written)`, n);
}

/** A backend's NaN result: the op was refused. */
function refused(next: number, key: string, n: number): number {
  if (Number.isNaN(next)) throw refusedError(key, n);
  return next;
}

/** `single` through `run`, for backends without a faster form. */
export async function singleViaRun(backend: CounterBackend, key: string, mode: CounterOpMode, cmp: CmpCode, x: number, n: number, pick: number): Promise<number | [number, number]> {
  const [next, old] = await backend.run([{ key, mode, cmp, x, n }]);
  const value = refused(next!, key, n);
  return pick === Pick.NEW ? value : pick === Pick.OLD ? old! : [value, old!];
}
