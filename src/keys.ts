/**
 * Key rules (spec/counters.md "Keys"): a key is a non-empty string of at most 255 UTF-8 bytes with no
 * `:` (the colon separates prefix and key in Redis names). Checked once, when a key is first seen; the hot
 * path never re-validates a key it already knows.
 */
import { keyError } from '../common/errors.js';

/** The longest key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 255;

/** Returns `key` if it follows the key rules, else throws InvalidKeyError (code TW_INVALID_KEY). */
export function validateKey(key: unknown, argument = 'key'): string {
  if (typeof key !== 'string') throw keyError(argument, 'a string', key);
  if (key.length === 0) throw keyError(argument, 'a non-empty string', key);
  // Each UTF-16 unit is at most 3 UTF-8 bytes, so short keys skip the byte count.
  if (key.length * 3 > MAX_KEY_BYTES && Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) {
    throw keyError(argument, `at most ${MAX_KEY_BYTES} UTF-8 bytes`, key);
  }
  if (key.includes(':')) throw keyError(argument, 'free of ":" (use sanitizeKey to strip colons)', key);
  return key;
}

/** Strips every `:` from `raw`, then validates the result (so `sanitizeKey(':')` throws). */
export function sanitizeKey(raw: string): string {
  if (typeof raw !== 'string') throw keyError('key', 'a string', raw);
  return validateKey(raw.replaceAll(':', ''), 'key');
}

/** The stable key hash (FNV-1a) that picks a key's shard. */
export { keyHash } from '../common/key-hash.js';
