/**
 * Structure checks over the TypeScript sources: the import graph (every relative import, type-only ones
 * included) must have no cycle, and no source file may pass {@link MAX_LINES} lines unless its header
 * comment says why ("Over 350 lines because …").
 *
 * `node dist/scripts/structure.js` prints the graph's size, any cycle and any long file without a reason,
 * and exits 1 on either. test/scripts/structure.test.ts runs the same checks.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The source directories checked (what ships, plus the benchmarks and these scripts). */
export const SOURCE_DIRS = ['src', 'common', 'workers', 'bench', 'scripts'] as const;
export const MAX_LINES = 350;
/** How a header states why a file is longer than {@link MAX_LINES}. */
const REASON = /Over 350 lines because/;

/** Every `.ts` file under `dirs` of `root`, as paths relative to `root`. */
export function sourceFiles(root: string, dirs: readonly string[] = SOURCE_DIRS): string[] {
  const walk = (dir: string): string[] =>
    readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) => {
      const path = join(dir, e.name);
      if (e.isDirectory()) return walk(path);
      return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
    });
  return dirs.flatMap(walk).sort();
}

/** The relative imports of a source text (import, import type, export … from, side-effect imports). */
export function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?(?:from\s*)?['"](\.{1,2}\/[^'"]+)['"]/gm)) out.push(m[1]!);
  return out;
}

/** The import graph: file → files it imports (relative to `root`, `.js` specifiers mapped to `.ts`). */
export function importGraph(root: string, files: readonly string[]): Map<string, string[]> {
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = readFileSync(join(root, file), 'utf8');
    const targets = importsOf(text)
      .map((spec) => relative(root, resolve(root, dirname(file), spec.replace(/\.js$/, '.ts'))))
      .filter((t) => known.has(t));
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

/** Every cycle of the graph, each once, as the list of files around it (depth-first, Tarjan-free: small graph). */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const cycles: string[][] = [];
  const seen = new Set<string>();
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') {
        const cycle = stack.slice(stack.indexOf(next));
        const key = [...cycle].sort().join('|');
        if (!seen.has(key)) {
          seen.add(key);
          cycles.push([...cycle, next]);
        }
      } else if (!state.has(next)) {
        visit(next);
      }
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
  return cycles;
}

/** Files over {@link MAX_LINES} lines whose header (the first comment) does not say why. */
export function longFilesWithoutReason(root: string, files: readonly string[]): Array<{ file: string; lines: number }> {
  const out: Array<{ file: string; lines: number }> = [];
  for (const file of files) {
    const text = readFileSync(join(root, file), 'utf8');
    const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
    if (lines <= MAX_LINES) continue;
    const header = /^\/\*\*[\s\S]*?\*\//.exec(text)?.[0] ?? '';
    if (!REASON.test(header.replace(/\n \* /g, ' '))) out.push({ file, lines });
  }
  return out;
}

function main(): void {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const files = sourceFiles(root);
  const graph = importGraph(root, files);
  const edges = [...graph.values()].reduce((n, t) => n + t.length, 0);
  const cycles = findCycles(graph);
  const long = longFilesWithoutReason(root, files);
  process.stdout.write(`${files.length} source files, ${edges} relative imports (${SOURCE_DIRS.join(', ')})\n`);
  process.stdout.write(cycles.length === 0 ? 'import cycles: none\n' : `import cycles (${cycles.length}):\n${cycles.map((c) => `  ${c.join(' → ')}`).join('\n')}\n`);
  process.stdout.write(long.length === 0 ? `files over ${MAX_LINES} lines without a reason in their header: none\n` : `files over ${MAX_LINES} lines without a reason in their header:\n${long.map((l) => `  ${l.file} (${l.lines})`).join('\n')}\n`);
  if (cycles.length > 0 || long.length > 0) process.exitCode = 1;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
