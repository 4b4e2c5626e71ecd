/**
 * Multi-process exactness of Redis counters through Redis crashes (spec: lax deltas are delivered exactly
 * once; strict incs are applied at most once and every acknowledged one is in Redis).
 *
 * Four child processes (test/fixtures/counter-child.ts), each with its own engine and instance id, count
 * into the same 1000 keys of one prefix on a private redis-server with AOF (`appendfsync always`: Redis
 * keeps what it acknowledged). While they run, the server is SIGKILLed and restarted twice. Afterwards:
 *  - lax: after every child's close() resolved, every key in Redis holds exactly the sum of every child's
 *    deltas (0 lost, 0 doubled);
 *  - strict: every key holds exactly the sum of the incs that resolved; the ones that rejected during
 *    the outages (TW_REDIS_UNAVAILABLE) are not in Redis, and no inc ended TW_REDIS_OUTCOME_UNKNOWN.
 *
 * Both modes run the full 4 × 250k ops, paced by the children so the kills land in the middle of every
 * child's run (at 20% and 60% of its ops, gated on the slowest child):
 *  - lax over ~6 s: unpaced, 250k synchronous adds take well under a second;
 *  - strict over ~20 s: unpaced, 4 × 250k strict incs took ~14 s on the 2-core box, but the children's
 *    throughput then diverges after an outage (one finished while another was at 45%), so no kill could
 *    be in the middle of every run. Paced at 4 × 12.5k incs/s (well under that capacity) they stay even.
 * Measured: the file takes ~31–35 s (lax ~8 s, strict ~23 s), with other tests' load on the machine.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { PARTITIONS, partitionKey, partitionOf } from '../../../common/redis.js';
import { deltaOf, keyOf } from '../../fixtures/counter-child.js';
import { startRedisServer, type RedisServer } from '../../../bench/redis-server.js';

const childScript = fileURLToPath(new URL('../../fixtures/counter-child.js', import.meta.url));

const CHILDREN = 4;
const KEYS = 1000;
/** Ops per child and how long a child spreads them over (see the header). */
const RUNS = {
  lax: { ops: 250_000, durationMs: 6000 },
  strict: { ops: 250_000, durationMs: 20_000 },
} as const;
/** How long Redis stays dead before each restart. */
const OUTAGE_MS = 400;
/** The kills happen once every child has done this share of its ops. */
const KILL_AT = [0.2, 0.6] as const;
/** How long a child's strict call whose reply was lost waits for its outcome (5 × its 4 s command deadline). */
const OUTCOME_WINDOW_MS = 20_000;
/** Bound on any one wait for the children (start-up, progress, exit). */
const WAIT_MS = 60_000;

type Mode = 'lax' | 'strict';

interface LaxResult {
  readonly mode: 'lax';
  readonly totals: Record<string, number>;
  readonly flusher: { cycles: number; commands: number; failures: number; delivered: number; pendingKeys: number; unresolved: number; lastError?: string };
}
interface StrictResult {
  readonly mode: 'strict';
  readonly acked: Record<string, number>;
  readonly errors: Record<string, number>;
  readonly ackedOps: number;
  readonly messages: string[];
  readonly failedByKey: Record<string, number[]>;
  readonly strict: { calls: number; ops: number };
}

/** One child process and what it printed so far. */
class Child {
  readonly proc: ChildProcess;
  ready = false;
  progress = 0;
  done = false;
  result: LaxResult | StrictResult | undefined;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  stderr = '';
  /** Date.now() at spawn, at `done` (last op settled) and at exit: close() takes the time between the last two. */
  readonly spawnedAt = Date.now();
  doneAt: number | undefined;
  exitAt: number | undefined;
  private stdoutTail = '';
  readonly exited: Promise<void>;

