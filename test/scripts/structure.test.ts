/**
 * The source tree keeps the shape docs/ARCHITECTURE.md describes: no import cycle (type-only imports
 * count), and no file over 350 lines without its header saying why. The checker itself is tested on a
 * small tree with a cycle and a long file.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { findCycles, importGraph, importsOf, longFilesWithoutReason, sourceFiles } from '../../scripts/structure.js';
import { tempDir } from '../helpers/temp-files.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

test('the sources have no import cycle', () => {
  const files = sourceFiles(root);
  assert.ok(files.length > 50, `found only ${files.length} source files under ${root}`);
  assert.deepEqual(findCycles(importGraph(root, files)), []);
});

test('no source file passes 350 lines without a reason in its header', () => {
  assert.deepEqual(longFilesWithoutReason(root, sourceFiles(root)), []);
});

test('the checker finds a cycle through type-only imports and a long file without a reason', async () => {
  const dir = await tempDir();
  mkdirSync(join(dir, 'src'));
  writeFileSync(join(dir, 'src', 'a.ts'), "import { b } from './b.js';\nexport const a = b;\n");
  writeFileSync(join(dir, 'src', 'b.ts'), "import type { C } from './c.js';\nexport const b = 1 as C;\n");
  writeFileSync(join(dir, 'src', 'c.ts'), `/** A long file. */\nexport type { A } from './a.js';\nexport type C = number;\n${'//\n'.repeat(400)}`);
  writeFileSync(join(dir, 'src', 'd.ts'), `/**\n * Over 350 lines because it is a test.\n */\n${'//\n'.repeat(400)}`);
  const files = sourceFiles(dir, ['src']);
  assert.deepEqual(findCycles(importGraph(dir, files)), [['src/a.ts', 'src/b.ts', 'src/c.ts', 'src/a.ts']]);
  assert.deepEqual(longFilesWithoutReason(dir, files), [{ file: 'src/c.ts', lines: 403 }]);
  assert.deepEqual(importsOf("import x from '../x.js';\nexport * from './y.js';\nimport './z.js';\nimport fs from 'node:fs';"), ['../x.js', './y.js', './z.js']);
});
