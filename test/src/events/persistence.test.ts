/**
 * Event store persistence through the public API (README, "Calendar event counts": export, import, merge,
 * persistence): the file storage on its own, restarting an engine on the same file, dirty tracking,
 * persist()/persistAll() and auto-persist, failing storages, and compact() with lazy reload. (A process
 * killed while it auto-persists: persistence-kill.process.test.ts.)
 *
 * Event-store time runs on TestClocks; real time is waited for only where a real timer or OS process
 * runs (auto-persist), always with a bounded wait.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  createEngine,
  type Engine,
  ErrorCode,
  type EventStore,
  FileStorage,
  MemoryStorage,
  SPEC_START,
  type Storage,
  type StorageOp,
  TallyworksError,
  TestClock,
} from '../../../src/index.js';
import { tempDir, tmpFilesOf } from '../../helpers/temp-files.js';
import { withCode } from '../../helpers/time.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;


/** Polls `cond` every 5 ms until it holds; fails after `timeoutMs` (real time: for real timers only). */
async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const bytes = (...v: number[]): Uint8Array => Uint8Array.from(v);

/** Two pids no process can have: above the kernel's pid limit (Linux), or past any real pid elsewhere. */
function deadPids(): [number, number] {
  let max = 2 ** 22;
  try {
    max = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim());
  } catch {
    // Not Linux: 2^22 is the largest pid_max Linux allows, and past what other systems hand out.
  }
  return [max + 1, max + 77];
}

/** A MemoryStorage whose writes reject with `failure` while `failing`. */
class FlakyStorage extends MemoryStorage {
  failing = true;
  readonly failure = new Error('disk full (test storage)');
  override async save(key: string, value: Uint8Array): Promise<void> {
    if (this.failing) throw this.failure;
    return super.save(key, value);
  }
  override async transaction(ops: readonly StorageOp[]): Promise<void> {
    if (this.failing) throw this.failure;
    return super.transaction(ops);
  }
}

/** A validator: the storage's own `failure`, as TW_STORAGE with it as the cause (never raw). */
const failedWith =
  (failure: Error) =>
  (err: unknown): boolean =>
    err instanceof TallyworksError && err.code === ErrorCode.STORAGE && err.cause === failure && err.message.includes(failure.message);

/** `inner` without transactions: the store saves key by key. */
function withoutTransactions(inner: Storage): Storage {
  return {
    save: (key, value) => inner.save(key, value),
    load: (key) => inner.load(key),
    delete: (key) => inner.delete(key),
    keys: (prefix) => inner.keys(prefix),
  };
}

// ── FileStorage on its own ───────────────────────────────────────────────────────────────────────────

