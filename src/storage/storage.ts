/**
 * Where event stores persist their counters: a small key → bytes interface, so that any backend can be
 * plugged in. Values are msgpack (see src/events/snapshot.ts); keys are `<prefix>/<id>`.
 */

/** One write of a transaction. */
export type StorageOp = { readonly type: 'save'; readonly key: string; readonly value: Uint8Array } | { readonly type: 'delete'; readonly key: string };

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
