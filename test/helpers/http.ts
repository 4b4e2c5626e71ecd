/**
 * Real HTTP servers on loopback for the middleware tests: one app per framework (Express 4, Express 5,
 * Fastify 5, node:http) with the Tallyworks limiter in front of one route, and a fetch that returns the
 * status, the headers and the body. Every server trusts X-Forwarded-For, so a test can speak for any
 * client address (IPv6 ones included) over a real socket.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express5 from 'express';
import express4 from 'express4';
import Fastify from 'fastify';
import { expressRateLimit, fastifyRateLimit, type HttpRateLimitOptions, ipKey, withRateLimit } from '../../src/index.js';

export const FRAMEWORKS = ['express4', 'express5', 'fastify', 'node'] as const;
export type Framework = (typeof FRAMEWORKS)[number];

export interface Served {
  readonly url: string;
  close(): Promise<void>;
}

/** Listens on a free loopback port; `close()` ends every connection and the server. */
export async function listening(server: Server): Promise<Served> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** The client address a node:http request speaks for: the first X-Forwarded-For entry, else the socket's. */
export function forwardedFor(req: IncomingMessage): string {
  const xff = req.headers['x-forwarded-for'];
  const first = (Array.isArray(xff) ? xff[0] : xff)?.split(',')[0]?.trim();
  return first || (req.socket.remoteAddress ?? 'unknown');
}

/** Serves `GET /` ("ok") behind the limiter on `framework`. */
export async function serve(framework: Framework, options: HttpRateLimitOptions<never, never>): Promise<Served> {
  // The options are framework-neutral in these tests (the callbacks read nothing framework-specific).
  const o = options as HttpRateLimitOptions<any, any>;
  switch (framework) {
    case 'express4':
    case 'express5': {
      const app = framework === 'express4' ? express4() : express5();
      app.set('trust proxy', true);
      app.use(expressRateLimit(o));
      app.get('/', (_req, res) => void res.send('ok'));
      return listening(createServer(app));
    }
    case 'fastify': {
      const app = Fastify({ trustProxy: true });
      await app.register(fastifyRateLimit, o);
      app.get('/', async () => 'ok');
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as AddressInfo;
      return { url: `http://127.0.0.1:${port}`, close: () => app.close() };
    }
    case 'node': {
      const handler = (_req: IncomingMessage, res: ServerResponse): void => void res.end('ok');
      // node:http knows no proxies: the test's key reads X-Forwarded-For, grouped as the default key is.
      return listening(createServer(withRateLimit(handler, { key: (req) => ipKey(forwardedFor(req), o.ipv6Subnet), ...o })));
    }
  }
}

export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly body: string;
}

/** GET `url`, as the client at `ip` (X-Forwarded-For) when given. */
export async function get(url: string, ip?: string): Promise<Reply> {
  const r = await fetch(url, { headers: ip === undefined ? {} : { 'x-forwarded-for': ip } });
  return { status: r.status, headers: r.headers, body: await r.text() };
}
