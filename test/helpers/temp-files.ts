/** Temporary directories for tests, and the temporary files a FileStorage leaves while it writes. */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after } from 'node:test';

const tempDirs: string[] = [];
/** A fresh temporary directory, removed after the file's tests. */
export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tw-persist-'));
  tempDirs.push(dir);
  return dir;
}
after(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** Temporary files a FileStorage at `path` writes before renaming: `.<name>.<pid>.<n>.tmp`. */
export async function tmpFilesOf(path: string): Promise<string[]> {
  const dir = join(path, '..');
  const prefix = `.${basename(path)}.`;
  return (await readdir(dir)).filter((n) => n.startsWith(prefix) && n.endsWith('.tmp'));
}
