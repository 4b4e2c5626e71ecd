/** A process whose engine is closed exits on its own: no thread, timer or socket of the engine is left. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';

const indexUrl = new URL('../../src/index.js', import.meta.url).href;

describe('engine lifetime in a process', () => {
  for (const clockKind of ['system', 'test'] as const) {
    test(`a process that closes its engine exits on its own (${clockKind} clock): no thread, timer or socket left`, () => {
      const script = `
        import { createEngine, SystemClock, TestClock } from ${JSON.stringify(indexUrl)};
        const engine = await createEngine({ shards: 2, clock: ${clockKind === 'system' ? 'new SystemClock()' : 'new TestClock()'} });
        const set = engine.windows({ size: 5, unit: 'second' });
        for (let i = 0; i < 100000; i++) set.observe('k' + (i % 100));
        const v = await set.value('k7');
        await engine.close();
        console.log('value', v);
      `;
      const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(run.signal, null, `the process had to be killed: it did not exit on its own\n${run.stderr}`);
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, /value 1000/);
    });
  }
});
