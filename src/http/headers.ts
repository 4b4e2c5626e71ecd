/**
 * RateLimit headers of the IETF draft (draft-ietf-httpapi-ratelimit-headers) in its three shapes:
 * - draft-6: `RateLimit-Policy: 100;w=60`, `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`;
 * - draft-7: `RateLimit: limit=100, remaining=42, reset=17` and `RateLimit-Policy: 100;w=60`;
 * - draft-8 (to -10): named structured-field items, `RateLimit-Policy: "permin";q=50;w=60, "perhr";q=1000;w=3600`
 *   and `RateLimit: "permin";r=42;t=17, "perhr";r=958;t=3600`.
 * With several quotas, draft-6 and draft-7 (one set of figures) report the one closest to running out.
 */
import { argumentRangeError } from '../../common/errors.js';
import type { PolicyOutcome, Quota } from './policy.js';

/** Which shape of the headers to send (false: none but Retry-After). */
export type HeaderDraft = 'draft-6' | 'draft-7' | 'draft-8' | false;

export const HEADER_DRAFTS: readonly HeaderDraft[] = ['draft-6', 'draft-7', 'draft-8', false];

export function checkDraft(draft: unknown): HeaderDraft {
  if (!HEADER_DRAFTS.includes(draft as HeaderDraft)) throw argumentRangeError('options.headers', "'draft-6', 'draft-7', 'draft-8' or false", draft);
  return draft as HeaderDraft;
}

/** The quota closest to running out: the least remaining, then the latest reset. */
function tightest(quotas: readonly Quota[]): Quota {
  let q = quotas[0]!;
  for (let i = 1; i < quotas.length; i++) {
    const c = quotas[i]!;
    if (c.remaining < q.remaining || (c.remaining === q.remaining && c.resetSeconds > q.resetSeconds)) q = c;
  }
  return q;
}

/** The largest sf-integer (15 digits): anything larger, or not finite, is written as it. */
const SF_MAX = 999_999_999_999_999;
/** A count as an sf-integer: whole (rounded down), 0 to SF_MAX (NaN: 0). */
const whole = (x: number): number => (x >= 0 ? Math.min(SF_MAX, Math.floor(x)) : 0);
/** Seconds as an sf-integer, rounded up (a client told to wait must not come back early). */
const secondsUp = (x: number): number => (x >= 0 ? Math.min(SF_MAX, Math.ceil(x)) : 0);
/** A quota name as an sf-string: `\` and `"` escaped, anything outside printable ASCII as `?`. */
/** Names as sf-strings, by name (a policy's few names are escaped once, not on every request). */
const sfNames = new Map<string, string>();
function sfString(name: string): string {
  let s = sfNames.get(name);
  if (s === undefined) {
    s = `"${name.replace(/[\\"]/g, (c) => `\\${c}`).replace(/[^\x20-\x7e]/g, '?')}"`;
    if (sfNames.size >= 1024) sfNames.clear(); // names made per request (a custom policy's) stay bounded
    sfNames.set(name, s);
  }
  return s;
}

/** The last one-quota RateLimit-Policy value of each draft, reused while its figures repeat (the common case). */
const lastPolicy = { name: '', limit: NaN, windowSeconds: NaN, draft8: '', draft67: '' };

function policyOf(q: Quota): typeof lastPolicy {
  const p = lastPolicy;
  if (q.name !== p.name || q.limit !== p.limit || q.windowSeconds !== p.windowSeconds) {
    p.name = q.name;
    p.limit = q.limit;
    p.windowSeconds = q.windowSeconds;
    p.draft8 = `${sfString(q.name)};q=${whole(q.limit)};w=${secondsUp(q.windowSeconds)}`;
    p.draft67 = `${whole(q.limit)};w=${secondsUp(q.windowSeconds)}`;
  }
  return p;
}

/** The headers of `outcome` in `draft`'s shape, with Retry-After when refused: [name, value] pairs. */
export function rateLimitHeaders(outcome: PolicyOutcome, draft: HeaderDraft): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const quotas = outcome.quotas;
  if (draft !== false && quotas.length > 0) {
    if (draft === 'draft-8') {
      out.push(['RateLimit-Policy', quotas.length === 1 ? policyOf(quotas[0]!).draft8 : quotas.map((q) => `${sfString(q.name)};q=${whole(q.limit)};w=${secondsUp(q.windowSeconds)}`).join(', ')]);
      out.push(['RateLimit', quotas.map((q) => `${sfString(q.name)};r=${whole(q.remaining)};t=${secondsUp(q.resetSeconds)}`).join(', ')]);
    } else {
      const policy = quotas.length === 1 ? policyOf(quotas[0]!).draft67 : quotas.map((q) => `${whole(q.limit)};w=${secondsUp(q.windowSeconds)}`).join(', ');
      const q = tightest(quotas);
      if (draft === 'draft-7') {
        out.push(['RateLimit-Policy', policy]);
        out.push(['RateLimit', `limit=${whole(q.limit)}, remaining=${whole(q.remaining)}, reset=${secondsUp(q.resetSeconds)}`]);
      } else {
        out.push(['RateLimit-Policy', policy]);
        out.push(['RateLimit-Limit', String(whole(q.limit))]);
        out.push(['RateLimit-Remaining', String(whole(q.remaining))]);
        out.push(['RateLimit-Reset', String(secondsUp(q.resetSeconds))]);
      }
    }
  }
  if (!outcome.allowed) out.push(['Retry-After', String(Math.max(1, secondsUp(outcome.retryAfterSeconds ?? 1)))]);
  return out;
}
