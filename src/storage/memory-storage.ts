/** In-memory storage: for tests, and for compacting a store without touching the disk. */
import type { Storage, StorageOp } from './storage.js';

export class MemoryStorage implements Storage {
  private readonly map = new Map<string, Uint8Array>();

  async save(key: string, value: Uint8Array): Promise<void> {
    this.map.set(key, value.slice());
  }

  async load(key: string): Promise<Uint8Array | undefined> {
    return this.map.get(key)?.slice();
  }

  async delete(key: string): Promise<void> {
    this.map.delete(key);
  }

  async keys(prefix = ''): Promise<string[]> {
    return [...this.map.keys()].filter((k) => k.startsWith(prefix));
  }

  async transaction(ops: readonly StorageOp[]): Promise<void> {
    for (const op of ops) {
      if (op.type === 'save') this.map.set(op.key, op.value.slice());
      else this.map.delete(op.key);
    }
  }

  /** Keys held. */
  get size(): number {
    return this.map.size;
  }
}