describe('FileStorage', () => {
  test('save / load / delete / keys(prefix) / transaction round-trip, and a new instance reads the same file', async () => {
    const path = join(await tempDir(), 'store.tw');
    const s = new FileStorage(path);
    assert.equal(s.path, path);
    assert.equal(await s.load('missing'), undefined, 'no file yet: nothing stored');
    assert.deepEqual(await s.keys(), []);
    await s.save('events/a', bytes(1, 2, 3));
    await s.save('events/b', bytes(4));
    await s.save('other/c', bytes(5, 6));
    await s.save('events/a', bytes(7, 8)); // replaces
    assert.deepEqual(await s.load('events/a'), bytes(7, 8));
    assert.deepEqual((await s.keys('events/')).sort(), ['events/a', 'events/b']);
    assert.deepEqual((await s.keys()).sort(), ['events/a', 'events/b', 'other/c']);
    assert.deepEqual(await s.keys('nothing/'), []);
    await s.delete('events/b');
    await s.delete('never-there'); // no error when absent
    assert.equal(await s.load('events/b'), undefined);
    await s.transaction([
      { type: 'save', key: 'events/d', value: bytes(9) },
      { type: 'delete', key: 'other/c' },
      { type: 'save', key: 'events/a', value: bytes(10) },
    ]);
    const expected = { 'events/a': bytes(10), 'events/d': bytes(9) };
    const contentsOf = async (st: FileStorage): Promise<Record<string, Uint8Array | undefined>> => {
      const out: Record<string, Uint8Array | undefined> = {};
      for (const k of (await st.keys()).sort()) out[k] = await st.load(k);
      return out;
    };
    assert.deepEqual(await contentsOf(s), expected);
    assert.deepEqual(await contentsOf(new FileStorage(path)), expected, 'the file holds what was written');
  });

  test('writes issued together are all applied, in order', async () => {
    const path = join(await tempDir(), 'queue.tw');
    const s = new FileStorage(path);
    await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => s.save(`k${i}`, bytes(i))),
      s.save('last', bytes(1)),
      s.save('last', bytes(2)),
      s.delete('k0'),
    ]);
    const reread = new FileStorage(path);
    assert.equal((await reread.keys('k')).length, 19);
    assert.equal(await reread.load('k0'), undefined, 'the delete came after the save');
    assert.deepEqual(await reread.load('last'), bytes(2), 'the later save wins');
    assert.deepEqual(await tmpFilesOf(path), []);
  });

  test('values are copied in and out: mutating the caller\'s array afterwards changes nothing stored', async () => {
    const s = new FileStorage(join(await tempDir(), 'copy.tw'));
    const v = bytes(1, 2, 3);
    const saving = s.save('k', v);
    v[0] = 99; // before the write ran
    await saving;
    v[1] = 99; // after
    assert.deepEqual(await s.load('k'), bytes(1, 2, 3));
    const t = bytes(4, 5);
    const committing = s.transaction([{ type: 'save', key: 't', value: t }]);
    t[0] = 99;
    await committing;
    assert.deepEqual(await s.load('t'), bytes(4, 5));
    const loaded = (await s.load('k'))!;
    loaded[2] = 99;
    assert.deepEqual(await s.load('k'), bytes(1, 2, 3), 'a loaded value is the caller\'s own copy');
  });

  test('a file that is not a storage file: load and keys reject with TW_STORAGE naming the path', async () => {
    const dir = await tempDir();
    const garbage: Array<[string, string | Uint8Array]> = [
      ['text.tw', 'this is not a tallyworks file\n'],
      ['empty.tw', ''],
      ['json.tw', JSON.stringify({ format: 'tallyworks.file-storage', version: 1, entries: {} })],
      ['bytes.tw', bytes(0xc1, 0xff, 0x00, 0x13, 0x37)],
    ];
    for (const [name, contents] of garbage) {
      const path = join(dir, name);
      await writeFile(path, contents);
      await assert.rejects(new FileStorage(path).load('x'), withCode(ErrorCode.STORAGE, path), `load of ${name}`);
      await assert.rejects(new FileStorage(path).keys(), withCode(ErrorCode.STORAGE, path), `keys of ${name}`);
      const s = new FileStorage(path);
      await assert.rejects(s.keys('events/'), withCode(ErrorCode.STORAGE, path));
      await assert.rejects(s.load('x'), withCode(ErrorCode.STORAGE, path), 'still refused on the same instance');
      await assert.rejects(s.save('x', bytes(1)), withCode(ErrorCode.STORAGE, path), 'a write does not clobber the unreadable file');
      assert.equal((await stat(path)).size, typeof contents === 'string' ? Buffer.byteLength(contents) : contents.length, `${name} left as it was`);
    }
  });

  test('an engine on an unreadable file fails to start with TW_STORAGE naming the path', async () => {
    const path = join(await tempDir(), 'bad.tw');
    await writeFile(path, 'garbage');
    await assert.rejects(
      createEngine({ clock: new TestClock(), shards: 1, events: { storage: new FileStorage(path) } }),
      withCode(ErrorCode.STORAGE, path),
    );
  });

  test('a file in a missing directory: the write rejects with TW_STORAGE naming the path', async () => {
    const path = join(await tempDir(), 'no-such-dir', 'store.tw');
    await assert.rejects(new FileStorage(path).save('k', bytes(1)), withCode(ErrorCode.STORAGE, path));
  });

  test('leftover temporary files of this file are removed when the storage first opens; other files stay', async () => {
    const dir = await tempDir();
    const path = join(dir, 'data.tw');
    await new FileStorage(path).save('k', bytes(42));
    // Writers that cannot be running: pids above the kernel's maximum. (Fixed pids such as 777 may be live
    // processes on a busy machine.) A temporary file of a live writer, our parent, must stay.
    const dead = deadPids();
    const live = `.data.tw.${process.ppid}.3.tmp`;
    const leftovers = [`.data.tw.${dead[0]}.0.tmp`, `.data.tw.${dead[1]}.31.tmp`];
    const others = [`.other.tw.${dead[0]}.0.tmp`, 'data.tw.bak', '.data.tw.notes', 'x.tmp', live];
    for (const n of [...leftovers, ...others]) await writeFile(join(dir, n), 'partial write');
    const s = new FileStorage(path);
    assert.deepEqual((await tmpFilesOf(path)).sort(), [...leftovers, live].sort(), 'nothing removed before the first use');
    assert.deepEqual(await s.load('k'), bytes(42), 'the snapshot itself is intact');
    assert.deepEqual(await tmpFilesOf(path), [live], 'leftovers of dead writers removed, the live writer\'s kept');
    assert.deepEqual((await readdir(dir)).sort(), ['data.tw', ...others].sort(), 'every other file kept');
  });

  test('the file is replaced atomically: a new file renamed over the old one, no temporary file left', async () => {
    const dir = await tempDir();
    const path = join(dir, 'atomic.tw');
    const s = new FileStorage(path);
    await s.save('a', bytes(1));
    let ino = statSync(path).ino;
    for (let i = 0; i < 5; i++) {
      await s.save(`k${i}`, new Uint8Array(1000).fill(i));
      const now = statSync(path).ino;
      assert.notEqual(now, ino, 'a save writes a new file (rename), never the old one in place');
      ino = now;
      assert.deepEqual(await readdir(dir), ['atomic.tw'], 'no temporary file remains');
    }
    await s.transaction([{ type: 'delete', key: 'a' }]);
    assert.notEqual(statSync(path).ino, ino);
    assert.deepEqual(await readdir(dir), ['atomic.tw']);
  });
});

