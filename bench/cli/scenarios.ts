/**
 * The benchmark CLI's scenarios. Each pairs a Tallyworks side with the peer a user would otherwise reach
 * for, both run in the same process on the same keys. Every side verifies its totals (it throws when they
 * are wrong) and reports what it measured.
 *
 * Over 350 lines because it is the catalogue of `tallyworks bench` scenarios: each is a few lines of setup,
 * a run and a verified total, and they share one table.
 */
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Redis } from 'ioredis';
import { partitionOf as partitionOfKey } from '../../common/redis.js';
import { createEngine, type Engine, type EngineOptions, type RateLimiterOptions, type Window, type WindowSet } from '../../src/index.js';
import { mapLoop } from '../machine.js';
import type { BenchRedis } from '../redis.js';
import type { RateWorkerInput, RateWorkerOutput } from './rate-worker.js';
import { expectEqual, heapBytes, Latencies, share, yieldTurn } from './measure.js';
import { httpScenario } from './http-scenario.js';
import { churn, persistFull, persistIncremental, restart } from './storage-scenarios.js';
import type { BenchContext, Measurement, Scenario, Side } from './scenario.js';

export type { BenchContext, Measurement, Scenario, Side } from './scenario.js';

/** Loops `ops` times over the keys (`op` gets the key and its index), yielding every 64k ops. */
async function cycle(ctx: BenchContext, ops: number, op: (key: string, index: number) => void): Promise<void> {
  const keys = ctx.keys;
  let j = 0;
  for (let i = 0; i < ops; i++) {
    op(keys[j]!, j);
    if (++j === keys.length) j = 0;
    if ((i & 0xffff) === 0xffff) await yieldTurn();
  }
}

/** Latency is sampled on one call in this many (the same for both sides: timing every call costs more than some calls). */
const LATENCY_SAMPLE = 8;

/**
 * Runs `callers` concurrent loops that together await `ops` calls (`call` gets the key and its index),
 * timing one call in LATENCY_SAMPLE; `then`, if given, gets each result and the key's index.
 */
async function concurrent<T>(ctx: BenchContext, ops: number, callers: number, call: (key: string, index: number) => Promise<T>, then?: (result: T, index: number) => void): Promise<Latencies> {
  const lat = new Latencies(Math.ceil(ops / LATENCY_SAMPLE));
  let next = 0;
  const keys = ctx.keys;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < ops; i = next++) {
      const j = i % keys.length;
      if (i % LATENCY_SAMPLE !== 0) {
        const r = await call(keys[j]!, j);
        then?.(r, j);
        continue;
      }
      const t = performance.now();
      const r = await call(keys[j]!, j);
      lat.add(performance.now() - t);
      then?.(r, j);
    }
  };
  await Promise.all(Array.from({ length: Math.min(callers, ops) }, worker));
  return lat;
}

async function withEngine<T>(ctx: BenchContext, options: EngineOptions, body: (engine: Engine) => Promise<T>): Promise<T> {
  const engine = await createEngine({ shards: ctx.shards, ...options });
  try {
    return await body(engine);
  } finally {
    await engine.close();
  }
}

async function shardBytesPerKey(engine: Engine, keys: number): Promise<number> {
  const stats = await engine.stats();
  // The arena and the decision memory (a limit's gates, a sliding limiter's records).
  return stats.shards.reduce((sum, s) => sum + s.arenaBytes + s.decisionBytes, 0) / keys;
}

/** Commands Redis ran while `body` did. */
async function countCommands<T>(redis: BenchRedis, body: () => Promise<T>): Promise<[T, number, number]> {
  const before = await redis.commandCalls();
  const cpuBefore = await redis.serverCpuSeconds();
  const result = await body();
  const cpuAfter = await redis.serverCpuSeconds();
  const after = await redis.commandCalls();
  let n = -3; // the INFOs that read `before` and the CPU figures
  for (const [name, calls] of after) n += calls - (before.get(name) ?? 0);
  return [result, n, cpuAfter - cpuBefore];
}

/** Server CPU seconds over `ops` ops, as µs per op. */
function cpuPerOp(seconds: number, ops: number): number {
  return (seconds * 1e6) / ops;
}

function needRedis(ctx: BenchContext): BenchRedis {
  if (ctx.redis === undefined) throw new Error('this scenario needs --redis URL');
  return ctx.redis;
}

