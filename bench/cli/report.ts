/** The benchmark CLI's outputs: the progress display, the results table, the JSON report and the SVG chart. */
import type { Measurement } from './scenarios.js';

export interface SideResult extends Measurement {
  readonly name: string;
  readonly opsPerSecond: number;
}

export interface ScenarioResult {
  readonly scenario: string;
  readonly title: string;
  readonly ours: SideResult;
  /** Absent when the peer package is not installed (it is a dev dependency of the benchmark). */
  readonly peer: SideResult | undefined;
  /** ours / peer in ops per second. */
  readonly ratio: number | undefined;
  /** The scenario's baseline side (e.g. the app without a limiter), and ours / baseline. */
  readonly baseline?: SideResult;
  readonly baselineRatio?: number;
  readonly note?: string;
}

export interface Report {
  readonly tool: 'tallyworks bench';
  readonly machine: string;
  readonly node: string;
  readonly shards: number;
  readonly keys: number;
  /** Rounds per side; each side's median round is reported. */
  readonly rounds: number;
  readonly redis: boolean;
  readonly startedAt: string;
  readonly seconds: number;
  readonly results: ScenarioResult[];
}

/**
 * Progress on stderr: a redrawn bar on a terminal; one plain line per step when stderr is not a TTY or
 * `CI` is set (logs then stay readable).
 */