// ── restart on the same file ─────────────────────────────────────────────────────────────────────────

/** What a user asks of one id (undefined throughout for an unknown id). */
async function answers(store: EventStore, id: string): Promise<Record<string, unknown>> {
  const q = store.query(id);
  return {
    lastMinutes1: await q.lastMinutes(1).sum(),
    lastHours3: await q.lastHours(3).sum(),
    lastDays7: await q.lastDays(7).sum(),
    ever: await q.ever().sum(),
    hourBuckets: await q.lastHours(3).buckets(),
    dayBuckets: await q.lastDays(7).buckets(),
    everBuckets: await q.ever().buckets(),
  };
}

const RESTART_IDS = ['a', 'b', 'c', 'd'];

/**
 * Engine A on a FileStorage at `path` (clock at SPEC_START, Monday 10:30 UTC) records a..d, some into
 * older buckets, checks its own answers and closes (which persists). Returns A's answers per id.
 */
async function recordAndClose(path: string): Promise<Record<string, Record<string, unknown>>> {
  const engine = await createEngine({ clock: new TestClock(SPEC_START), shards: 2, events: { storage: new FileStorage(path) } });
  const ev = engine.events;
  const out: Record<string, Record<string, unknown>> = {};
  try {
    ev.record('a');
    ev.record('a');
    ev.record('a');
    ev.record('b', 5);
    ev.recordAgo('b', 2 * HOUR, 4); // 08:30 today
    ev.recordAgo('c', 3 * DAY, 7); // Friday
    ev.record('c');
    ev.recordAgo('d', 30 * DAY, 11); // a month ago: only in ever()
    for (const id of RESTART_IDS) out[id] = await answers(ev, id);
    // What engine A itself answers (so that "B answers the same" cannot pass on two empty stores).
    assert.deepEqual(out['a'], { lastMinutes1: 3, lastHours3: 3, lastDays7: 3, ever: 3, hourBuckets: [3, 0, 0], dayBuckets: [3, 0, 0, 0, 0, 0, 0], everBuckets: [3, 0, 0, 0] });
    assert.deepEqual(out['b'], { lastMinutes1: 5, lastHours3: 9, lastDays7: 9, ever: 9, hourBuckets: [5, 0, 4], dayBuckets: [9, 0, 0, 0, 0, 0, 0], everBuckets: [9, 0, 0, 0] });
    assert.deepEqual(out['c'], { lastMinutes1: 1, lastHours3: 1, lastDays7: 8, ever: 8, hourBuckets: [1, 0, 0], dayBuckets: [1, 0, 0, 7, 0, 0, 0], everBuckets: [8, 0, 0, 0] });
    assert.deepEqual(out['d'], { lastMinutes1: 0, lastHours3: 0, lastDays7: 0, ever: 11, hourBuckets: [0, 0, 0], dayBuckets: [0, 0, 0, 0, 0, 0, 0], everBuckets: [11, 0, 0, 0] });
  } finally {
    await engine.close();
  }
  return out;
}

