/**
 * The README's examples, run as a user runs them: each runnable ```js block is written to a `.mjs` file
 * exactly as it stands (`import … from 'tallyworks'` untouched) and run with `node`. A temporary project
 * whose node_modules/tallyworks links to this checkout resolves the import through the package's own
 * `exports`. (The package tier runs them again from the installed tarball.)
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readmeExamples } from '../helpers/readme.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const examples = readmeExamples(readme);

const project = mkdtempSync(join(tmpdir(), 'tallyworks-readme-'));
mkdirSync(join(project, 'node_modules'));
symlinkSync(root, join(project, 'node_modules', 'tallyworks'), 'dir');
after(() => rmSync(project, { recursive: true, force: true }));

test('the README has runnable examples in the quick start, calendar, rate limit, counter, stat buffer, HTTP and metrics sections', () => {
  const sections = new Set(examples.map((e) => e.section));
  for (const s of ['Quick start', 'Sliding-window rate limits', 'Calendar event counts', 'Strict and lax counters', 'Stat buffers', 'HTTP middleware', 'Metrics']) assert.ok(sections.has(s), `${s} in ${[...sections].join(', ')}`);
});

test('the README shows no TypeScript-only syntax in a js block, and no js example outside a js block', () => {
  for (const m of readme.matchAll(/```js\n([\s\S]*?)```/g)) {
    assert.doesNotMatch(m[1]!, /await using|: (string|number|boolean)\b|\bas const\b|interface /, `a js block with TypeScript syntax:\n${m[1]}`);
  }
});

examples.forEach(({ section, source, expected }, i) => {
  test(`the README example in "${section}" runs with node as it stands and prints what its comments say`, () => {
    assert.ok(expected.length >= 3, 'the example states its outputs');
    const file = join(project, `example-${i}.mjs`);
    writeFileSync(file, source);
    const run = spawnSync(process.execPath, [file], { cwd: project, encoding: 'utf8', timeout: 60_000 });
    assert.equal(run.signal, null, 'the example exits on its own');
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(run.stdout.trim().split('\n'), expected);
  });
});