export class Progress {
  private readonly bar: boolean;
  private done = 0;
  constructor(
    private readonly total: number,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {
    this.bar = out.isTTY === true && !process.env.CI;
  }

  start(label: string): void {
    if (this.bar) this.draw(label);
    else this.out.write(`[${this.done + 1}/${this.total}] ${label} …\n`);
  }

  finish(label: string, detail: string): void {
    this.done++;
    if (this.bar) this.draw(`${label}: ${detail}`);
    else this.out.write(`[${this.done}/${this.total}] ${label}: ${detail}\n`);
  }

  end(): void {
    if (this.bar) this.out.write('\r\x1b[2K');
  }

  private draw(label: string): void {
    const width = 24;
    const filled = Math.round((this.done / this.total) * width);
    const text = `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${this.done}/${this.total} ${label}`;
    const columns = this.out.columns ?? 100;
    this.out.write(`\r\x1b[2K${text.slice(0, columns - 1)}`);
  }
}

function rate(opsPerSecond: number): string {
  if (opsPerSecond >= 1e6) return `${(opsPerSecond / 1e6).toFixed(2)} M/s`;
  if (opsPerSecond >= 1e3) return `${(opsPerSecond / 1e3).toFixed(1)} k/s`;
  return `${opsPerSecond.toFixed(0)} /s`;
}

function ms(v: number | undefined): string {
  if (v === undefined) return '–';
  return v >= 1 ? `${v.toFixed(2)} ms` : `${(v * 1000).toFixed(1)} µs`;
}

function bytes(v: number | undefined): string {
  // Heap growth can come out below 0 when memory of an earlier scenario is freed meanwhile: not a reading.
  return v === undefined || v < 0 ? '–' : `${Math.round(v)} B`;
}

/** Redis commands run, and the server's CPU per op, of a side and its peer. */
function redisCell(ours: Measurement, peer: Measurement | undefined): string {
  if (ours.redisCommands === undefined) return '–';
  const cpu = (m: Measurement): string => (m.redisCpuUsPerOp === undefined ? '' : ` · ${m.redisCpuUsPerOp >= 1 ? m.redisCpuUsPerOp.toFixed(1) : m.redisCpuUsPerOp.toPrecision(2)} µs`);
  const theirs = peer?.redisCommands === undefined ? '' : ` (peer ${peer.redisCommands.toLocaleString('en-US')}${cpu(peer)})`;
  return `${ours.redisCommands.toLocaleString('en-US')}${cpu(ours)}${theirs}`;
}

/** The results as a Markdown table (also readable in a terminal). */
export function table(report: Report): string {
  const head = ['scenario', 'Tallyworks', 'peer', 'ratio', 'p50 / p99', 'bytes/key', 'Redis cmds · server CPU/op', 'verified'];
  const rows = report.results.map((r) => [
    r.scenario,
    `${r.ours.name}: ${rate(r.ours.opsPerSecond)}`,
    `${r.peer === undefined ? (r.note ?? '–') : `${r.peer.name}: ${rate(r.peer.opsPerSecond)}`}${r.baseline === undefined ? '' : `; baseline ${r.baseline.name}: ${rate(r.baseline.opsPerSecond)}, ours ${r.baselineRatio!.toFixed(3)}× of it`}`,
    r.ratio === undefined ? '–' : `${r.ratio.toFixed(2)}×`,
    r.ours.p50Ms === undefined ? '–' : `${ms(r.ours.p50Ms)} / ${ms(r.ours.p99Ms)}${r.peer?.p50Ms === undefined ? '' : ` (peer ${ms(r.peer.p50Ms)} / ${ms(r.peer.p99Ms)})`}`,
    `${bytes(r.ours.bytesPerKey)}${r.peer?.bytesPerKey === undefined ? '' : ` (peer ${bytes(r.peer.bytesPerKey)})`}`,
    redisCell(r.ours, r.peer),
    `✓ ${r.ours.verified}`,
  ]);
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * A horizontal bar chart of each scenario's ratio to its peer on a log scale, bars growing from the 1× line
 * (right: faster than the peer, left: slower), so 0.2× and 80× are both readable.
 */
export function chart(report: Report): string {
  const rows = report.results.filter((r) => r.ratio !== undefined);
  const labelWidth = 330;
  const plotWidth = 460;
  const rowHeight = 30;
  const top = 56;
  const bottom = top + rows.length * rowHeight;
  const height = bottom + 44;
  const width = labelWidth + plotWidth + 70;
  const ratios = rows.map((r) => r.ratio!);
  const lo = Math.log10(Math.min(0.1, ...ratios.map((r) => r / 1.5)));
  const hi = Math.log10(Math.max(2, ...ratios.map((r) => r * 1.5)));
  const x = (ratio: number): number => labelWidth + ((Math.log10(ratio) - lo) / (hi - lo)) * plotWidth;
  const one = x(1);
  const ticks: string[] = [];
  for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) {
    const tx = x(10 ** e).toFixed(1);
    ticks.push(`<line x1="${tx}" y1="${top - 4}" x2="${tx}" y2="${bottom + 4}" stroke="#dddddd"/>`, `<text x="${tx}" y="${bottom + 18}" text-anchor="middle" fill="#555555">${10 ** e}×</text>`);
  }
  const bars = rows.map((r, i) => {
    const y = top + i * rowHeight;
    const end = x(r.ratio!);
    const fill = r.ratio! >= 1 ? '#2f855a' : '#c05621';
    return [
      `<text x="${labelWidth - 10}" y="${y + 19}" text-anchor="end">${escapeXml(`${r.scenario} vs ${r.peer!.name}`)}</text>`,
      `<rect x="${Math.min(one, end).toFixed(1)}" y="${y + 5}" width="${Math.max(1, Math.abs(end - one)).toFixed(1)}" height="${rowHeight - 10}" fill="${fill}"/>`,
      `<text x="${(Math.max(one, end) + 6).toFixed(1)}" y="${y + 19}">${r.ratio!.toFixed(2)}×</text>`,
    ].join('\n  ');
  });
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">
  <title>tallyworks bench: ratio to peer (ops/s)</title>
  <rect width="${width}" height="${height}" fill="#ffffff"/>
  <text x="10" y="22" font-size="15" font-weight="bold">tallyworks bench: ops/s as a ratio to the peer (log scale; right of 1× is faster)</text>
  <text x="10" y="40" fill="#555555">${escapeXml(`${report.machine} · ${report.shards} shard(s) · ${report.keys} keys · ${report.startedAt}`)}</text>
  ${ticks.join('\n  ')}
  ${bars.join('\n  ')}
  <line x1="${one.toFixed(1)}" y1="${top - 4}" x2="${one.toFixed(1)}" y2="${bottom + 4}" stroke="#333333" stroke-dasharray="4 3"/>
  <text x="${one.toFixed(1)}" y="${bottom + 34}" text-anchor="middle">peer = 1×</text>
</svg>
`;
}
