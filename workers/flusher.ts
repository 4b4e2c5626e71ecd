/**
 * Flusher actor thread entry: opens its own Redis connection, serves the data port (registrations and
 * requests from the main thread) and the comlink control plane, and runs a flush cycle every flush
 * interval while the engine lives. All flushing logic lives in workers/flusher-core.ts.
 */
import { workerData } from 'node:worker_threads';
import { exposeControl } from '../common/control.js';
import { protocolError } from '../common/errors.js';
import { FlusherCore } from './flusher-core.js';
import type { FlusherControl, FlusherInit, FlusherMessage, FlusherStats } from '../common/messages.js';
import { type ConnectionSpec, openClient, openClientInBackground } from '../common/redis.js';

const init = workerData as FlusherInit;
const spec = init.connection as ConnectionSpec;
const client = init.connectInBackground ? openClientInBackground(spec, init.commandTimeoutMs) : await openClient(spec, init.commandTimeoutMs);
const core = new FlusherCore(
  init.shards,
  init.timeCell,
  init.gauges,
  client,
  init.prefix,
  init.instance,
  init.commandTimeoutMs,
  (reply) => init.data.postMessage(reply),
  init.partitionState,
  init.entries,
  { instanceId: init.instanceId, thresholdMs: init.deadInstanceThresholdMs, retentionMs: init.instanceRetentionMs },
);

// Heartbeats: every instance-aware partition learns this instance is alive, well within the threshold.
let beating: Promise<void> | undefined;
let heartbeatsPaused = false;
const heartbeat = setInterval(() => {
  if (beating !== undefined || heartbeatsPaused) return;
  beating = core.beat().finally(() => (beating = undefined));
}, init.heartbeatIntervalMs);
heartbeat.unref();
beating = core.beat().finally(() => (beating = undefined));

/** The cycle running now (cycles never overlap: one call per partition in flight). */
let running: Promise<void> | undefined;
let closing = false;
let timer: NodeJS.Timeout | undefined;

function runCycle(): Promise<void> {
  running ??= core.cycle().finally(() => {
    running = undefined;
    schedule();
  });
  return running;
}

function schedule(delayMs = core.nextDelayMs(init.flushIntervalMs)): void {
  if (closing) return;
  clearTimeout(timer);
  timer = setTimeout(() => void runCycle(), core.hasQueued() ? 0 : delayMs);
  timer.unref();
}

/**
 * Registration messages received on the data port. A control call (another port: no order between the two)
 * names how many the main thread had sent before it, and waits for them: a flush or close started right
 * after a new key's first add must see that key.
 */
let registrations = 0;
const registrationWaiters: Array<{ readonly count: number; readonly resolve: () => void }> = [];

function registered(count: number): Promise<void> | undefined {
  if (registrations >= count) return undefined;
  return new Promise((resolve) => registrationWaiters.push({ count, resolve }));
}

init.data.on('message', (message: FlusherMessage) => {
  switch (message.type) {
    case 'register':
      core.register(message.entries);
      registrations++;
      for (let i = registrationWaiters.length - 1; i >= 0; i--) {
        if (registrationWaiters[i]!.count > registrations) continue;
        registrationWaiters[i]!.resolve();
        registrationWaiters.splice(i, 1);
      }
      break;
    case 'request':
      core.request(message.id, message.ops);
      // A request is answered in the next cycle: start it now unless one is running (it reschedules).
      if (running === undefined && !closing) schedule(0);
      break;
    default:
      throw protocolError('flusher data port', message satisfies never);
  }
});

const control: FlusherControl = {
  async flushNow(registrationsSent: number): Promise<FlusherStats> {
    await registered(registrationsSent);
    // The cycle running may have scanned before the caller's deltas landed: wait for it, then run one more.
    if (running !== undefined) await running;
    await runCycle();
    return core.stats();
  },
  stats: () => core.stats(),
  loseRepliesForTest: (count: number) => core.loseRepliesForTest(count),
  async pauseHeartbeatsForTest(paused: boolean) {
    heartbeatsPaused = paused;
    // Paused means no heartbeat reaches Redis from now on: wait for one already sent.
    if (paused && beating !== undefined) await beating;
  },
  async close(timeoutMs: number, registrationsSent: number) {
    await registered(registrationsSent);
    closing = true;
    clearTimeout(timer);
    clearInterval(heartbeat);
    if (beating !== undefined) await beating;
    if (running !== undefined) await running;
    const report = await core.close(timeoutMs);
    init.data.close();
    return report;
  },
};
exposeControl(control, init.control);
schedule();
