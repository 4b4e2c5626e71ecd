/**
 * Prometheus text exposition (format 0.0.4): metric families of samples, written with escaped label values
 * and help texts. No dependency: engine.metrics() writes it, and the prom-client collector hands the same
 * families to a prom-client registry.
 */

export type MetricType = 'counter' | 'gauge';

export interface Sample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface MetricFamily {
  /** The full name, `tallyworks_…` (counters end in `_total`). */
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly samples: readonly Sample[];
}

const escapeLabel = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const escapeHelp = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');

function valueText(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** The families as exposition text: HELP, TYPE, then one line per sample; a family without samples is left out. */
export function renderMetrics(families: readonly MetricFamily[]): string {
  const lines: string[] = [];
  for (const f of families) {
    if (f.samples.length === 0) continue;
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const names = Object.keys(s.labels);
      const labels = names.length === 0 ? '' : `{${names.map((n) => `${n}="${escapeLabel(s.labels[n]!)}"`).join(',')}}`;
      lines.push(`${f.name}${labels} ${valueText(s.value)}`);
    }
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}