let runs = 0;
/** A prefix no earlier run of this process used (Redis keys of different runs never meet). */
function freshPrefix(): string {
  return `twbench${process.pid}x${++runs}`;
}

const mapPeer: Side = {
  name: 'Map loop',
  async run(ctx, ops) {
    const before = heapBytes();
    let bytes = 0;
    const ms = mapLoop(ctx.keys, ops, () => (bytes = heapBytes() - before));
    return { ops, ms, bytesPerKey: bytes / ctx.keys.length, verified: `total ${ops.toLocaleString('en-US')}` };
  },
};

/** Sums a per-key read over every key (in parallel) and checks it against `want`. */
async function verifyTotal(what: string, ctx: BenchContext, read: (key: string) => Promise<number | undefined>, want: number): Promise<string> {
  const values = await Promise.all(ctx.keys.map(read));
  expectEqual(`${what} total`, values.reduce((a: number, v) => a + (v ?? 0), 0), want);
  return `total ${want.toLocaleString('en-US')}`;
}

/** How a window row observes key `k` (index `j`), given the engine, its set and the pre-resolved handles. */
type WindowOp = (engine: Engine, set: WindowSet, handles: readonly Window[]) => (k: string, j: number) => void;

const WINDOW_SHAPE = { size: 2, unit: 'day' } as const;

/** One side of a hopping-window row: `op` over every key, then every total read back. */
function windowSide(name: string, op: WindowOp): Side {
  return {
    name,
    run: (ctx, ops) =>
      withEngine(ctx, {}, async (engine) => {
        const set = engine.windows(WINDOW_SHAPE);
        const handles = ctx.keys.map((k) => set.window(k)); // the keys exist first: the row measures counting
        await engine.flush();
        const start = performance.now();
        await cycle(ctx, ops, op(engine, set, handles));
        await engine.flush();
        const ms = performance.now() - start;
        return { ops, ms, bytesPerKey: await shardBytesPerKey(engine, ctx.keys.length), verified: await verifyTotal('windows', ctx, (k) => set.value(k), ops) };
      }),
  };
}

const byKey: WindowOp = (_, set) => (k) => set.observe(k);

/** Hopping-window observations against `peer` (the Map loop unless given). */
function windowScenario(name: string, title: string, ours: Side, peer: Side = mapPeer): Scenario {
  return { name, title, redis: false, defaultOps: 30_000_000, peerShare: 1, ours, peer };
}

const observeKey = windowScenario('observe-key', 'hopping window observe(key)', windowSide('set.observe(key)', byKey));
const observeHandle = windowScenario('observe-handle', 'hopping window handle.observe()', windowSide('handle.observe()', (_, __, handles) => (_k, j) => handles[j]!.observe()));
const observeWindow = windowScenario(
  'observe-window',
  'hopping window engine.window(id, shape).observe()',
  // A fresh shape object on every call, as an app would write it.
  windowSide('engine.window(id, shape).observe()', (engine) => (k) => engine.window(k, { size: 2, unit: 'day' }).observe()),
  windowSide('set.observe(id)', byKey),
);

const eventsRecord: Scenario = {
  name: 'events-record',
  title: 'calendar events record(id)',
  redis: false,
  defaultOps: 15_000_000,
  peerShare: 0.2,
  ours: {
    name: 'events.record(id)',
    run: (ctx, ops) =>
      withEngine(ctx, {}, async (engine) => {
        const events = engine.events;
        for (const k of ctx.keys) events.record(k, 0);
        await engine.flush();
        const start = performance.now();
        await cycle(ctx, ops, (k) => events.record(k));
        await engine.flush();
        const ms = performance.now() - start;
        const verified = await verifyTotal('events', ctx, (k) => events.query(k).lastDays(1).sum(), ops);
        return { ops, ms, bytesPerKey: await shardBytesPerKey(engine, ctx.keys.length), verified };
      }),
  },
  peer: {
    name: 'prom-client Counter.inc({ id })',
    async run(ctx, ops) {
      const { Counter } = await import('prom-client');
      const before = heapBytes();
      const counter = new Counter({ name: 'bench_events', help: 'events by id', labelNames: ['id'], registers: [] });
      const start = performance.now();
      await cycle(ctx, ops, (id) => counter.inc({ id }));
      const ms = performance.now() - start;
      const bytes = heapBytes() - before;
      const { values } = await counter.get();
      expectEqual('prom-client labels', values.length, Math.min(ops, ctx.keys.length));
      expectEqual('prom-client total', values.reduce((a, v) => a + v.value, 0), ops);
      return { ops, ms, bytesPerKey: bytes / ctx.keys.length, verified: `total ${ops.toLocaleString('en-US')}` };
    },
  },
};

