/**
 * The multi-constraint limiter (tiny_counter parity, with decisions as values), decided on the calling
 * thread with no message to any shard.
 *
 * `store.limit()` starts an immutable builder; every constraint must pass. `atMost` constraints decide on
 * the store's limit gates (./gates.ts: fixed-window decision records in shared memory, kept in step with
 * every write of the id), so a decision is a compare and an add, and the admitted event goes to the id's
 * calendar record through the batch pipeline's deferred adds: queries, export and persistence see it
 * once. `atLeast`, `cooldown` and `within` read the calendar records (a synchronous read once the shard has
 * applied what this thread sent), schedules read the clock. Event stores live on the engine's thread, so
 * decisions there are serialised: concurrent callers can never overshoot a limit.
 *
 * The synchronous terminals (`checkSync`, `checkAndRecordSync`, `allowedSync`, `usageSync`) return the
 * decision; the Promise terminals resolve at once from the same path, and wait (for the storage listing,
 * an id's reload, or a shard being replaced) only where the synchronous ones throw TW_NOT_READY or
 * TW_SHARD_STALLED.
 *
 * Over 350 lines because it is the limiter's one decision path with its two faces: the builder (each
 * constraint validated once), the fast path of the common case, the general decision, reservations, and
 * the synchronous and awaited terminals over them.
 */
import { tallied } from '../limits/tally.js';
import { closedError, argumentRangeError, argumentTypeError, ErrorCode, registerErrorClass, TallyworksError } from '../../common/errors.js';
import { seenAge, sumRing } from '../../common/records/calendar/read.js';
import { countFixed, decideFixed, holdFixed, loadFixed, releaseFixed, retryFixed } from '../../common/records/fixed-window.js';
import { FXF_HEAD, FXF_HOLDS } from '../../common/layout.js';
import { validateKey } from '../keys.js';
import type { GateWindow } from './gates.js';
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
  | { readonly kind: 'atMost'; readonly id: string | undefined; readonly window: GateWindow; readonly limit: number; readonly label: string }
  | { readonly kind: 'atLeast'; readonly id: string | undefined; readonly ring: number; readonly n: number; readonly limit: number; readonly label: string }
  | { readonly kind: 'cooldown'; readonly id: string | undefined; readonly ms: number; readonly label: string }
  | { readonly kind: 'within'; readonly id: string; readonly ms: number; readonly label: string }
  | { readonly kind: 'schedule'; readonly schedule: Schedule; readonly inside: boolean; readonly label: string };

type AtMost = Extract<Constraint, { kind: 'atMost' }>;

const ALLOWED: Decision = Object.freeze({ allowed: true, constraint: undefined, retryAfterMs: undefined });

function refused(label: string, retryAfterMs: number | undefined): Decision {
  return Object.freeze({ allowed: false, constraint: label, retryAfterMs: retryAfterMs === undefined || Number.isNaN(retryAfterMs) ? undefined : retryAfterMs });
}

/** What an awaited terminal returns when allowed: one promise, shared (nothing allocated). */
const ALLOWED_NOW: Promise<Decision> = Promise.resolve(ALLOWED);

function checkLimit(argument: string, n: unknown): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw argumentRangeError(argument, 'a safe integer ≥ 0', n);
  return n;
}

function checkMs(n: unknown): number {
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw argumentRangeError('ms', 'a finite number of ms ≥ 0', n);
  return n;
}

/** What a decision does when every constraint passes. */
const NONE = 0;
const RECORD = 1;
const RESERVE = 2;
type Action = typeof NONE | typeof RECORD | typeof RESERVE;

/** One hold a reservation took: on the id's gate of `window`, in the hold series `series`. */
interface Held {
  readonly window: GateWindow;
  readonly series: number;
}

/** Errors after which an awaited terminal waits (for the storage, a reload, a shard) and tries again. */
function waitable(err: unknown): boolean {
  return err instanceof TallyworksError && (err.code === ErrorCode.NOT_READY || err.code === ErrorCode.SHARD_STALLED || err.code === ErrorCode.RECORD_BUSY);
}

/** How many times an awaited terminal waits and tries again before it gives the error to the caller. */
const AWAITED_TRIES = 8;

export class LimitBuilder {
  private readonly store: EventReader;
  private readonly constraints: readonly Constraint[];
  /** The one constraint, when it is an `atMost` on the decided id: the fast path. */
  private readonly single: AtMost | undefined;
  /** The `atMost` constraints. */
  private readonly limits: readonly AtMost[];

