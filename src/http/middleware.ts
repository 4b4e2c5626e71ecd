/**
 * The one core of every HTTP adapter (Express, Fastify, node:http): skip → key → policy check → headers →
 * pass, or refuse with 429 and Retry-After; a policy that fails (its store away) fails open or closed as
 * chosen. The adapters only say how to read the client address and how to write headers and a reply.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { argumentRangeError, argumentTypeError } from '../../common/errors.js';
import { ipKey, requestKey } from './client-key.js';
import { checkDraft, type HeaderDraft, rateLimitHeaders } from './headers.js';
import type { PolicyOutcome, RatePolicy } from './policy.js';

/** What a request is refused with: the status and body, or your own handler. */
export type LimitedHandler<Req, Res> = (req: Req, res: Res, outcome: PolicyOutcome) => void;

export interface HttpRateLimitOptions<Req = IncomingMessage, Res = ServerResponse> {
  /** What decides: one policy (see `ratePolicy()`), or several checked in order (the first refusal answers; the policies before it take the request back where their limiter can: local, hybrid and rateLimits ones). */
  policy: RatePolicy | readonly RatePolicy[];
  /** The request's key (default: the client's IP address, IPv6 grouped by `ipv6Subnet`). Any string: it is mapped one to one onto limiter keys. */
  key?: (req: Req) => string | Promise<string>;
  /** The prefix length an IPv6 client address is grouped by in the default key (default 64). */
  ipv6Subnet?: number;
  /** Requests for which this returns true are not limited (and get no headers). */
  skip?: (req: Req) => boolean | Promise<boolean>;
  /** Which RateLimit headers to send (default 'draft-8'; false: only Retry-After on a 429). */
  headers?: HeaderDraft;
  /** The status of a refused request (default 429). */
  statusCode?: number;
  /** The body of a refused request (default `Too many requests, retry after N s.`), or a handler that answers it. */
  limited?: string | LimitedHandler<Req, Res>;
  /**
   * When the policy throws (its store is away, the engine closed): 'fail-closed' (default) answers 503
   * with Retry-After: 1; 'fail-open' lets the request through without headers. `onError` hears of it either way.
   */
  onStoreError?: 'fail-open' | 'fail-closed';
  onError?: (err: unknown, req: Req) => void;
}

/** How an adapter reaches its framework's request and reply. */
export interface Exchange<Req, Res> {
  /** The client address as the framework knows it (Express `req.ip` honours `trust proxy`). */
  address(req: Req): string | undefined;
  setHeader(res: Res, name: string, value: string): void;
  /** Answers the request with `status` and a text `body`. */
  reply(res: Res, status: number, body: string): void;
}

/** What the core tells an adapter: go on, or the request was answered. */
export const PASS = true;
export const ANSWERED = false;

const STORE_FAILED_BODY = 'Rate limiting is unavailable; try again shortly.';

function validated<Req, Res>(options: HttpRateLimitOptions<Req, Res>): void {
  if (typeof options !== 'object' || options === null) throw argumentTypeError('options', 'an object with a policy', options);
  const policies = Array.isArray(options.policy) ? options.policy : [options.policy];
  if (policies.length === 0) throw argumentRangeError('options.policy', 'a policy or a non-empty array of them', options.policy);
  for (const p of policies) if (typeof (p as RatePolicy | undefined)?.check !== 'function') throw argumentTypeError('options.policy', 'a RatePolicy (ratePolicy(limiter, …)) or an array of them', p);
  for (const name of ['key', 'skip', 'onError'] as const) if (options[name] !== undefined && typeof options[name] !== 'function') throw argumentTypeError(`options.${name}`, 'a function', options[name]);
  if (options.limited !== undefined && typeof options.limited !== 'string' && typeof options.limited !== 'function') throw argumentTypeError('options.limited', 'a string or a function', options.limited);
  if (options.statusCode !== undefined && !(Number.isInteger(options.statusCode) && options.statusCode >= 400 && options.statusCode <= 599)) throw argumentRangeError('options.statusCode', 'an integer from 400 to 599', options.statusCode);
  if (options.onStoreError !== undefined && options.onStoreError !== 'fail-open' && options.onStoreError !== 'fail-closed') throw argumentRangeError('options.onStoreError', "'fail-open' or 'fail-closed'", options.onStoreError);
  if (options.headers !== undefined) checkDraft(options.headers);
  if (options.ipv6Subnet !== undefined) ipKey('::1', options.ipv6Subnet);
}

/** One outcome of several policies checked in order: every quota seen, refused by the first that refuses. */
function combine(outcomes: readonly PolicyOutcome[]): PolicyOutcome {
  const refused = outcomes.find((o) => !o.allowed);
  const quotas = outcomes.flatMap((o) => o.quotas);
  return refused === undefined ? { allowed: true, quotas } : { allowed: false, quotas, retryAfterSeconds: refused.retryAfterSeconds };
}