const DAY = 86_400_000;

const eventsQuery: Scenario = {
  name: 'events-query',
  title: 'calendar query(id).lastDays(7).sum()',
  redis: false,
  defaultOps: 500_000,
  peerShare: 1,
  ours: {
    name: 'query(id).lastDays(7).sum()',
    run: (ctx, ops) =>
      withEngine(ctx, {}, async (engine) => {
        const events = engine.events;
        ctx.keys.forEach((k, i) => {
          for (let d = 0; d < 7; d++) events.recordAgo(k, d * DAY, (i % 7) + 1);
        });
        await engine.flush();
        const index = new Map(ctx.keys.map((k, i) => [k, i]));
        let wrong = 0;
        const start = performance.now();
        const lat = await concurrent(ctx, ops, 1, async (k) => {
          if ((await events.query(k).lastDays(7).sum()) !== 7 * ((index.get(k)! % 7) + 1)) wrong++;
        });
        const ms = performance.now() - start;
        expectEqual('wrong sums', wrong, 0);
        return { ops, ms, ...pct(lat), bytesPerKey: await shardBytesPerKey(engine, ctx.keys.length), verified: `${ops.toLocaleString('en-US')} sums exact` };
      }),
  },
  peer: {
    name: 'Map of day arrays, sum of 7',
    async run(ctx, ops) {
      const before = heapBytes();
      const days = new Map<string, number[]>(ctx.keys.map((k, i) => [k, Array.from({ length: 7 }, () => (i % 7) + 1)]));
      const bytes = heapBytes() - before;
      const index = new Map(ctx.keys.map((k, i) => [k, i]));
      let wrong = 0;
      const start = performance.now();
      const lat = await concurrent(ctx, ops, 1, async (k) => {
        const sum = await Promise.resolve(days.get(k)!.reduce((a, b) => a + b, 0));
        if (sum !== 7 * ((index.get(k)! % 7) + 1)) wrong++;
      });
      const ms = performance.now() - start;
      expectEqual('wrong sums', wrong, 0);
      return { ops, ms, ...pct(lat), bytesPerKey: bytes / ctx.keys.length, verified: `${ops.toLocaleString('en-US')} sums exact` };
    },
  },
};

function pct(lat: Latencies): { p50Ms: number; p99Ms: number } {
  const { p50, p99 } = lat.percentiles();
  return { p50Ms: p50, p99Ms: p99 };
}

/** Per key, the limit: half the attempts each key gets, so half the decisions refuse. */
function limitFor(ctx: BenchContext, ops: number): number {
  return Math.max(1, Math.floor(ops / ctx.keys.length / 2));
}

/** Checks that each key was allowed exactly min(limit, its attempts) times. */
function verifyAllowed(ctx: BenchContext, ops: number, limit: number, allowed: Map<string, number>): string {
  let total = 0;
  ctx.keys.forEach((k, i) => {
    const want = Math.min(limit, share(ops, ctx.keys.length, i));
    expectEqual(`allowed of ${k}`, allowed.get(k) ?? 0, want);
    total += want;
  });
  return `${total.toLocaleString('en-US')} of ${ops.toLocaleString('en-US')} allowed, per key exact`;
}

/** Concurrent callers of the limiter scenarios, as a service handling many requests at once. */
const LIMITER_CALLERS = 100;

/** Checks that each key's calendar record holds exactly what its limit admitted (the +1s reached it once). */
async function verifyRecorded(ctx: BenchContext, engine: Engine, allowed: Map<string, number>): Promise<void> {
  await engine.flush();
  for (const k of ctx.keys) expectEqual(`recorded events of ${k}`, engine.events.sumSync(k, 'hour', 1) ?? 0, allowed.get(k) ?? 0);
}

