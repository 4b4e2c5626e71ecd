/**
 * An example service: an Express app limited by Tallyworks, with its metrics on /metrics.
 *
 *   npm run example:http                                  # embedded: limits in this process
 *   npm run example:http -- --redis redis://127.0.0.1:6379 # limits shared by every instance on that Redis
 *
 * Options: `--port <n>` (default 3000; 0 picks a free one), `--redis <url>`. It prints the address it
 * listens on, then serves:
 *   GET /            60 requests a minute per client (IPv6 clients grouped by /64), RateLimit headers (draft-8)
 *   POST /login      5 a minute and 20 an hour per client (two policies in one check: both named in the headers)
 *   GET /metrics     the engine's metrics, Prometheus text
 * SIGTERM or SIGINT closes the server, then the engine (delivering what it holds).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import express from 'express';
import { closeOnSignals, createEngine, expressRateLimit, ratePolicy } from '../src/index.js';

const { values } = parseArgs({ options: { port: { type: 'string', default: '3000' }, redis: { type: 'string' } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`--port must be a port number, got ${values.port}`);

const engine = await createEngine(values.redis === undefined ? {} : { redis: values.redis, prefix: 'example' });
const api = engine.rateLimiter({ name: 'api', windowSeconds: 60 });
const loginPerMinute = engine.rateLimiter({ name: 'login-minute', windowSeconds: 60 });
const loginPerHour = engine.rateLimiter({ name: 'login-hour', windowSeconds: 3600 });
// With Redis, the hybrid provider decides on this instance's share of each limit, synced every 10 ms
// (no Redis round trip per request), so every instance on the Redis shares the limits. Embedded, it is
// the local provider.
const apiPolicy = ratePolicy(api.hybrid.absolute, { rate: 1, name: 'api' });
// In Redis, limiters of one window share their keys: the login policies count under keys of their own.
const loginPolicies = [
  ratePolicy(loginPerMinute.hybrid.absolute, { rate: 5 / 60, name: 'per-minute', keyPrefix: 'login/' }),
  ratePolicy(loginPerHour.hybrid.absolute, { rate: 20 / 3600, name: 'per-hour', keyPrefix: 'login/' }),
];

const app = express();
app.get('/', expressRateLimit({ policy: apiPolicy }), (_req, res) => void res.send('hello\n'));
app.post('/login', expressRateLimit({ policy: loginPolicies }), (_req, res) => void res.send('welcome\n'));
app.get('/metrics', async (_req, res) => {
  res.type('text/plain; version=0.0.4').send(await engine.metrics());
});

const server = createServer(app);
server.listen(port, '127.0.0.1', () => {
  const { port: bound } = server.address() as AddressInfo;
  console.log(`listening on http://127.0.0.1:${bound} (${values.redis === undefined ? 'embedded' : `Redis at ${values.redis}`})`);
});
closeOnSignals([
  {
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  },
  engine,
]);
