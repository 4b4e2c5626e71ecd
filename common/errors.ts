/**
 * One error hierarchy with stable codes.
 *
 * Every error Tallyworks throws carries a `code` (`TW_…`) that never changes between releases, so callers
 * can branch on it. Bad input is a `TypeError` (wrong type or shape) or a `RangeError` (right type, value
 * outside the rule) so that it also fits what JavaScript callers expect; faults are plain `Error`s. All of
 * them answer `instanceof TallyworksError`.
 *
 * This module is imported by worker threads too, so it imports nothing main-only.
 */

/** Stable error codes. */
export const ErrorCode = {
  /** An engine option has the wrong type or breaks its rule. */
  INVALID_OPTION: 'TW_INVALID_OPTION',
  /** A function argument has the wrong type or breaks its rule. */
  INVALID_ARGUMENT: 'TW_INVALID_ARGUMENT',
  /** A key is empty, longer than 255 UTF-8 bytes, or contains `:`. */
  INVALID_KEY: 'TW_INVALID_KEY',
  /** The engine (or the object) was closed. */
  CLOSED: 'TW_CLOSED',
  /** A shard applied nothing for `stallTimeoutMs` while its producer waited for room. */
  SHARD_STALLED: 'TW_SHARD_STALLED',
  /** A shard thread kept dying on the same batch and was given up. */
  SHARD_FAILED: 'TW_SHARD_FAILED',
  /** A shard's memory would exceed `maxShardMemoryBytes`. */
  CAPACITY: 'TW_CAPACITY',
  /** A cross-thread message was not one the receiver knows. */
  PROTOCOL: 'TW_PROTOCOL',
  /** `recordAt` with a time later than now (tiny_counter FutureEvent); nothing was recorded. */
  FUTURE_EVENT: 'TW_FUTURE_EVENT',
  /** A ring of 0 buckets, or more than the maximum (tiny_counter InvalidBucketCount). */
  INVALID_BUCKET_COUNT: 'TW_INVALID_BUCKET_COUNT',
  /** A schedule whose start is not before its end (tiny_counter InvalidRange). */
  INVALID_RANGE: 'TW_INVALID_RANGE',
  /** A schedule hour outside 0–23 (end: 1–24) (tiny_counter InvalidHour). */
  INVALID_HOUR: 'TW_INVALID_HOUR',
  /** An export whose intervals or time zone cannot be converted to the store's. */
  INCOMPATIBLE: 'TW_INCOMPATIBLE',
  /** A limiter refused (only from the `…OrThrow` terminals; otherwise a refusal is a value). */
  LIMITED: 'TW_LIMITED',
  /** A reservation was committed or cancelled twice, or was never granted. */
  RESERVATION: 'TW_RESERVATION',
  /** A storage backend failed, or holds data that cannot be read. */
  STORAGE: 'TW_STORAGE',
  /** Redis could not be reached (or answered an error); the operation was not applied. */
  REDIS_UNAVAILABLE: 'TW_REDIS_UNAVAILABLE',
  /** A call reached Redis but its reply was lost, and Redis did not come back in time to tell whether it applied. */
  REDIS_OUTCOME_UNKNOWN: 'TW_REDIS_OUTCOME_UNKNOWN',
  /** Lax deltas (or stat buffer counts) could not be delivered before `close()` gave up; the error lists them. */
  UNDELIVERED: 'TW_UNDELIVERED',
  /** A stat buffer's flush handler did not settle within `timeoutMs` (the count is retried). */
  FLUSH_TIMEOUT: 'TW_FLUSH_TIMEOUT',
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

const brand = Symbol.for('tallyworks.error');

interface Branded {
  readonly code: ErrorCodeValue;
}

function stamp(err: Error & Branded, name: string): void {
  Object.defineProperty(err, brand, { value: true });
  Object.defineProperty(err, 'name', { value: name, configurable: true, writable: true });
}

/** Base class of every Tallyworks fault; `instanceof TallyworksError` is also true for the typed input errors. */
export class TallyworksError extends Error implements Branded {
  readonly code: ErrorCodeValue;
  constructor(code: ErrorCodeValue, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    stamp(this, new.target.name);
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}

/** Wrong type or shape of an argument or option. */
export class TallyworksTypeError extends TypeError implements Branded {
  readonly code: ErrorCodeValue;
  constructor(code: ErrorCodeValue, message: string) {
    super(message);
    this.code = code;
    stamp(this, 'TallyworksTypeError');
  }
}

/** An argument or option of the right type whose value breaks its rule. */
export class TallyworksRangeError extends RangeError implements Branded {
  readonly code: ErrorCodeValue;
  constructor(code: ErrorCodeValue, message: string) {
    super(message);
    this.code = code;
    stamp(this, 'TallyworksRangeError');
  }
}

function badInput(kind: 'type' | 'range', code: ErrorCodeValue, subject: string, rule: string, got: unknown): TallyworksTypeError | TallyworksRangeError {
  const message = `${subject} must be ${rule}; got ${describe(got)}`;
  return kind === 'type' ? new TallyworksTypeError(code, message) : new TallyworksRangeError(code, message);
}

/** Thrown by `createEngine` for an option of the wrong type. */
export function optionTypeError(option: string, rule: string, got: unknown): TallyworksTypeError {
  return badInput('type', ErrorCode.INVALID_OPTION, `option "${option}"`, rule, got);
}

/** Thrown by `createEngine` for an option whose value breaks its rule. */
export function optionRangeError(option: string, rule: string, got: unknown): TallyworksRangeError {
  return badInput('range', ErrorCode.INVALID_OPTION, `option "${option}"`, rule, got);
}

/** An argument of the wrong type. */
export function argumentTypeError(argument: string, rule: string, got: unknown): TallyworksTypeError {
  return badInput('type', ErrorCode.INVALID_ARGUMENT, `argument "${argument}"`, rule, got);
}

/** An argument whose value breaks its rule. */
export function argumentRangeError(argument: string, rule: string, got: unknown): TallyworksRangeError {
  return badInput('range', ErrorCode.INVALID_ARGUMENT, `argument "${argument}"`, rule, got);
}

/** A key that breaks the key rules. */
export function keyError(argument: string, rule: string, got: unknown): TallyworksTypeError {
  return badInput('type', ErrorCode.INVALID_KEY, argument, rule, got);
}

/** An argument whose value breaks a rule that has its own code (FutureEvent, InvalidHour, …). */
export function codedRangeError(code: ErrorCodeValue, argument: string, rule: string, got: unknown): TallyworksRangeError {
  return badInput('range', code, `argument "${argument}"`, rule, got) as TallyworksRangeError;
}

/**
 * `close()` could not deliver everything before its deadline: lax counter deltas Redis did not take, or
 * stat buffer counts no `onDeadLetter` handler received. They are listed here.
 */
export class UndeliveredError extends TallyworksError {
  /** [key, delta or count] per undelivered item. */
  readonly undelivered: ReadonlyArray<readonly [string, number]>;
  constructor(undelivered: Array<[string, number]>, cause?: unknown, what = 'lax counter deltas to Redis') {
    const shown = undelivered.slice(0, 5).map(([k, d]) => `${k} ${d > 0 ? '+' : ''}${d}`).join(', ');
    super(ErrorCode.UNDELIVERED, `close() could not deliver ${undelivered.length} ${what}: ${shown}${undelivered.length > 5 ? ', …' : ''}`, { cause });
    this.undelivered = undelivered;
  }
}

export function closedError(what: string): TallyworksError {
  return new TallyworksError(ErrorCode.CLOSED, `${what} is closed`);
}

export function protocolError(where: string, message: unknown): TallyworksError {
  return new TallyworksError(ErrorCode.PROTOCOL, `${where}: unknown message ${describe(message)}`);
}

/** A short, safe description of a value for error messages. */
export function describe(value: unknown): string {
  if (typeof value === 'string') {
    const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
    return `${JSON.stringify(shown)} (string of length ${value.length})`;
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return `${String(value)} (${typeof value})`;
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'function') return 'a function';
  return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`;
}
