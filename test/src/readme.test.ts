/** The README's quick-start example, run as a user would run it, so it cannot rot. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';

const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');

test('the README quick start runs and prints what its comments say', () => {
  const section = readme.slice(readme.indexOf('## Quick start'));
  const match = /```ts\n([\s\S]*?)```/.exec(section);
  assert.ok(match, 'the quick start has a ts code block');
  const source = match[1]!.replace(`from 'tallyworks'`, `from ${JSON.stringify(new URL('../../src/index.js', import.meta.url).href)}`);
  const expected = [...source.matchAll(/console\.log\(.*\); \/\/ (.+)$/gm)].map((m) => m[1]!.trim());
  assert.ok(expected.length >= 3, 'the example states its outputs');
  const js = ts.transpileModule(source, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } }).outputText;
  const dir = mkdtempSync(join(tmpdir(), 'tallyworks-readme-'));
  try {
    const file = join(dir, 'quick-start.mjs');
    writeFileSync(file, js);
    const run = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(run.signal, null, 'the example exits on its own');
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(run.stdout.trim().split('\n'), expected);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
