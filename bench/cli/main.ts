#!/usr/bin/env node
/**
 * `tallyworks bench`: the main job. Runs every scenario against its peer in one process, verifies every
 * total, and prints a results table (or `--json`), writing an SVG chart of the ratios. Embedded by default
 * (no Redis); `--redis URL` adds the Redis scenarios.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { redactSecrets } from '../../common/errors.js';
import { MAX_SHARDS } from '../../src/options.js';
import { describeMachine } from '../machine.js';
import { benchRedis, type BenchRedis } from '../redis.js';
import { chart, Progress, type Report, type ScenarioResult, type SideResult, table } from './report.js';
import { type BenchContext, SCENARIOS, type Scenario, type Side } from './scenarios.js';

const USAGE = `Usage: tallyworks bench [options]
       tallyworks --version

Runs each scenario and its peer in one process, verifies every total, prints a table.

Options:
  --scenario NAMES  comma-separated scenarios (default: every one that can run, but the heavy ones)
  --keys N          distinct keys (default 10000)
  --ops N           ops of each scenario's Tallyworks side (default: the scenario's own, ~1 min in all)
  --duration S      seconds per side instead of --ops (sized by a short calibration run)
  --shards N        shard threads (default: the engine's default)
  --rounds N        rounds per side, alternating with the peer; the median is reported (default 3)
  --redis URL       include the Redis scenarios, against this server
  --json            print the JSON report on stdout (progress stays on stderr)
  --chart FILE      SVG chart of the ratios (default tallyworks-bench.svg; "none" for no chart)
  --list            list the scenarios and exit
  -h, --help        this text

Scenarios: ${SCENARIOS.map((s) => `${s.name}${s.redis ? ' (Redis)' : ''}${s.heavy === true ? ' (heavy)' : ''}`).join(', ')}
Heavy scenarios take minutes and GiB at their default size (--ops sets the number of ids); they run only
when named, e.g. --scenario persist-incremental.
`;

class UsageError extends Error {}

/** The package's version, from the package.json next to dist/ (installed or in a clone). */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${name} must be a positive number; got ${JSON.stringify(value)}`);
  return n;
}

/** An integer option from 1 to `max` (no rounding: "0.4 rounds" is a mistake, not 0 rounds). */
function count(name: string, value: string | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`--${name} must be an integer from 1 to ${max}; got ${JSON.stringify(value)}`);
  return n;
}

/** The op count of one side: --ops (or the scenario's default), or what fills --duration by a short probe. */
async function sizeSide(side: Side, ctx: BenchContext, ops: number, durationS: number | undefined): Promise<number> {
  if (durationS === undefined) return Math.max(1, Math.round(ops));
  const probe = await side.run(ctx, Math.max(1000, Math.round(ops / 50)));
  return Math.max(1000, Math.round((probe.ops / probe.ms) * 1000 * durationS));
}

/** The round with the median ops per second (every round verified its totals). */
function medianRound(name: string, rounds: SideResult[]): SideResult {
  const sorted = [...rounds].sort((a, b) => a.opsPerSecond - b.opsPerSecond);
  return { ...sorted[(sorted.length - 1) >> 1]!, name };
}

async function runOnce(side: Side, ctx: BenchContext, ops: number): Promise<SideResult> {
  const m = await side.run(ctx, ops);
  return { name: side.name, ...m, opsPerSecond: m.ops / (m.ms / 1000) };
}

/** Whether `name` resolves from here (a dev dependency in a clone; absent where tallyworks is installed). */
function installed(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}

function isMissingPackage(err: unknown): boolean {
  return (err as { code?: string })?.code === 'ERR_MODULE_NOT_FOUND';
}

/**
 * Runs the scenario's two sides in alternation (ours, peer, ours, peer, …) so that a machine whose speed
 * drifts treats both alike, and keeps each side's median round.
 */
async function runScenario(s: Scenario, ctx: BenchContext, opts: RunOptions, progress: Progress): Promise<ScenarioResult> {
  const n = opts.ops ?? s.defaultOps;
  const oursOps = await sizeSide(s.ours, ctx, n, opts.duration);
  let peerOps: number | undefined;
  let note: string | undefined;
  const ours: SideResult[] = [];
  const peer: SideResult[] = [];
  const baseline: SideResult[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const tag = opts.rounds > 1 ? ` (round ${round}/${opts.rounds})` : '';
    progress.start(`${s.name} · ${s.ours.name}${tag}`);
    const o = await runOnce(s.ours, ctx, oursOps);
    ours.push(o);
    progress.finish(`${s.name} · Tallyworks${tag}`, `${(o.opsPerSecond / 1e6).toFixed(3)} M ops/s, ${o.verified}`);
    if (s.baseline !== undefined) {
      progress.start(`${s.name} · ${s.baseline.name}${tag}`);
      const b = await runOnce(s.baseline, ctx, oursOps);
      baseline.push(b);
      progress.finish(`${s.name} · baseline${tag}`, `${(b.opsPerSecond / 1e6).toFixed(3)} M ops/s, ${b.verified}`);
    }
    progress.start(`${s.name} · ${s.peer.name}${tag}`);
    if (note === undefined) {
      try {
        peerOps ??= await sizeSide(s.peer, ctx, n * s.peerShare, opts.duration);
        const p = await runOnce(s.peer, ctx, peerOps);
        peer.push(p);
        progress.finish(`${s.name} · peer${tag}`, `${(p.opsPerSecond / 1e6).toFixed(3)} M ops/s, ${p.verified}`);
        continue;
      } catch (err) {
        if (!isMissingPackage(err)) throw err;
        note = `peer not installed (${(err as Error).message.match(/'([^']+)'/)?.[1] ?? 'a dev dependency'})`;
      }
    }
    progress.finish(`${s.name} · peer${tag}`, note);
  }
  const o = medianRound(s.ours.name, ours);
  const base = s.baseline === undefined ? {} : { baseline: medianRound(s.baseline.name, baseline) };
  const baseRatio = base.baseline === undefined ? {} : { baselineRatio: o.opsPerSecond / base.baseline.opsPerSecond };
  if (peer.length === 0) return { scenario: s.name, title: s.title, ours: o, peer: undefined, ratio: undefined, note, ...base, ...baseRatio };
  const p = medianRound(s.peer.name, peer);
  return { scenario: s.name, title: s.title, ours: o, peer: p, ratio: o.opsPerSecond / p.opsPerSecond, ...base, ...baseRatio };
}

