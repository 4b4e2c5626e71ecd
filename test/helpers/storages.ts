/** Storage wrappers for tests. */
import type { Storage } from '../../src/index.js';

/** `inner`, recording the op count of each transaction it is given (in `transactions`). */
export function counting(inner: Storage): Storage & { transactions: number[] } {
  const transactions: number[] = [];
  return {
    transactions,
    save: (k, v) => inner.save(k, v),
    load: (k) => inner.load(k),
    delete: (k) => inner.delete(k),
    keys: (p) => inner.keys(p),
    transaction: (ops) => (transactions.push(ops.length), inner.transaction!(ops)),
  };
}
