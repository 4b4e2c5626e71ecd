/** Worker threads start whatever Node options the app itself was started with. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

const index = new URL('../../../src/index.js', import.meta.url).href;
const threads = new URL('../../../src/threads/threads.js', import.meta.url).href;

/** Runs a tiny app (an engine with a window and a lax counter) under `flags`; returns what it printed. */
function runApp(flags: string[]): { status: number | null; stdout: string; stderr: string } {
  const app = `
    import { createEngine } from ${JSON.stringify(index)};
    import { workerExecArgv } from ${JSON.stringify(threads)};
    const engine = await createEngine({ shards: 2 });
    const w = engine.windows({ size: 5, unit: 'second' });
    for (let i = 0; i < 1000; i++) w.observe('k' + (i % 10));
    engine.lax.add('views', 7);
    let sum = 0;
    for (let i = 0; i < 10; i++) sum += await w.value('k' + i);
    console.log(JSON.stringify({ sum, views: await engine.lax.get('views'), workerArgs: workerExecArgv() }));
    await engine.close();
  `;
  const run = spawnSync(process.execPath, [...flags, '--input-type=module', '-e', app], { encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

const cases: Array<{ flags: string[]; kept: string[] }> = [
  { flags: ['--max-old-space-size=4096'], kept: [] },
  { flags: ['--expose-gc'], kept: [] },
  { flags: ['--title=tallyworks-app'], kept: [] },
  { flags: ['--title', 'tallyworks-app'], kept: [] },
  { flags: ['--max-semi-space-size=32', '--stack-trace-limit=40', '--enable-source-maps', '--no-warnings'], kept: ['--enable-source-maps', '--no-warnings'] },
];

for (const { flags, kept } of cases) {
  test(`an app started with ${flags.join(' ')} counts on its shard threads`, () => {
    const run = runApp(flags);
    assert.equal(run.status, 0, run.stderr);
    const out = JSON.parse(run.stdout.trim()) as { sum: number; views: number; workerArgs: string[] };
    assert.equal(out.sum, 1000);
    assert.equal(out.views, 7);
    // The options a worker refuses are left out; the ones it accepts still reach the threads.
    assert.deepEqual(out.workerArgs, kept);
  });
}