const limiter: Scenario = {
  name: 'limiter',
  title: 'calendar limit decisions, awaited by 100 callers',
  redis: false,
  defaultOps: 3_000_000,
  peerShare: 0.2,
  ours: {
    name: 'await limit().atMost(n, hour).checkAndRecord(id)',
    run: (ctx, ops) =>
      withEngine(ctx, {}, async (engine) => {
        const limit = limitFor(ctx, ops);
        const limiter = engine.events.limit().atMost(limit, 'hour');
        const admitted = new Float64Array(ctx.keys.length);
        const start = performance.now();
        // Each side as its API is used: this one resolves to a decision, the peer rejects a refusal.
        const lat = await concurrent(
          ctx,
          ops,
          LIMITER_CALLERS,
          (k) => limiter.checkAndRecord(k),
          (d, i) => {
            if (d.allowed) admitted[i]!++;
          },
        );
        await engine.flush(); // timed: every admitted event recorded
        const ms = performance.now() - start;
        const allowed = new Map(ctx.keys.map((k, i) => [k, admitted[i]!]));
        await verifyRecorded(ctx, engine, allowed);
        return { ops, ms, ...pct(lat), bytesPerKey: await shardBytesPerKey(engine, ctx.keys.length), verified: `${verifyAllowed(ctx, ops, limit, allowed)}, recorded once` };
      }),
  },
  peer: rateLimiterMemory(LIMITER_CALLERS),
};

const limiterSync: Scenario = {
  name: 'limiter-sync',
  title: 'calendar limit decisions, synchronous on the calling thread',
  redis: false,
  defaultOps: 10_000_000,
  peerShare: 0.1,
  ours: {
    name: 'limit().atMost(n, hour).checkAndRecordSync(id)',
    run: (ctx, ops) =>
      withEngine(ctx, {}, async (engine) => {
        const limit = limitFor(ctx, ops);
        const limiter = engine.events.limit().atMost(limit, 'hour');
        const admitted = new Float64Array(ctx.keys.length);
        const start = performance.now();
        await cycle(ctx, ops, (k, i) => {
          if (limiter.checkAndRecordSync(k).allowed) admitted[i]!++;
        });
        await engine.flush(); // timed: every admitted event recorded
        const ms = performance.now() - start;
        const allowed = new Map(ctx.keys.map((k, i) => [k, admitted[i]!]));
        await verifyRecorded(ctx, engine, allowed);
        return { ops, ms, bytesPerKey: await shardBytesPerKey(engine, ctx.keys.length), verified: `${verifyAllowed(ctx, ops, limit, allowed)}, recorded once` };
      }),
  },
  peer: rateLimiterMemory(1),
};

/** Records 7 days of `(i % 7) + 1` events for key i, and returns the expected 7-day sum by key. */
async function sevenDays(ctx: BenchContext, engine: Engine): Promise<Map<string, number>> {
  ctx.keys.forEach((k, i) => {
    for (let d = 0; d < 7; d++) engine.events.recordAgo(k, d * DAY, (i % 7) + 1);
  });
  await engine.flush();
  return new Map(ctx.keys.map((k, i) => [k, 7 * ((i % 7) + 1)]));
}

const eventsQuerySync: Scenario = {
  name: 'events-query-sync',
  title: 'calendar 7-day sum, synchronous against awaited',
  redis: false,
  defaultOps: 2_000_000,
  peerShare: 0.5,
  ours: {
    name: "events.sumSync(id, 'day', 7)",
    run: (ctx, ops) =>
      withEngine(ctx, {}, async (engine) => {
        const want = await sevenDays(ctx, engine);
        let wrong = 0;
        const start = performance.now();
        await cycle(ctx, ops, (k) => {
          if (engine.events.sumSync(k, 'day', 7) !== want.get(k)) wrong++;
        });
        const ms = performance.now() - start;
        expectEqual('wrong sums', wrong, 0);
        return { ops, ms, verified: `${ops.toLocaleString('en-US')} sums exact` };
      }),
  },
  peer: {
    name: 'await query(id).lastDays(7).sum()',
    run: (ctx, ops) =>
      withEngine(ctx, {}, async (engine) => {
        const want = await sevenDays(ctx, engine);
        let wrong = 0;
        const start = performance.now();
        const keys = ctx.keys;
        for (let i = 0, j = 0; i < ops; i++) {
          if ((await engine.events.query(keys[j]!).lastDays(7).sum()) !== want.get(keys[j]!)) wrong++;
          if (++j === keys.length) j = 0;
        }
        const ms = performance.now() - start;
        expectEqual('wrong sums', wrong, 0);
        return { ops, ms, verified: `${ops.toLocaleString('en-US')} sums exact` };
      }),
  },
};

