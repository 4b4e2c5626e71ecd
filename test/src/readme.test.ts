/** The README's examples, run as a user would run them, so they cannot rot. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';

const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');

/** Every ts example of the README that states its outputs (`console.log(…); // output`). */
const examples = readme
  .split(/^## /m)
  .slice(1)
  .flatMap((part) => {
    const section = part.slice(0, part.indexOf('\n'));
    return [...part.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => ({ section, source: m[1]! }));
  })
  .filter((e) => /console\.log\(.*\); \/\/ .+$/m.test(e.source));

test('the README has runnable examples in the quick start and the calendar section', () => {
  const sections = examples.map((e) => e.section);
  assert.ok(sections.includes('Quick start') && sections.includes('Calendar event counts'), sections.join(', '));
});

for (const { section, source: raw } of examples) {
  test(`the README example in "${section}" runs and prints what its comments say`, () => {
    const source = raw.replace(`from 'tallyworks'`, `from ${JSON.stringify(new URL('../../src/index.js', import.meta.url).href)}`);
    const expected = [...source.matchAll(/console\.log\(.*\); \/\/ (.+)$/gm)].map((m) => m[1]!.trim());
    assert.ok(expected.length >= 3, 'the example states its outputs');
    const js = ts.transpileModule(source, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } }).outputText;
    const dir = mkdtempSync(join(tmpdir(), 'tallyworks-readme-'));
    try {
      const file = join(dir, 'example.mjs');
      writeFileSync(file, js);
      const run = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(run.signal, null, 'the example exits on its own');
      assert.equal(run.status, 0, run.stderr);
      assert.deepEqual(run.stdout.trim().split('\n'), expected);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