  constructor(
    readonly index: number,
    url: string,
    prefix: string,
    mode: Mode,
    readonly ops: number,
    durationMs: number,
  ) {
    this.proc = spawn(process.execPath, [childScript, url, prefix, mode, String(index), String(ops), String(KEYS), String(durationMs)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc.stdout!.setEncoding('utf8');
    this.proc.stderr!.setEncoding('utf8');
    this.proc.stdout!.on('data', (chunk: string) => {
      const lines = (this.stdoutTail + chunk).split('\n');
      this.stdoutTail = lines.pop()!;
      for (const line of lines) this.line(line);
    });
    this.proc.stderr!.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-8000);
    });
    this.exited = new Promise((resolve) => {
      this.proc.once('error', (err) => {
        this.stderr += `\n[spawn error] ${err.message}`;
        this.exit ??= { code: null, signal: null };
        resolve();
      });
      // 'close': stdout is drained, so the result line (if any) has been parsed.
      this.proc.once('close', (code, signal) => {
        this.exit = { code, signal };
        this.exitAt = Date.now();
        resolve();
      });
    });
  }

  private line(line: string): void {
    if (line === 'ready') this.ready = true;
    else if (line.startsWith('progress ')) this.progress = Number(line.slice('progress '.length));
    else if (line.startsWith('done ')) {
      this.done = true;
      this.doneAt = Date.now();
      this.progress = Number(line.slice('done '.length));
    } else if (line.startsWith('result ')) this.result = JSON.parse(line.slice('result '.length)) as LaxResult | StrictResult;
    else if (line.length > 0) this.stderr += `\n[stdout] ${line}`;
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  describe(): string {
    const state = this.exit === undefined ? 'running' : `exited code=${this.exit.code} signal=${this.exit.signal}`;
    return `child ${this.index} (pid ${this.proc.pid}): ${state}, ready=${this.ready}, progress=${this.progress}/${this.ops}, done=${this.done}\n  stderr: ${this.stderr.trim() || '(empty)'}`;
  }
}

