/**
 * The package as a stranger gets it: `npm pack`, then `npm install <tarball>` into a fresh, empty
 * consumer project, and there: import it as ESM, `require` it from CommonJS, type-check a strict
 * TypeScript consumer, run every runnable README example as it stands, and run the installed
 * `tallyworks` bin. Also: nothing in the tarball imports a file the tarball lacks, and it ships no source
 * maps.
 *
 * The consumer installs the package's dependencies like any project would (npm's cache makes it fast; the
 * registry is only asked for what the cache lacks). The tarball is packed from the build that `npm test`
 * just made (`--ignore-scripts`: repacking must not rebuild dist/ under the other test files' feet).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readmeExamples } from '../helpers/readme.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; version: string };
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version: string }> };
const locked = (name: string): string => lock.packages[`node_modules/${name}`]!.version;

/** npm's own environment for child npm calls: no update check, no funding or audit noise. */
const npmEnv = { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };

function run(cmd: string, args: string[], cwd: string, timeoutMs = 120_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: npmEnv, timeout: timeoutMs });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: { status: number | null; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.status, 0, `${what} failed (exit ${r.status})\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return r.stdout;
}

let work: string;
let consumer: string;
let tarball: string;
let packed: { size: number; unpackedSize: number; files: Array<{ path: string }> };

before(() => {
  work = mkdtempSync(join(tmpdir(), 'tallyworks-package-'));
  const out = ok(run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], root), 'npm pack');
  packed = (JSON.parse(out) as Array<typeof packed & { filename: string }>)[0]!;
  tarball = join(work, (JSON.parse(out) as Array<{ filename: string }>)[0]!.filename);
  consumer = join(work, 'consumer');
  execFileSync('mkdir', [consumer]);
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }, null, 2));
  ok(
    run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, `typescript@${locked('typescript')}`, `@types/node@${locked('@types/node')}`], consumer, 300_000),
    'npm install of the tarball',
  );
});

after(() => {
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
});

describe('the packed tarball', () => {
  test('ships no source maps, no tests, and its LICENSE, CHANGELOG and README', (t) => {
    const paths = packed.files.map((f) => f.path);
    t.diagnostic(`tarball ${packed.size} bytes, ${packed.unpackedSize} bytes unpacked, ${paths.length} files`);
    assert.deepEqual(paths.filter((p) => p.endsWith('.map')), []);
    assert.deepEqual(paths.filter((p) => p.startsWith('dist/test/') || p.startsWith('test/') || p.startsWith('dist/scripts/')), []);
    for (const f of ['LICENSE', 'CHANGELOG.md', 'README.md', 'package.json']) assert.ok(paths.includes(f), f);
  });

  test('every relative import (and asset, and source map reference) of a shipped file resolves to a shipped file', () => {
    const shipped = new Set(packed.files.map((f) => f.path));
    const missing: string[] = [];
    for (const path of shipped) {
      if (!path.endsWith('.js')) continue;
      const source = readFileSync(join(consumer, 'node_modules', pkg.name, path), 'utf8');
      for (const m of source.matchAll(/(?:from\s+|import\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) {
        const target = normalize(join(dirname(path), m[1]!));
        if (!shipped.has(target)) missing.push(`${path} → ${m[1]}`);
      }
      for (const m of source.matchAll(/new URL\(\s*['"](\.{1,2}\/[^'"]+)['"],\s*import\.meta\.url\)/g)) {
        const target = normalize(join(dirname(path), m[1]!));
        if (!shipped.has(target)) missing.push(`${path} → ${m[1]} (new URL)`);
      }
      for (const m of source.matchAll(/^\/\/# sourceMappingURL=(.+)$/gm)) missing.push(`${path} → ${m[1]} (source map)`);
    }
    assert.deepEqual(missing, []);
  });
});

describe('an installed consumer project', () => {
  const counting = (from: string) => `
    const engine = await createEngine({ shards: 1 });
    const w = engine.windows({ size: 5, unit: 'second' });
    for (let i = 0; i < 1000; i++) w.observe('k' + (i % 10));
    engine.events.record('login', 3);
    const out = [await w.value('k3'), await engine.events.query('login').lastDays(1).sum(), await engine.strict.inc('orders', 2)];
    await engine.close();
    console.log('${from}', JSON.stringify(out));`;

  test('imports it as ESM and counts', () => {
    writeFileSync(join(consumer, 'esm.mjs'), `import { createEngine, TallyworksError } from 'tallyworks';\n${counting('esm')}\nconsole.log(typeof TallyworksError);\n`);
    assert.equal(ok(run(process.execPath, ['esm.mjs'], consumer), 'node esm.mjs'), 'esm [100,3,2]\nfunction\n');
  });

  test('requires it from CommonJS (Node ≥ 20.19 loads the ESM entry through require) and counts', () => {
    writeFileSync(
      join(consumer, 'cjs.cjs'),
      `const { createEngine, ErrorCode } = require('tallyworks');\nconst { version } = require('tallyworks/package.json');\n(async () => {${counting('cjs')}\nconsole.log(ErrorCode.CLOSED, version);\n})();\n`,
    );
    assert.equal(ok(run(process.execPath, ['cjs.cjs'], consumer), 'node cjs.cjs'), `cjs [100,3,2]\nTW_CLOSED ${pkg.version}\n`);
  });

  test('a strict TypeScript consumer type-checks (NodeNext, await using, the error classes, a ready ioredis client)', () => {
    writeFileSync(
      join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', lib: ['ES2022', 'ESNext.Disposable'], module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
        files: ['app.mts'],
      }),
    );
    writeFileSync(
      join(consumer, 'app.mts'),
      `import { createEngine, ErrorCode, TallyworksError, UndeliveredError, type Decision, type EngineOptions, redisSink } from 'tallyworks';
import { Redis } from 'ioredis';

const options: EngineOptions = { shards: 1, redis: new Redis({ lazyConnect: true }) };
await using engine = await createEngine({ shards: 1 });
const n: number = await engine.strict.inc('k');
const sum: number | undefined = await engine.events.query('k').lastDays(7).sum();
const d: Decision = await engine.events.limit().atMost(3, 'hour').checkAndRecord('k');
const sink = redisSink(new Redis({ lazyConnect: true }), { hash: 'h' });
try {
  engine.lax.add('');
} catch (err) {
  if (err instanceof TallyworksError && err.code === ErrorCode.INVALID_KEY) console.log(err.message);
  if (err instanceof UndeliveredError) console.log(err.undelivered.length);
}
export { options, n, sum, d, sink };
`,
    );
    ok(run(process.execPath, [join(consumer, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], consumer), 'tsc on the consumer');
  });

  test('SqliteStorage without its optional peer better-sqlite3: TW_MISSING_DEPENDENCY naming it; the rest works', () => {
    assert.equal(existsSync(join(consumer, 'node_modules', 'better-sqlite3')), false, 'an optional peer is not installed with the package');
    writeFileSync(
      join(consumer, 'no-sqlite.mjs'),
      `import { SqliteStorage, FileStorage, ErrorCode } from 'tallyworks';
try {
  new SqliteStorage('x.db');
  console.log('constructed');
} catch (err) {
  console.log(err.code === ErrorCode.MISSING_DEPENDENCY, /better-sqlite3@12/.test(err.message));
}
console.log(typeof new FileStorage('y.tw').path);
`,
    );
    assert.equal(ok(run(process.execPath, ['no-sqlite.mjs'], consumer), 'node no-sqlite.mjs'), 'true true\nstring\n');
  });

  test('every runnable README example runs as it stands and prints what its comments say', () => {
    const examples = readmeExamples(readFileSync(join(consumer, 'node_modules', pkg.name, 'README.md'), 'utf8'));
    assert.ok(examples.length >= 4, `runnable README examples: ${examples.length}`);
    for (const [i, e] of examples.entries()) {
      const file = join(consumer, `readme-${i}.mjs`);
      writeFileSync(file, e.source);
      const out = ok(run(process.execPath, [file], consumer, 60_000), `README example in "${e.section}"`);
      assert.deepEqual(out.trim().split('\n'), e.expected, `README example in "${e.section}"`);
    }
  });

  test('the installed bin: tallyworks --version, bench --help, and a short verified bench', () => {
    const npx = (args: string[]): string => ok(run('npx', ['--no-install', 'tallyworks', ...args], consumer), `npx tallyworks ${args.join(' ')}`);
    assert.equal(npx(['--version']), `tallyworks ${pkg.version}\n`);
    assert.match(npx(['bench', '--help']), /Usage: tallyworks bench/);
    const out = npx(['bench', '--scenario', 'observe-key,buffer-increment', '--keys', '100', '--ops', '20000', '--rounds', '1', '--chart', 'none']);
    assert.match(out, /All totals verified\. 2 scenarios/);
    assert.ok(!existsSync(join(consumer, 'tallyworks-bench.svg')), '--chart none writes no chart');
  });
});
