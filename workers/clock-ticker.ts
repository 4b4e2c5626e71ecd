/**
 * Clock ticker thread entry: writes Date.now() into the shared time cell every `tickMs` until told to
 * stop. Reading the cell is ~6× cheaper than Date.now() (bench/clock-read), which is what lets the hot
 * paths stamp every op with the time.
 */
import { workerData } from 'node:worker_threads';

interface TickerData {
  readonly timeCell: SharedArrayBuffer;
  readonly stop: SharedArrayBuffer;
  readonly tickMs: number;
}

const { timeCell, stop, tickMs } = workerData as TickerData;
const cell = new Float64Array(timeCell, 0, 1);
const stopFlag = new Int32Array(stop, 0, 1);
while (Atomics.load(stopFlag, 0) === 0) {
  // An aligned 8-byte store is not torn on the platforms Node supports; readers need no lock.
  cell[0] = Date.now();
  Atomics.wait(stopFlag, 0, 0, tickMs);
}
