/**
 * The engine's metrics in a prom-client (15) registry: `registerMetrics(engine, register)` adds one
 * metric per family (the names of METRICS) whose values are read when the registry is scraped; one scrape
 * reads the engine once for all of them. prom-client is not imported: a registry is anything with
 * `registerMetric` (prom-client's `Registry`, and its default `register`).
 */
import { argumentTypeError } from '../../common/errors.js';
import type { Engine } from '../engine.js';
import type { MetricFamily } from './exposition.js';
import { checkMetricsOptions, METRICS, type MetricName, type MetricsOptions } from './engine-metrics.js';

/** What prom-client's Registry offers that the collector uses. */
export interface PromRegistryLike {
  registerMetric(metric: never): void;
  removeSingleMetric?(name: string): void;
}

/** A metric as prom-client's registry reads it (its `get()` is called at every scrape). */
interface PromMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly aggregator: 'sum';
  get(): Promise<{ name: string; help: string; type: 'counter' | 'gauge'; aggregator: 'sum'; values: Array<{ labels: Record<string, string>; value: number }> }>;
  reset(): void;
}

/**
 * Registers the engine's metric families into `registry`; returns a function that removes them again. A
 * closed engine's metrics have no values (a scrape of the registry still succeeds).
 */
export function registerMetrics(engine: Engine, registry: PromRegistryLike, options?: MetricsOptions): () => void {
  if (typeof (registry as { registerMetric?: unknown } | null)?.registerMetric !== 'function') {
    throw argumentTypeError('registry', "a prom-client Registry (or prom-client's register)", registry);
  }
  checkMetricsOptions(options);
  // The metrics of one scrape are read together (prom-client calls every get() in the same turn).
  let scrape: Promise<Map<string, MetricFamily>> | undefined;
  const families = (): Promise<Map<string, MetricFamily>> => {
    scrape ??= engine.metricFamilies(options).then(
      (list) => new Map(list.map((f) => [f.name, f])),
      () => new Map(), // closed: no values
    );
    const current = scrape;
    void current.finally(() => setImmediate(() => scrape === current && (scrape = undefined)).unref());
    return current;
  };
  const names: string[] = [];
  for (const key of Object.keys(METRICS) as MetricName[]) {
    const { type, help } = METRICS[key];
    const name = `tallyworks_${key}`;
    const metric: PromMetric & { name: string } = {
      name,
      help,
      type,
      aggregator: 'sum',
      get: async () => {
        const f = (await families()).get(name);
        // `metric.name`, not `name`: an OpenMetrics registry renames a counter (drops `_total`, which it
        // writes back on every sample).
        return { name: metric.name, help, type, aggregator: 'sum', values: (f?.samples ?? []).map((s) => ({ labels: { ...s.labels }, value: s.value })) };
      },
      reset: () => undefined,
    };
    registry.registerMetric(metric as never);
    names.push(name);
  }
  return () => {
    for (const name of names) registry.removeSingleMetric?.(name);
  };
}
