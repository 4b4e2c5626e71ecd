/**
 * Clock ticker thread entry: writes Date.now() into the shared time cell every `tickMs` while the engine
 * is in use, and sleeps while it is idle. Reading the cell is ~6× cheaper than Date.now()
 * (bench/clock-read), which is what lets the hot paths stamp every op with the time.
 *
 * Idle: when no user of the clock has touched it (see common/ticker.ts) for IDLE_AFTER_MS, the ticker
 * says it sleeps and waits on the wake cell, refreshing the time once a second. The first touch after
 * that refreshes the cell itself before anything is stamped, and wakes the ticker. So an idle engine costs
 * one wake-up a second instead of a thousand, and the hot path still reads one shared cell.
 */
import { workerData } from 'node:worker_threads';
import { IDLE_AFTER_MS, IDLE_REFRESH_MS, T_ACTIVITY, T_SLEEPING, T_STOP, T_WAKE } from '../common/ticker.js';

interface TickerData {
  readonly timeCell: SharedArrayBuffer;
  readonly control: SharedArrayBuffer;
  readonly tickMs: number;
}

const { timeCell, control, tickMs } = workerData as TickerData;
const cell = new Float64Array(timeCell, 0, 1);
const ctl = new Int32Array(control);
let seen = Atomics.load(ctl, T_ACTIVITY);
let activeAt = Date.now();
while (Atomics.load(ctl, T_STOP) === 0) {
  const now = Date.now();
  // An aligned 8-byte store is not torn on the platforms Node supports; readers need no lock.
  cell[0] = now;
  const activity = Atomics.load(ctl, T_ACTIVITY);
  if (activity !== seen) {
    seen = activity;
    activeAt = now;
  }
  if (now - activeAt < IDLE_AFTER_MS) {
    Atomics.wait(ctl, T_STOP, 0, tickMs);
    continue;
  }
  // Idle: sleep until touched (or stopped), refreshing the cell once a second for readers on other threads.
  Atomics.store(ctl, T_WAKE, 0);
  Atomics.store(ctl, T_SLEEPING, 1);
  if (Atomics.load(ctl, T_ACTIVITY) !== seen) {
    // Touched while going to sleep (see touchTicker): stay awake.
    Atomics.store(ctl, T_SLEEPING, 0);
    continue;
  }
  while (Atomics.load(ctl, T_STOP) === 0 && Atomics.wait(ctl, T_WAKE, 0, IDLE_REFRESH_MS) === 'timed-out') cell[0] = Date.now();
  Atomics.store(ctl, T_SLEEPING, 0);
  activeAt = Date.now();
}