/** rate-limiter-flexible's memory limiter, `limit` points an hour, awaited by `callers` concurrent loops. */
function rateLimiterMemory(callers: number): Side {
  return {
    name: `rate-limiter-flexible RateLimiterMemory, ${callers} caller${callers === 1 ? '' : 's'} awaiting`,
    async run(ctx, ops) {
      const { RateLimiterMemory } = await import('rate-limiter-flexible');
      const limit = limitFor(ctx, ops);
      const before = heapBytes();
      const rl = new RateLimiterMemory({ points: limit, duration: 3600 });
      const admitted = new Float64Array(ctx.keys.length);
      const start = performance.now();
      const admit = (): boolean => true;
      const refuse = (): boolean => false;
      // consume() rejects a refusal: one then turns both outcomes into a value.
      const lat = await concurrent(
        ctx,
        ops,
        callers,
        (k) => rl.consume(k).then(admit, refuse),
        (ok, i) => {
          if (ok) admitted[i]!++;
        },
      );
      const ms = performance.now() - start;
      const allowed = new Map(ctx.keys.map((k, i) => [k, admitted[i]!]));
      const bytes = heapBytes() - before;
      return { ops, ms, ...pct(lat), bytesPerKey: bytes / ctx.keys.length, verified: verifyAllowed(ctx, ops, limit, allowed) };
    },
  };
}

/** A sliding hour in 60 groups of a minute, as long as the calendar limiter's window. */
const SLIDING_HOUR = { windowSeconds: 3600, groupMs: 60_000 } as const;

/** A sliding-limiter side: `strategy` of a limiter with `options` decides every op; admitted counts verified per key. */
function slidingSide(name: string, options: RateLimiterOptions, strategy: 'absolute' | 'suppressed'): Side {
  return {
    name,
    run: (ctx, ops) =>
      withEngine(ctx, {}, async (engine) => {
        const limit = limitFor(ctx, ops);
        const rate = limit / SLIDING_HOUR.windowSeconds;
        const provider = engine.rateLimiter(options).local[strategy];
        const allowed = new Float64Array(ctx.keys.length);
        const start = performance.now();
        await cycle(ctx, ops, (k, i) => {
          if (provider.inc(k, rate).allowed) allowed[i]!++;
        });
        const ms = performance.now() - start;
        return { ops, ms, bytesPerKey: await shardBytesPerKey(engine, ctx.keys.length), verified: verifyAllowed(ctx, ops, limit, new Map(ctx.keys.map((k, i) => [k, allowed[i]!]))) };
      }),
  };
}

const slidingAbsolute: Scenario = {
  name: 'sliding-absolute',
  title: 'sliding-window rate limit decisions (absolute), synchronous on the calling thread',
  redis: false,
  defaultOps: 10_000_000,
  peerShare: 0.1,
  ours: slidingSide('rateLimiter().local.absolute.inc(key, rate)', SLIDING_HOUR, 'absolute'),
  peer: rateLimiterMemory(1),
};

const slidingSuppressed: Scenario = {
  name: 'sliding-suppressed',
  title: 'sliding-window rate limit decisions (suppressed, hardLimitFactor 1), synchronous',
  redis: false,
  defaultOps: 10_000_000,
  peerShare: 0.1,
  // With hardLimitFactor 1 every call past the soft limit is declined: the admitted totals are exact.
  ours: slidingSide('rateLimiter().local.suppressed.inc(key, rate)', { ...SLIDING_HOUR, hardLimitFactor: 1 }, 'suppressed'),
  peer: rateLimiterMemory(1),
};

const rateWorker = fileURLToPath(new URL('./rate-worker.js', import.meta.url));

function nextMessage(w: Worker): Promise<RateWorkerOutput> {
  return new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
}