/** A new engine on the FileStorage at `path`, its clock at `now`. */
const openAt = (path: string, now: number): Promise<Engine> =>
  createEngine({ clock: new TestClock(now), shards: 2, events: { storage: new FileStorage(path) } });

describe('restart: a new engine on the same file', () => {
  test('close() persists; engine B at the same time answers every query as A did, and keeps counting', async () => {
    const path = join(await tempDir(), 'restart.tw');
    const before = await recordAndClose(path);
    assert.deepEqual((await new FileStorage(path).keys('events/')).sort(), RESTART_IDS.map((id) => `events/${id}`), 'close() wrote every id');

    const b = await openAt(path, SPEC_START);
    try {
      for (const id of RESTART_IDS) assert.equal(b.events.has(id), true, `${id} is known before any query`);
      assert.equal(b.events.has('zzz'), false);
      for (const id of RESTART_IDS) assert.deepEqual(await answers(b.events, id), before[id], `answers of ${id} after the restart`);
      assert.equal(await b.events.query('zzz').ever().sum(), undefined, 'an id never recorded is still unknown');
      assert.equal(await b.events.query('zzz').lastMinutes(1).buckets(), undefined);
      assert.equal(b.events.has('zzz'), false, 'reading it did not create it');

      // Recording more adds to the stored counts: 'a' after a query brought it back, 'd' straight away.
      b.events.record('a', 2);
      b.events.record('d');
      b.events.record('new', 4);
      assert.equal(await b.events.query('a').lastMinutes(1).sum(), 5);
      assert.equal(await b.events.query('a').ever().sum(), 5);
      assert.equal(await b.events.query('d').ever().sum(), 12);
      assert.equal(await b.events.query('d').lastDays(1).sum(), 1);
      assert.deepEqual((await b.events.query('d').ever().buckets()), [12, 0, 0, 0]);
      assert.deepEqual(b.events.dirtyIds().sort(), ['a', 'd', 'new'], 'only what B recorded is dirty');
    } finally {
      await b.close();
    }

    const c = await openAt(path, SPEC_START);
    try {
      assert.equal(await c.events.query('a').ever().sum(), 5);
      assert.equal(await c.events.query('d').ever().sum(), 12);
      assert.equal(await c.events.query('new').lastMinutes(1).sum(), 4);
      assert.deepEqual(await answers(c.events, 'b'), before['b'], 'ids B only read are unchanged');
      assert.deepEqual(await answers(c.events, 'c'), before['c']);
    } finally {
      await c.close();
    }
  });

  test('engine B two days later sees the stored buckets aligned to its now', async () => {
    const path = join(await tempDir(), 'later.tw');
    await recordAndClose(path);
    const b = await openAt(path, SPEC_START + 2 * DAY); // Wednesday 10:30
    try {
      const q = (id: string) => b.events.query(id);
      assert.equal(await q('a').lastDays(1).sum(), 0, 'nothing today');
      assert.equal(await q('a').lastDays(2).sum(), 0, 'nothing yesterday');
      assert.equal(await q('a').lastDays(3).sum(), 3, 'Monday is the third day back');
      assert.deepEqual(await q('a').lastDays(3).buckets(), [0, 0, 3]);
      assert.equal(await q('a').lastHours(48).sum(), 0);
      assert.equal(await q('a').lastHours(49).sum(), 3, 'Monday 10:00 is 48 hour buckets back');
      assert.equal(await q('a').lastMinutes(60).sum(), 0);
      assert.equal(await q('b').lastDays(1).sum(), 0);
      assert.equal(await q('b').lastDays(3).sum(), 9);
      assert.equal(await q('b').lastHours(50).sum(), 5, '10:30 Monday is in, 08:30 is not');
      assert.equal(await q('b').lastHours(51).sum(), 9);
      assert.equal(await q('c').lastDays(5).sum(), 1, 'Friday is the sixth day back');
      assert.equal(await q('c').lastDays(6).sum(), 8);
      assert.equal(await q('d').lastDays(7).sum(), 0);
      for (const [id, total] of [['a', 3], ['b', 9], ['c', 8], ['d', 11]] as const) {
        assert.equal(await q(id).ever().sum(), total, `ever() of ${id}`);
      }
      b.events.record('a');
      assert.deepEqual(await q('a').lastDays(3).buckets(), [1, 0, 3]);
    } finally {
      await b.close();
    }
  });
});

