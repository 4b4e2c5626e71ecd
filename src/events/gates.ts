/**
 * An event store's limit gates: the fixed-window decision records (common/records/fixed-window.ts) its
 * `atMost` limits decide on, one per id and window, in the decision memory of the id's shard
 * (src/router/decision-arena.ts), so they outlive shard restarts. A gate is made when a limit first
 * decides on the id, seeded from the id's calendar record; from then on every write of the id through
 * the store (record, recordAt, a decided or committed event) adds to its gates as well as to the
 * batched append, so both hold the same events. A merge, an import or a compaction of the id retires its
 * gates (the next decision seeds new ones from the calendar record).
 *
 * Event stores live on the engine's thread, the only thread that writes or reads their gates (so they
 * take no lock: see the record kind).
 */
import type { CalUnitCode } from '../../common/calendar.js';
import type { CalShape } from '../../common/records/calendar/shape.js';
import { addFixed, FIXED_HEAD_WORDS, FixedWindowShape, initFixed } from '../../common/records/fixed-window.js';
import { FXF_HOLDS } from '../../common/layout.js';
import type { DecisionPlace, DecisionSegment } from '../router/decision-arena.js';
import type { DeferredAdd } from '../router/batch-pipeline.js';
import type { Lane } from '../router/lane.js';

/** One window the store's limits decide on: the newest `n` units of ring `ring`. */
export interface GateWindow {
  /** Its place in every counter's `gates`. */
  readonly index: number;
  readonly ring: number;
  readonly unit: CalUnitCode;
  readonly n: number;
  readonly shape: FixedWindowShape;
  /** The first instant of unit k (for retry-after estimates). */
  readonly startOf: (k: number) => number;
}

/** One id's record for one window. */
export interface Gate {
  /** Its segment's Float64 view, copied out (one hop less for a decision). */
  readonly f64: Float64Array;
  readonly segment: DecisionSegment;
  readonly offset: number;
  readonly window: GateWindow;
}

/** A counter's gates by window index (see CounterLimits.gates). */
export type CounterGates = Array<Gate | undefined>;

/** The fields of an event counter (./reader.ts EventCounter) its gates hang from. */
export interface GatedCounter {
  readonly id: string;
  readonly lane: Lane;
  /** The id's calendar record's arena offset. */
  readonly offset: number;
  /** What the limits that decided on the id keep on it; undefined until one does (see {@link Gates.limitsOf}). */
  limits: CounterLimits | undefined;
}

/**
 * What a counter carries for the limits that decide on its id: made when the first one does, since most
 * ids never meet a limit and every field of the counter itself costs every id 8 bytes of heap. It is also
 * the id's deferred add (src/router/batch-pipeline.ts): events its limits admitted, not yet in a batch.
 */
export class CounterLimits implements DeferredAdd {
  /** Its gates by window index; undefined while it has none (not made yet, or retired). */
  gates: CounterGates | undefined = undefined;
  gateCount = 0;
  /**
   * Its first gate's window and place, inline: a decision on that window reads the counter's limits and the
   * record and nothing else (one hop less than through `gates`).
   */
  fastWindow: GateWindow | undefined = undefined;
  fastF64: Float64Array | undefined = undefined;
  fastOffset = 0;
  /** Holds of retired gates by window index, handed on to the next gate of that window (see Gates.retire). */
  carried: Array<Float64Array | undefined> | undefined = undefined;
  /**
   * Events limits admitted not yet in a batch, all in the store's finest unit `unsentUnit`, sent as one op
   * stamped `unsentAt` (the first one's time: the same buckets in every ring).
   */
  unsent = 0;
  unsentAt = 0;
  unsentUnit = 0;
  listed = false;

  constructor(readonly offset: number) {}
}

export class Gates {
  private readonly windows = new Map<string, GateWindow>();
  private readonly list: GateWindow[] = [];
  /** The last hold series handed out (see holdFixed): unique across the store's records, old and new. */
  private series = 0;
  /** Retired records' places, by lane and size. */
  private readonly free = new Map<Lane, Map<number, DecisionPlace[]>>();

  constructor(private readonly shape: CalShape) {}

  /** The window of `n` units of ring `ring` (one object per window). */
  windowOf(ring: number, n: number): GateWindow {
    const key = `${ring}:${n}`;
    let w = this.windows.get(key);
    if (w === undefined) {
      const unit = this.shape.rings[ring]!.unit;
      const calendar = this.shape.calendar;
      let lastK = Number.NaN;
      let lastStart = 0;
      // Refusals of one window ask for the same unit's start again and again: one entry of cache.
      const startOf = (k: number): number => {
        if (k !== lastK) {
          lastStart = calendar.start(unit, k);
          lastK = k;
        }
        return lastStart;
      };
      w = { index: this.list.length, ring, unit, n, shape: new FixedWindowShape(n), startOf };
      this.windows.set(key, w);
      this.list.push(w);
    }
    return w;
  }

