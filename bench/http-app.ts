/**
 * The app of the `http` bench scenario, run in its own process (so autocannon, in the bench process, and
 * the app each have a core): an Express 5 app serving `GET /` with no limiter (`bare`), with Tallyworks'
 * middleware (`tallyworks`: a sliding minute, draft-8 headers), or with express-rate-limit and its
 * MemoryStore (`express-rate-limit`, draft-8 headers). Every request is admitted (the limits are far
 * above what a run sends), so the cost measured is the admitting path. It tells its parent the port, and
 * answers `GET /__stats` with what it served and what its limiter decided.
 *
 *   node dist/bench/http-app.js <bare|tallyworks|express-rate-limit>
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createEngine, expressRateLimit, ratePolicy } from '../src/index.js';

export type HttpAppMode = 'bare' | 'tallyworks' | 'express-rate-limit';

/** What the app reports on GET /__stats. */
export interface HttpAppStats {
  readonly served: number;
  /** Decisions its limiter admitted (undefined: no limiter, or one that does not say). */
  readonly admitted: number | undefined;
}

const mode = process.argv[2] as HttpAppMode;
const app = express();
let served = 0;
let admitted: () => number | undefined = () => undefined;
if (mode === 'tallyworks') {
  const engine = await createEngine({ shards: 1 });
  const limiter = engine.rateLimiter({ name: 'http', windowSeconds: 60 }).local.absolute;
  app.use(expressRateLimit({ policy: ratePolicy(limiter, { rate: 1e9 }), skip: (req) => req.url === '/__stats' }));
  admitted = () => limiter.decisions.allowed;
} else if (mode === 'express-rate-limit') {
  const { rateLimit } = await import('express-rate-limit');
  app.use(rateLimit({ windowMs: 60_000, limit: 1e12, standardHeaders: 'draft-8', legacyHeaders: false, skip: (req) => req.path === '/__stats' }));
} else if (mode !== 'bare') {
  throw new Error(`mode must be bare, tallyworks or express-rate-limit; got ${String(mode)}`);
}
app.get('/', (_req, res) => {
  served++;
  res.send('ok');
});
app.get('/__stats', (_req, res) => {
  const stats: HttpAppStats = { served, admitted: admitted() };
  res.json(stats);
});
const server = createServer(app);
server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as AddressInfo).port }));
process.on('disconnect', () => process.exit(0));
