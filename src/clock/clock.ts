/**
 * Clocks. Every clock keeps its time in a shared cell (a Float64 in a SharedArrayBuffer holding ms since
 * the Unix epoch) that the router reads on every op and the shard threads read too. A cell read is ~6×
 * cheaper than Date.now() (bench/clock-read: 7 vs 46 ns on the 2-core dev machine), which decides the
 * hot path's design.
 */
import type { Worker } from 'node:worker_threads';
import { CAL_MAX_MS, CAL_MIN_MS, inCalendarRange } from '../../common/calendar.js';
import { argumentRangeError, argumentTypeError } from '../../common/errors.js';
import { T_SLEEPING, T_STOP, T_WAKE, TICKER_CELLS, touchTicker } from '../../common/ticker.js';
import { startTicker } from '../threads/threads.js';

/** A source of time for an engine. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** The shared time cell: `new Float64Array(timeCell)[0]` is `now()`, readable from any thread. */
  readonly timeCell: SharedArrayBuffer;
  /** An engine calls this when it starts using the clock … */
  retain(): void;
  /** … and this when it closes; the promise settles once the clock holds no thread for it. */
  release(): Promise<void>;
  /**
   * Optional: called before a time is read from `timeCell` after a quiet spell (the first op of a batch),
   * so that a clock whose ticker sleeps while idle can refresh the cell first.
   */
  touch?(): void;
  /**
   * A clock that moves only when told to (a test clock) calls `listener` synchronously after every move,
   * so that timed work (stat buffer flushes, retries, timeouts) runs at the clock's time instead of on
   * real timers. Returns the function that stops the calls. Wall clocks leave this out.
   */
  watch?(listener: () => void): () => void;
}

/** How often the system clock's ticker thread refreshes the time cell. */
export const SYSTEM_CLOCK_TICK_MS = 1;

/** Reads a ms from which nowRelaxed keeps the ticker awake and reads its cell (below: Date.now()). */
const DENSE_READS = 32;

let tickerCell: SharedArrayBuffer | undefined;
let tickerUsers = 0;
let ticker: { worker: Worker; exited: Promise<void> } | undefined;
/** The ticker's control cells (common/ticker.ts); one set per process, like the ticker. */
const tickerControl = new Int32Array(new SharedArrayBuffer(TICKER_CELLS * 4));

function sharedTickerCell(): SharedArrayBuffer {
  tickerCell ??= new SharedArrayBuffer(8);
  return tickerCell;
}

/**
 * Wall-clock time with 1 ms resolution, refreshed by one ticker thread per process (shared by every engine
 * using a SystemClock; started by the first, stopped by the last). The ticker sleeps while nothing uses the
 * clock (see workers/clock-ticker.ts): an idle engine costs one wake-up a second.
 */
export class SystemClock implements Clock {
  readonly timeCell: SharedArrayBuffer = sharedTickerCell();
  private readonly cell = new Float64Array(this.timeCell, 0, 1);

  now(): number {
    if (ticker === undefined) return Date.now();
    touchTicker(tickerControl, this.cell);
    return this.cell[0]!;
  }

  private lastTouched = NaN;
  /** Reads the fast path answered since the last slow one (in dense mode, about one ms of them). */
  private reads = 0;
  /** Sparse mode: the wall-clock ms of the last slow read, and how many slow reads fell in it. */
  private sparseMs = NaN;
  private sparseReads = 0;
  /** The last wall-clock time a sparse read returned. */
  private lastWall = -Infinity;

  /**
   * `now()` for a caller that reads the clock millions of times a second (a limiter's decisions): it
   * touches the ticker (an atomic add on a line the ticker thread reads) once per tick of the cell instead
   * of on every read. The time read is the same. A cell that has not moved since this thread's last touch
   * is a running ticker's current millisecond: a ticker sleeps only IDLE_AFTER_MS after the last touch,
   * and it moves the cell meanwhile, so after a sleep the cell never equals the time last touched and the
   * next read touches (and wakes) it. That spares an atomic load per read (one ad-hoc microbenchmark, loop included: 17 → 9 ns a read).
   *
   * Sparse readers do not keep the ticker awake: a caller that reads fewer than DENSE_READS times a ms (an
   * HTTP service deciding a few thousand times a second) reads `Date.now()` (about 30 ns) instead, and the
   * ticker, untouched, sleeps; its wake-ups every ms cost such a process more CPU than the reads (measured:
   * 4 % of the CPU of an Express app limited by a sliding window). A burst of DENSE_READS reads in one ms
   * touches it again.
   */
  nowRelaxed(): number {
    const t = this.cell[0]!;
    if (t === this.lastTouched && ticker !== undefined) {
      this.reads++;
      return t;
    }
    // `+`: both returns stay raw doubles, so an inlined fast path boxes nothing (it allocated per read).
    return +this.touchedNow();
  }

