/**
 * The multi-constraint limiter (tiny_counter parity, with decisions as values).
 *
 * `store.limit()` starts an immutable builder; every constraint must pass. Constraints on the id being
 * decided (`atMost`, `atLeast`, `cooldown` without an id, or naming that id) are decided by the shard that
 * owns the id, in order with every record of it, so concurrent callers can never overshoot a limit.
 * Constraints on other ids (`within`, or an explicit other id) and schedules are checked on the calling
 * thread first; when one fails nothing is sent and nothing is recorded.
 */
import { OUTCOME_ALLOWED, OUTCOME_REFUSED_BASE } from '../../common/records/calendar/read.js';
import { argumentRangeError, argumentTypeError, ErrorCode, registerErrorClass, TallyworksError } from '../../common/errors.js';
import { Action, Check } from '../../common/messages.js';
import { validateKey } from '../keys.js';
import { Schedule, describeMs } from './schedule.js';
import { windowOf } from './query.js';
import type { EventReader } from './reader.js';

/** The outcome of a limiter terminal. Over-limit is a value, never a thrown error. */
export interface Decision {
  readonly allowed: boolean;
  /** The constraint that refused, e.g. `atMost(api, 10, 1 hour)`; undefined when allowed. */
  readonly constraint: string | undefined;
  /** When a retry may pass (ms), if it can be estimated; undefined when allowed or unknown. */
  readonly retryAfterMs: number | undefined;
}

/** A granted (or refused) reservation: counts as outstanding against `atMost` until committed or cancelled. */
export interface Reservation extends Decision {
  /** Records 1 and ends the reservation. */
  commit(): Promise<void>;
  /** Ends the reservation without recording. */
  cancel(): Promise<void>;
}

export interface Usage {
  /** Events in the window of the first `atMost` constraint on the id. */
  readonly count: number;
  /** Reservations of the id still held (not committed, cancelled or expired); they count against the limit. */
  readonly reserved: number;
  readonly limit: number;
  /** max(0, limit − count − reserved). */
  readonly remaining: number;
}

/** Thrown by `checkAndRecordOrThrow` when refused; carries the decision. */
export class LimitExceededError extends TallyworksError {
  readonly decision: Decision;
  constructor(id: string, decision: Decision) {
    super(ErrorCode.LIMITED, `limit refused ${JSON.stringify(id)}: ${decision.constraint}${decision.retryAfterMs === undefined ? '' : `; retry after ${Math.ceil(decision.retryAfterMs)} ms`}`);
    this.decision = decision;
  }
}
registerErrorClass(LimitExceededError);

type Constraint =
  | { readonly kind: 'count'; readonly check: number; readonly id: string | undefined; readonly ring: number; readonly n: number; readonly limit: number; readonly label: string }
  | { readonly kind: 'cooldown'; readonly id: string | undefined; readonly ms: number; readonly label: string }
  | { readonly kind: 'within'; readonly id: string; readonly ms: number; readonly label: string }
  | { readonly kind: 'schedule'; readonly schedule: Schedule; readonly inside: boolean; readonly label: string };

const ALLOWED: Decision = Object.freeze({ allowed: true, constraint: undefined, retryAfterMs: undefined });

function refused(label: string, retryAfterMs: number | undefined): Decision {
  return { allowed: false, constraint: label, retryAfterMs: retryAfterMs === undefined || Number.isNaN(retryAfterMs) ? undefined : retryAfterMs };
}

function checkLimit(argument: string, n: unknown): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw argumentRangeError(argument, 'a safe integer ≥ 0', n);
  return n;
}

function checkMs(n: unknown): number {
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw argumentRangeError('ms', 'a finite number of ms ≥ 0', n);
  return n;
}

/** Shard checks for one constraint on the decided id: [kind, ring, n, limit]. */
function shardCheck(c: Constraint): number[] {
  if (c.kind === 'count') return [c.check, c.ring, c.n, c.limit];
  if (c.kind === 'cooldown') return [Check.COOLDOWN, 0, 0, c.ms];
  throw new TypeError(`not a shard check: ${c.kind}`);
}

export class LimitBuilder {
  private readonly store: EventReader;
  private readonly constraints: readonly Constraint[];

  /** @internal use `store.limit()` */
  constructor(store: EventReader, constraints: readonly Constraint[]) {
    this.store = store;
    this.constraints = constraints;
  }