const slidingThreads: Scenario = {
  name: 'sliding-threads',
  title: 'sliding-window decisions from two worker threads on the same keys (limiter.link())',
  redis: false,
  defaultOps: 10_000_000,
  peerShare: 0.1,
  ours: {
    name: '2 worker threads × local.absolute.inc(key, rate)',
    run: (ctx, ops) =>
      withEngine(ctx, {}, async (engine) => {
        const limit = limitFor(ctx, ops);
        const rate = limit / SLIDING_HOUR.windowSeconds;
        const limiter = engine.rateLimiter(SLIDING_HOUR);
        const rounds = Math.max(1, Math.round(ops / ctx.keys.length / 2));
        const keys = [...ctx.keys];
        // Each worker meets every key in a first pass (a new key is one round trip), then the clock starts.
        const workers = await Promise.all(
          [0, 1].map(async () => {
            const link = limiter.link();
            const input: RateWorkerInput = { link, mode: 'contend', keys, rounds, rate };
            const w = new Worker(rateWorker, { workerData: input, transferList: [link.port] });
            await nextMessage(w);
            return w;
          }),
        );
        const start = performance.now();
        const results = workers.map((w) => nextMessage(w));
        for (const w of workers) w.postMessage('go');
        const outputs = await Promise.all(results);
        const ms = performance.now() - start;
        await Promise.all(workers.map((w) => w.terminate()));
        const allowed = new Map(keys.map((k, i) => [k, outputs.reduce((sum, o) => sum + (o.t === 'admitted' ? o.admitted[i]! : 0), 0)]));
        return { ops: rounds * 2 * keys.length, ms, verified: verifyAllowed(ctx, (rounds + 1) * 2 * keys.length, limit, allowed) };
      }),
  },
  peer: rateLimiterMemory(1),
};

const bufferIncrement: Scenario = {
  name: 'buffer-increment',
  title: 'stat buffer increment(key)',
  redis: false,
  defaultOps: 30_000_000,
  peerShare: 1,
  ours: {
    name: 'buffer.increment(key)',
    run: (ctx, ops) =>
      withEngine(ctx, {}, async (engine) => {
        const got = new Map<string, number>();
        const before = heapBytes();
        const buffer = engine.buffer({
          name: 'bench',
          intervalMs: 1000,
          onFlushBatch: (entries) => {
            for (const e of entries) got.set(e.key, (got.get(e.key) ?? 0) + e.count);
          },
        });
        const start = performance.now();
        await cycle(ctx, ops, (k) => buffer.increment(k));
        const ms = performance.now() - start;
        const bytes = heapBytes() - before;
        await buffer.close();
        let total = 0;
        ctx.keys.forEach((k, i) => {
          expectEqual(`delivered count of ${k}`, got.get(k) ?? 0, share(ops, ctx.keys.length, i));
          total += got.get(k) ?? 0;
        });
        return { ops, ms, bytesPerKey: bytes / ctx.keys.length, verified: `total ${total.toLocaleString('en-US')} delivered, per key exact` };
      }),
  },
  peer: mapPeer,
};

/** ioredis with auto-pipelining: the peer every Redis counter is compared with. */
async function pipelinedClient(redis: BenchRedis): Promise<Redis> {
  const { Redis: Client } = await import('ioredis');
  const client = new Client(redis.url, { enableAutoPipelining: true });
  await client.ping();
  return client;
}

/** Concurrent INCRBY of the keys by `callers` callers; verifies every key's value and deletes the keys. */
async function incrbyPeer(ctx: BenchContext, ops: number, callers: number): Promise<Measurement> {
  const redis = needRedis(ctx);
  const client = await pipelinedClient(redis);
  const prefix = freshPrefix();
  try {
    const [{ lat, ms }, commands, cpu] = await countCommands(redis, async () => {
      const start = performance.now();
      const lat = await concurrent(ctx, ops, callers, (k) => client.incrby(`${prefix}-${k}`, 1));
      return { lat, ms: performance.now() - start };
    });
    const values = await client.mget(ctx.keys.map((k) => `${prefix}-${k}`));
    values.forEach((v, i) => expectEqual(`Redis value of ${ctx.keys[i]}`, Number(v ?? 0), share(ops, ctx.keys.length, i)));
    await client.del(...ctx.keys.map((k) => `${prefix}-${k}`));
    return { ops, ms, ...pct(lat), redisCommands: commands, redisCpuUsPerOp: cpuPerOp(cpu, ops), verified: `${ctx.keys.length.toLocaleString('en-US')} keys exact in Redis` };
  } finally {
    await client.quit();
  }
}