const isPromise = <T>(x: T | Promise<T>): x is Promise<T> => typeof (x as { then?: unknown } | null)?.then === 'function';

/** The request-handling core: `handle(req, res)` answers PASS (call the next handler) or ANSWERED, at once when it can. */
export class HttpRateLimit<Req, Res> {
  private readonly policies: readonly RatePolicy[];
  private readonly draft: HeaderDraft;
  private readonly status: number;
  private readonly subnet: number;
  private readonly failOpen: boolean;

  constructor(
    private readonly options: HttpRateLimitOptions<Req, Res>,
    private readonly exchange: Exchange<Req, Res>,
  ) {
    validated(options);
    this.policies = Array.isArray(options.policy) ? [...options.policy] : [options.policy as RatePolicy];
    this.draft = options.headers ?? 'draft-8';
    this.status = options.statusCode ?? 429;
    this.subnet = options.ipv6Subnet ?? 64;
    this.failOpen = options.onStoreError === 'fail-open';
  }

  handle(req: Req, res: Res): boolean | Promise<boolean> {
    try {
      const skip = this.options.skip?.(req);
      if (skip !== undefined && isPromise(skip)) return skip.then((s) => (s ? PASS : this.keyed(req, res)), (err) => this.failed(err, req, res));
      if (skip === true) return PASS;
      return this.keyed(req, res);
    } catch (err) {
      return this.failed(err, req, res);
    }
  }

  private keyed(req: Req, res: Res): boolean | Promise<boolean> {
    try {
      const raw = this.options.key === undefined ? ipKey(this.exchange.address(req) ?? 'unknown', this.subnet) : this.options.key(req);
      if (isPromise(raw)) return raw.then((k) => this.checked(requestKey(String(k)), req, res), (err) => this.failed(err, req, res));
      return this.checked(requestKey(String(raw)), req, res);
    } catch (err) {
      return this.failed(err, req, res);
    }
  }

  private checked(key: string, req: Req, res: Res): boolean | Promise<boolean> {
    try {
      if (this.policies.length === 1) {
        const o = this.policies[0]!.check(key);
        // A policy that fails is `failed`; an `answer` that throws (a `limited` handler) rejects: the adapter
        // hears of it (Express: next(err); Fastify: the hook's error; node:http: a 500).
        return isPromise(o) ? o.then((x) => this.answer(x, req, res), (err: unknown) => this.failed(err, req, res)) : this.answer(o, req, res);
      }
      return this.inOrder(key, req, res);
    } catch (err) {
      return this.failed(err, req, res);
    }
  }

  private async inOrder(key: string, req: Req, res: Res): Promise<boolean> {
    const outcomes: PolicyOutcome[] = [];
    try {
      for (const p of this.policies) {
        const o = await p.check(key);
        outcomes.push(o);
        if (!o.allowed) break;
      }
    } catch (err) {
      // A later policy failed: the request is not served, so the ones that counted it take it back.
      this.undo(key, outcomes, outcomes.length);
      return this.failed(err, req, res);
    }
    const last = outcomes.length - 1;
    if (outcomes[last]!.allowed) return this.answer(combine(outcomes), req, res);
    // Refused by a later policy: the earlier ones take it back where they can, and say so in their figures.
    return this.answer(combine(this.undo(key, outcomes, last)), req, res);
  }

  /** Takes the request back from the first `count` policies (all admitted it); their quotas show one more left. */
  private undo(key: string, outcomes: PolicyOutcome[], count: number): PolicyOutcome[] {
    for (let i = 0; i < count; i++) {
      const undo = this.policies[i]!.undo;
      if (undo === undefined) continue;
      undo(key);
      const o = outcomes[i]!;
      outcomes[i] = { ...o, quotas: o.quotas.map((q) => ({ ...q, remaining: Math.min(q.limit, q.remaining + 1) })) };
    }
    return outcomes;
  }

  private answer(outcome: PolicyOutcome, req: Req, res: Res): boolean {
    for (const [name, value] of rateLimitHeaders(outcome, this.draft)) this.exchange.setHeader(res, name, value);
    if (outcome.allowed) return PASS;
    const limited = this.options.limited;
    if (typeof limited === 'function') limited(req, res, outcome);
    else this.exchange.reply(res, this.status, limited ?? `Too many requests, retry after ${Math.max(1, outcome.retryAfterSeconds ?? 1)} s.`);
    return ANSWERED;
  }

  private failed(err: unknown, req: Req, res: Res): boolean {
    this.options.onError?.(err, req);
    if (this.failOpen) return PASS;
    this.exchange.setHeader(res, 'Retry-After', '1');
    this.exchange.reply(res, 503, STORE_FAILED_BODY);
    return ANSWERED;
  }
}