  private with(c: Constraint): LimitBuilder {
    return new LimitBuilder(this.store, [...this.constraints, c]);
  }

  private count(kind: 'atMost' | 'atLeast', args: unknown[]): LimitBuilder {
    const [id, limit, window] = typeof args[0] === 'string' ? args : [undefined, ...args];
    if (id !== undefined) validateKey(id, 'id');
    const n = checkLimit('limit', limit);
    const w = windowOf(this.store, window);
    const label = `${kind}(${id === undefined ? '' : `${id as string}, `}${n}, ${w.label})`;
    return this.with({ kind: 'count', check: kind === 'atMost' ? Check.AT_MOST : Check.AT_LEAST, id: id as string | undefined, ring: w.range.ring, n: w.range.n, limit: n, label });
  }

  /** Passes while the count in `window` plus outstanding reservations is below `limit`. */
  atMost(limit: number, window: WindowArg): LimitBuilder;
  atMost(id: string, limit: number, window: WindowArg): LimitBuilder;
  atMost(...args: unknown[]): LimitBuilder {
    return this.count('atMost', args);
  }

  /** Passes when the count in `window` is at least `n`. */
  atLeast(n: number, window: WindowArg): LimitBuilder;
  atLeast(id: string, n: number, window: WindowArg): LimitBuilder;
  atLeast(...args: unknown[]): LimitBuilder {
    return this.count('atLeast', args);
  }

  /** Passes if never seen, or last seen at least `ms` ago (bucket precision). */
  cooldown(ms: number): LimitBuilder;
  cooldown(id: string, ms: number): LimitBuilder;
  cooldown(...args: unknown[]): LimitBuilder {
    const [id, ms] = typeof args[0] === 'string' ? args : [undefined, ...args];
    if (id !== undefined) validateKey(id, 'id');
    const m = checkMs(ms);
    return this.with({ kind: 'cooldown', id: id as string | undefined, ms: m, label: `cooldown(${id === undefined ? '' : `${id as string}, `}${describeMs(m)})` });
  }

  /** Passes if `prereq` was seen within the last `ms` (bucket precision). */
  within(prereq: string, ms: number): LimitBuilder {
    validateKey(prereq, 'prereq');
    const m = checkMs(ms);
    return this.with({ kind: 'within', id: prereq, ms: m, label: `within(${prereq}, ${describeMs(m)})` });
  }

  /** Passes while now is inside `schedule`. */
  during(schedule: Schedule): LimitBuilder {
    if (!(schedule instanceof Schedule)) throw argumentTypeError('schedule', 'a Schedule (Schedule.hours, weekdays, weekends, custom)', schedule);
    return this.with({ kind: 'schedule', schedule, inside: true, label: `during(${schedule.label})` });
  }

  /** Passes while now is outside `schedule`. */
  outsideOf(schedule: Schedule): LimitBuilder {
    if (!(schedule instanceof Schedule)) throw argumentTypeError('schedule', 'a Schedule (Schedule.hours, weekdays, weekends, custom)', schedule);
    return this.with({ kind: 'schedule', schedule, inside: false, label: `outsideOf(${schedule.label})` });
  }

  // ── terminals ────────────────────────────────────────────────────────────────────────────────────

  /** Every constraint's verdict for `id` now; never records. */
  check(id: string): Promise<Decision> {
    return this.store.admit(() => this.decide(id, Action.NONE));
  }

  /** Records 1 for `id` only if every constraint passes; atomic against concurrent callers. */
  checkAndRecord(id: string): Promise<Decision> {
    return this.store.admit(() => this.decide(id, Action.RECORD));
  }

  /** Like checkAndRecord, but a refusal throws {@link LimitExceededError} (code TW_LIMITED). */
  async checkAndRecordOrThrow(id: string): Promise<Decision> {
    const d = await this.checkAndRecord(id);
    if (!d.allowed) throw new LimitExceededError(id, d);
    return d;
  }

  /** `check(id)` as a boolean. */
  async allowed(id: string): Promise<boolean> {
    return (await this.check(id)).allowed;
  }

