/**
 * SQLite storage on better-sqlite3 (an optional peer dependency, version 12): one row per key, so a persist
 * writes only the keys it is given (an event store's dirty ids) — unlike {@link FileStorage}, which
 * rewrites its whole file on every write.
 *
 * - WAL journal, checkpointed every `checkpointPages` pages; `synchronous` FULL by default (each committed transaction survives a power cut; NORMAL
 *   survives a killed process but may lose the last commits on power loss).
 * - A transaction is one SQLite transaction (`BEGIN IMMEDIATE … COMMIT`): a process killed at any moment
 *   leaves the database as it was before or after it. Large transactions are applied in slices that yield
 *   to the event loop between them, so a big persist does not stall the process; loads and listings wait
 *   for the writes queued before them.
 * - The database file is opened when the storage is constructed (errors then are TW_STORAGE); `close()`
 *   closes it once the queued writes are done.
 */
import { createRequire } from 'node:module';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { argumentRangeError, argumentTypeError, ErrorCode, TallyworksError } from '../../common/errors.js';
import type { Storage, StorageOp } from './storage.js';

/** Statements per slice of a transaction before the event loop gets a turn. */
const SLICE = 2048;
const TABLE_RULE = 'a table name of letters, digits and _ (not starting with a digit)';

/** The parts of better-sqlite3 this module uses. */
interface Statement {
  run(...params: unknown[]): unknown;
  get(...params: unknown[]): unknown;
  pluck(on?: boolean): Statement;
  iterate(...params: unknown[]): IterableIterator<unknown>;
}
interface Database {
  pragma(source: string, options?: { simple?: boolean }): unknown;
  exec(source: string): unknown;
  prepare(source: string): Statement;
  close(): unknown;
  readonly inTransaction: boolean;
}
type DatabaseConstructor = new (path: string, options?: { timeout?: number }) => Database;

let driver: DatabaseConstructor | undefined;
/** better-sqlite3, loaded on first use; TW_MISSING_DEPENDENCY naming it when it is not installed. */
function loadDriver(): DatabaseConstructor {
  if (driver !== undefined) return driver;
  try {
    driver = createRequire(import.meta.url)('better-sqlite3') as DatabaseConstructor;
    return driver;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'MODULE_NOT_FOUND' ? 'it is not installed' : `it failed to load (${(err as Error).message})`;
    throw new TallyworksError(
      ErrorCode.MISSING_DEPENDENCY,
      `SqliteStorage needs the optional peer dependency better-sqlite3, version 12, and ${why}: npm install better-sqlite3@12 (version 13 needs Node 22)`,
      { cause: err },
    );
  }
}

export interface SqliteStorageOptions {
  /** Table of the key/value rows (created if absent). Default `tallyworks`. Several storages may share a file with different tables. */
  table?: string;
  /** `full` (default) or `normal`: see the module notes. */
  synchronous?: 'full' | 'normal';
  /** How long a write waits for another connection's lock before failing, in ms. Default 5000. */
  busyTimeoutMs?: number;
  /**
   * WAL pages after which a commit checkpoints the WAL into the database (SQLite's wal_autocheckpoint).
   * Default 10000 (about 40 MB of WAL): a checkpoint syncs the database file, so persists of a few thousand
   * ids checkpoint once in several commits instead of at every one (SQLite's own default is 1000).
   */
  checkpointPages?: number;
}

