/**
 * The `http` scenario: an Express app on loopback (its own process: bench/http-app.ts) driven by
 * autocannon from this one, bare, with Tallyworks' middleware, and with express-rate-limit's MemoryStore,
 * in one run. Requests per second and p50/p99 latency per side; each side verifies that every request was
 * answered 200 and served by the route (and, for Tallyworks, admitted by its limiter).
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { HttpAppMode, HttpAppStats } from '../http-app.js';
import type { Measurement, Scenario, Side } from './scenario.js';

const APP = fileURLToPath(new URL('../http-app.js', import.meta.url));
/** Concurrent connections autocannon keeps open (no pipelining). */
const CONNECTIONS = 32;
/**
 * autocannon's sampling interval, ms. It notices that `amount` requests are done only at a sample tick:
 * at its default (1 s) every run lasted a whole number of seconds, and the timings were that rounding.
 */
const SAMPLE_MS = 10;

async function drive(mode: HttpAppMode, requests: number): Promise<Measurement> {
  const { default: autocannon } = await import('autocannon');
  const child = fork(APP, [mode], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  try {
    const [message] = (await Promise.race([once(child, 'message'), once(child, 'exit').then(([code]) => Promise.reject(new Error(`the ${mode} app exited (${String(code)}) before listening`)))])) as [{ port: number }];
    const url = `http://127.0.0.1:${message.port}`;
    const warm = await autocannon({ url, amount: Math.min(2000, requests), connections: CONNECTIONS, sampleInt: SAMPLE_MS });
    // Timed here (autocannon's own `duration` is whole seconds), to within a sample tick.
    const start = performance.now();
    const result = await autocannon({ url, amount: requests, connections: CONNECTIONS, sampleInt: SAMPLE_MS });
    const ms = performance.now() - start;
    const stats = (await (await fetch(`${url}/__stats`)).json()) as HttpAppStats;
    const answered = result.requests.total;
    if (result.errors > 0 || result.timeouts > 0 || result.non2xx > 0 || answered !== requests) {
      throw new Error(`${mode}: ${answered} of ${requests} answered, ${result.non2xx} not 2xx, ${result.errors} errors, ${result.timeouts} timeouts`);
    }
    const total = warm.requests.total + answered;
    if (stats.served !== total) throw new Error(`${mode}: the route served ${stats.served} of ${total} requests`);
    if (mode === 'tallyworks' && stats.admitted !== total) throw new Error(`tallyworks: the limiter admitted ${stats.admitted} of ${total} requests`);
    return {
      ops: answered,
      ms,
      p50Ms: result.latency.p50,
      p99Ms: result.latency.p99,
      verified: `${total.toLocaleString('en-US')} requests total, all 200${mode === 'tallyworks' ? ' and allowed' : ''}`,
    };
  } finally {
    child.disconnect();
    if (child.exitCode === null) await once(child, 'exit');
  }
}

const side = (name: string, mode: HttpAppMode): Side => ({ name, run: (_ctx, ops) => drive(mode, ops) });

export const httpScenario: Scenario = {
  name: 'http',
  title: 'HTTP requests through Express 5 on loopback (autocannon, 32 connections): the limiter middleware',
  redis: false,
  defaultOps: 40_000,
  peerShare: 1,
  ours: side('Express + expressRateLimit (Tallyworks)', 'tallyworks'),
  peer: side('Express + express-rate-limit MemoryStore', 'express-rate-limit'),
  baseline: side('Express, no limiter', 'bare'),
  requires: ['express', 'express-rate-limit', 'autocannon'],
};
