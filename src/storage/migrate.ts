/**
 * Moving a store from one storage to another (e.g. from `FileStorage` to `SqliteStorage`): every key under
 * a prefix is copied, and keys of the target under that prefix that the source does not hold are deleted,
 * in one transaction of the target when it has transactions — so the target ends up holding exactly what
 * the source holds under the prefix, or (after a crash) what it held before. Run it while no store is open
 * on either storage.
 */
import { argumentTypeError } from '../../common/errors.js';
import { applyOps, checkStorage, guardStorage, type Storage, type StorageOp } from './storage.js';

export interface MigrateOptions {
  /** Only keys starting with this (an event store's are `<name>/`). Default: every key. */
  prefix?: string;
}

/** Copies `from`'s keys (under `options.prefix`) to `to`; resolves to the number of keys copied. */
export async function migrateStorage(from: Storage, to: Storage, options: MigrateOptions = {}): Promise<number> {
  checkStorage(from, 'from');
  checkStorage(to, 'to');
  if (from === to) throw argumentTypeError('to', 'a storage other than from', to);
  if (typeof options !== 'object' || options === null) throw argumentTypeError('options', 'an object', options);
  const prefix = options.prefix ?? '';
  if (typeof prefix !== 'string') throw argumentTypeError('options.prefix', 'a string', prefix);
  const source = guardStorage(from);
  const target = guardStorage(to);
  const keys = await source.keys(prefix);
  const ops: StorageOp[] = [];
  for (const key of keys) {
    const value = await source.load(key);
    if (value !== undefined) ops.push({ type: 'save', key, value, owned: true });
  }
  const copied = new Set(keys);
  for (const key of await target.keys(prefix)) if (!copied.has(key)) ops.push({ type: 'delete', key });
  await applyOps(target, ops);
  return ops.filter((op) => op.type === 'save').length;
}