/** Every child and server this file started: killed / stopped in `after`, whatever happened. */
const allChildren: Child[] = [];
const servers: RedisServer[] = [];
after(async () => {
  for (const c of allChildren) if (c.running) c.proc.kill('SIGKILL');
  await Promise.all(allChildren.map((c) => c.exited));
  await Promise.all(servers.map((s) => s.stop()));
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until `cond` holds, polling every 10 ms. Fails (with every child's state and stderr) after
 * `timeoutMs`, or at once when a child exited before `cond` held and `allowExit` is false.
 */
async function waitFor(children: readonly Child[], cond: () => boolean, what: string, allowExit = false, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (cond()) return;
    const early = allowExit ? undefined : children.find((c) => !c.running);
    if (early !== undefined) {
      await sleep(50); // let its last stderr arrive
      assert.fail(`child ${early.index} exited while waiting for ${what}\n${children.map((c) => c.describe()).join('\n')}`);
    }
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}\n${children.map((c) => c.describe()).join('\n')}`);
    await sleep(10);
  }
}

/** Every child's expected per-key totals, from the same schedule the children run. */
/** The per-key totals of children `children`' schedules of `ops` ops each. */
function scheduleTotals(children: readonly number[], ops: number): Map<string, number> {
  const totals = new Map<string, number>();
  for (const child of children) {
    for (let i = 0; i < ops; i++) {
      const key = keyOf(i, child, KEYS);
      totals.set(key, (totals.get(key) ?? 0) + deltaOf(i, child));
    }
  }
  return totals;
}

/** Every field of every partition hash of `kind` under `prefix`, checking each sits in its own partition. */
async function readCounters(url: string, prefix: string, kind: 'l' | 's'): Promise<Map<string, number>> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    const values = new Map<string, number>();
    for (let p = 0; p < PARTITIONS; p++) {
      const hash = await redis.hgetall(partitionKey(prefix, kind, p));
      for (const [field, value] of Object.entries(hash)) {
        assert.equal(partitionOf(field), p, `field ${field} is in partition ${p}, not its own ${partitionOf(field)}`);
        assert.ok(!values.has(field), `field ${field} appears twice`);
        values.set(field, Number(value));
      }
    }
    return values;
  } finally {
    await redis.quit();
  }
}

/** Call markers left under `prefix` (each engine deletes its own at close when no call is unresolved). */
async function markersLeft(url: string, prefix: string): Promise<string[]> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `{${prefix}:*}:m:*`, 'COUNT', 1000);
      found.push(...keys);
      cursor = next;
    } while (cursor !== '0');
    return found;
  } finally {
    await redis.quit();
  }
}

/** Compares Redis with the expected totals: a message naming the lost and doubled keys, or undefined when exact. */
function compare(actual: ReadonlyMap<string, number>, expected: ReadonlyMap<string, number>, expectedName: string): string | undefined {
  const lost: string[] = [];
  const doubled: string[] = [];
  let lostSum = 0;
  let extraSum = 0;
  for (const [key, want] of expected) {
    const got = actual.get(key) ?? 0;
    if (got < want) {
      lost.push(`${key}: ${got} (expected ${want})`);
      lostSum += want - got;
    } else if (got > want) {
      doubled.push(`${key}: ${got} (expected ${want})`);
      extraSum += got - want;
    }
  }
  const unexpected = [...actual.keys()].filter((k) => !expected.has(k));
  if (lost.length === 0 && doubled.length === 0 && unexpected.length === 0) return undefined;
  return [
    `Redis does not hold ${expectedName}:`,
    `  ${lost.length} keys short (${lostSum} lost in all)${lost.length ? `, e.g. ${lost.slice(0, 8).join('; ')}` : ''}`,
    `  ${doubled.length} keys over (${extraSum} extra in all)${doubled.length ? `, e.g. ${doubled.slice(0, 8).join('; ')}` : ''}`,
    `  ${unexpected.length} unexpected fields${unexpected.length ? `: ${unexpected.slice(0, 8).join(', ')}` : ''}`,
  ].join('\n');
}

/** What happened around one kill: the children's state when Redis died and when it answered again. */
interface Outage {
  readonly at: number[];
  readonly atRestart: number[];
  readonly downMs: number;
}

/**
 * Starts an AOF server and 4 children, SIGKILLs and restarts the server twice while they run (once every
 * child is past each share in {@link KILL_AT}), waits for every child to exit, and returns them with the
 * outages. Asserts each kill hit running, unfinished children, and every child exited 0 with a result.
 */
async function runWithOutages(t: TestContext, mode: Mode): Promise<{ server: RedisServer; prefix: string; children: Child[]; outages: Outage[] }> {
  const started = Date.now();
  const server = await startRedisServer({ appendOnly: true });
  servers.push(server);
  const prefix = `mp${process.pid}${mode}`;
  const { ops, durationMs } = RUNS[mode];
  const children = Array.from({ length: CHILDREN }, (_, i) => new Child(i, server.url, prefix, mode, ops, durationMs));
  allChildren.push(...children);

  await waitFor(children, () => children.every((c) => c.ready), 'every child to open its engine');
  const outages: Outage[] = [];
  for (const share of KILL_AT) {
    const mark = Math.floor(share * ops);
    await waitFor(children, () => children.every((c) => c.progress >= mark), `every child to pass ${mark} ops`);
    const at = children.map((c) => c.progress);
    const unfinished = children.every((c) => c.running && !c.done);
    const killedAt = Date.now();
    await server.kill('SIGKILL');
    assert.ok(unfinished, `kill at ${share * 100}%: every child must still be counting\n${children.map((c) => c.describe()).join('\n')}`);
    await sleep(OUTAGE_MS);
    await server.restart();
    const atRestart = children.map((c) => c.progress);
    outages.push({ at, atRestart, downMs: Date.now() - killedAt });
    // The outage started inside every child's run (asserted above). On a loaded machine a child may reach
    // its end while Redis is still down; its close() then has to wait for Redis, which is covered too.
    assert.ok(
      children.some((c) => c.running && !c.done),
      `every child finished during the outage at ${share * 100}%\n${children.map((c) => c.describe()).join('\n')}`,
    );
  }

  await waitFor(children, () => children.every((c) => !c.running), 'every child to finish and exit', true);
  for (const c of children) {
    assert.equal(c.exit?.code, 0, `child ${c.index} failed\n${c.describe()}`);
    assert.ok(c.result !== undefined && c.result.mode === mode, `child ${c.index} printed no ${mode} result\n${c.describe()}`);
  }
  t.diagnostic(
    `${mode}: ${Date.now() - started} ms in all; outages (progress at kill → at restart, ms down): ${outages
      .map((o) => `[${o.at.join(',')}] → [${o.atRestart.join(',')}], ${o.downMs} ms`)
      .join('; ')}; per child ms to done / to exit: ${children.map((c) => `${c.doneAt! - c.spawnedAt}/${c.exitAt! - c.spawnedAt}`).join(', ')}`,
  );
  return { server, prefix, children, outages };
}

describe('counters across processes and Redis crashes', { concurrency: false }, () => {
  test(`lax: ${CHILDREN} processes × ${RUNS.lax.ops} adds over ${KEYS} keys, Redis killed twice → every key exact`, { timeout: 240_000 }, async (t) => {
    const { server, prefix, children, outages } = await runWithOutages(t, 'lax');
    const expected = scheduleTotals(children.map((c) => c.index), RUNS.lax.ops);

    // Each child added exactly its schedule (so the parent's expectation is what was really added).
    for (const c of children) {
      const r = c.result as LaxResult;
      assert.deepEqual(new Map(Object.entries(r.totals)), scheduleTotals([c.index], RUNS.lax.ops), `child ${c.index} added its schedule`);
      // The children kept adding while Redis was down, and their flushers saw the outages.
      assert.ok(r.flusher.failures > 0, `child ${c.index}'s flusher saw no failed call: ${JSON.stringify(r.flusher)}`);
    }
    for (const o of outages) {
      // A child starved of CPU for the whole outage may show no progress in it; together they must.
      assert.ok(
        o.atRestart.reduce((a, b) => a + b, 0) > o.at.reduce((a, b) => a + b, 0),
        `the children must keep adding while Redis is down: ${JSON.stringify(o)}`,
      );
    }
    t.diagnostic(`lax flusher stats: ${children.map((c) => JSON.stringify((c.result as LaxResult).flusher)).join(' ')}`);

    const actual = await readCounters(server.url, prefix, 'l');
    const mismatch = compare(actual, expected, `the sum of the ${CHILDREN} children's lax deltas`);
    assert.equal(mismatch, undefined, mismatch);
    assert.equal(actual.size, KEYS);
    assert.equal((await readCounters(server.url, prefix, 's')).size, 0, 'no strict counter was written');
    t.diagnostic(`lax markers left after close: ${JSON.stringify(await markersLeft(server.url, prefix))}`);
  });

  test(`strict: ${CHILDREN} processes × ${RUNS.strict.ops} incs over ${KEYS} keys, Redis killed twice → Redis holds exactly the acknowledged incs`, { timeout: 240_000 }, async (t) => {
    const { server, prefix, children, outages } = await runWithOutages(t, 'strict');

    const acked = new Map<string, number>();
    const errors: Record<string, number> = {};
    for (const c of children) {
      const r = c.result as StrictResult;
      const failedOps = Object.values(r.errors).reduce((a, b) => a + b, 0);
      assert.equal(r.ackedOps + failedOps, RUNS.strict.ops, `child ${c.index}: every inc settled once (${r.ackedOps} acked + ${failedOps} failed)`);
      for (const [key, n] of Object.entries(r.acked)) acked.set(key, (acked.get(key) ?? 0) + n);
      for (const [code, n] of Object.entries(r.errors)) errors[code] = (errors[code] ?? 0) + n;
    }
    t.diagnostic(
      `strict errors by code: ${JSON.stringify(errors)}; per child: ${children
        .map((c) => `${c.index}: ${JSON.stringify((c.result as StrictResult).errors)} (${JSON.stringify((c.result as StrictResult).strict)})`)
        .join(', ')}`,
    );

    // Redis value === acknowledged incs only holds when every failure is known not to have applied, which
    // the engine promises while an outage (kill to answering again, AOF loaded) is shorter than the window.
    for (const o of outages) assert.ok(o.downMs < OUTCOME_WINDOW_MS - 2000, `an outage of ${o.downMs} ms is too close to the ${OUTCOME_WINDOW_MS} ms outcome window to test exactness`);
    assert.equal(errors.TW_REDIS_OUTCOME_UNKNOWN ?? 0, 0, `incs with an unknown outcome: ${JSON.stringify(errors)}`);
    assert.ok((errors.TW_REDIS_UNAVAILABLE ?? 0) > 0, `no inc failed with TW_REDIS_UNAVAILABLE, so no outage was hit: ${JSON.stringify(errors)}`);
    assert.deepEqual(Object.keys(errors), ['TW_REDIS_UNAVAILABLE'], `only TW_REDIS_UNAVAILABLE is expected: ${JSON.stringify(errors)}`);

    const actual = await readCounters(server.url, prefix, 's');
    const mismatch = compare(actual, acked, `the sum of the acknowledged strict incs`);
    // A key over its acknowledged sum took an inc whose failure was wrong: name the failures its incs met.
    const failuresOf = (key: string): string[] =>
      children.flatMap((c) => {
        const r = c.result as StrictResult;
        return (r.failedByKey[key] ?? []).map((m) => `child ${c.index}: ${r.messages[m]}`);
      });
    const over = [...actual].filter(([key, v]) => v > (acked.get(key) ?? 0)).slice(0, 4);
    assert.equal(mismatch, undefined, `${mismatch}\n${over.map(([key]) => `  failures on ${key}: ${failuresOf(key).join(' | ')}`).join('\n')}`);
    assert.equal((await readCounters(server.url, prefix, 'l')).size, 0, 'no lax counter was written');
    t.diagnostic(`strict markers left after close: ${JSON.stringify(await markersLeft(server.url, prefix))}`);
  });
});