interface RunOptions {
  readonly ops: number | undefined;
  readonly duration: number | undefined;
  readonly rounds: number;
}

async function bench(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      scenario: { type: 'string' },
      keys: { type: 'string' },
      ops: { type: 'string' },
      duration: { type: 'string' },
      shards: { type: 'string' },
      rounds: { type: 'string' },
      redis: { type: 'string' },
      json: { type: 'boolean', default: false },
      chart: { type: 'string', default: 'tallyworks-bench.svg' },
      list: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (values.list) {
    for (const s of SCENARIOS) process.stdout.write(`${s.name.padEnd(18)} ${s.title}  (peer: ${s.peer.name})\n`);
    return;
  }
  const keys = count('keys', values.keys, 10_000, 10_000_000);
  const ops = values.ops === undefined ? undefined : count('ops', values.ops, 0, 1e12);
  const duration = values.duration === undefined ? undefined : positive('duration', values.duration, 0);
  if (ops !== undefined && duration !== undefined) throw new UsageError('give --ops or --duration, not both');
  const rounds = count('rounds', values.rounds, 3, 1000);
  const shards = values.shards === undefined ? 0 : count('shards', values.shards, 1, MAX_SHARDS);
  if (values.redis !== undefined && (!/^rediss?:\/\//.test(values.redis) || !URL.canParse(values.redis))) {
    throw new UsageError(`--redis must be a redis:// or rediss:// URL; got ${JSON.stringify(redactSecrets(values.redis))}`);
  }
  if (values.chart !== 'none' && !existsSync(dirname(resolve(values.chart)))) {
    throw new UsageError(`--chart ${JSON.stringify(values.chart)}: the folder ${JSON.stringify(dirname(resolve(values.chart)))} does not exist`);
  }
  const names = values.scenario?.split(',').map((n) => n.trim());
  for (const n of names ?? []) if (!SCENARIOS.some((s) => s.name === n)) throw new UsageError(`unknown scenario "${n}"; --list shows them`);
  const chosen = SCENARIOS.filter((s) => (names === undefined ? s.heavy !== true && (!s.redis || values.redis !== undefined) : names.includes(s.name)));
  const needless = chosen.find((s) => s.redis && values.redis === undefined);
  if (needless !== undefined) throw new UsageError(`scenario "${needless.name}" needs --redis URL`);
  // A scenario whose packages are not installed (dev dependencies; an installed tallyworks has none) is
  // left out when not asked for by name, and refused when it is.
  const skipped: string[] = [];
  for (const s of [...chosen]) {
    const missing = (s.requires ?? []).filter((p) => !installed(p));
    if (missing.length === 0) continue;
    if (names !== undefined) throw new UsageError(`scenario "${s.name}" needs ${missing.join(', ')} (npm install ${missing.join(' ')})`);
    chosen.splice(chosen.indexOf(s), 1);
    skipped.push(`${s.name} (needs ${missing.join(', ')})`);
  }

  const redis: BenchRedis | undefined = values.redis === undefined ? undefined : await benchRedis(values.redis);
  const ctx: BenchContext = {
    keys: Array.from({ length: keys }, (_, i) => `k${i}`),
    shards: shards === 0 ? (await import('../../src/options.js')).defaultShards() : shards,
    redis,
  };
  const machine = describeMachine();
  if (!values.json) process.stdout.write(`tallyworks bench · ${machine}\n${keys.toLocaleString('en-US')} keys · ${ctx.shards} shard thread(s)${redis ? ` · Redis ${values.redis}` : ' · embedded (no Redis)'}\n\n`);
  const started = new Date();
  const t0 = performance.now();
  if (skipped.length > 0 && !values.json) process.stdout.write(`Skipped: ${skipped.join('; ')}\n\n`);
  const progress = new Progress(chosen.reduce((n, s) => n + (s.baseline === undefined ? 2 : 3), 0) * rounds);
  const results: ScenarioResult[] = [];
  try {
    for (const s of chosen) results.push(await runScenario(s, ctx, { ops, duration, rounds }, progress));
  } finally {
    progress.end();
    await redis?.close();
  }
  const report: Report = {
    tool: 'tallyworks bench',
    machine,
    node: process.version,
    shards: ctx.shards,
    keys,
    rounds,
    redis: redis !== undefined,
    startedAt: started.toISOString(),
    seconds: (performance.now() - t0) / 1000,
    results,
  };
  if (values.chart !== 'none') writeFileSync(values.chart, chart(report));
  if (values.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${table(report)}\n\n`);
  process.stdout.write(`All totals verified. ${results.length} scenarios in ${report.seconds.toFixed(1)} s.${values.chart === 'none' ? '' : ` Chart: ${values.chart}`}\n`);
  if (redis === undefined) process.stdout.write('Add --redis redis://127.0.0.1:6379 for the Redis scenarios.\n');
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'bench') await bench(rest);
    else if (command === '--version' || command === '-v' || command === 'version') process.stdout.write(`tallyworks ${version()}\n`);
    else if (command === '-h' || command === '--help' || command === 'help') process.stdout.write(USAGE);
    else if (command === undefined) throw new UsageError('no command given');
    else throw new UsageError(`unknown command "${command}"`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`tallyworks: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    process.stderr.write(`tallyworks bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
