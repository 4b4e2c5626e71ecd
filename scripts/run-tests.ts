/**
 * Runs every compiled test file (dist/test/**\/*.test.js) with node's test runner. A script rather than a
 * glob on the command line because Node 20 and Node 22 read `node --test` arguments differently.
 * Extra arguments are passed to `node --test` (e.g. `--test-name-pattern`); a path filter narrows files:
 * `npm test -- --only=window`.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const testDir = join(root, 'test');

function find(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return find(path);
    return entry.name.endsWith('.test.js') ? [path] : [];
  });
}

const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
const passThrough = process.argv.slice(2).filter((a) => !a.startsWith('--only='));
const files = find(testDir)
  .filter((f) => only === undefined || relative(testDir, f).includes(only))
  .sort();
if (files.length === 0) {
  console.error(`no test files found under ${testDir}${only ? ` matching ${only}` : ''}`);
  process.exit(1);
}
const result = spawnSync(process.execPath, ['--test', ...passThrough, ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
