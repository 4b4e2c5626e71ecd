/**
 * Every single-question benchmark (bench/*.ts) runs for a few milliseconds and exits 0: each verifies its
 * own totals and throws when they are wrong, so this keeps them from rotting as the code under them
 * changes. Speed is not asserted here (benchmarks measure it, tests never do). The Redis ones start their
 * own private server, like the real runs.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const benchDir = fileURLToPath(new URL('../../bench/', import.meta.url));

/** Tiny arguments per benchmark: enough to run every row and its verification once. */
const SMOKE: Record<string, string[]> = {
  'buffer.js': ['--ops', '20000', '--keys', '100', '--flush-keys', '1000', '--max-batch', '100'],
  'cal-apply.js': ['--batches', '2'],
  'clock-read.js': ['--ops', '10000'],
  'event-loop.js': ['--ids', '2000', '--idle-ms', '50'],
  'events-memory.js': ['--ids', '2000'],
  'events-query.js': ['--ids', '1000', '--rounds', '1'],
  'events-record.js': ['--ops', '20000', '--ids', '100', '--rounds', '1'],
  'hop-apply.js': ['--batches', '2'],
  'hot-path.js': ['--ops', '20000', '--keys', '100', '--rounds', '1'],
  'lax-inc.js': ['--ops', '20000', '--keys', '100'],
  'strict-inc.js': ['--ops', '2000', '--keys', '100', '--callers', '10', '--rounds', '1'],
  'typed-array-views.js': ['--ops', '10000'],
};
/** Modules of bench/ that are helpers, not benchmarks. */
const HELPERS = new Set(['machine.js', 'redis.js', 'redis-server.js', 'http-app.js']); // http-app.js: the http scenario's app (run by the CLI test)

function run(file: string, args: readonly string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [`${benchDir}${file}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('benchmarks: every one runs, verifies its totals and exits 0', { concurrency: 1 }, () => {
  test('every benchmark module has a smoke run', () => {
    const benches = readdirSync(benchDir).filter((f) => f.endsWith('.js') && !HELPERS.has(f));
    assert.deepEqual(benches.sort(), Object.keys(SMOKE).sort());
  });

  for (const [file, args] of Object.entries(SMOKE)) {
    test(`${file} ${args.join(' ')}`, { timeout: 60_000 }, async () => {
      const { code, out } = await run(file, args);
      assert.equal(code, 0, `${file} exited ${code}:\n${out}`);
      assert.match(out, new RegExp(process.version.replace(/\./g, '\\.')), `${file} does not print the Node version:\n${out}`);
    });
  }
});
