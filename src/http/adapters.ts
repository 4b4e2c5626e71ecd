/**
 * The HTTP adapters, all on one core (./middleware.ts): Express 4 and 5 middleware, a Fastify 5 plugin and
 * a node:http handler wrapper. None imports its framework: each is typed by the few members it uses.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Exchange, HttpRateLimit, type HttpRateLimitOptions } from './middleware.js';

/** The members of an Express request and response the middleware uses (Express 4 and 5 both have them). */
export interface ExpressRequestLike extends IncomingMessage {
  readonly ip?: string | undefined;
  readonly app?: { get(setting: string): unknown };
}
export type ExpressResponseLike = ServerResponse;
export type ExpressNext = (err?: unknown) => void;

const nodeExchange: Exchange<ExpressRequestLike, ServerResponse> = {
  // Express's `req.ip` parses X-Forwarded-For by its `trust proxy` setting on every read (about 3 µs a
  // request under load); with the setting off (the default) it is the socket's address.
  address: (req) => (req.app === undefined || req.app.get('trust proxy') ? (req.ip ?? req.socket.remoteAddress) : req.socket.remoteAddress),
  setHeader: (res, name, value) => res.setHeader(name, value),
  reply: (res, status, body) => {
    res.statusCode = status;
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.end(body);
  },
};

/**
 * Express middleware (4 and 5): `app.use(expressRateLimit({ policy }))`. The default key is `req.ip`, so
 * Express's `trust proxy` setting decides which address counts.
 */
export function expressRateLimit(options: HttpRateLimitOptions<ExpressRequestLike, ExpressResponseLike>): (req: ExpressRequestLike, res: ExpressResponseLike, next: ExpressNext) => void {
  const core = new HttpRateLimit(options, nodeExchange);
  return (req, res, next) => {
    const r = core.handle(req, res);
    if (r === true) next();
    else if (r !== false) r.then((pass) => pass && next(), next);
  };
}

/**
 * Wraps a node:http request listener: `http.createServer(withRateLimit(handler, { policy }))`. The default
 * key is the socket's remote address (behind a proxy, give `key`).
 */
export function withRateLimit(handler: (req: IncomingMessage, res: ServerResponse) => void, options: HttpRateLimitOptions<IncomingMessage, ServerResponse>): (req: IncomingMessage, res: ServerResponse) => void {
  const core = new HttpRateLimit(options, nodeExchange);
  return (req, res) => {
    const r = core.handle(req, res);
    if (r === true) handler(req, res);
    else if (r !== false) {
      // A throw on the way (a `limited` or `onError` that throws, or the handler itself) is not swallowed:
      // the client gets a 500, and the error goes to `onError`, or without one on as an unhandled
      // rejection, as a throw in a listener would.
      r.then((pass) => pass && handler(req, res)).catch((err: unknown) => {
        if (!res.headersSent) {
          res.statusCode = 500;
          res.end();
        } else if (!res.writableEnded) res.destroy();
        if (options.onError === undefined) throw err;
        options.onError(err, req);
      });
    }
  };
}

/** The members of a Fastify request and reply the plugin uses. */
export interface FastifyRequestLike {
  readonly ip: string;
  readonly raw: IncomingMessage;
}
export interface FastifyReplyLike {
  header(name: string, value: string): unknown;
  code(status: number): FastifyReplyLike;
  type(contentType: string): FastifyReplyLike;
  send(body: string): unknown;
}
interface FastifyLike {
  addHook(name: 'onRequest', hook: (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<void>): unknown;
}

const fastifyExchange: Exchange<FastifyRequestLike, FastifyReplyLike> = {
  address: (request) => request.ip,
  setHeader: (reply, name, value) => void reply.header(name, value),
  reply: (reply, status, body) => void reply.code(status).type('text/plain; charset=utf-8').send(body),
};

/**
 * A Fastify 5 plugin: `await app.register(fastifyRateLimit, { policy })` limits every route of the
 * instance it is registered on (it is not encapsulated, as fastify-plugin would mark it). The default key
 * is `request.ip` (Fastify's `trustProxy` decides it).
 */
export const fastifyRateLimit = Object.assign(
  async function fastifyRateLimit(app: FastifyLike, options: HttpRateLimitOptions<FastifyRequestLike, FastifyReplyLike>): Promise<void> {
    const core = new HttpRateLimit(options, fastifyExchange);
    app.addHook('onRequest', async (request, reply) => {
      const pass = await core.handle(request, reply);
      if (!pass) return reply as unknown as undefined; // answered: Fastify stops the request here
    });
  },
  // Fastify's own mark for a plugin whose hooks apply to the instance it is registered on (not a child).
  { [Symbol.for('skip-override')]: true, [Symbol.for('fastify.display-name')]: 'tallyworks-rate-limit' },
);
