/**
 * File storage: every key in one msgpack file, replaced as a whole on each write so that the file is always
 * a complete snapshot. Crash-safe: the new contents go to a temporary file in the same directory, which is
 * fsynced and then renamed over the old one (rename is atomic on POSIX file systems), and the directory is
 * fsynced so that the rename itself survives a power cut. A process killed at any point leaves either the
 * old file or the new one, never a torn one; temporary files left by a process that is no longer running
 * (or by this one) are removed when the storage opens.
 *
 * Writes are queued one after another (a transaction is one write). Suited to stores that fit in memory
 * comfortably — the file is rewritten in full each time.
 */
import { open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { decode, encode } from '../../common/codec.js';
import { ErrorCode, TallyworksError } from '../../common/errors.js';
import type { Storage, StorageOp } from './storage.js';

const FORMAT = 'tallyworks.file-storage';
const VERSION = 1;

interface FileContents {
  format: string;
  version: number;
  entries: Record<string, Uint8Array>;
}

let tmpCounter = 0;

/** True when a temporary file named `<pid>.<n>.tmp` belongs to another process that is still running. */
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

export class FileStorage implements Storage {
  /** The snapshot file. */
  readonly path: string;
  private map: Map<string, Uint8Array> | undefined;
  private opening: Promise<Map<string, Uint8Array>> | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(path: string) {
    if (typeof path !== 'string' || path.length === 0) {
      throw new TallyworksError(ErrorCode.INVALID_ARGUMENT, `argument "path" must be a non-empty file path; got ${String(path)}`);
    }
    this.path = path;
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
    let contents: FileContents;
    try {
      contents = decode<FileContents>(bytes);
    } catch (err) {
      throw new TallyworksError(ErrorCode.STORAGE, `${this.path} is not a Tallyworks storage file (${(err as Error).message})`, { cause: err });
    }
    if (contents?.format !== FORMAT || contents.version !== VERSION || typeof contents.entries !== 'object') {
      throw new TallyworksError(ErrorCode.STORAGE, `${this.path} is not a version ${VERSION} Tallyworks storage file`);
    }
    return new Map(Object.entries(contents.entries).map(([k, v]) => [k, new Uint8Array(v)]));
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

  /** Runs `change` on the entries and writes the file, after every earlier write. */
  private write(change: (m: Map<string, Uint8Array>) => void): Promise<void> {
    const run = this.queue.then(async () => {
      const m = await this.entries();
      const next = new Map(m);
      change(next);
      await this.commit(next);
      this.map = next;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async commit(m: Map<string, Uint8Array>): Promise<void> {
    const contents: FileContents = { format: FORMAT, version: VERSION, entries: Object.fromEntries(m) };
    const bytes = encode(contents);
    const dir = dirname(this.path);
    const tmp = join(dir, `.${basename(this.path)}.${process.pid}.${tmpCounter++}.tmp`);
    try {
      const file = await open(tmp, 'w');
      try {
        await file.writeFile(bytes);
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
      await rm(tmp, { force: true });
      throw new TallyworksError(ErrorCode.STORAGE, `cannot write ${this.path}: ${(err as Error).message}`, { cause: err });
    }
  }

  async save(key: string, value: Uint8Array): Promise<void> {
    const copy = value.slice();
    await this.write((m) => m.set(key, copy));
  }

  async load(key: string): Promise<Uint8Array | undefined> {
    await this.queue;
    return (await this.entries()).get(key)?.slice();
  }

  async delete(key: string): Promise<void> {
    await this.write((m) => m.delete(key));
  }

  async keys(prefix = ''): Promise<string[]> {
    await this.queue;
    return [...(await this.entries()).keys()].filter((k) => k.startsWith(prefix));
  }

  async transaction(ops: readonly StorageOp[]): Promise<void> {
    const copies = ops.map((op) => (op.type === 'save' ? { ...op, value: op.value.slice() } : op));
    await this.write((m) => {
      for (const op of copies) {
        if (op.type === 'save') m.set(op.key, op.value);
        else m.delete(op.key);
      }
    });
  }
}
