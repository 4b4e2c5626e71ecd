/**
 * closeOnSignals (issue: hardening, defect 16), in child processes: with Node's default SIGTERM a process
 * loses what its engine holds (lax deltas not yet flushed, stat buffer counts); with the helper it delivers
 * everything, then ends by the same signal.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { type RedisServer, startRedisServer } from '../../bench/redis-server.js';
import { PARTITIONS, partitionKey } from '../../common/redis.js';
import { closeOnSignals, ErrorCode } from '../../src/index.js';
import { withCode } from '../helpers/time.js';

const index = new URL('../../src/index.js', import.meta.url).href;
const dir = mkdtempSync(join(tmpdir(), 'tallyworks-signals-'));
let server: RedisServer;
before(async () => {
  server = await startRedisServer();
});
after(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const ADDS = 300_000;

/** The child: counts ADDS lax adds (Redis) and ADDS buffer increments (into a file), says ready, waits. */
function child(prefix: string, file: string, handler: boolean): string {
  return `
    import { appendFileSync } from 'node:fs';
    import { createEngine, closeOnSignals } from ${JSON.stringify(index)};
    const engine = await createEngine({ shards: 1, redis: ${JSON.stringify(server.url)}, prefix: ${JSON.stringify(prefix)}, flushIntervalMs: 60000 });
    const views = engine.buffer({ name: 'views', intervalMs: 3600000, onFlushBatch: (entries) => {
      let sum = 0;
      for (const e of entries) sum += e.count;
      appendFileSync(${JSON.stringify(file)}, sum + '\\n');
    } });
    ${handler ? 'closeOnSignals(engine, { timeoutMs: 30000 });' : ''}
    for (let i = 0; i < ${ADDS}; i++) {
      engine.lax.add('k' + (i % 1000));
      views.increment('p' + (i % 1000));
    }
    await engine.flush();
    console.log('ready');
    setInterval(() => {}, 1000);
  `;
}

/** Runs the child to "ready", sends SIGTERM, and resolves with how it ended. */
function runAndTerm(script: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) p.kill('SIGTERM');
    });
    p.on('error', reject);
    p.on('exit', (code, signal) => resolve({ code, signal, stderr }));
  });
}

async function laxTotal(prefix: string): Promise<number> {
  const redis = new Redis(server.url);
  let total = 0;
  for (let p = 0; p < PARTITIONS; p++) for (const v of Object.values(await redis.hgetall(partitionKey(prefix, 'l', p)))) total += Number(v);
  await redis.quit();
  return total;
}

function fileTotal(file: string): number {
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean).reduce((s, l) => s + Number(l), 0);
  } catch {
    return 0;
  }
}

describe('closeOnSignals', () => {
  test('without it, SIGTERM loses what the engine held (the reason it exists)', { timeout: 60_000 }, async () => {
    const file = join(dir, 'plain.txt');
    const run = await runAndTerm(child('sigplain', file, false));
    assert.equal(run.signal, 'SIGTERM', run.stderr);
    assert.ok((await laxTotal('sigplain')) < ADDS, 'lax deltas were lost');
    assert.equal(fileTotal(file), 0, 'buffered counts were lost');
  });

  test('with it, SIGTERM delivers every lax delta and buffered count, then the process ends by SIGTERM', { timeout: 60_000 }, async () => {
    const file = join(dir, 'handled.txt');
    const run = await runAndTerm(child('sighandled', file, true));
    assert.equal(run.signal, 'SIGTERM', `ended by the signal, as by default: ${run.stderr}`);
    assert.equal(await laxTotal('sighandled'), ADDS);
    assert.equal(fileTotal(file), ADDS);
  });

  test('bad arguments are typed errors; the returned function removes the handlers', () => {
    assert.throws(() => closeOnSignals({} as never), withCode(ErrorCode.INVALID_ARGUMENT, '"targets"'));
    assert.throws(() => closeOnSignals({ close: async () => undefined }, { signals: ['TERM' as NodeJS.Signals] }), withCode(ErrorCode.INVALID_ARGUMENT, 'options.signals'));
    assert.throws(() => closeOnSignals({ close: async () => undefined }, { timeoutMs: -1 }), withCode(ErrorCode.INVALID_ARGUMENT, 'options.timeoutMs'));
    const before = process.listenerCount('SIGTERM');
    const remove = closeOnSignals({ close: async () => undefined });
    assert.equal(process.listenerCount('SIGTERM'), before + 1);
    remove();
    assert.equal(process.listenerCount('SIGTERM'), before);
  });
});
