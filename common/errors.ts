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
  /** The flusher thread kept dying without finishing a flush cycle and was given up: lax deltas are no longer delivered. */
  FLUSHER_FAILED: 'TW_FLUSHER_FAILED',
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
  /** A synchronous read met data still being listed or loaded from storage; await the store or use the awaited read. */
  NOT_READY: 'TW_NOT_READY',
  /** A decision record stayed locked by a live thread for longer than the decision may wait; nothing was decided. */
  RECORD_BUSY: 'TW_RECORD_BUSY',
  /** A reservation was committed or cancelled twice, or was never granted. */
  RESERVATION: 'TW_RESERVATION',
  /** A storage backend failed, or holds data that cannot be read. */
  STORAGE: 'TW_STORAGE',
  /** An optional peer dependency a feature needs is not installed (the message names it and its version). */
  MISSING_DEPENDENCY: 'TW_MISSING_DEPENDENCY',
  /** Redis could not be reached (or answered an error); the operation was not applied. */
  REDIS_UNAVAILABLE: 'TW_REDIS_UNAVAILABLE',
  /** Redis refused the credentials (WRONGPASS, NOAUTH) or an ACL permission (NOPERM); nothing was applied. */
  REDIS_AUTH: 'TW_REDIS_AUTH',
  /** The TLS handshake with Redis failed (certificate, host name, protocol); nothing was applied. */
  REDIS_TLS: 'TW_REDIS_TLS',
  /** A call reached Redis but its reply was lost, and Redis did not come back in time to tell whether it applied. */
  REDIS_OUTCOME_UNKNOWN: 'TW_REDIS_OUTCOME_UNKNOWN',
  /** The live slices of an instance-aware counter add up past ±(2^53 − 1) (an instance that returned brought its slices back); only a set, del or clear writes the key. */
  UNSAFE_TOTAL: 'TW_UNSAFE_TOTAL',
  /** Lax deltas (or stat buffer counts) could not be delivered before `close()` gave up; the error lists them. */
  UNDELIVERED: 'TW_UNDELIVERED',
  /** A stat buffer's flush handler did not settle within `timeoutMs` (the count is retried). */
  FLUSH_TIMEOUT: 'TW_FLUSH_TIMEOUT',
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * `instanceof` across copies and threads. Every Tallyworks error carries, under a registered symbol, the
 * names of the package's own error classes it belongs to (its class and those above it). `x instanceof C`
 * for one of those classes is true when C's name is among them, so an error made by another copy of the
 * package (a second install, or one rebuilt after crossing a thread) still matches its class and its base
 * classes, and never a sibling class. Any other class (an app's subclass, or an unrelated class that
 * happens to share a name) matches by its prototype chain only.
 */
const kindsKey = Symbol.for('tallyworks.error.kinds');

type ErrorClass = abstract new (...args: never[]) => Error;
/** The package's own error classes, by name: the only names that go into an error's kinds. */
const classes = new Map<string, ErrorClass>();

/** True for a class this copy of the package registered (not a lookalike with the same name). */
function isOwnClass(c: Function): boolean {
  return classes.get(c.name) === c;
}

/** The base every Tallyworks class answers to, whatever its JavaScript base (Error, TypeError, RangeError). */
const BASE_KIND = 'TallyworksError';

interface Branded {
  readonly code: ErrorCodeValue;
}

/** The Tallyworks class names of `err`, most derived first (empty for any other value). */
function kindsOf(value: unknown): readonly string[] {
  if (typeof value !== 'object' || value === null) return [];
  const kinds = (value as Record<symbol, unknown>)[kindsKey];
  return Array.isArray(kinds) ? (kinds as string[]) : [];
}

/** Names `err` after its class and records the package's classes in its chain (for instanceof). */
function stamp(err: Error & Branded, target: Function): void {
  const kinds: string[] = [];
  for (let c: unknown = target; typeof c === 'function' && c !== Error && c !== TypeError && c !== RangeError; c = Object.getPrototypeOf(c)) {
    if (isOwnClass(c as Function)) kinds.push((c as Function).name);
  }
  if (!kinds.includes(BASE_KIND)) kinds.push(BASE_KIND);
  Object.defineProperty(err, kindsKey, { value: Object.freeze(kinds) });
  Object.defineProperty(err, 'name', { value: target.name, configurable: true, writable: true });
}

/**
 * The `instanceof` of every Tallyworks class: its prototype chain, or (for the package's own classes) its
 * name among the value's kinds.
 */
function hasKind(this: Function, value: unknown): boolean {
  return Function.prototype[Symbol.hasInstance].call(this, value) || (isOwnClass(this) && kindsOf(value).includes(this.name));
}

/** Base class of every Tallyworks fault; `instanceof TallyworksError` is also true for the typed input errors. */
export class TallyworksError extends Error implements Branded {
  readonly code: ErrorCodeValue;
  constructor(code: ErrorCodeValue, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    stamp(this, new.target);
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasKind.call(this, value);
  }
}

/** Wrong type or shape of an argument or option. */
export class TallyworksTypeError extends TypeError implements Branded {
  readonly code: ErrorCodeValue;
  constructor(code: ErrorCodeValue, message: string) {
    super(message);
    this.code = code;
    stamp(this, new.target);
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasKind.call(this, value);
  }
}