export class SqliteStorage implements Storage {
  /** The database file (`:memory:` for an in-memory database). */
  readonly path: string;
  private readonly db: Database;
  private readonly put: Statement;
  private readonly get: Statement;
  private readonly drop: Statement;
  private readonly from: Statement;
  private readonly rows: Statement;
  private closing: Promise<void> | undefined;
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(path: string, options: SqliteStorageOptions = {}) {
    if (typeof path !== 'string') throw argumentTypeError('path', 'a non-empty file path', path);
    if (path.length === 0) throw argumentRangeError('path', 'a non-empty file path', path);
    if (typeof options !== 'object' || options === null) throw argumentTypeError('options', 'an object', options);
    const table = options.table ?? 'tallyworks';
    if (typeof table !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(table)) throw argumentTypeError('options.table', TABLE_RULE, table);
    const synchronous = options.synchronous ?? 'full';
    if (synchronous !== 'full' && synchronous !== 'normal') throw argumentTypeError('options.synchronous', "'full' or 'normal'", synchronous);
    const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    if (!(typeof busyTimeoutMs === 'number' && Number.isSafeInteger(busyTimeoutMs) && busyTimeoutMs >= 0)) {
      throw argumentRangeError('options.busyTimeoutMs', 'an integer number of ms ≥ 0', busyTimeoutMs);
    }
    const checkpointPages = options.checkpointPages ?? 10_000;
    if (!(typeof checkpointPages === 'number' && Number.isSafeInteger(checkpointPages) && checkpointPages >= 1)) {
      throw argumentRangeError('options.checkpointPages', 'an integer ≥ 1', checkpointPages);
    }
    const Driver = loadDriver();
    this.path = path;
    try {
      this.db = new Driver(path, { timeout: busyTimeoutMs });
      this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${synchronous.toUpperCase()}`);
      this.db.pragma(`wal_autocheckpoint = ${checkpointPages}`);
      this.db.exec(`CREATE TABLE IF NOT EXISTS "${table}" (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID`);
      this.put = this.db.prepare(`INSERT INTO "${table}" (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`);
      this.get = this.db.prepare(`SELECT value FROM "${table}" WHERE key = ?`).pluck();
      this.drop = this.db.prepare(`DELETE FROM "${table}" WHERE key = ?`);
      this.from = this.db.prepare(`SELECT key FROM "${table}" WHERE key >= ? ORDER BY key`).pluck();
      this.rows = this.db.prepare(`SELECT count(*) FROM "${table}"`).pluck();
    } catch (err) {
      throw this.failure('open', err);
    }
  }

  private failure(what: string, err: unknown): TallyworksError {
    if (err instanceof TallyworksError) return err;
    return new TallyworksError(ErrorCode.STORAGE, `SQLite storage ${this.path}: cannot ${what}: ${(err as Error).message}`, { cause: err });
  }

  private usable(what: string): void {
    if (this.closed) throw new TallyworksError(ErrorCode.CLOSED, `SQLite storage ${this.path} is closed (${what})`);
  }

  /** Runs `work` after every write queued before it. */
  private queued<T>(what: string, work: () => Promise<T> | T): Promise<T> {
    const run = this.queue.then(() => {
      this.usable(what);
      return work();
    });
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run.catch((err: unknown) => {
      throw this.failure(what, err);
    });
  }

  /** Applies `ops` in one SQLite transaction, in slices that yield to the event loop. */
  private async apply(ops: readonly StorageOp[]): Promise<void> {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      for (let i = 0; i < ops.length; i++) {
        const op = ops[i]!;
        if (op.type === 'save') this.put.run(op.key, op.value);
        else this.drop.run(op.key);
        if ((i + 1) % SLICE === 0 && i + 1 < ops.length) await yieldTurn();
      }
      this.db.exec('COMMIT');
    } catch (err) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw err;
    }
  }

  save(key: string, value: Uint8Array): Promise<void> {
    // better-sqlite3 copies the bytes into SQLite during run(): the caller may change its buffer after.
    return this.queued(`save ${JSON.stringify(key)}`, () => this.apply([{ type: 'save', key, value }]));
  }

  load(key: string): Promise<Uint8Array | undefined> {
    return this.queued(`load ${JSON.stringify(key)}`, () => {
      const v = this.get.get(key) as Buffer | undefined;
      return v === undefined ? undefined : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    });
  }

  delete(key: string): Promise<void> {
    return this.queued(`delete ${JSON.stringify(key)}`, () => this.apply([{ type: 'delete', key }]));
  }

  keys(prefix = ''): Promise<string[]> {
    return this.queued('list keys', () => {
      const out: string[] = [];
      // Keys sort by their bytes: those with the prefix come first from `key >= prefix`, in one run.
      for (const key of this.from.iterate(prefix) as IterableIterator<string>) {
        if (!key.startsWith(prefix)) break;
        out.push(key);
      }
      return out;
    });
  }

  transaction(ops: readonly StorageOp[]): Promise<void> {
    // The values are read when their slice runs: copied now, unless handed over (the caller may reuse them).
    const own = ops.map((op) => (op.type === 'save' && op.owned !== true ? { ...op, value: op.value.slice() } : op));
    return this.queued(`write a transaction of ${ops.length} ops`, () => this.apply(own));
  }

  /** Rows held. */
  count(): Promise<number> {
    return this.queued('count', () => this.rows.get() as number);
  }

  /** Closes the database once the writes queued before are done. Later calls fail with TW_CLOSED. */
  close(): Promise<void> {
    this.closing ??= this.queued('close', () => {
      this.closed = true;
      this.db.close();
    });
    return this.closing;
  }
}