// ── dirty tracking, persist(), auto-persist, failing storages ───────────────────────────────────────

describe('persist and dirty tracking', () => {
  const clock = new TestClock(SPEC_START);
  let engine: Engine;
  before(async () => {
    engine = await createEngine({ clock, shards: 2 });
  });
  after(() => engine.close());

  test('persist() returns how many dirty ids it saved, 0 when nothing changed; persistAll() saves every id', async () => {
    const storage = new MemoryStorage();
    const store = engine.eventStore({ storage, name: 'counts' });
    store.record('a');
    store.record('b', 2);
    store.record('a');
    assert.deepEqual(store.dirtyIds().sort(), ['a', 'b']);
    assert.equal(await store.persist(), 2);
    assert.deepEqual(store.dirtyIds(), []);
    assert.deepEqual((await storage.keys()).sort(), ['counts/a', 'counts/b']);
    assert.equal(await store.persist(), 0, 'nothing changed');
    assert.equal(await store.persist(), 0);
    await store.query('a').lastDays(1).sum();
    assert.equal(await store.persist(), 0, 'a query does not make an id dirty');
    store.record('b');
    assert.equal(await store.persist(), 1);
    assert.equal(await store.persistAll(), 2);
    assert.equal(await store.persist(), 0);
    assert.equal(storage.size, 2);
  });

  test('a store without storage: persist() and compact() reject with TW_INVALID_ARGUMENT', async () => {
    const store = engine.eventStore({});
    store.record('x');
    await assert.rejects(store.persist(), withCode(ErrorCode.INVALID_ARGUMENT, 'storage'));
    await assert.rejects(store.compact(), withCode(ErrorCode.INVALID_ARGUMENT, 'storage'));
    assert.equal(await store.query('x').lastDays(1).sum(), 1);
  });

  for (const kind of ['with transactions', 'save only'] as const) {
    test(`a storage whose writes reject (${kind}): persist() rejects, the ids stay dirty, and the next persist saves them`, async () => {
      const flaky = new FlakyStorage();
      const storage = kind === 'save only' ? withoutTransactions(flaky) : flaky;
      const name = kind === 'save only' ? 'flaky-save' : 'flaky-tx';
      const store = engine.eventStore({ storage, name });
      store.record('p', 3);
      store.record('q');
      await assert.rejects(store.persist(), failedWith(flaky.failure));
      assert.deepEqual(store.dirtyIds().sort(), ['p', 'q'], 'not saved: still dirty');
      assert.equal(flaky.size, 0);
      await assert.rejects(store.persist(), failedWith(flaky.failure), 'still failing');
      assert.deepEqual(store.dirtyIds().sort(), ['p', 'q']);
      store.record('p');
      flaky.failing = false;
      assert.equal(await store.persist(), 2);
      assert.deepEqual(store.dirtyIds(), []);
      assert.equal(await store.persist(), 0);
      // What was saved is the live count: a store reading the same storage sees it.
      const reader = engine.eventStore({ storage: flaky, name });
      assert.equal(await reader.query('p').lastDays(1).sum(), 4);
      assert.equal(await reader.query('q').lastDays(1).sum(), 1);
    });
  }

  test('compact() on a failing storage rejects and keeps every counter in memory', async () => {
    const flaky = new FlakyStorage();
    const store = engine.eventStore({ storage: flaky, name: 'flaky-compact' });
    store.record('m', 6);
    store.record('n');
    await assert.rejects(store.compact(), failedWith(flaky.failure));
    assert.equal(store.size, 2, 'nothing let go');
    assert.equal(await store.query('m').lastDays(1).sum(), 6);
    assert.deepEqual(store.dirtyIds().sort(), ['m', 'n']);
    flaky.failing = false;
    await store.compact();
    assert.equal(store.size, 0);
    assert.equal(await store.query('m').lastDays(1).sum(), 6);
  });

  test('onPersistError receives the errors of background persists; the ids are retried until saved', async () => {
    const flaky = new FlakyStorage();
    const reported: Array<{ err: Error; dirty: string[] }> = [];
    const store: EventStore = engine.eventStore({
      storage: flaky,
      name: 'bg',
      autoPersistMs: 5,
      onPersistError: (err) => reported.push({ err, dirty: store.dirtyIds() }),
    });
    store.record('z', 2);
    await waitFor(() => reported.length >= 2, 'two background persists to fail');
    assert.ok(failedWith(flaky.failure)(reported[0]!.err), 'TW_STORAGE with the storage\'s own error as the cause');
    assert.deepEqual(reported[0]!.dirty, ['z'], 'when the error is reported the id is dirty again');
    assert.equal(flaky.size, 0);
    flaky.failing = false;
    const errorsBefore = reported.length;
    await waitFor(async () => (await flaky.load('bg/z')) !== undefined, 'a background persist to save z');
    assert.ok(reported.length <= errorsBefore + 1, 'no errors once the storage works');
    const reader = engine.eventStore({ storage: flaky, name: 'bg' });
    assert.equal(await reader.query('z').lastDays(1).sum(), 2);
  });
});

