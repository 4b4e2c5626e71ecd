/**
 * The system clock's ticker control cells (an Int32Array over one SharedArrayBuffer), shared by the main
 * thread (src/clock/clock.ts) and the ticker thread (workers/clock-ticker.ts).
 *
 *   [T_STOP]      1: the ticker ends (set with a notify on T_STOP and on T_WAKE)
 *   [T_SLEEPING]  1 while the ticker sleeps because the clock was idle
 *   [T_WAKE]      set to 1 and notified to wake a sleeping ticker
 *   [T_ACTIVITY]  bumped by every touch: the ticker stays awake while it moves
 *
 * Imported by worker threads: imports nothing main-only.
 */
export const T_STOP = 0;
export const T_SLEEPING = 1;
export const T_WAKE = 2;
export const T_ACTIVITY = 3;
export const TICKER_CELLS = 4;

/** How long the clock may go untouched before the ticker sleeps. */
export const IDLE_AFTER_MS = 250;
/** How often a sleeping ticker still refreshes the time cell (for readers on other threads). */
export const IDLE_REFRESH_MS = 1000;

/**
 * A use of the clock: keeps the ticker awake, and if it sleeps, refreshes `cell` now and wakes it, so the
 * caller reads a current time. Called once per batch, not per op.
 *
 * The handshake with a ticker about to sleep: the ticker stores SLEEPING, then loads ACTIVITY; a touch
 * adds to ACTIVITY, then loads SLEEPING (all sequentially consistent). So either the ticker sees the touch
 * and stays awake, or the touch sees it asleep and wakes it; never neither.
 */
export function touchTicker(ctl: Int32Array, cell: Float64Array): void {
  Atomics.add(ctl, T_ACTIVITY, 1);
  if (Atomics.load(ctl, T_SLEEPING) !== 0) {
    cell[0] = Date.now();
    Atomics.store(ctl, T_WAKE, 1);
    Atomics.notify(ctl, T_WAKE);
  }
}