  /** Holds one unit of every `atMost` on `id` until `commit()` (records 1) or `cancel()`. */
  async reserve(id: string): Promise<Reservation> {
    const granted = { t: 0 };
    const d = await this.store.admit(() => this.decide(id, Action.RESERVE, granted));
    let ended = !d.allowed;
    const end = async (type: 'commit' | 'cancel'): Promise<void> => {
      if (ended) {
        throw new TallyworksError(ErrorCode.RESERVATION, d.allowed ? `the reservation of ${JSON.stringify(id)} was already committed or cancelled` : `the reservation of ${JSON.stringify(id)} was refused (${d.constraint})`);
      }
      ended = true;
      await this.store.admit(() => this.store.endReservation(id, type, granted.t));
    };
    return { ...d, commit: () => end('commit'), cancel: () => end('cancel') };
  }

  /** Count, limit and what remains of the first `atMost` constraint on `id`. */
  async usage(id: string): Promise<Usage> {
    validateKey(id, 'id');
    const c = this.constraints.find((x) => x.kind === 'count' && x.check === Check.AT_MOST && (x.id === undefined || x.id === id));
    if (c === undefined || c.kind !== 'count') throw argumentTypeError('limit', 'a limiter with an atMost constraint on this id for usage()', undefined);
    const u = await this.store.admit(() => this.store.usageOf(id, c.ring, c.n));
    const count = u?.count ?? 0;
    const reserved = u?.reserved ?? 0;
    return { count, reserved, limit: c.limit, remaining: Math.max(0, c.limit - count - reserved) };
  }

  /** Decides for `id`; `granted.t` receives the time the shard decided at (a reservation's start). */
  private async decide(id: string, action: number, granted?: { t: number }): Promise<Decision> {
    validateKey(id, 'id');
    const store = this.store;
    const own: Constraint[] = [];
    for (const c of this.constraints) {
      if ((c.kind === 'count' || c.kind === 'cooldown') && (c.id === undefined || c.id === id)) {
        own.push(c);
        continue;
      }
      const d = await this.evaluateElsewhere(c);
      if (!d.allowed) return d;
    }
    const checks = own.flatMap(shardCheck);
    const counter = await store.loadedCounter(id);
    if (counter === undefined || action === Action.NONE) {
      // Read-only, or an id never recorded: decided here (an unknown id has no events and no reservations).
      const failed = counter === undefined ? emptyFailure(own) : await store.evaluateOwn(counter, checks);
      if (failed.index !== -1) return refused(own[failed.index]!.label, failed.retryAfterMs);
      if (action === Action.NONE) return ALLOWED;
    }
    const [outcome, retry, t] = await store.decideInShard(id, checks, action);
    if (granted !== undefined) granted.t = t;
    if (outcome === OUTCOME_ALLOWED) return ALLOWED;
    return refused(own[outcome - OUTCOME_REFUSED_BASE]!.label, retry);
  }

  /** Constraints decided on the calling thread: schedules, and counts of other ids. */
  private async evaluateElsewhere(c: Constraint): Promise<Decision> {
    const store = this.store;
    const now = store.clock.now();
    switch (c.kind) {
      case 'schedule':
        if (c.schedule.contains(now, store.shape.calendar) === c.inside) return ALLOWED;
        return refused(c.label, c.schedule.msUntil(now, c.inside, store.shape.calendar));
      case 'within': {
        const age = await store.seenAgeOf(c.id, false);
        return age !== undefined && age <= c.ms ? ALLOWED : refused(c.label, undefined);
      }
      default: {
        const counter = await store.loadedCounter(c.id!);
        const failed = counter === undefined ? emptyFailure([c]) : await store.evaluateOwn(counter, shardCheck(c));
        return failed.index === -1 ? ALLOWED : refused(c.label, failed.retryAfterMs);
      }
    }
  }
}

/** A limiter window: a unit, or [count, unit]. */
export type WindowArg = 'second' | 'minute' | 'hour' | 'day' | 'week' | 'month' | 'year' | readonly [number, 'second' | 'minute' | 'hour' | 'day' | 'week' | 'month' | 'year'];

/** The first constraint an id with no events and no reservations fails, if any. */
function emptyFailure(constraints: readonly Constraint[]): { index: number; retryAfterMs: number | undefined } {
  const index = constraints.findIndex((c) => c.kind === 'count' && (c.check === Check.AT_MOST ? c.limit <= 0 : c.limit > 0));
  return { index, retryAfterMs: undefined };
}
