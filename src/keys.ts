/**
 * Key rules. Every key is a non-empty, well-formed string of at most 255 UTF-8 bytes. Keys of windows,
 * event stores and counters also hold no `:` (the colon separates prefix and key in Redis names and
 * storage keys); stat buffer keys may. Checked once, when a key is first seen; the hot path never
 * re-validates a key it already knows.
 */
import { keyError } from '../common/errors.js';

/** The longest key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 255;

/**
 * The rule both kinds of key share: a non-empty, well-formed string (no lone surrogate, which UTF-8 cannot
 * carry: two such keys would become one in Redis or in a storage file) of at most 255 UTF-8 bytes.
 */
function checkKey(key: unknown, argument: string): string {
  if (typeof key !== 'string') throw keyError(argument, 'a string', key);
  if (key.length === 0) throw keyError(argument, 'a non-empty string', key);
  // Each UTF-16 unit is at most 3 UTF-8 bytes, so short keys skip the byte count.
  if (key.length * 3 > MAX_KEY_BYTES && Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) {
    throw keyError(argument, `at most ${MAX_KEY_BYTES} UTF-8 bytes`, key);
  }
  if (!key.isWellFormed()) throw keyError(argument, 'a well-formed string (no lone surrogate such as "\\uD800")', key);
  return key;
}

/**
 * Returns `key` if it follows the key rules of windows, event stores and counters (the shared rule, and no
 * `:`), else throws TW_INVALID_KEY.
 */
export function validateKey(key: unknown, argument = 'key'): string {
  checkKey(key, argument);
  if ((key as string).includes(':')) throw keyError(argument, 'free of ":" (use sanitizeKey to strip colons)', key);
  return key as string;
}

/**
 * Returns `key` if it follows the key rule of stat buffers: the shared rule only. A buffer key is handed to
 * your sink as it is, so it may hold `:` ("page:home"). Else throws TW_INVALID_KEY.
 */
export function validateBufferKey(key: unknown, argument = 'key'): string {
  return checkKey(key, argument);
}

/** Strips every `:` from `raw`, then validates the result (so `sanitizeKey(':')` throws). */
export function sanitizeKey(raw: string): string {
  if (typeof raw !== 'string') throw keyError('key', 'a string', raw);
  return validateKey(raw.replaceAll(':', ''), 'key');
}

/** The stable key hash (FNV-1a) that picks a key's shard. */
export { keyHash } from '../common/key-hash.js';