const laxInc: Scenario = {
  name: 'lax-inc',
  title: 'lax counters add(key), Redis',
  redis: true,
  defaultOps: 10_000_000,
  peerShare: 0.02,
  ours: {
    name: 'engine.lax.add(key)',
    async run(ctx, ops) {
      const redis = needRedis(ctx);
      const prefix = freshPrefix();
      return withEngine(ctx, { redis: redis.url, prefix }, async (engine) => {
        const [ms, commands, cpu] = await countCommands(redis, async () => {
          const start = performance.now();
          await cycle(ctx, ops, (k) => engine.lax.add(k));
          await engine.flush();
          await engine.lax.flush();
          return performance.now() - start;
        });
        const values = await Promise.all(ctx.keys.map(async (k) => Number(await redis.client.hget(`{${prefix}:l:${partitionOfKey(k)}}`, k))));
        values.forEach((v, i) => expectEqual(`Redis value of ${ctx.keys[i]}`, v, share(ops, ctx.keys.length, i)));
        await engine.lax.clear();
        return { ops, ms, redisCommands: commands, redisCpuUsPerOp: cpuPerOp(cpu, ops), bytesPerKey: await shardBytesPerKey(engine, ctx.keys.length), verified: `${ctx.keys.length.toLocaleString('en-US')} keys exact in Redis` };
      });
    },
  },
  peer: { name: 'ioredis INCRBY, auto-pipelined', run: (ctx, ops) => incrbyPeer(ctx, ops, 1000) },
};

const strictInc: Scenario = {
  name: 'strict-inc',
  title: 'strict counters inc(key), 1000 callers, Redis',
  redis: true,
  defaultOps: 300_000,
  peerShare: 1,
  ours: {
    name: 'engine.strict.inc(key)',
    async run(ctx, ops) {
      const redis = needRedis(ctx);
      return withEngine(ctx, { redis: redis.url, prefix: freshPrefix() }, async (engine) => {
        const [{ lat, ms }, commands, cpu] = await countCommands(redis, async () => {
          const start = performance.now();
          const lat = await concurrent(ctx, ops, 1000, (k) => engine.strict.inc(k));
          return { lat, ms: performance.now() - start };
        });
        const values = await engine.strict.getAll(ctx.keys);
        values.forEach(([k, v], i) => expectEqual(`strict value of ${k}`, v, share(ops, ctx.keys.length, i)));
        await engine.strict.clear();
        return { ops, ms, ...pct(lat), redisCommands: commands, redisCpuUsPerOp: cpuPerOp(cpu, ops), verified: `${ctx.keys.length.toLocaleString('en-US')} keys exact in Redis` };
      });
    },
  },
  peer: { name: 'ioredis INCRBY, auto-pipelined', run: (ctx, ops) => incrbyPeer(ctx, ops, 1000) },
};

/**
 * Sliding-window decisions in Redis against rate-limiter-flexible's RateLimiterRedis, both windowed over an
 * hour, 100 callers. The semantics differ: ours is a sliding window of 100 groups, the peer's a fixed
 * window that starts at a key's first point. (This replaced `limiter-redis`, which set strict counters
 * that never expire against the peer's window.)
 */
const slidingRedis: Scenario = {
  name: 'sliding-redis',
  title: 'sliding-window decisions in Redis (absolute), 100 callers',
  redis: true,
  defaultOps: 100_000,
  peerShare: 1,
  ours: {
    name: 'rateLimiter().redis.absolute.inc(key, rate)',
    async run(ctx, ops) {
      const redis = needRedis(ctx);
      return withEngine(ctx, { redis: redis.url, prefix: freshPrefix() }, async (engine) => {
        const limit = limitFor(ctx, ops);
        const limiter = engine.rateLimiter({ windowSeconds: 3600 });
        const rate = limit / 3600;
        const admitted = new Float64Array(ctx.keys.length);
        const [{ lat, ms }, commands, cpu] = await countCommands(redis, async () => {
          const start = performance.now();
          const lat = await concurrent(
            ctx,
            ops,
            LIMITER_CALLERS,
            (k) => limiter.redis.absolute.inc(k, rate),
            (d, i) => {
              if (d.allowed) admitted[i]!++;
            },
          );
          return { lat, ms: performance.now() - start };
        });
        const allowed = new Map(ctx.keys.map((k, i) => [k, admitted[i]!]));
        return { ops, ms, ...pct(lat), redisCommands: commands, redisCpuUsPerOp: cpuPerOp(cpu, ops), verified: verifyAllowed(ctx, ops, limit, allowed) };
      });
    },
  },
  peer: {
    name: 'rate-limiter-flexible RateLimiterRedis',
    async run(ctx, ops) {
      const redis = needRedis(ctx);
      const { RateLimiterRedis } = await import('rate-limiter-flexible');
      const client = await pipelinedClient(redis);
      try {
        const limit = limitFor(ctx, ops);
        const rl = new RateLimiterRedis({ storeClient: client, points: limit, duration: 3600, keyPrefix: freshPrefix() });
        const allowed = new Map<string, number>();
        const [{ lat, ms }, commands, cpu] = await countCommands(redis, async () => {
          const start = performance.now();
          const lat = await concurrent(ctx, ops, LIMITER_CALLERS, (k) =>
            rl.consume(k).then(
              () => allowed.set(k, (allowed.get(k) ?? 0) + 1),
              (err: unknown) => {
                if (err instanceof Error) throw err; // a Redis error, not a refusal
              },
            ),
          );
          return { lat, ms: performance.now() - start };
        });
        await Promise.all(ctx.keys.map((k) => rl.delete(k)));
        return { ops, ms, ...pct(lat), redisCommands: commands, redisCpuUsPerOp: cpuPerOp(cpu, ops), verified: verifyAllowed(ctx, ops, limit, allowed) };
      } finally {
        await client.quit();
      }
    },
  },
};

