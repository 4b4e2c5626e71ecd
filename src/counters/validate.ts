/** Argument checks shared by the counter APIs: a bad argument throws before anything is written. */
import { argumentRangeError, argumentTypeError } from '../../common/errors.js';

/** Returns `value` if it is a safe integer (|x| ≤ 2^53 − 1); TypeError for a non-number, else RangeError. */
export function safeInteger(value: unknown, argument: string): number {
  if (typeof value !== 'number') throw argumentTypeError(argument, 'a safe integer (|x| ≤ 2^53 − 1)', value);
  if (!Number.isSafeInteger(value)) throw argumentRangeError(argument, 'a safe integer (|x| ≤ 2^53 − 1)', value);
  return value;
}

/** Returns `value` if it is an array. */
export function array<T>(value: unknown, argument: string): readonly T[] {
  if (!Array.isArray(value)) throw argumentTypeError(argument, 'an array', value);
  return value as readonly T[];
}