describe('auto-persist to a file', () => {
  test('autoPersistMs: 20 writes the dirty counters to the file in the background, and again after more records', async () => {
    const path = join(await tempDir(), 'auto.tw');
    const engine = await createEngine({ clock: new TestClock(SPEC_START), shards: 1, events: { storage: new FileStorage(path), autoPersistMs: 20 } });
    /** The ever() sums of `ids` in the file, read by another engine (A is idle: nothing dirty). */
    const inFile = async (ids: string[]): Promise<Array<number | undefined>> => {
      const reader = await openAt(path, SPEC_START);
      try {
        const out: Array<number | undefined> = [];
        for (const id of ids) out.push(await reader.events.query(id).ever().sum());
        return out;
      } finally {
        await reader.close();
      }
    };
    try {
      engine.events.record('x', 4);
      assert.equal(existsSync(path), false, 'no file before a persist ran');
      const started = Date.now();
      await waitFor(() => existsSync(path), 'the first auto-persist to write the file');
      const firstMs = Date.now() - started;
      assert.deepEqual(engine.events.dirtyIds(), []);
      assert.deepEqual(await inFile(['x', 'y']), [4, undefined]);
      const ino = statSync(path).ino;

      engine.events.record('x', 3);
      engine.events.record('y');
      await waitFor(() => statSync(path).ino !== ino, 'the file to be replaced after more records');
      assert.deepEqual(engine.events.dirtyIds(), []);
      assert.deepEqual(await inFile(['x', 'y']), [7, 1]);
      assert.ok(firstMs < 2000, `first auto-persist after ${firstMs} ms`);
      assert.deepEqual(await tmpFilesOf(path), []);
    } finally {
      await engine.close();
    }
  });
});