/**
 * Hybrid decisions of `strategy`: synchronous on this instance's share, synced with Redis every 10 ms (one
 * instance: its share is the whole room, so the admitted counts are exact; suppressed with hardLimitFactor
 * 1, exact too), against the awaited RateLimiterRedis.
 */
function hybridSide(strategy: 'absolute' | 'suppressed'): Side {
  return {
    name: `rateLimiter().hybrid.${strategy}.inc(key, rate)`,
    async run(ctx, ops) {
      const redis = needRedis(ctx);
      return withEngine(ctx, { redis: redis.url, prefix: freshPrefix() }, async (engine) => {
        const limit = limitFor(ctx, ops);
        const hybrid = engine.rateLimiter({ windowSeconds: 3600, hardLimitFactor: 1 }).hybrid[strategy];
        const rate = limit / 3600;
        const allowed = new Float64Array(ctx.keys.length);
        // Not timed: the instance count is read, and every key met once and synced (a key not synced yet
        // admits one event before its first sync: the rest would wait for it).
        for (let i = 0; hybrid.stats().instances === 0; i++) {
          if (i === 500) throw new Error('the hybrid limiter never read the instance count from Redis');
          await hybrid.sync();
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        ctx.keys.forEach((k, i) => {
          if (hybrid.inc(k, rate).allowed) allowed[i]!++;
        });
        await hybrid.sync();
        const [ms, commands, cpu] = await countCommands(redis, async () => {
          const start = performance.now();
          await cycle(ctx, ops, (k, i) => {
            if (hybrid.inc(k, rate).allowed) allowed[i]!++;
          });
          await hybrid.sync(); // timed: what was decided is committed to Redis
          return performance.now() - start;
        });
        return { ops, ms, redisCommands: commands, redisCpuUsPerOp: cpuPerOp(cpu, ops), verified: verifyAllowed(ctx, ops, limit, new Map(ctx.keys.map((k, i) => [k, allowed[i]!]))) };
      });
    },
  };
}

const slidingHybrid: Scenario = {
  name: 'sliding-hybrid',
  title: 'sliding-window decisions, hybrid (local share, synced with Redis), one thread',
  redis: true,
  defaultOps: 5_000_000,
  peerShare: 0.02,
  ours: hybridSide('absolute'),
  peer: slidingRedis.peer,
};

const slidingHybridSuppressed: Scenario = {
  name: 'sliding-hybrid-suppressed',
  title: 'sliding-window decisions, hybrid suppressed (hardLimitFactor 1), one thread',
  redis: true,
  defaultOps: 5_000_000,
  peerShare: 0.02,
  ours: hybridSide('suppressed'),
  peer: slidingRedis.peer,
};

/** Every scenario, in the order they run. */
export const SCENARIOS: readonly Scenario[] = [observeKey, observeHandle, observeWindow, eventsRecord, eventsQuery, eventsQuerySync, limiterSync, limiter, slidingAbsolute, slidingSuppressed, slidingThreads, bufferIncrement, httpScenario, laxInc, strictInc, slidingRedis, slidingHybrid, slidingHybridSuppressed, persistFull, persistIncremental, restart, churn];