  /** @internal use `store.limit()` */
  constructor(store: EventReader, constraints: readonly Constraint[]) {
    this.store = store;
    this.constraints = constraints;
    const only = constraints.length === 1 ? constraints[0]! : undefined;
    this.single = only?.kind === 'atMost' && only.id === undefined ? only : undefined;
    this.limits = constraints.filter((c): c is AtMost => c.kind === 'atMost');
  }

  /** @internal whether an `atMost` constraint holds a quota (what the HTTP policy reports) */
  get hasAtMost(): boolean {
    return this.limits.length > 0;
  }

  /** The last refusal made, reused while its figures repeat (a burst of refusals in one ms allocates one). */
  private lastRefusal: Decision = refused('', undefined);
  /**
   * When (ms, and the fast path window's unit) {@link refusedNow} made `lastRefusal` for a one-unit window
   * with no holds; NaN before it did, or when it was made otherwise.
   */
  private refusedAt = Number.NaN;
  private refusedHead = Number.NaN;
  /** The last refusal as a resolved promise, made when an awaited terminal first returns it. */
  private lastRefusalNow: Promise<Decision> | undefined;

  /** A frozen refusal by `label` with `retryAfterMs` (NaN: unknown). */
  private refusal(label: string, retryAfterMs: number): Decision {
    const last = this.lastRefusal;
    const retry = Number.isNaN(retryAfterMs) ? undefined : retryAfterMs;
    if (last.constraint === label && last.retryAfterMs === retry) return last;
    this.lastRefusalNow = undefined;
    return (this.lastRefusal = refused(label, retry));
  }

