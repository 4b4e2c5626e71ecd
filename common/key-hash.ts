/**
 * The key hash: FNV-1a over UTF-16 code units, stable across processes and versions (it picks a key's
 * shard, and its Redis partition, which is part of the stored layout).
 *
 * Imported by worker threads: imports nothing main-only.
 */
export function keyHash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
