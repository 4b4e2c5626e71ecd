/**
 * Where event stores persist their counters: a small key → bytes interface, so that any backend can be
 * plugged in. Values are msgpack (see src/events/snapshot.ts); keys are `<prefix>/<id>`.
 */
import { argumentTypeError, ErrorCode, TallyworksError } from '../../common/errors.js';

/**
 * One write of a transaction. A save with `owned: true` hands its bytes over: the caller never changes them
 * again, so a storage may keep them without a copy (event stores do this for the counters they encode).
 */
export type StorageOp =
  | { readonly type: 'save'; readonly key: string; readonly value: Uint8Array; readonly owned?: boolean }
  | { readonly type: 'delete'; readonly key: string };

export interface Storage {
  /** Stores `value` under `key`, replacing what was there. */
  save(key: string, value: Uint8Array): Promise<void>;
  /** The value under `key`, or undefined. */
  load(key: string): Promise<Uint8Array | undefined>;
  /** Removes `key` (no error when absent). */
  delete(key: string): Promise<void>;
  /** Every key starting with `prefix` (all keys when omitted). */
  keys(prefix?: string): Promise<string[]>;
  /**
   * Optional: applies every op or none (a crash leaves the state before or after). Stores use it for
   * `persist()` when present, else they save key by key.
   */
  transaction?(ops: readonly StorageOp[]): Promise<void>;
}

const STORAGE_METHODS = ['save', 'load', 'delete', 'keys'] as const;
const STORAGE_RULE = 'a Storage: an object with save, load, delete and keys functions (transaction optional)';

/** Throws a TypeError naming `name` (or its method) unless `value` has the shape of a {@link Storage}. */
export function checkStorage(value: unknown, name: string): asserts value is Storage {
  if (typeof value !== 'object' || value === null) throw argumentTypeError(name, STORAGE_RULE, value);
  const s = value as Record<string, unknown>;
  for (const m of STORAGE_METHODS) if (typeof s[m] !== 'function') throw argumentTypeError(`${name}.${m}`, `a function (${STORAGE_RULE})`, s[m]);
  if (s.transaction !== undefined && typeof s.transaction !== 'function') throw argumentTypeError(`${name}.transaction`, 'a function, or absent', s.transaction);
}

/** Applies ops through a storage's transaction when it has one, else one by one. */
export async function applyOps(storage: Storage, ops: readonly StorageOp[]): Promise<void> {
  if (ops.length === 0) return;
  if (storage.transaction !== undefined) {
    await storage.transaction(ops);
    return;
  }
  for (const op of ops) {
    if (op.type === 'save') await storage.save(op.key, op.value);
    else await storage.delete(op.key);
  }
}

/** A failure of a storage call, as TW_STORAGE with the cause (a TW_STORAGE error passes as it is). */
function storageError(call: string, err: unknown): TallyworksError {
  if (err instanceof TallyworksError && err.code === ErrorCode.STORAGE) return err;
  return new TallyworksError(ErrorCode.STORAGE, `the storage failed in ${call}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

/**
 * `storage` with every failure (a rejection, a throw, a value of the wrong type from load or keys) turned
 * into a TW_STORAGE error naming the call, so no backend's own error reaches the store's callers raw.
 */
export function guardStorage(storage: Storage): Storage {
  const call = async <T>(name: string, run: () => Promise<T> | T): Promise<T> => {
    try {
      return await run();
    } catch (err) {
      throw storageError(name, err);
    }
  };
  const guarded: Storage = {
    save: (key, value) => call(`save(${JSON.stringify(key)})`, () => storage.save(key, value)),
    load: (key) =>
      call(`load(${JSON.stringify(key)})`, async () => {
        const v = await storage.load(key);
        if (v !== undefined && !(v instanceof Uint8Array)) throw new TypeError(`load returned ${typeof v}, not a Uint8Array or undefined`);
        return v;
      }),
    delete: (key) => call(`delete(${JSON.stringify(key)})`, () => storage.delete(key)),
    keys: (prefix) =>
      call(`keys(${JSON.stringify(prefix)})`, async () => {
        const keys = await storage.keys(prefix);
        if (!Array.isArray(keys) || keys.some((k) => typeof k !== 'string')) throw new TypeError('keys returned something other than an array of strings');
        return keys;
      }),
  };
  if (storage.transaction !== undefined) guarded.transaction = (ops) => call(`transaction(${ops.length} ops)`, () => storage.transaction!(ops));
  return guarded;
}

/**
 * A background persist's error reporter: the user's handler (a process warning by default); a handler
 * that throws is reported as a warning too, never as an uncaught exception.
 */
export function persistErrorReporter(handler: ((err: Error) => void) | undefined): (err: Error) => void {
  const report = handler ?? ((err: Error) => process.emitWarning(err));
  return (err) => {
    try {
      report(err);
    } catch (thrown) {
      process.emitWarning(new Error(`onPersistError threw while handling "${err.message}": ${(thrown as Error)?.message ?? String(thrown)}`, { cause: thrown }));
    }
  };
}
