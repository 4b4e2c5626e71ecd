/**
 * The heavy scenarios of `tallyworks bench` (run by name only: at their default sizes they take minutes and
 * a few GiB): storage and bounded keys.
 *
 * - persist-full: persist of N dirty ids, SqliteStorage vs FileStorage; then a new engine reloads the store
 *   and every id's query must answer as before.
 * - persist-incremental: persist of 1,000 dirty ids in a store of N ids (SQLite writes 1,000 rows; the file
 *   is rewritten whole).
 * - restart: a new engine opens a store of N ids and answers a query for every id.
 * - churn: N distinct keys through a window set that holds about N / 10 live ones (idleMs), each side in a
 *   child process of its own so that RSS is its alone; RSS is sampled after every tenth of the keys.
 *
 * Here `ops` is the number of ids (keys), and ops/s is ids per second of the timed part.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createEngine, type Engine, FileStorage, SqliteStorage, type Storage, TestClock } from '../../src/index.js';
import { expectEqual, yieldTurn } from './measure.js';
import type { Measurement, Scenario, Side } from './scenario.js';

/** Ids recorded per store: id i gets (i mod 13) + 1 events. */
const countOf = (i: number): number => (i % 13) + 1;
const idOf = (i: number): string => `id${i}`;
const T0 = Date.UTC(2026, 0, 5, 12);
const DIRTY = 1000;

