/** Time constants and assertion helpers shared by the event store tests. */
import { TallyworksError } from '../../src/index.js';

export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/** A UTC instant from an ISO string such as '2024-06-17T10:59:59Z'. */
export const utc = (iso: string): number => Date.parse(iso);

/** An `assert.throws` / `assert.rejects` validator: a Tallyworks error with this code. */
export const withCode =
  (code: string, messagePart?: string) =>
  (err: unknown): boolean =>
    err instanceof TallyworksError && err.code === code && (messagePart === undefined || err.message.includes(messagePart));