  /**
   * The fast path's refusal, its retry-after read from the record. It reads the time again (the same
   * millisecond) rather than take it: a double handed to a call that is not inlined is boxed.
   */
  private refusedNow(c: AtMost, f64: Float64Array, o: number): Decision {
    const store = this.store;
    const t = store.decisionNow();
    const ttl = store.shape.reservationTtlMs;
    const d = this.refusal(c.label, retryFixed(f64, o, c.window.shape, t, ttl, c.limit, c.window.startOf));
    // Reused by the fast path only for what makes the same figures: one unit, no holds, this ms and unit.
    this.refusedAt = c.window.shape.n === 1 && f64[o + FXF_HOLDS] === 0 ? t : Number.NaN;
    this.refusedHead = f64[o + FXF_HEAD]!;
    return d;
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
    const target = id as string | undefined;
    if (kind === 'atMost') return this.with({ kind, id: target, window: this.store.gates.windowOf(w.range.ring, w.range.n), limit: n, label });
    return this.with({ kind, id: target, ring: w.range.ring, n: w.range.n, limit: n, label });
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

  // ── synchronous terminals ────────────────────────────────────────────────────────────────────────

  /**
   * Every constraint's verdict for `id` now; never records. Throws TW_NOT_READY while the store lists
   * its storage or reloads an id it reads (the awaited `check` waits instead), TW_CLOSED once closed.
   */
  checkSync(id: string): Decision {
    return this.decide(id, NONE, undefined);
  }

  /** Records 1 for `id` only if every constraint passes, atomically; throws like {@link checkSync}. */
  checkAndRecordSync(id: string): Decision {
    const single = this.single;
    if (single !== undefined) {
      // The common case, a known id with its gate: one decision on the gate and one deferred add.
      const store = this.store;
      const w = single.window;
      const c = store.counters.get(id);
      const l = c === undefined ? undefined : c.limits;
      if (l !== undefined && !store.isClosed) {
        let f64 = l.fastF64;
        let o = l.fastOffset;
        if (l.fastWindow !== w) {
          const g = l.gates?.[w.index];
          f64 = g?.f64;
          o = g?.offset ?? 0;
        }
        if (f64 !== undefined) {
          const t = store.decisionNow();
          // Whatever can throw comes before anything is counted (an earlier unit's deferred adds go out).
          store.readyToAdd(c!, t);
          const shape = store.shape;
          if (!decideFixed(f64, o, w.shape, shape.ks[w.ring]!, t, shape.reservationTtlMs, single.limit)) {
            // The common refusal repeats: a one-unit window with no holds, refused in the same ms and unit
            // as the fast path's last refusal, waits as long (until the unit ends): that refusal again.
            store.decisions.rejected++;
            if (t === this.refusedAt && f64[o + FXF_HEAD] === this.refusedHead && f64[o + FXF_HOLDS] === 0 && w.shape.n === 1) return this.lastRefusal;
            return this.refusedNow(single, f64, o);
          }
          store.addDecided(c!, t, w.index);
          store.decisions.allowed++;
          return ALLOWED;
        }
      }
    }
    return tallied(this.store.decisions, this.decide(id, RECORD, undefined));
  }

  /** `checkSync(id).allowed`. */
  allowedSync(id: string): boolean {
    return this.checkSync(id).allowed;
  }

  /** Count, limit and what remains of the first `atMost` constraint on `id`; throws like {@link checkSync}. */
  usageSync(id: string): Usage {
    const { count, reserved, limit, remaining } = this.quotaSync(id);
    return { count, reserved, limit, remaining };
  }

  /**
   * @internal {@link usageSync}, with the constraint's window as it stands now: its length (the calendar
   * units it spans) and when its oldest unit ends, ms from now (the HTTP policy's reset).
   */
  quotaSync(id: string): Usage & { readonly windowMs: number; readonly resetMs: number } {
    const c = this.constraints.find((x): x is AtMost => x.kind === 'atMost' && (x.id === undefined || x.id === id));
    if (c === undefined) throw argumentTypeError('limit', 'a limiter with an atMost constraint on this id for usage()', undefined);
    const store = this.store;
    if (store.isClosed) throw closedError('event store');
    if (!store.counters.has(id)) validateKey(id, 'id');
    const t = store.decisionNow();
    store.shape.seek(t);
    const k = store.shape.ks[c.window.ring]!;
    const next = c.window.startOf(k + 1);
    const windowMs = next - c.window.startOf(k - c.window.n + 1);
    const resetMs = Math.max(0, next - t);
    const g = store.gateFor(id, c.window);
    if (g === undefined) return { count: 0, reserved: 0, limit: c.limit, remaining: c.limit, windowMs, resetMs };
    const count = countFixed(g.f64, g.offset, c.window.shape, k);
    const reserved = store.holdsOf(g, t);
    return { count, reserved, limit: c.limit, remaining: Math.max(0, c.limit - count - reserved), windowMs, resetMs };
  }

  // ── awaited terminals (resolved at once from the same path) ─────────────────────────────────────

  /** Every constraint's verdict for `id` now; never records. */
  check(id: string): Promise<Decision> {
    return this.awaited(id, () => this.checkSync(id));
  }

  /** Records 1 for `id` only if every constraint passes; atomic against concurrent callers. */
  checkAndRecord(id: string): Promise<Decision> {
    let d: Decision;
    try {
      d = this.checkAndRecordSync(id);
    } catch (err) {
      return this.afterWait(err, id, () => this.checkAndRecordSync(id));
    }
    if (d === ALLOWED) return ALLOWED_NOW;
    if (d !== this.lastRefusal) return Promise.resolve(d);
    return (this.lastRefusalNow ??= Promise.resolve(d));
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

  /**
   * Holds one unit of every `atMost` on `id` until `commit()` (records 1) or `cancel()`; a hold not ended
   * within the store's `reservationTtlMs` expires (it stops counting).
   */
  reserve(id: string): Promise<Reservation> {
    return this.awaited(id, () => this.reserveSync(id));
  }

  /** Count, limit and what remains of the first `atMost` constraint on `id`. */
  usage(id: string): Promise<Usage> {
    return this.awaited(id, () => this.usageSync(id));
  }

  private reserveSync(id: string): Reservation {
    const held: Held[] = [];
    const d = tallied(this.store.decisions, this.decide(id, RESERVE, held));
    let ended = !d.allowed;
    const end = (commit: boolean): Promise<void> => {
      const store = this.store;
      if (ended) {
        return Promise.reject(new TallyworksError(ErrorCode.RESERVATION, d.allowed ? `the reservation of ${JSON.stringify(id)} was already committed or cancelled` : `the reservation of ${JSON.stringify(id)} was refused (${d.constraint})`));
      }
      if (store.isClosed) return Promise.reject(closedError('event store'));
      const t = store.decisionNow();
      try {
        if (commit) {
          // First: an append that throws leaves the reservation held, to commit again.
          const counter = store.counterWith(id, []);
          store.addEvents(counter, 1, t);
          store.markDirty(counter);
        }
      } catch (err) {
        return Promise.reject(err);
      }
      ended = true;
      const c = store.counters.get(id);
      for (const { window, series } of held) {
        // On the id's gate of that window, or where a merge or import handed its holds on.
        const h = c === undefined ? undefined : store.gates.holdsOf(c, window);
        if (h !== undefined) releaseFixed(h.f64, h.offset, t, store.shape.reservationTtlMs, series);
      }
      return Promise.resolve();
    };
    return { ...d, commit: () => end(true), cancel: () => end(false) };
  }

  /**
   * Runs a synchronous terminal for a Promise one: its value at once, or, when it could not answer yet
   * (storage listing, a reload, a shard being replaced), after waiting for what it needs.
   */
  private awaited<T>(id: string, run: () => T): Promise<T> {
    try {
      return Promise.resolve(run());
    } catch (err) {
      return this.afterWait(err, id, run);
    }
  }

  /** After `err` from a synchronous terminal: rejects, or waits for what it needs and runs it again. */
  private afterWait<T>(err: unknown, id: string, run: () => T): Promise<T> {
    if (!waitable(err)) return Promise.reject(err);
    const ids = [id, ...this.constraints.flatMap((c) => ('id' in c && c.id !== undefined ? [c.id] : []))];
    return this.store.admit(async () => {
      for (let attempt = 1; ; attempt++) {
        await this.store.settle(ids);
        try {
          return run();
        } catch (e) {
          if (!waitable(e) || attempt === AWAITED_TRIES) throw e;
        }
      }
    });
  }

  /**
   * Decides for `id` at the decision time: every constraint in order, the first refusal returned; when all
   * pass, records 1 (RECORD) or takes a hold on every `atMost` gate of the id, listed in `held` (RESERVE).
   * Nothing is written before every constraint passed (a gate made to decide is only a seeded copy).
   */
  private decide(id: string, action: Action, held: Held[] | undefined): Decision {
    const store = this.store;
    if (store.isClosed) throw closedError('event store');
    if (!store.counters.has(id)) validateKey(id, 'id');
    // The gates of every atMost, all made before any is read: TW_CAPACITY then leaves none made.
    store.seedGates(id, this.limits);
    const t = store.decisionNow();
    for (const c of this.constraints) {
      const d = this.evaluate(c, id, t);
      if (d !== ALLOWED) return d;
    }
    if (action === NONE) return ALLOWED;
    const windows = this.limits.flatMap((c) => (c.id === undefined || c.id === id ? [c.window] : []));
    const counter = store.counterWith(id, windows);
    if (action === RECORD) {
      store.readyToAdd(counter, t);
      store.addDecided(counter, t, -1);
      return ALLOWED;
    }
    const ttl = store.shape.reservationTtlMs;
    for (const w of windows) {
      const g = counter.limits?.gates?.[w.index];
      if (g === undefined || held!.some((h) => h.window === w)) continue; // a counter reloading from storage has none yet
      held!.push({ window: w, series: holdFixed(g.f64, g.offset, t, ttl, store.gates.freshSeries()) });
    }
    return ALLOWED;
  }

  /** One constraint's verdict for `id` at `t` (a known id's gates are made and seeded on the way). */
  private evaluate(c: Constraint, id: string, t: number): Decision {
    const store = this.store;
    const shape = store.shape;
    switch (c.kind) {
      case 'schedule':
        if (c.schedule.contains(t, shape.calendar) === c.inside) return ALLOWED;
        return refused(c.label, c.schedule.msUntil(t, c.inside, shape.calendar));
      case 'atMost': {
        const g = store.gateFor(c.id ?? id, c.window);
        if (g === undefined) return c.limit > 0 ? ALLOWED : refused(c.label, undefined);
        shape.seek(t);
        const w = c.window;
        const f64 = g.f64;
        if (loadFixed(f64, g.offset, w.shape, shape.ks[w.ring]!, t, shape.reservationTtlMs) < c.limit) return ALLOWED;
        return refused(c.label, retryFixed(f64, g.offset, w.shape, t, shape.reservationTtlMs, c.limit, w.startOf));
      }
      case 'atLeast': {
        const counter = store.counterNow(c.id ?? id);
        const count = counter === undefined ? 0 : store.readNow(counter, (v, now) => {
          shape.seek(now);
          return sumRing(v, counter.offset, shape, c.ring, shape.ks[c.ring]!, c.n);
        });
        return count >= c.limit ? ALLOWED : refused(c.label, undefined);
      }
      case 'cooldown':
      case 'within': {
        const counter = store.counterNow(c.id ?? id);
        const age = counter === undefined ? undefined : store.readNow(counter, (v, now) => {
          shape.seek(now);
          return seenAge(v, counter.offset, shape, now, false);
        });
        if (c.kind === 'within') return age !== undefined && age <= c.ms ? ALLOWED : refused(c.label, undefined);
        return age === undefined || age >= c.ms ? ALLOWED : refused(c.label, c.ms - age);
      }
      default:
        throw new TypeError(`unknown constraint ${(c satisfies never as Constraint).kind}`);
    }
  }
}

/** A limiter window: a unit, or [count, unit]. */
export type WindowArg = 'second' | 'minute' | 'hour' | 'day' | 'week' | 'month' | 'year' | readonly [number, 'second' | 'minute' | 'hour' | 'day' | 'week' | 'month' | 'year'];
