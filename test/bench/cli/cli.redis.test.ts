/**
 * The `tallyworks bench` CLI, run as a user runs it (a child process of the compiled bin): every scenario
 * briefly, Redis ones against a private redis-server, so the benchmark cannot rot. The --json report is
 * validated field by field and the chart is checked to be a well-formed SVG.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Progress } from '../../../bench/cli/report.js';
import { startRedisServer, type RedisServer } from '../../../bench/redis-server.js';

const BIN = new URL('../../../bench/cli/main.js', import.meta.url).pathname;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, CI: 'true', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A minimal XML well-formedness check: one root <svg>, every tag closed in order, attributes quoted. */
function assertWellFormedSvg(text: string): void {
  const body = text.replace(/^<\?xml[^?]*\?>\s*/, '');
  assert.match(body, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  const stack: string[] = [];
  let roots = 0;
  for (const m of body.matchAll(/<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)) {
    const [, closing, name, , selfClosing] = m;
    if (closing) assert.equal(stack.pop(), name, `</${name}> closes the open tag`);
    else if (!selfClosing) {
      if (stack.length === 0) roots++;
      stack.push(name!);
    } else if (stack.length === 0) roots++;
  }
  assert.deepEqual(stack, [], 'every tag is closed');
  assert.equal(roots, 1, 'one root element');
  // No stray '<' outside tags (text is escaped).
  const stripped = body.replace(/<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g, '');
  assert.doesNotMatch(stripped, /[<>]/, 'text content is escaped');
}

const SCENARIOS = ['observe-key', 'observe-handle', 'observe-window', 'events-record', 'events-query', 'events-query-sync', 'limiter-sync', 'limiter', 'sliding-absolute', 'sliding-suppressed', 'sliding-threads', 'buffer-increment', 'http', 'lax-inc', 'strict-inc', 'sliding-redis', 'sliding-hybrid', 'sliding-hybrid-suppressed'];
/** Run only when named (minutes and GiB at their default sizes). */
const HEAVY = ['persist-full', 'persist-incremental', 'restart', 'churn'];

describe('tallyworks bench', () => {
  let redis: RedisServer;
  let dir: string;
  before(async () => {
    redis = await startRedisServer();
    dir = mkdtempSync(join(tmpdir(), 'tallyworks-cli-'));
  });
  after(async () => {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('--list names every scenario', async () => {
    const run = await cli(['bench', '--list']);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(run.stdout.trim().split('\n').map((l) => l.split(/\s+/)[0]), [...SCENARIOS, ...HEAVY]);
  });

  test('every scenario runs briefly with --redis; --json gives a complete, verified report and the chart is a valid SVG', async () => {
    const chartFile = join(dir, 'chart.svg');
    const run = await cli(['bench', '--redis', redis.url, '--ops', '3000', '--keys', '50', '--rounds', '1', '--shards', '1', '--json', '--chart', chartFile]);
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout) as Record<string, unknown> & { results: Array<Record<string, any>> };
    assert.equal(report.tool, 'tallyworks bench');
    assert.equal(report.node, process.version);
    assert.equal(report.keys, 50);
    assert.equal(report.shards, 1);
    assert.equal(report.rounds, 1);
    assert.equal(report.redis, true);
    assert.ok(typeof report.machine === 'string' && report.machine.includes('cores'));
    assert.ok(!Number.isNaN(Date.parse(report.startedAt as string)));
    assert.deepEqual(report.results.map((r) => r.scenario), SCENARIOS);
    for (const r of report.results) {
      assert.equal(r.ours.ops, 3000, `${r.scenario}: ours ran --ops`);
      assert.ok(r.ours.opsPerSecond > 0 && Number.isFinite(r.ours.opsPerSecond), `${r.scenario} ops/s`);
      assert.ok(r.peer !== undefined, `${r.scenario} has its peer (installed as a dev dependency)`);
      assert.ok(r.peer.opsPerSecond > 0, `${r.scenario} peer ops/s`);
      assert.ok(Math.abs(r.ratio - r.ours.opsPerSecond / r.peer.opsPerSecond) < 1e-9, `${r.scenario} ratio`);
      assert.match(r.ours.verified, /total|exact|allowed/, `${r.scenario} says what it verified`);
      assert.match(r.peer.verified, /total|exact|allowed/);
      assert.equal(typeof r.ours.name, 'string');
    }
    const by = new Map(report.results.map((r) => [r.scenario, r]));
    // Latency where each op is awaited; Redis commands where Redis is involved.
    for (const name of ['events-query', 'limiter', 'strict-inc', 'sliding-redis']) {
      const r = by.get(name)!;
      assert.ok(r.ours.p50Ms > 0 && r.ours.p99Ms >= r.ours.p50Ms, `${name} p50 ≤ p99`);
    }
    for (const name of ['lax-inc', 'strict-inc', 'sliding-redis', 'sliding-hybrid', 'sliding-hybrid-suppressed']) {
      assert.ok(by.get(name)!.ours.redisCommands > 0, `${name} counted Redis commands`);
      assert.ok(by.get(name)!.peer.redisCommands > 0, `${name} peer counted Redis commands`);
      for (const side of [by.get(name)!.ours, by.get(name)!.peer]) {
        assert.ok(side.redisCpuUsPerOp > 0 && Number.isFinite(side.redisCpuUsPerOp), `${name} (${side.name}) Redis server CPU per op: ${side.redisCpuUsPerOp}`);
      }
    }
    // The peer of raw INCRBY costs one command per op; lax delivers 3000 adds in far fewer.
    assert.ok(by.get('lax-inc')!.ours.redisCommands < by.get('lax-inc')!.peer.redisCommands * 50);
    assert.ok(by.get('strict-inc')!.peer.redisCommands >= 3000);
    for (const name of ['observe-key', 'events-record', 'buffer-increment']) assert.ok(by.get(name)!.ours.bytesPerKey > 0, `${name} bytes/key`);

    const svg = readFileSync(chartFile, 'utf8');
    assertWellFormedSvg(svg);
    for (const name of SCENARIOS) assert.ok(svg.includes(`${name} vs `), `the chart has a bar for ${name}`);
    assert.equal((svg.match(/<rect /g) ?? []).length, SCENARIOS.length + 1, 'one bar per scenario plus the background');
  });

  test('without --redis it runs the embedded scenarios and prints plain progress lines and a table when not a TTY', async () => {
    const run = await cli(['bench', '--ops', '2000', '--keys', '20', '--rounds', '2', '--shards', '1', '--scenario', 'observe-key,buffer-increment', '--chart', 'none']);
    assert.equal(run.code, 0, run.stderr);
    // Progress goes to stderr as plain lines (no carriage returns or escape codes under CI).
    assert.doesNotMatch(run.stderr, /\r|\x1b\[/);
    assert.match(run.stderr, /^\[1\/8\] observe-key · set\.observe\(key\) \(round 1\/2\) …$/m);
    assert.match(run.stderr, /^\[8\/8\] buffer-increment · peer \(round 2\/2\): [\d.]+ M ops\/s, total 2,000$/m);
    const rows = run.stdout.split('\n').filter((l) => l.startsWith('| '));
    assert.equal(rows.length, 2 + 2, 'header, separator and one row per scenario');
    assert.match(rows[2]!, /^\| observe-key \| set\.observe\(key\): [\d.]+ [kM]?\/s \| Map loop: .* \| [\d.]+× \|/);
    assert.match(run.stdout, /All totals verified\. 2 scenarios/);
  });

  test('the heavy scenarios run when named, each verified: stores reloaded whole, keys accounted for, RSS reported', async () => {
    const run = await cli(['bench', '--ops', '3000', '--rounds', '1', '--shards', '1', '--scenario', HEAVY.join(','), '--json', '--chart', 'none']);
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout) as { results: Array<{ scenario: string; ratio: number; ours: { ops: number; verified: string }; peer: { verified: string } }> };
    assert.deepEqual(report.results.map((r) => r.scenario), HEAVY);
    const by = new Map(report.results.map((r) => [r.scenario, r]));
    for (const name of ['persist-full', 'restart']) {
      assert.match(by.get(name)!.ours.verified, /^3,000 ids reloaded, every sum equal$/, name);
      assert.match(by.get(name)!.peer.verified, /^3,000 ids reloaded, every sum equal$/, name);
    }
    assert.match(by.get('persist-incremental')!.ours.verified, /^1000 dirty of 3,000 ids reloaded, every sum equal$/);
    assert.match(by.get('churn')!.ours.verified, /^3,000 keys: [\d,]+ let go \+ [\d,]+ live; peak RSS per tenth \d+ MiB–\d+ MiB after the first/);
    assert.match(by.get('churn')!.peer.verified, /^3,000 keys: [\d,]+ deleted \+ [\d,]+ live; peak RSS per tenth/);
    for (const r of report.results) assert.ok(r.ratio > 0 && Number.isFinite(r.ratio), `${r.scenario} ratio`);
  });

  test('bad usage exits 2 with a message naming the problem', async () => {
    for (const [args, message] of [
      [['bench', '--ops', '0'], /--ops must be an integer from 1/],
      [['bench', '--ops', 'many'], /--ops must be an integer from 1/],
      [['bench', '--duration=-1'], /--duration must be a positive number/],
      [['bench', '--scenario', 'nope'], /unknown scenario "nope"/],
      [['bench', '--scenario', 'strict-inc'], /needs --redis URL/],
      [['bench', '--ops', '10', '--duration', '1'], /--ops or --duration, not both/],
      [['bench', '--frobnicate'], /Unknown option '--frobnicate'/],
      [['launch'], /unknown command "launch"/],
      [[], /no command given/],
      [['bench', '--rounds', '0.4'], /--rounds must be an integer from 1 to 1000; got "0.4"/],
      [['bench', '--keys', '0.4'], /--keys must be an integer/],
      [['bench', '--keys', '1e300'], /--keys must be an integer from 1 to 10000000/],
      [['bench', '--shards', '0.4'], /--shards must be an integer from 1 to 64/],
      [['bench', '--shards', '100'], /--shards must be an integer from 1 to 64/],
      [['bench', '--redis', 'notaurl'], /--redis must be a redis:\/\/ or rediss:\/\/ URL/],
      [['bench', '--redis', 'http://u:hunter2@x'], /--redis must be .*"http:\/\/\*\*\*@x"/],
      [['bench', '--chart', '/nonexistent-dir/x.svg'], /the folder "\/nonexistent-dir" does not exist/],
    ] as const) {
      const run = await cli([...args]);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message);
      assert.match(run.stderr, /Usage: tallyworks bench/);
    }
  });

  test('--duration sizes each side by a probe run', async () => {
    const run = await cli(['bench', '--duration', '0.2', '--keys', '20', '--rounds', '1', '--shards', '1', '--scenario', 'buffer-increment', '--json', '--chart', 'none']);
    assert.equal(run.code, 0, run.stderr);
    const [r] = (JSON.parse(run.stdout) as { results: Array<{ ours: { ops: number; ms: number } }> }).results;
    assert.ok(r!.ours.ops >= 1000, 'sized from the probe');
    assert.ok(r!.ours.ms > 20, `ran for about the duration, not one probe's worth: ${r!.ours.ms} ms`);
  });
});

describe('the progress display', () => {
  function stream(isTTY: boolean): NodeJS.WriteStream & { text: string } {
    const out = { isTTY, columns: 60, text: '', write: (chunk: string) => ((out.text += chunk), true) };
    return out as unknown as NodeJS.WriteStream & { text: string };
  }

  test('on a terminal it redraws one bar in place, and clears it at the end', () => {
    const saved = process.env.CI;
    delete process.env.CI;
    try {
      const out = stream(true);
      const p = new Progress(4, out);
      p.start('observe-key · set.observe(key)');
      p.finish('observe-key · Tallyworks', '20.000 M ops/s');
      p.start('observe-key · Map loop');
      p.finish('observe-key · peer', '40.000 M ops/s');
      p.end();
      assert.doesNotMatch(out.text, /\n/, 'no new lines: the bar is redrawn');
      const frames = out.text.split('\r\x1b[2K').filter((f) => f !== '');
      assert.deepEqual(frames.map((f) => f.match(/\] (\d)\/4/)?.[1]), ['0', '1', '1', '2']);
      assert.ok(frames.every((f) => f.length <= 59), 'each frame fits the terminal width');
      // Half done; the text is cut to the terminal's width (59 of 60 columns).
      assert.equal(frames[3], '[████████████░░░░░░░░░░░░] 2/4 observe-key · peer: 40.000 M');
      assert.ok(out.text.endsWith('\r\x1b[2K'), 'the bar is cleared at the end');
    } finally {
      if (saved !== undefined) process.env.CI = saved;
    }
  });

  test('with CI set, even on a terminal, it prints plain lines', () => {
    const saved = process.env.CI;
    process.env.CI = 'true';
    try {
      const out = stream(true);
      const p = new Progress(2, out);
      p.start('limiter · ours');
      p.finish('limiter · Tallyworks', 'ok');
      p.end();
      assert.equal(out.text, '[1/2] limiter · ours …\n[1/2] limiter · Tallyworks: ok\n');
    } finally {
      if (saved === undefined) delete process.env.CI;
      else process.env.CI = saved;
    }
  });
});
