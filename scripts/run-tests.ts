/**
 * Runs the compiled tests (dist/test/**\/*.test.js) of one tier, or of every tier, with node's test runner.
 * A script rather than a glob on the command line because Node 20 and Node 22 read `node --test`
 * arguments differently.
 *
 * Tiers, by file name:
 *   unit     `*.test.ts`          in-process: no Redis, no child processes (worker threads are fine)
 *   process  `*.process.test.ts`  spawns child node processes (no Redis)
 *   redis    `*.redis.test.ts`    talks to private redis-servers it starts (may spawn processes too)
 *   package  `*.package.test.ts`  packs the tarball and installs it into a fresh consumer project
 *
 * `node dist/scripts/run-tests.js [--tier=unit|process|redis|package|all] [--only=substring] [node --test args…]`.
 * The default tier is all. Extra arguments go to `node --test` (e.g. `--test-name-pattern`).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const testDir = join(root, 'test');

const TIERS = ['unit', 'process', 'redis', 'package'] as const;
type Tier = (typeof TIERS)[number];

/** The tier of a compiled test file, from its name. */
function tierOf(file: string): Tier {
  const m = /\.(process|redis|package)\.test\.js$/.exec(file);
  return (m?.[1] as Tier | undefined) ?? 'unit';
}

function find(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return find(path);
    return entry.name.endsWith('.test.js') ? [path] : [];
  });
}

function option(name: string): string | undefined {
  return process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

const tier = option('tier') ?? 'all';
if (tier !== 'all' && !(TIERS as readonly string[]).includes(tier)) {
  console.error(`unknown tier "${tier}": one of ${TIERS.join(', ')} or all`);
  process.exit(2);
}
const only = option('only');
const passThrough = process.argv.slice(2).filter((a) => !a.startsWith('--only=') && !a.startsWith('--tier='));
const files = find(testDir)
  .filter((f) => tier === 'all' || tierOf(f) === tier)
  .filter((f) => only === undefined || relative(testDir, f).includes(only))
  .sort();
if (files.length === 0) {
  console.error(`no test files found under ${testDir} (tier ${tier}${only ? `, matching ${only}` : ''})`);
  process.exit(1);
}
const result = spawnSync(process.execPath, ['--test', ...passThrough, ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