// ── compact() ────────────────────────────────────────────────────────────────────────────────────────

describe('compact()', () => {
  const clock = new TestClock(SPEC_START);
  let engine: Engine;
  before(async () => {
    engine = await createEngine({ clock, shards: 2 });
  });
  after(() => engine.close());

  test('lets every counter go; queries and records bring them back lazily with their stored counts', async () => {
    clock.set(SPEC_START);
    const storage = new MemoryStorage();
    const store = engine.eventStore({ storage, name: 'compact' });
    store.record('x', 100);
    store.record('y', 3);
    store.recordAgo('y', 2 * DAY, 4);
    assert.equal(store.size, 2);
    await store.compact();
    assert.equal(store.size, 0, 'memory released');
    assert.deepEqual(store.dirtyIds(), [], 'compact persisted everything');
    assert.equal(store.has('x'), true);
    assert.equal(store.has('y'), true);
    assert.equal(store.has('nope'), false);
    assert.deepEqual((await store.exportDirty()).counters, {});

    assert.equal(await store.query('y').lastDays(1).sum(), 3);
    assert.equal(store.size, 1, 'the queried id came back, the other did not');
    assert.deepEqual(await store.query('y').lastDays(3).buckets(), [3, 0, 4], 'older buckets come back too');
    assert.equal(await store.query('nope').lastDays(1).sum(), undefined);
    assert.equal(store.size, 1, 'an unknown id is not created by a query');

    store.record('x', 5); // not queried since compact(): record() brings it back
    assert.equal(store.size, 2);
    assert.equal(await store.query('x').lastDays(1).sum(), 105, '100 stored + 5');
    assert.equal(await store.query('x').ever().sum(), 105);
    assert.deepEqual(store.dirtyIds(), ['x']);

    // Persisted again and reloaded again: the stored count is the total, not counted twice.
    await store.compact();
    assert.equal(store.size, 0);
    assert.equal(await store.query('x').ever().sum(), 105);
    assert.equal(await store.query('y').ever().sum(), 7);
    store.record('y');
    await store.compact();
    assert.equal(await store.query('y').lastDays(1).sum(), 4);
  });

  test('export() includes compacted ids (all rings), and import/merge reach them', async () => {
    clock.set(SPEC_START);
    const store = engine.eventStore({ storage: new MemoryStorage(), name: 'compact-export' });
    store.record('u', 9);
    store.record('v', 2);
    await store.compact();
    assert.equal(store.size, 0);
    const exp = await store.export();
    assert.deepEqual(Object.keys(exp.counters).sort(), ['u', 'v']);
    assert.equal(exp.counters['u']!.length, Object.keys(store.intervals).length, 'one bucket array per ring');
    for (const ring of exp.counters['u']!) assert.equal(ring.reduce((s, v) => s + v, 0), 9);
    for (const ring of exp.counters['v']!) assert.equal(ring.reduce((s, v) => s + v, 0), 2);

    await store.compact();
    await store.merge(exp); // adds to the compacted ids
    assert.equal(await store.query('u').lastDays(1).sum(), 18);
    await store.compact();
    await store.import(exp); // overwrites the compacted id
    assert.equal(await store.query('v').lastDays(1).sum(), 2);
    assert.equal(await store.query('u').lastDays(1).sum(), 9);
  });
});

