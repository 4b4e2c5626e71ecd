/**
 * Comparators of the conditional counter ops (`incIf`, `setIf` and their batch forms). A missing counter
 * compares as 0.
 *
 * ```ts
 * await engine.strict.incIf('stock', gt(0), -1);   // take one while any is left
 * ```
 */
import { argumentTypeError } from '../../common/errors.js';
import { Cmp, type CmpCode } from '../../common/messages.js';
import { safeInteger } from './validate.js';

/** A comparison of a counter's current value against `x`. Build one with eq, lt, gt, ne or always. */
export interface Comparator {
  readonly cmp: CmpCode;
  readonly x: number;
}

/** Passes when the value equals `x`. */
export function eq(x: number): Comparator {
  return { cmp: Cmp.EQ, x: safeInteger(x, 'x') };
}
/** Passes when the value is less than `x`. */
export function lt(x: number): Comparator {
  return { cmp: Cmp.LT, x: safeInteger(x, 'x') };
}
/** Passes when the value is greater than `x`. */
export function gt(x: number): Comparator {
  return { cmp: Cmp.GT, x: safeInteger(x, 'x') };
}
/** Passes when the value differs from `x`. */
export function ne(x: number): Comparator {
  return { cmp: Cmp.NE, x: safeInteger(x, 'x') };
}
/** Always passes. */
export const always: Comparator = Object.freeze({ cmp: Cmp.ALWAYS, x: 0 });

/** Returns `value` if it is a comparator built by this module's functions. */
export function comparator(value: unknown, argument: string): Comparator {
  const c = value as Comparator;
  if (
    typeof value !== 'object' ||
    value === null ||
    !Number.isInteger(c.cmp) ||
    c.cmp < Cmp.ALWAYS ||
    c.cmp > Cmp.NE ||
    !Number.isSafeInteger(c.x)
  ) {
    throw argumentTypeError(argument, 'a comparator: eq(x), lt(x), gt(x), ne(x) or always', value);
  }
  return c;
}