  /** The counter's limits, made when a limit first decides on its id. */
  limitsOf(c: GatedCounter): CounterLimits {
    return (c.limits ??= new CounterLimits(c.offset));
  }

  /** A hold series number never handed out before (for holdFixed). */
  freshSeries(): number {
    return ++this.series;
  }

  /** Words for a gate of window `w` in `lane`. Throws TW_CAPACITY (taking nothing) past the shard's memory budget. */
  take(lane: Lane, w: GateWindow): DecisionPlace {
    return this.freeList(lane, w.shape.words).pop() ?? lane.decisions.take(w.shape.words);
  }

  /** Gives back words taken for a gate that was not made. */
  giveBack(lane: Lane, w: GateWindow, place: DecisionPlace): void {
    this.freeList(lane, w.shape.words).push(place);
  }

  /**
   * Makes the gate of window `w` for counter `c` at unit `k`, holding `newestFirst` (the id's calendar
   * buckets, newest first; undefined for none), in `place` (taken with {@link take}; nothing here throws). Holds the id's gate
   * of this window had when it was retired come back with it.
   */
  makeAt(c: GatedCounter, w: GateWindow, k: number, newestFirst: ArrayLike<number> | undefined, place: DecisionPlace): Gate {
    const { segment, offset } = place;
    initFixed(segment.f64, offset, w.shape, k, newestFirst);
    const l = this.limitsOf(c);
    const carried = l.carried?.[w.index];
    if (carried !== undefined) {
      for (let i = FXF_HOLDS; i < FIXED_HEAD_WORDS; i++) segment.f64[offset + i] = carried[i]!;
      l.carried![w.index] = undefined;
    }
    const gate: Gate = { f64: segment.f64, segment, offset, window: w };
    l.gates ??= [];
    l.gates[w.index] = gate;
    l.gateCount++;
    if (l.fastWindow === undefined) {
      l.fastWindow = w;
      l.fastF64 = segment.f64;
      l.fastOffset = offset;
    }
    return gate;
  }

  /**
   * Where the holds of a counter's window are now: its gate's record, or, while the gate is retired (a
   * merge or import), the head words it handed them on in. Undefined when it has neither.
   */
  holdsOf(c: GatedCounter, w: GateWindow): { readonly f64: Float64Array; readonly offset: number } | undefined {
    const g = c.limits?.gates?.[w.index];
    if (g !== undefined) return g;
    const carried = c.limits?.carried?.[w.index];
    return carried === undefined ? undefined : { f64: carried, offset: 0 };
  }

  /**
   * Adds `delta` events of now (the time the shape is seeked to) to every gate of a counter but the one
   * of window index `skip` (a decision already counted the event in it). No time is passed: a double
   * handed to a call that is not inlined is boxed (allocated), and this one is on the decision path.
   */
  addNow(gates: CounterGates, delta: number, skip: number): void {
    const shape = this.shape;
    for (let i = 0; i < gates.length; i++) {
      const g = gates[i];
      if (g === undefined || i === skip) continue;
      const k = shape.ks[g.window.ring]!;
      addFixed(g.f64, g.offset, g.window.shape, k, k, delta);
    }
  }

  /**
   * Adds `delta` events at time `t` (recordAt: not later than now, the time the shape is seeked to) to
   * every gate of a counter. An event older than a gate's window does not count in it.
   */
  addAt(gates: CounterGates, t: number, delta: number): void {
    const shape = this.shape;
    for (const g of gates) {
      if (g === undefined) continue;
      const w = g.window;
      const k = shape.ks[w.ring]!;
      addFixed(g.f64, g.offset, w.shape, k, Math.min(k, shape.calendar.index(w.unit, t)), delta);
    }
  }

  /**
   * Gives a counter's gates back for reuse (the next decision on the id seeds new ones). Their holds are
   * handed on (in a copy of the record's head words) to the gates made next, so that reservations outlive
   * a merge or an import of the id.
   */
  retire(c: GatedCounter): void {
    const l = c.limits;
    if (l?.gates === undefined) return;
    for (const g of l.gates) {
      if (g === undefined) continue;
      if (g.f64[g.offset + FXF_HOLDS]! > 0) {
        l.carried ??= [];
        l.carried[g.window.index] = g.f64.slice(g.offset, g.offset + FIXED_HEAD_WORDS);
      }
      this.freeList(c.lane, g.window.shape.words).push({ segment: g.segment, offset: g.offset });
    }
    l.gates = undefined;
    l.gateCount = 0;
    l.fastWindow = undefined;
    l.fastF64 = undefined;
  }

  private freeList(lane: Lane, words: number): DecisionPlace[] {
    let byWords = this.free.get(lane);
    if (byWords === undefined) this.free.set(lane, (byWords = new Map()));
    let list = byWords.get(words);
    if (list === undefined) byWords.set(words, (list = []));
    return list;
  }
}