// ── persists that overlap each other or close() ─────────────────────────────────────────────────────

/** A MemoryStorage whose load() waits for `open()` while `gated`. */
class GatedStorage extends MemoryStorage {
  gated = false;
  private release: () => void = () => undefined;
  private readonly gate = new Promise<void>((resolve) => (this.release = resolve));
  open(): void {
    this.release();
  }
  override async load(key: string): Promise<Uint8Array | undefined> {
    if (this.gated) await this.gate;
    return super.load(key);
  }
}

describe('overlapping persists and close()', () => {
  test(
    'close() waits for a background persist in flight: its counts reach the storage',
    async () => {
      const storage = new GatedStorage();
      const errors: Error[] = [];
      const engine = await createEngine({ clock: new TestClock(SPEC_START), shards: 1 });
      const store = engine.eventStore({ storage, autoPersistMs: 5, onPersistError: (err) => errors.push(err) });
      try {
        store.record('a');
        await store.compact();
        storage.gated = true;
        store.record('b', 10);
        store.record('a'); // compacted: its reload waits on the gated load, and so does the persist exporting it
        await waitFor(() => store.dirtyIds().length === 0, 'the auto-persist to take the dirty ids');
        let closed = false;
        const closing = engine.close().then(() => (closed = true));
        await new Promise((resolve) => setTimeout(resolve, 20));
        assert.equal(closed, false, 'close() waits for the persist in flight');
        storage.open();
        await closing;
      } finally {
        storage.open();
        await engine.close();
      }
      await waitFor(async () => errors.length > 0 || (await storage.load('events/b')) !== undefined, 'the persist in flight to end', 2000).catch(() => undefined);
      const reader = await createEngine({ clock: new TestClock(SPEC_START), shards: 1, events: { storage } });
      try {
        assert.deepEqual(errors.map((e) => e.message), []);
        assert.equal(await reader.events.query('b').lastDays(1).sum(), 10, 'recorded before close(): persisted');
        assert.equal(await reader.events.query('a').lastDays(1).sum(), 2);
      } finally {
        await reader.close();
      }
    },
  );

  test(
    'a persist that overlaps an earlier one is not overwritten by the older snapshot',
    async () => {
      const storage = new GatedStorage();
      const engine = await createEngine({ clock: new TestClock(SPEC_START), shards: 1 });
      const store = engine.eventStore({ storage });
      try {
        store.record('a');
        await store.compact();
        storage.gated = true;
        store.record('b'); // b = 1
        store.record('a'); // compacted: its reload waits on the gated load
        const first = store.persist(); // exports [b, a]: reads b = 1, then waits for a
        await engine.flush();
        await new Promise((resolve) => setImmediate(resolve));
        store.record('b'); // b = 2
        const second = store.persist(); // queued behind the first
        storage.open();
        assert.equal(await first, 2);
        assert.equal(await second, 1, 'the second persist saves b = 2, after the first');
        assert.deepEqual(store.dirtyIds(), []);
      } finally {
        storage.open();
        await engine.close();
      }
      const reader = await createEngine({ clock: new TestClock(SPEC_START), shards: 1, events: { storage } });
      try {
        assert.equal(await reader.events.query('b').lastDays(1).sum(), 2, 'the newest count is what is stored');
      } finally {
        await reader.close();
      }
    },
  );
});