  /**
   * nowRelaxed's slow path, apart so that the fast one stays small enough to inline. Times never go back
   * across the two modes: the ticker's cell can lag the wall clock (a descheduled ticker), so dense mode
   * starts only once the cell has reached the last wall-clock time this thread returned.
   */
  private touchedNow(): number {
    if (ticker === undefined) return Date.now();
    if (this.reads >= DENSE_READS) {
      // Dense: the last ms was read often; stay on the ticker's cell.
      this.reads = 0;
      const now = this.now();
      if (now >= this.lastWall) {
        this.lastTouched = now;
        return now;
      }
    }
    this.reads = 0;
    this.lastTouched = NaN; // every read comes here until they are dense again
    const wall = Date.now();
    this.lastWall = wall;
    if (wall !== this.sparseMs) {
      this.sparseMs = wall;
      this.sparseReads = 1;
      return wall;
    }
    if (++this.sparseReads < DENSE_READS) return wall;
    // Dense again: touch (and wake) the ticker, and read its cell from now on, once it is not behind.
    const now = this.now();
    if (now < wall) return wall;
    this.lastTouched = now;
    return now;
  }

  touch(): void {
    if (ticker !== undefined) touchTicker(tickerControl, this.cell);
  }

  retain(): void {
    if (tickerUsers++ === 0) {
      this.cell[0] = Date.now();
      if (ticker === undefined) {
        tickerControl.fill(0);
        const worker = startTicker(this.timeCell, tickerControl.buffer as SharedArrayBuffer, SYSTEM_CLOCK_TICK_MS);
        const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
        ticker = { worker, exited };
      }
    }
  }

  async release(): Promise<void> {
    if (tickerUsers === 0) return;
    if (--tickerUsers > 0 || ticker === undefined) return;
    const current = ticker;
    ticker = undefined;
    // The ticker is unref'd; ref it while we wait for its exit, or an otherwise idle loop would end first.
    current.worker.ref();
    Atomics.store(tickerControl, T_STOP, 1);
    Atomics.notify(tickerControl, T_STOP);
    Atomics.store(tickerControl, T_WAKE, 1);
    Atomics.notify(tickerControl, T_WAKE);
    await current.exited;
  }
}

/**
 * A time source read on every decision. An object with a method, not a closure: a call to a closure kept in
 * a field was not inlined, and each of its results was boxed (one allocation per decision in an ad-hoc GC count).
 */
export interface TimeSource {
  now(): number;
}

/** The engine clock's time for decisions: SystemClock.nowRelaxed where it can, the clock's now() otherwise. */
export class DecisionTime implements TimeSource {
  private readonly system: SystemClock | undefined;

  constructor(private readonly clock: Clock) {
    this.system = clock instanceof SystemClock ? clock : undefined;
  }

  now(): number {
    const s = this.system;
    // `+`: both branches raw doubles, or the time is boxed on every read (the phi of the two would be tagged).
    return s !== undefined ? s.nowRelaxed() : +this.clock.now();
  }
}

/** The times a clock may hold (the range calendars cover). */
const CLOCK_RANGE_RULE = `a time from ${new Date(CAL_MIN_MS).toISOString()} to before ${new Date(CAL_MAX_MS).toISOString()}`;

/** @internal Test hook: true while the system clock's ticker sleeps through an idle spell. */
export function tickerSleepsForTest(): boolean {
  return ticker !== undefined && Atomics.load(tickerControl, T_SLEEPING) === 1;
}

/** The default test start time of the specs: Monday 2024-06-17 10:30:00 UTC. */
export const SPEC_START = Date.UTC(2024, 5, 17, 10, 30, 0);

/**
 * A clock that moves only when told to. Its time lives in shared memory, so shard threads see exactly
 * what the test set, which makes multi-threaded tests deterministic.
 */
export class TestClock implements Clock {
  readonly timeCell = new SharedArrayBuffer(8);
  private readonly cell = new Float64Array(this.timeCell, 0, 1);
  private readonly listeners = new Set<() => void>();

  /** @param start ms since the Unix epoch, or a Date; defaults to {@link SPEC_START}. */
  constructor(start: number | Date = SPEC_START) {
    this.set(start);
  }

  now(): number {
    return this.cell[0]!;
  }

  /**
   * Sets the time, from 1970-01-01 to 2068-01-01 UTC (the range calendars cover). It may go backwards:
   * windows then hold still.
   */
  set(time: number | Date): void {
    const ms = time instanceof Date ? time.getTime() : time;
    if (typeof ms !== 'number') throw argumentTypeError('time', 'a number of ms since the Unix epoch or a Date', time);
    if (!inCalendarRange(ms)) throw argumentRangeError('time', CLOCK_RANGE_RULE, time);
    this.cell[0] = ms;
    this.moved();
  }

  /** Moves the time forward by `ms` (negative moves it back), within the range of {@link set}. */
  advance(ms: number): void {
    if (typeof ms !== 'number') throw argumentTypeError('ms', 'a number', ms);
    if (!Number.isFinite(ms)) throw argumentRangeError('ms', 'a finite number of milliseconds', ms);
    if (!inCalendarRange(this.cell[0]! + ms)) throw argumentRangeError('ms', `a move that keeps the clock ${CLOCK_RANGE_RULE}`, ms);
    this.cell[0] = this.cell[0]! + ms;
    this.moved();
  }

  /** Calls `listener` after every `set` and `advance` (stat buffers run their due work then). */
  watch(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private moved(): void {
    for (const listener of this.listeners) listener();
  }

  retain(): void {}

  release(): Promise<void> {
    return Promise.resolve();
  }
}
