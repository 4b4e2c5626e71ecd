/**
 * A child process (test/fixtures/persist-child.ts) killed with SIGKILL while it auto-persists, ten times,
 * to a FileStorage and to a SqliteStorage: the storage always holds one complete persist.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createEngine, FileStorage, SqliteStorage, type Storage, TestClock } from '../../../src/index.js';
import { tempDir, tmpFilesOf } from '../../helpers/temp-files.js';

const childScript = fileURLToPath(new URL('../../fixtures/persist-child.js', import.meta.url));

// ── kill -9 while auto-persisting ────────────────────────────────────────────────────────────────────

const KILL_IDS = Array.from({ length: 200 }, (_, i) => `r${i}`);

/**
 * Runs the child (test/fixtures/persist-child.ts) on `path` until it printed `ready` (its first persist
 * reached the file), lets it run `delayMs` more, and kills it with SIGKILL.
 */
async function runAndKill(path: string, kind: Kind, delayMs: number): Promise<{ readyMs: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, [childScript, path, kind], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "ready" from the child within 10 s\n${stderr}`)), 10_000);
      const check = (): void => {
        if (stdout.includes('ready\n')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', check);
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`the child exited before "ready" (code ${code}, signal ${signal})\n${stderr}`));
      });
    });
    const readyMs = Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    assert.equal(child.exitCode, null, `the child ended on its own (code ${child.exitCode})\n${stderr}`);
    child.kill('SIGKILL');
    const { signal } = await exited;
    assert.equal(signal, 'SIGKILL', stderr);
    return { readyMs };
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  }
}

type Kind = 'file' | 'sqlite';

/** The ever() total of every id r0..r199 in the storage, read by a fresh engine (undefined: not stored). */
async function totalsInFile(path: string, kind: Kind): Promise<Array<number | undefined>> {
  const storage: Storage & { close?: () => Promise<void> } = kind === 'file' ? new FileStorage(path) : new SqliteStorage(path);
  const engine = await createEngine({ clock: new TestClock(Date.now()), shards: 1, events: { storage } });
  try {
    const out: Array<number | undefined> = [];
    for (const id of KILL_IDS) out.push(await engine.events.query(id).ever().sum());
    return out;
  } finally {
    await engine.close();
    await storage.close?.();
  }
}

describe('kill -9 during auto-persist', () => {
  for (const kind of ['file', 'sqlite'] as const) test(`${kind}: after each of 10 SIGKILLs the storage is readable and holds one complete persist; totals only grow`, { timeout: 90_000 }, async (t) => {
    const path = join(await tempDir(), kind === 'file' ? 'killed.tw' : 'killed.db');
    let previous: number[] = KILL_IDS.map(() => 0);
    const log: string[] = [];
    let leftovers = 0;
    for (let run = 0; run < 10; run++) {
      const delayMs = 50 + Math.floor(Math.random() * 351);
      const { readyMs } = await runAndKill(path, kind, delayMs);
      leftovers += (await tmpFilesOf(path)).length;
      // A torn or foreign file would make this reject with TW_STORAGE.
      const totals = await totalsInFile(path, kind);
      assert.deepEqual(await tmpFilesOf(path), [], 'opening the file removed any temporary file the kill left');
      const missing = KILL_IDS.filter((_, i) => totals[i] === undefined);
      assert.deepEqual(missing, [], `run ${run}: every id is in the file`);
      const got = totals as number[];
      /*
       * Which snapshots can a persist write? The child's rounds are synchronous (r0..r199, +1 each) and a
       * persist runs between them: persist() takes the dirty list (always r0..r199 in that order: every
       * round dirties every id, r0 first), then exports the ids one after another, awaiting the shard
       * between reads, so more rounds run during the export. Each read sees every round issued before it,
       * hence one persist stores r_i = base_i + rounds completed before r_i was read, which does not
       * decrease with i — a persist is not a single instant, so totals may differ by more than 1, but
       * never in the wrong direction. Every persist writes all 200 ids in one transaction (one atomic file
       * replace, or one SQLite transaction), so the storage is always one such snapshot: the last
       * committed persist.
       * base is what the run loaded from the file, itself such a snapshot (0 on the first run), so:
       *   - totals are non-decreasing from r0 to r199 (a mix of two persists, or a torn file, breaks it);
       *   - every total grew since the previous kill: `ready` came after a persist of this run, which
       *     holds at least one round on top of the loaded base.
       */
      for (let i = 1; i < got.length; i++) {
        assert.ok(got[i - 1]! <= got[i]!, `run ${run}: r${i - 1} = ${got[i - 1]} > r${i} = ${got[i]}: not one persist's snapshot`);
      }
      for (let i = 0; i < got.length; i++) {
        assert.ok(got[i]! > previous[i]!, `run ${run}: r${i} went from ${previous[i]} to ${got[i]}`);
      }
      log.push(`run ${run}: ready ${readyMs} ms, killed ${delayMs} ms later, r0 ${got[0]}..r199 ${got[got.length - 1]}`);
      previous = got;
    }
    for (const line of log) t.diagnostic(line);
    t.diagnostic(`temporary files left by kills (removed on open): ${leftovers}`);
  });
});