type Kind = 'sqlite' | 'file';
/** A storage of `kind` in a fresh temporary folder, and how to remove it. */
function tempStorage(kind: Kind): { storage: Storage & { close?: () => Promise<void>; path: string }; done: () => Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), 'tallyworks-bench-'));
  // synchronous NORMAL: what a service persisting every few seconds would choose; FileStorage fsyncs once per write either way.
  const storage: Storage & { close?: () => Promise<void>; path: string } = kind === 'sqlite' ? new SqliteStorage(join(dir, 'store.db'), { synchronous: 'normal' }) : new FileStorage(join(dir, 'store.tw'));
  return {
    storage,
    done: async () => {
      await storage.close?.();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An engine on `storage` at the bench's fixed time. */
function engineOn(storage: Storage): Promise<Engine> {
  return createEngine({ clock: new TestClock(T0), events: { storage } });
}

/** Records ids 0..n−1 (their counts) and waits until they are applied. */
async function fill(engine: Engine, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    engine.events.record(idOf(i), countOf(i));
    if ((i & 0xffff) === 0xffff) await yieldTurn();
  }
  await engine.flush();
}

/** Checks every id's last-day sum (plus `extra(i)`), awaited in slices; throws on the first that differs. */
async function verifyAll(engine: Engine, n: number, extra: (i: number) => number = () => 0): Promise<string> {
  const batch = 4096;
  for (let from = 0; from < n; from += batch) {
    const sums = await Promise.all(Array.from({ length: Math.min(batch, n - from) }, (_, j) => engine.events.query(idOf(from + j)).lastDays(1).sum()));
    for (let j = 0; j < sums.length; j++) expectEqual(`${idOf(from + j)} after the reload`, sums[j], countOf(from + j) + extra(from + j));
  }
  return `${n.toLocaleString('en-US')} ids reloaded, every sum equal`;
}

function persistFullSide(kind: Kind): Side {
  return {
    name: `${kind === 'sqlite' ? 'SqliteStorage' : 'FileStorage'}: persist() of every id`,
    async run(_ctx, ops): Promise<Measurement> {
      const { storage, done } = tempStorage(kind);
      try {
        const engine = await engineOn(storage);
        await fill(engine, ops);
        const start = performance.now();
        expectEqual('ids persisted', await engine.events.persist(), ops);
        const ms = performance.now() - start;
        await engine.close();
        const again = await engineOn(storage);
        const verified = await verifyAll(again, ops);
        await again.close();
        return { ops, ms, verified };
      } finally {
        await done();
      }
    },
  };
}

function persistIncrementalSide(kind: Kind): Side {
  return {
    name: `${kind === 'sqlite' ? 'SqliteStorage' : 'FileStorage'}: persist() of ${DIRTY.toLocaleString('en-US')} dirty ids`,
    async run(_ctx, ops): Promise<Measurement> {
      const { storage, done } = tempStorage(kind);
      try {
        const engine = await engineOn(storage);
        await fill(engine, ops);
        await engine.events.persist();
        const dirty = Math.min(DIRTY, ops);
        const step = Math.max(1, Math.floor(ops / dirty));
        const touched = new Set<number>();
        for (let j = 0; j < dirty; j++) {
          engine.events.record(idOf(j * step));
          touched.add(j * step);
        }
        await engine.flush();
        const start = performance.now();
        expectEqual('dirty ids persisted', await engine.events.persist(), dirty);
        const ms = performance.now() - start;
        await engine.close();
        const again = await engineOn(storage);
        const verified = await verifyAll(again, ops, (i) => (touched.has(i) ? 1 : 0));
        await again.close();
        return { ops, ms, verified: `${dirty} dirty of ${verified}` };
      } finally {
        await done();
      }
    },
  };
}

function restartSide(kind: Kind): Side {
  return {
    name: `${kind === 'sqlite' ? 'SqliteStorage' : 'FileStorage'}: open, then a query of every id`,
    async run(_ctx, ops): Promise<Measurement> {
      const { storage, done } = tempStorage(kind);
      try {
        const engine = await engineOn(storage);
        await fill(engine, ops);
        await engine.close();
        // A storage object of its own, as a restarted process has (nothing cached from the writes).
        const reopened = kind === 'sqlite' ? new SqliteStorage((storage as SqliteStorage).path) : new FileStorage((storage as FileStorage).path);
        const start = performance.now();
        const again = await engineOn(reopened);
        const verified = await verifyAll(again, ops);
        const ms = performance.now() - start;
        await again.close();
        await (reopened as { close?: () => Promise<void> }).close?.();
        return { ops, ms, verified };
      } finally {
        await done();
      }
    },
  };
}

export const persistFull: Scenario = {
  name: 'persist-full',
  title: 'persist of every id (1M by default) and the reload checked',
  redis: false,
  heavy: true,
  defaultOps: 1_000_000,
  peerShare: 1,
  ours: persistFullSide('sqlite'),
  peer: persistFullSide('file'),
  requires: ['better-sqlite3'],
};

export const persistIncremental: Scenario = {
  name: 'persist-incremental',
  title: `persist of ${DIRTY.toLocaleString('en-US')} dirty ids in a store of 1M`,
  redis: false,
  heavy: true,
  defaultOps: 1_000_000,
  peerShare: 1,
  ours: persistIncrementalSide('sqlite'),
  peer: persistIncrementalSide('file'),
  requires: ['better-sqlite3'],
};

export const restart: Scenario = {
  name: 'restart',
  title: 'restart: open a store of 1M ids and query each',
  redis: false,
  heavy: true,
  defaultOps: 1_000_000,
  peerShare: 1,
  ours: restartSide('sqlite'),
  peer: restartSide('file'),
  requires: ['better-sqlite3'],
};

/** What a churn child prints: its timing, the peak RSS (bytes) of each tenth of the keys, and its check. */
export interface ChurnResult {
  readonly ms: number;
  readonly rss: number[];
  readonly live: number;
  readonly verified: string;
}

/** Runs one churn side in a child process (`bench/cli/churn-child.js <side> <keys>`). */
function churnSide(side: 'tallyworks' | 'map', name: string): Side {
  return {
    name,
    async run(_ctx, ops): Promise<Measurement> {
      const child = spawn(process.execPath, [fileURLToPath(new URL('./churn-child.js', import.meta.url)), side, String(ops)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      if (code !== 0) throw new Error(`the churn child (${side}) exited with code ${code}`);
      const r = JSON.parse(out) as ChurnResult;
      const after = r.rss.slice(1); // after the first tenth: the live set is full from there on
      const lo = Math.min(...after);
      const hi = Math.max(...after);
      const mib = (b: number): string => `${Math.round(b / 2 ** 20)} MiB`;
      return { ops, ms: r.ms, bytesPerKey: hi / r.live, verified: `${r.verified}; peak RSS per tenth ${mib(lo)}–${mib(hi)} after the first (${(((hi - lo) / lo) * 100).toFixed(1)} % apart)` };
    },
  };
}

export const churn: Scenario = {
  name: 'churn',
  title: '10M distinct keys through ~1M live windows (idleMs): RSS',
  redis: false,
  heavy: true,
  defaultOps: 10_000_000,
  peerShare: 1,
  ours: churnSide('tallyworks', 'windows(…, { idleMs }).observe(key)'),
  peer: churnSide('map', 'Map of bucket arrays, idle keys deleted'),
};
