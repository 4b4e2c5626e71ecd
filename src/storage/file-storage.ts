/**
 * File storage: every key in one file, replaced as a whole on each write so that the file is always a
 * complete snapshot. Crash-safe: the new contents go to a temporary file in the same directory, which is
 * fsynced and then renamed over the old one (rename is atomic on POSIX file systems), and the directory is
 * fsynced so that the rename itself survives a power cut. A process killed at any point leaves either the
 * old file or the new one, never a torn one; temporary files left by a process that is no longer running
 * (or by this one) are removed when the storage opens.
 *
 * A temporary file is created exclusively (`wx`, mode 0600) under an unpredictable name
 * (`.<file>.<pid>.<random>.tmp`), so a file or symlink planted under the name is never written through.
 *
 * Format 2 (format 1, one msgpack map, is still read): frames of `[4-byte big-endian length][msgpack]`;
 * the first frame is the header `{ format, version, count }`, then frames of up to {@link FRAME_ENTRIES}
 * `[key, value]` pairs. Any number of keys; reading and writing go frame by frame and yield to the event
 * loop between frames, so a large store does not stall the process.
 *
 * Format `json` (`new FileStorage(path, { format: 'json' })`), for people who want to read their data: one
 * JSON document `{ format, version, encoding: "json", count, entries: { key: value, … } }`, one entry per
 * line, each value the JSON form of its msgpack bytes (an event store's counter reads as its rings), or
 * `{ "$bytes": "<base64>" }` for bytes that JSON cannot give back exactly. Either format is read whatever
 * the option says, so changing the option converts the file on its next write.
 *
 * Writes are queued one after another (a transaction is one write). Suited to stores that fit in memory
 * comfortably — the file is rewritten in full each time; {@link SqliteStorage} writes only what changed.
 */
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { decode, encode } from '../../common/codec.js';
import { argumentRangeError, argumentTypeError, ErrorCode, TallyworksError } from '../../common/errors.js';
import type { Storage, StorageOp } from './storage.js';

const FORMAT = 'tallyworks.file-storage';
const VERSION = 2;
/** Entries per frame: about a quarter of a MB of calendar counters, a few ms to encode. */
const FRAME_ENTRIES = 512;

interface Header {
  format: string;
  version: number;
  count: number;
}

/** The header of a `json` file; its entries follow. */
interface JsonContents extends Header {
  encoding: 'json';
  entries: Record<string, unknown>;
}