/** An argument or option of the right type whose value breaks its rule. */
export class TallyworksRangeError extends RangeError implements Branded {
  readonly code: ErrorCodeValue;
  constructor(code: ErrorCodeValue, message: string) {
    super(message);
    this.code = code;
    stamp(this, new.target);
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasKind.call(this, value);
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

/**
 * The same input error about an option instead of an argument: `argument "options.x"` becomes
 * `option "events.x"` with code TW_INVALID_OPTION (createEngine checks nested options with the validators
 * of the objects they configure). Anything else is returned as it is.
 */
export function asOptionError(err: unknown, argumentPrefix: string, optionPrefix: string): unknown {
  if (!(err instanceof TallyworksTypeError || err instanceof TallyworksRangeError)) return err;
  const message = err.message.replace(`argument "${argumentPrefix}`, `option "${optionPrefix}`);
  return err instanceof TypeError ? new TallyworksTypeError(ErrorCode.INVALID_OPTION, message) : new TallyworksRangeError(ErrorCode.INVALID_OPTION, message);
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

// ── errors that cross a thread ───────────────────────────────────────────────────────────────────────

/**
 * An error as it crosses a thread: structured cloning keeps only an Error's message and stack (and, for a
 * worker's uncaught error, its own string-keyed fields), never its class. Every port that carries an error
 * sends this form, and the receiver rebuilds it with {@link reviveError}.
 */
export interface WireError {
  readonly tw: 1;
  /** Tallyworks class names, most derived first (empty for any other error). */
  readonly kinds: readonly string[];
  readonly name: string;
  readonly message: string;
  readonly code: string | undefined;
  readonly stack: string | undefined;
  /** Own data fields (UndeliveredError.undelivered, LimitExceededError.decision, …). */
  readonly fields: Record<string, unknown>;
  readonly cause: WireError | undefined;
}

/** Makes `cls` (a Tallyworks error class defined outside this module) rebuildable by {@link reviveError}. */
export function registerErrorClass(cls: ErrorClass): void {
  classes.set(cls.name, cls);
}

/** The form of `err` that crosses a thread (any thrown value; a non-error becomes its message). */
export function toWireError(err: unknown, depth = 0): WireError {
  if (!(err instanceof Error)) {
    return { tw: 1, kinds: [], name: 'Error', message: String(err), code: undefined, stack: undefined, fields: {}, cause: undefined };
  }
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(err)) {
    if (k !== 'code' && k !== 'cause' && typeof v !== 'function' && typeof v !== 'symbol') fields[k] = v;
  }
  const code = (err as { code?: unknown }).code;
  return {
    tw: 1,
    kinds: kindsOf(err),
    name: err.name,
    message: err.message,
    code: typeof code === 'string' ? code : undefined,
    stack: err.stack,
    fields,
    // A cause chain is short in practice; the bound keeps a cyclic one finite.
    cause: err.cause !== undefined && depth < 4 ? toWireError(err.cause, depth + 1) : undefined,
  };
}

function isWireError(value: unknown): value is WireError {
  return typeof value === 'object' && value !== null && (value as { tw?: unknown }).tw === 1 && Array.isArray((value as { kinds?: unknown }).kinds);
}

/**
 * Rebuilds an error that crossed a thread as its own class: a {@link WireError}, or an Error whose fields
 * survived but whose class did not (a worker's uncaught error: Node keeps its `name` and `code`). Anything
 * else is returned as it is.
 */
export function reviveError(value: unknown): unknown {
  if (kindsOf(value).length > 0) return value;
  let wire: WireError;
  if (isWireError(value)) {
    wire = value;
  } else if (value instanceof Error && typeof (value as { code?: unknown }).code === 'string' && classes.has(value.name)) {
    // Only the name crossed: the class chain is the registered class's own.
    const kinds: string[] = [];
    for (let c: unknown = classes.get(value.name); typeof c === 'function' && classes.has((c as Function).name); c = Object.getPrototypeOf(c)) kinds.push((c as Function).name);
    wire = { ...toWireError(value), kinds };
  } else {
    return value;
  }
  const cls = wire.kinds.map((k) => classes.get(k)).find((c) => c !== undefined);
  const err: Error = Object.create((cls ?? Error).prototype);
  const own = (key: string, v: unknown): void => {
    if (v !== undefined) Object.defineProperty(err, key, { value: v, writable: true, configurable: true, enumerable: false });
  };
  own('message', wire.message);
  own('stack', wire.stack);
  own('cause', wire.cause === undefined ? undefined : reviveError(wire.cause));
  Object.assign(err, wire.fields);
  if (wire.code !== undefined) (err as { code?: string }).code = wire.code;
  Object.defineProperty(err, 'name', { value: wire.name, configurable: true, writable: true });
  if (wire.kinds.length > 0) Object.defineProperty(err, kindsKey, { value: Object.freeze([...wire.kinds]) });
  return err;
}

export function closedError(what: string): TallyworksError {
  return new TallyworksError(ErrorCode.CLOSED, `${what} is closed`);
}

export function protocolError(where: string, message: unknown): TallyworksError {
  return new TallyworksError(ErrorCode.PROTOCOL, `${where}: unknown message ${describe(message)}`);
}

/**
 * `text` with the credentials of every URL in it masked (`redis://***@host`), so that no error message or
 * report repeats a secret the user passed.
 */
export function redactSecrets(text: string): string {
  // Whatever stands between a scheme and the last "@" of the same word is credentials (user, password,
  // or a token), however oddly written: "redis://us@er:p@ss@host", "redis:/user:pw@host".
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/{0,2})[^\s]*@/gi, '$1***@');
}

/** A short, safe description of a value for error messages (URL passwords masked). */
export function describe(value: unknown): string {
  if (typeof value === 'string') {
    const safe = redactSecrets(value);
    const shown = safe.length > 40 ? `${safe.slice(0, 40)}…` : safe;
    return `${JSON.stringify(shown)} (string of length ${value.length})`;
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return `${String(value)} (${typeof value})`;
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'function') return 'a function';
  return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`;
}

for (const cls of [TallyworksError, TallyworksTypeError, TallyworksRangeError, UndeliveredError]) registerErrorClass(cls);
