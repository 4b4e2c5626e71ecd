/**
 * Every storage backend under one contract (memory, file as msgpack and as JSON, SQLite), then what is
 * particular to each: SQLite's WAL journal, rollback of a failed transaction, one row per key; the JSON
 * file's readable values; moving a store between backends.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createEngine, FileStorage, MemoryStorage, migrateStorage, SqliteStorage, type Storage, type StorageOp, TestClock } from '../../../src/index.js';
import { counting } from '../../helpers/storages.js';
import { tempDir } from '../../helpers/temp-files.js';

const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);

type Backend = { name: string; open: (dir: string) => Storage & { close?: () => Promise<void> } };
const BACKENDS: Backend[] = [
  { name: 'MemoryStorage', open: () => new MemoryStorage() },
  { name: 'FileStorage (msgpack)', open: (dir) => new FileStorage(join(dir, 's.tw')) },
  { name: 'FileStorage (json)', open: (dir) => new FileStorage(join(dir, 's.json'), { format: 'json' }) },
  { name: 'SqliteStorage', open: (dir) => new SqliteStorage(join(dir, 's.db')) },
];
const REOPENABLE = BACKENDS.filter((b) => b.name !== 'MemoryStorage');

for (const backend of BACKENDS) {
  describe(`${backend.name}: the Storage contract`, () => {
    test('save, load, delete and keys by prefix; loads are copies; a missing key is undefined', async () => {
      const s = backend.open(await tempDir());
      const value = bytes(1, 2, 3);
      await s.save('a/1', value);
      value[0] = 9; // the caller changes its buffer after the save: the stored bytes do not change
      await s.save('a/2', bytes(4));
      await s.save('b/1', bytes(5, 6));
      assert.deepEqual(await s.load('a/1'), bytes(1, 2, 3));
      assert.equal(await s.load('zzz'), undefined);
      assert.deepEqual((await s.keys('a/')).sort(), ['a/1', 'a/2']);
      assert.deepEqual((await s.keys()).sort(), ['a/1', 'a/2', 'b/1']);
      await s.delete('a/1');
      await s.delete('never-there');
      assert.deepEqual(await s.keys('a/'), ['a/2']);
      await s.save('a/2', bytes(7, 7)); // replaces
      assert.deepEqual(await s.load('a/2'), bytes(7, 7));
      await s.close?.();
    });

    test('a transaction applies every op in order; keys with any characters, including ":" and non-ASCII, stay apart', async () => {
      const s = backend.open(await tempDir());
      const keys = ['user:1', 'user:10', '2001:db8::/64', 'ключ', '🙂', 'a%2Fb', 'a/b'];
      const ops: StorageOp[] = keys.map((key, i) => ({ type: 'save', key, value: bytes(i) }));
      ops.push({ type: 'delete', key: 'a/b' }, { type: 'save', key: 'a/b', value: bytes(42) }, { type: 'delete', key: 'ключ' });
      await s.transaction!(ops);
      assert.deepEqual((await s.keys()).sort(), keys.filter((k) => k !== 'ключ').sort());
      assert.deepEqual(await s.load('a/b'), bytes(42));
      assert.deepEqual(await s.load('user:1'), bytes(0));
      assert.deepEqual(await s.keys('user:1'), ['user:1', 'user:10'].filter((k) => k.startsWith('user:1')));
      await s.close?.();
    });
  });
}

for (const backend of REOPENABLE) {
  test(`${backend.name}: what was written is there after a reopen, deletes included`, async () => {
    const dir = await tempDir();
    const a = backend.open(dir);
    await a.transaction!([
      { type: 'save', key: 'x', value: bytes(1) },
      { type: 'save', key: 'y', value: bytes(2) },
    ]);
    await a.delete('x');
    await a.close?.();
    const b = backend.open(dir);
    assert.deepEqual(await b.keys(), ['y']);
    assert.deepEqual(await b.load('y'), bytes(2));
    await b.close?.();
  });
}

describe('SqliteStorage', () => {
  const Database = createRequire(import.meta.url)('better-sqlite3') as new (path: string, o?: { readonly?: boolean }) => {
    pragma(s: string, o?: { simple: boolean }): unknown;
    prepare(s: string): { all(...a: unknown[]): unknown[]; get(...a: unknown[]): unknown };
    close(): void;
  };

  test('the database is in WAL mode, one row per key, values as blobs', async () => {
    const path = join(await tempDir(), 'wal.db');
    const s = new SqliteStorage(path);
    await s.transaction([
      { type: 'save', key: 'k1', value: bytes(1, 2) },
      { type: 'save', key: 'k2', value: bytes(3) },
    ]);
    const db = new Database(path, { readonly: true });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.deepEqual(db.prepare('SELECT key, hex(value) AS v FROM tallyworks ORDER BY key').all(), [
        { key: 'k1', v: '0102' },
        { key: 'k2', v: '03' },
      ]);
    } finally {
      db.close();
    }
    assert.equal(await s.count(), 2);
    await s.close();
  });

  test('a transaction that fails part way writes nothing (rolled back), and the storage goes on working', async () => {
    const s = new SqliteStorage(join(await tempDir(), 'rollback.db'));
    await s.save('kept', bytes(1));
    const bad = [
      { type: 'save', key: 'new-1', value: bytes(2) },
      { type: 'delete', key: 'kept' },
      { type: 'save', key: 'new-2', value: null as unknown as Uint8Array, owned: true }, // NOT NULL fails here
    ] as StorageOp[];
    await assert.rejects(s.transaction(bad), (err: Error & { code?: string }) => err.code === 'TW_STORAGE' && /SQLite storage/.test(err.message));
    assert.deepEqual(await s.keys(), ['kept']);
    assert.deepEqual(await s.load('kept'), bytes(1));
    await s.save('after', bytes(3));
    assert.deepEqual((await s.keys()).sort(), ['after', 'kept']);
    await s.close();
  });

  test('a large transaction lets the event loop turn while it writes', async () => {
    const s = new SqliteStorage(join(await tempDir(), 'big.db'), { synchronous: 'normal' });
    const ops: StorageOp[] = Array.from({ length: 50_000 }, (_, i) => ({ type: 'save', key: `id${i}`, value: bytes(i & 255), owned: true }));
    let turns = 0;
    const tick = setInterval(() => turns++, 0);
    try {
      await s.transaction(ops);
    } finally {
      clearInterval(tick);
    }
    assert.ok(turns > 0, 'a timer fired during the transaction');
    assert.equal(await s.count(), 50_000);
    await s.close();
  });

  test('two storages in one file on different tables do not see each other; a closed storage refuses with TW_CLOSED', async () => {
    const path = join(await tempDir(), 'tables.db');
    const a = new SqliteStorage(path, { table: 'first' });
    const b = new SqliteStorage(path, { table: 'second' });
    await a.save('k', bytes(1));
    assert.deepEqual(await b.keys(), []);
    await a.close();
    await a.close(); // twice is fine
    await assert.rejects(a.load('k'), (err: Error & { code?: string }) => err.code === 'TW_CLOSED');
    await b.close();
  });

  test('bad arguments are typed errors naming the argument', () => {
    const code = (name: string) => (err: unknown) => err instanceof TypeError || err instanceof RangeError ? new RegExp(name).test((err as Error).message) : false;
    assert.throws(() => new SqliteStorage(42 as unknown as string), code('"path"'));
    assert.throws(() => new SqliteStorage(''), code('"path"'));
    assert.throws(() => new SqliteStorage(':memory:', { table: 'x; DROP TABLE y' }), code('options.table'));
    assert.throws(() => new SqliteStorage(':memory:', { synchronous: 'off' as 'full' }), code('options.synchronous'));
    assert.throws(() => new SqliteStorage(':memory:', { busyTimeoutMs: -1 }), code('options.busyTimeoutMs'));
  });

  test('a file that is no SQLite database fails at construction with TW_STORAGE naming the path', async () => {
    const path = join(await tempDir(), 'not-a.db');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(path, 'this is not a database, it is text long enough to have a header of its own...........');
    assert.throws(() => new SqliteStorage(path), (err: Error & { code?: string }) => err.code === 'TW_STORAGE' && err.message.includes(path));
  });

  test('an event store persists only its dirty ids, in one transaction', async () => {
    const sqlite = new SqliteStorage(join(await tempDir(), 'dirty.db'));
    const storage = counting(sqlite);
    const engine = await createEngine({ clock: new TestClock(Date.UTC(2026, 0, 5, 12)), shards: 2, events: { storage } });
    for (let i = 0; i < 1000; i++) engine.events.record(`u${i}`);
    assert.equal(await engine.events.persist(), 1000);
    const before = await sqlite.load('events/u500');
    engine.events.record('u7', 5);
    engine.events.record('u8');
    assert.equal(await engine.events.persist(), 2);
    assert.deepEqual(storage.transactions, [1000, 2]);
    assert.deepEqual(await sqlite.load('events/u500'), before, 'an id not recorded since was not rewritten');
    await engine.close();
    const again = await createEngine({ clock: new TestClock(Date.UTC(2026, 0, 5, 13)), shards: 1, events: { storage: sqlite } });
    assert.equal(await again.events.query('u7').ever().sum(), 6);
    assert.equal(await again.events.query('u999').lastDays(1).sum(), 1);
    await again.close();
    await sqlite.close();
  });
});

describe('FileStorage json format', () => {
  test('the file is JSON a person can read: an event counter reads as its rings; other bytes as base64', async () => {
    const path = join(await tempDir(), 'readable.json');
    const storage = new FileStorage(path, { format: 'json' });
    const engine = await createEngine({ clock: new TestClock(Date.UTC(2026, 0, 5, 12)), shards: 1, events: { storage } });
    engine.events.record('login', 3);
    await engine.events.persist();
    await engine.close();
    await storage.save('raw', bytes(0xc1, 0xff)); // no msgpack
    const doc = JSON.parse(readFileSync(path, 'utf8')) as { encoding: string; count: number; entries: Record<string, unknown> };
    assert.equal(doc.encoding, 'json');
    assert.equal(doc.count, 2);
    const login = doc.entries['events/login'] as { timeZone: string; rings: number[][] };
    assert.equal(login.timeZone, 'UTC');
    assert.ok(login.rings.every((ring) => ring.includes(3)), 'every ring holds the 3 recorded');
    assert.deepEqual(doc.entries.raw, { $bytes: Buffer.from([0xc1, 0xff]).toString('base64') });
    // Read back by a store: the same answers.
    const again = await createEngine({ clock: new TestClock(Date.UTC(2026, 0, 5, 13)), shards: 1, events: { storage: new FileStorage(path, { format: 'json' }) } });
    assert.equal(await again.events.query('login').lastDays(1).sum(), 3);
    await again.close();
  });

  test('a msgpack file opened with format json is read, and rewritten as JSON on the next write (and back)', async () => {
    const path = join(await tempDir(), 'switch.tw');
    await new FileStorage(path).save('k', bytes(0x93, 1, 2, 3)); // msgpack [1, 2, 3]
    const asJson = new FileStorage(path, { format: 'json' });
    assert.deepEqual(await asJson.load('k'), bytes(0x93, 1, 2, 3));
    await asJson.save('j', bytes(0xa1, 0x78)); // "x"
    assert.deepEqual(JSON.parse(readFileSync(path, 'utf8')).entries, { k: [1, 2, 3], j: 'x' });
    const back = new FileStorage(path);
    assert.deepEqual(await back.load('k'), bytes(0x93, 1, 2, 3));
    await back.delete('j');
    assert.equal(readFileSync(path)[0], 0, 'msgpack again: a frame length comes first');
  });

  test('a JSON value shaped like {"$bytes": …} is stored as bytes so that it reads back exactly', async () => {
    const path = join(await tempDir(), 'dollar.json');
    const tricky = new Uint8Array([0x81, 0xa6, ...Buffer.from('$bytes'), 0xa1, 0x41]); // msgpack {"$bytes": "A"}
    await new FileStorage(path, { format: 'json' }).save('t', tricky);
    assert.deepEqual(await new FileStorage(path, { format: 'json' }).load('t'), tricky);
  });

  test('an unknown format option is a typed error', () => {
    assert.throws(() => new FileStorage('/tmp/x', { format: 'yaml' as 'json' }), (err: Error) => err instanceof TypeError && /options\.format/.test(err.message));
  });
});

describe('migrateStorage', () => {
  test('moves an event store from FileStorage to SqliteStorage: every query answers the same after', async () => {
    const dir = await tempDir();
    const file = new FileStorage(join(dir, 'old.tw'));
    const clock = new TestClock(Date.UTC(2026, 2, 1, 9));
    const engine = await createEngine({ clock, shards: 2, events: { storage: file } });
    for (let i = 0; i < 300; i++) engine.events.record(`id${i}`, (i % 7) + 1);
    await engine.close();
    const sqlite = new SqliteStorage(join(dir, 'new.db'));
    await sqlite.save('events/stale', bytes(1)); // held by the target only: removed by the move
    await sqlite.save('other/keep', bytes(2)); // outside the prefix: kept
    assert.equal(await migrateStorage(file, sqlite, { prefix: 'events/' }), 300);
    assert.equal(await sqlite.load('events/stale'), undefined);
    assert.deepEqual(await sqlite.load('other/keep'), bytes(2));
    const moved = await createEngine({ clock, shards: 3, events: { storage: sqlite } });
    for (let i = 0; i < 300; i++) assert.equal(await moved.events.query(`id${i}`).lastDays(1).sum(), (i % 7) + 1);
    await moved.close();
    await sqlite.close();
  });

  test('bad arguments are typed errors naming them', async () => {
    const m = new MemoryStorage();
    await assert.rejects(migrateStorage({} as Storage, m), (err: Error) => err instanceof TypeError && /"from\.save"/.test(err.message));
    await assert.rejects(migrateStorage(m, m), (err: Error) => err instanceof TypeError && /"to"/.test(err.message));
    await assert.rejects(migrateStorage(m, new MemoryStorage(), { prefix: 3 as unknown as string }), (err: Error) => /options\.prefix/.test(err.message));
  });
});
