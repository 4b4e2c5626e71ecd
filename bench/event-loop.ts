/**
 * Does the engine let the event loop turn? The longest event-loop delay (perf_hooks
 * monitorEventLoopDelay, 1 ms resolution) while:
 *  - a producer writes on every turn and the shard thread is killed 12 times (each kill once the
 *    replacement answers), every count verified afterwards;
 *  - N ids (default 1M) are exported, and persisted to a FileStorage, both verified;
 * and the CPU an idle engine uses (process CPU time over a 5 s idle spell, every thread included).
 * Usage: node dist/bench/event-loop.js [--ids 1000000] [--idle-ms 5000]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setImmediate as turn, setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { internals } from '../src/engine.js';
import { createEngine, FileStorage, SPEC_START, TestClock } from '../src/index.js';
import { describeMachine } from './machine.js';

const { values } = parseArgs({ options: { ids: { type: 'string', default: '1000000' }, 'idle-ms': { type: 'string', default: '5000' } } });
const IDS = Number(values.ids);
const IDLE_MS = Number(values['idle-ms']);

/** Runs `work` while the event-loop delay is sampled; returns the longest delay in ms. */
async function maxDelay(work: () => Promise<void>): Promise<number> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  try {
    await work();
  } finally {
    h.disable();
  }
  return h.max / 1e6;
}

console.log(`event-loop · ${describeMachine()}`);

// 1. Shard kills under a per-turn producer.
{
  const engine = await createEngine({ clock: new TestClock(SPEC_START), shards: 1 });
  const lane = engine[internals].router.lanes[0]!;
  const set = engine.windows({ size: 2, unit: 'hour' });
  let written = 0;
  let stop = false;
  const producer = (async () => {
    for (let t = 0; !stop; t++) {
      for (let i = 0; i < 3; i++) {
        set.observe(`k${(t + i) % 100}`);
        written++;
      }
      await turn();
    }
  })();
  const ms = await maxDelay(async () => {
    for (let kill = 0; kill < 12; kill++) {
      await engine.stats();
      for (let i = 0; i < 30; i++) await turn();
      await lane.killThreadForTest();
    }
    for (let i = 0; i < 30; i++) await turn();
  });
  stop = true;
  await producer;
  let total = 0;
  for (let k = 0; k < 100; k++) total += await set.value(`k${k}`);
  if (total !== written) throw new Error(`counts wrong after the kills: ${total} of ${written}`);
  const restarts = (await engine.stats()).shards[0]!.restarts;
  await engine.close();
  console.log(`12 shard kills under a per-turn producer   max event-loop delay ${ms.toFixed(1)} ms   (${restarts} restarts, ${written} ops, all counted)`);
}

// 2. Export and persist of IDS ids.
{
  const dir = mkdtempSync(join(tmpdir(), 'tw-bench-el-'));
  const clock = new TestClock(SPEC_START);
  const engine = await createEngine({ clock, shards: 1, events: { storage: new FileStorage(join(dir, 'ids.tw')) } });
  for (let i = 0; i < IDS; i++) {
    engine.events.record(`id${i}`);
    if ((i & 0xffff) === 0) await turn();
  }
  await engine.flush();
  let exported = 0;
  const exportMs = await maxDelay(async () => {
    exported = Object.keys((await engine.events.export()).counters).length;
  });
  if (exported !== IDS) throw new Error(`export held ${exported} of ${IDS} ids`);
  let saved = 0;
  const started = performance.now();
  const persistMs = await maxDelay(async () => {
    saved = await engine.events.persistAll();
  });
  const persistS = (performance.now() - started) / 1000;
  if (saved !== IDS) throw new Error(`persist saved ${saved} of ${IDS} ids`);
  await engine.close();
  const reader = new FileStorage(join(dir, 'ids.tw'));
  if ((await reader.keys('events/')).length !== IDS) throw new Error('the file does not hold every id');
  rmSync(dir, { recursive: true, force: true });
  console.log(`export of ${IDS.toLocaleString('en-US')} ids                  max event-loop delay ${exportMs.toFixed(1)} ms`);
  console.log(`persistAll of ${IDS.toLocaleString('en-US')} ids to a file     max event-loop delay ${persistMs.toFixed(1)} ms   (${persistS.toFixed(1)} s, every id in the file)`);
}

// 3. Idle CPU of an engine on the system clock.
{
  const engine = await createEngine({ shards: 1 });
  engine.windows({ size: 5, unit: 'second' }).observe('a');
  await engine.flush();
  await delay(1000); // past the ticker's idle threshold
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await delay(IDLE_MS);
  const cpu = process.cpuUsage(cpu0);
  const wall = performance.now() - t0;
  await engine.close();
  console.log(`idle engine (1 shard, system clock), ${IDLE_MS} ms    CPU ${(((cpu.user + cpu.system) / 1000 / wall) * 100).toFixed(3)} % of one core (every thread of the process)`);
}