export interface FileStorageOptions {
  /** `msgpack` (default: compact, framed) or `json` (readable). */
  format?: 'msgpack' | 'json';
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The JSON form of one stored value: its decoded msgpack when that encodes back to the same bytes. */
function toJson(bytes: Uint8Array): unknown {
  try {
    const value = decode(bytes);
    const text = JSON.stringify(value);
    if (text !== undefined && !(typeof value === 'object' && value !== null && Object.hasOwn(value, '$bytes'))) {
      if (sameBytes(encode(JSON.parse(text)), bytes)) return value;
    }
  } catch {
    // not msgpack: kept as bytes
  }
  return { $bytes: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') };
}

function fromJson(value: unknown): Uint8Array {
  if (typeof value === 'object' && value !== null && Object.hasOwn(value, '$bytes')) {
    const b64 = (value as { $bytes: unknown }).$bytes;
    if (typeof b64 !== 'string') throw new TypeError('a "$bytes" value that is not a base64 string');
    return new Uint8Array(Buffer.from(b64, 'base64'));
  }
  return encode(value);
}

/** Format 1: one msgpack map of every entry. */
interface ContentsV1 {
  format: string;
  version: 1;
  entries: Record<string, Uint8Array>;
}

/** True when a temporary file named `<pid>.<token>.tmp` belongs to another process that is still running. */
function writerAlive(rest: string): boolean {
  const pid = Number(rest.slice(0, rest.indexOf('.')));
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** One frame: its length, then its msgpack bytes. */
function frame(value: unknown): Uint8Array {
  const body = encode(value);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

export class FileStorage implements Storage {
  /** The snapshot file. */
  readonly path: string;
  /** The format this storage writes. */
  readonly format: 'msgpack' | 'json';
  private map: Map<string, Uint8Array> | undefined;
  private opening: Promise<Map<string, Uint8Array>> | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(path: string, options: FileStorageOptions = {}) {
    // Described by the shared helper: `String(path)` itself throws for a value such as { toString: 0 }.
    if (typeof path !== 'string') throw argumentTypeError('path', 'a non-empty file path', path);
    if (path.length === 0) throw argumentRangeError('path', 'a non-empty file path', path);
    if (typeof options !== 'object' || options === null) throw argumentTypeError('options', 'an object', options);
    const format = options.format ?? 'msgpack';
    if (format !== 'msgpack' && format !== 'json') throw argumentTypeError('options.format', "'msgpack' or 'json'", format);
    this.path = path;
    this.format = format;
  }

  private entries(): Promise<Map<string, Uint8Array>> {
    if (this.map !== undefined) return Promise.resolve(this.map);
    this.opening ??= this.read().then((m) => (this.map = m));
    return this.opening;
  }

  private async read(): Promise<Map<string, Uint8Array>> {
    await this.removeLeftovers();
    let bytes: Buffer;
    try {
      bytes = await readFile(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw new TallyworksError(ErrorCode.STORAGE, `cannot read ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    try {
      return await this.parse(bytes);
    } catch (err) {
      if (err instanceof TallyworksError) throw err;
      throw new TallyworksError(ErrorCode.STORAGE, `${this.path} is not a Tallyworks storage file (${(err as Error).message})`, { cause: err });
    }
  }

  private async parse(bytes: Buffer): Promise<Map<string, Uint8Array>> {
    const notOurs = (why: string): TallyworksError => new TallyworksError(ErrorCode.STORAGE, `${this.path} is not a version ${VERSION} Tallyworks storage file (${why})`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let at = 0;
    const next = (): unknown => {
      if (at + 4 > bytes.length) throw notOurs('it ends inside a frame');
      const length = view.getUint32(at);
      if (at + 4 + length > bytes.length) throw notOurs('it ends inside a frame');
      const value = decode(bytes.subarray(at + 4, at + 4 + length));
      at += 4 + length;
      return value;
    };
    if (bytes.length > 0 && bytes[0] === 0x7b) return this.parseJson(bytes, notOurs);
    // Format 1 is one msgpack map (its first byte is a map marker, never a frame length's high byte 0).
    if (bytes.length > 0 && bytes[0] !== 0) {
      const v1 = decode<ContentsV1>(bytes);
      if (v1?.format !== FORMAT || v1.version !== 1 || typeof v1.entries !== 'object' || v1.entries === null) throw notOurs('no header');
      return new Map(Object.entries(v1.entries).map(([k, v]) => [k, new Uint8Array(v)]));
    }
    const header = next() as Header;
    if (header?.format !== FORMAT || header.version !== VERSION || !Number.isSafeInteger(header.count) || header.count < 0) throw notOurs('no header');
    const map = new Map<string, Uint8Array>();
    while (map.size < header.count) {
      const pairs = next();
      if (!Array.isArray(pairs) || pairs.length === 0) throw notOurs('a frame that holds no entries');
      for (const pair of pairs as unknown[]) {
        if (!Array.isArray(pair) || typeof pair[0] !== 'string' || !(pair[1] instanceof Uint8Array)) throw notOurs('an entry that is no [key, bytes] pair');
        map.set(pair[0], new Uint8Array(pair[1]));
      }
      await yieldTurn();
    }
    if (map.size !== header.count || at !== bytes.length) throw notOurs(`the header counts ${header.count} entries`);
    return map;
  }

  /** A `json` file ('{' first: never the first byte of a msgpack file). */
  private async parseJson(bytes: Buffer, notOurs: (why: string) => TallyworksError): Promise<Map<string, Uint8Array>> {
    const doc = JSON.parse(bytes.toString('utf8')) as JsonContents;
    if (doc?.format !== FORMAT || doc.version !== VERSION || doc.encoding !== 'json' || typeof doc.entries !== 'object' || doc.entries === null) {
      throw notOurs('no JSON header');
    }
    const map = new Map<string, Uint8Array>();
    let i = 0;
    for (const [key, value] of Object.entries(doc.entries)) {
      map.set(key, fromJson(value));
      if ((++i & 0x1fff) === 0) await yieldTurn();
    }
    if (map.size !== doc.count) throw notOurs(`the header counts ${doc.count} entries and ${map.size} follow`);
    return map;
  }

  private async removeLeftovers(): Promise<void> {
    const dir = dirname(this.path);
    const prefix = `.${basename(this.path)}.`;
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    const leftovers = names.filter((n) => n.startsWith(prefix) && n.endsWith('.tmp') && !writerAlive(n.slice(prefix.length)));
    await Promise.all(leftovers.map((n) => rm(join(dir, n), { force: true })));
  }

  /**
   * Writes the file as the entries with `ops` applied, after every earlier write; then applies `ops` to the
   * entries in memory (a failed write changes nothing). No copy of the whole map is made: the file is
   * written from the map and the ops together.
   */
  private write(ops: readonly StorageOp[]): Promise<void> {
    const run = this.queue.then(async () => {
      const m = await this.entries();
      const changed = new Map<string, Uint8Array | undefined>();
      let i = 0;
      for (const op of ops) {
        changed.set(op.key, op.type === 'save' ? op.value : undefined);
        if ((++i & 0x1fff) === 0) await yieldTurn();
      }
      await this.commit(m, changed);
      let n = 0;
      for (const [key, value] of changed) {
        if (value === undefined) m.delete(key);
        else m.set(key, value);
        if ((++n & 0x3fff) === 0) await yieldTurn();
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Writes `m` with `changed` applied (undefined: deleted) to a new file and renames it over the old one. */
  private async commit(m: ReadonlyMap<string, Uint8Array>, changed: ReadonlyMap<string, Uint8Array | undefined>): Promise<void> {
    const dir = dirname(this.path);
    const tmp = join(dir, `.${basename(this.path)}.${process.pid}.${randomBytes(12).toString('hex')}.tmp`);
    let count = 0;
    let i = 0;
    for (const key of m.keys()) {
      if (!changed.has(key)) count++;
      if ((++i & 0x3fff) === 0) await yieldTurn();
    }
    for (const value of changed.values()) if (value !== undefined) count++;
    try {
      const file = await open(tmp, 'wx', 0o600);
      try {
        const json = this.format === 'json';
        const header: Header = { format: FORMAT, version: VERSION, count };
        if (json) await file.write(`${JSON.stringify({ ...header, encoding: 'json' }).slice(0, -1)},"entries":{`);
        else await file.write(frame(header));
        let pairs: Array<[string, Uint8Array]> = [];
        let first = true;
        const flush = async (): Promise<void> => {
          if (json) {
            let text = '';
            for (const [key, value] of pairs) {
              text += `${first ? '' : ','}\n${JSON.stringify(key)}:${JSON.stringify(toJson(value))}`;
              first = false;
            }
            await file.write(text);
          } else await file.write(frame(pairs));
          pairs = [];
        };
        for (const [key, value] of m) {
          if (changed.has(key)) continue;
          pairs.push([key, value]);
          if (pairs.length === FRAME_ENTRIES) await flush();
        }
        for (const [key, value] of changed) {
          if (value === undefined) continue;
          pairs.push([key, value]);
          if (pairs.length === FRAME_ENTRIES) await flush();
        }
        if (pairs.length > 0) await flush();
        if (json) await file.write('\n}}\n');
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(tmp, this.path);
      const d = await open(dir, 'r');
      try {
        await d.sync();
      } finally {
        await d.close();
      }
    } catch (err) {
      // Only the file this write created is removed: with "wx", a name that existed was never opened.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') await rm(tmp, { force: true });
      throw new TallyworksError(ErrorCode.STORAGE, `cannot write ${this.path}: ${(err as Error).message}`, { cause: err });
    }
  }

  async save(key: string, value: Uint8Array): Promise<void> {
    await this.write([{ type: 'save', key, value: value.slice() }]);
  }

  async load(key: string): Promise<Uint8Array | undefined> {
    await this.queue;
    return (await this.entries()).get(key)?.slice();
  }

  async delete(key: string): Promise<void> {
    await this.write([{ type: 'delete', key }]);
  }

  async keys(prefix = ''): Promise<string[]> {
    await this.queue;
    return [...(await this.entries()).keys()].filter((k) => k.startsWith(prefix));
  }

  async transaction(ops: readonly StorageOp[]): Promise<void> {
    // Copied now (the caller may change its buffers once this returns), unless handed over.
    await this.write(ops.map((op) => (op.type === 'save' && op.owned !== true ? { ...op, value: op.value.slice() } : op)));
  }
}
