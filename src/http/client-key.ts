/**
 * Request keys. The default key is the client's IP address, an IPv6 address grouped by its /64 prefix
 * (one subscriber usually holds a whole /64: limiting single addresses would let it rotate through 2^64 of
 * them). Any key reaches the limiter through {@link requestKey}, which maps distinct strings to distinct
 * limiter keys (`:` and over-long keys included), so no key sanitizing ever puts two clients on one key.
 */
import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { argumentRangeError } from '../../common/errors.js';
import { MAX_KEY_BYTES } from '../keys.js';

/** The 8 groups of an IPv6 address (valid, per node:net), as numbers; an embedded IPv4 tail is the last two. */
function groupsOf(ip: string): number[] {
  let text = ip.split('%')[0]!; // a zone (fe80::1%eth0) is not part of the address
  const tail: number[] = [];
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4 !== null) {
    tail.push((Number(v4[1]) << 8) | Number(v4[2]), (Number(v4[3]) << 8) | Number(v4[4]));
    text = text.slice(0, -v4[0].length);
    if (text.endsWith(':') && !text.endsWith('::')) text = text.slice(0, -1);
  }
  const cut = text.indexOf('::');
  const left = (cut === -1 ? text : text.slice(0, cut)).split(':').filter((g) => g !== '');
  const right = cut === -1 ? [] : text.slice(cut + 2).split(':').filter((g) => g !== '');
  const zeros = cut === -1 ? 0 : 8 - tail.length - left.length - right.length;
  return [...left.map((g) => parseInt(g, 16)), ...Array<number>(zeros).fill(0), ...right.map((g) => parseInt(g, 16)), ...tail];
}

/**
 * The key of a client address: an IPv4 address as it is (an IPv4-mapped IPv6 address, `::ffff:1.2.3.4`,
 * as its IPv4 address), an IPv6 address as its `/prefix` network (`2001:db8:1:2::/64`; prefix 128 keeps
 * the address). Anything else (a unix socket: no address) as it was given.
 */
export function ipKey(ip: string, ipv6Subnet = 64): string {
  if (!(Number.isInteger(ipv6Subnet) && ipv6Subnet >= 1 && ipv6Subnet <= 128)) throw argumentRangeError('ipv6Subnet', 'an integer from 1 to 128', ipv6Subnet);
  // No ':': an IPv4 address, or no address at all; either way the key is the text itself.
  if (!ip.includes(':') || isIPv4(ip) || !isIPv6(ip)) return ip;
  const groups = groupsOf(ip);
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) {
    return `${groups[6]! >> 8}.${groups[6]! & 255}.${groups[7]! >> 8}.${groups[7]! & 255}`;
  }
  for (let i = 0; i < 8; i++) {
    const keep = Math.max(0, Math.min(16, ipv6Subnet - 16 * i));
    groups[i] = keep === 0 ? 0 : groups[i]! & ((0xffff << (16 - keep)) & 0xffff);
  }
  // Canonical text: lower-case hex, the longest run of zero groups (two or more) as `::`.
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  const text = best === -1 ? hex.join(':') : `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLength).join(':')}`;
  return ipv6Subnet === 128 ? text : `${text}/${ipv6Subnet}`;
}

/**
 * The limiter key of `key` under `prefix`: `%p`, the prefix as a request key, `%/`, then `key` (a request
 * key already: the middleware's). No request key holds `%p` or `%/` (a `%` in one is always `%25`, `%3A`
 * or a leading `%h`), so a prefixed key is never an unprefixed one, and no two prefixes meet.
 */
export function prefixedKey(prefix: string, key: string): string {
  const joined = `%p${requestKey(prefix)}%/${key}`;
  if (joined.length * 3 <= MAX_KEY_BYTES || Buffer.byteLength(joined, 'utf8') <= MAX_KEY_BYTES) return joined;
  return `%h${createHash('sha256').update(Buffer.from(joined, 'utf16le')).digest('base64url')}`;
}

/**
 * The limiter key of any string, one to one: `%` and `:` percent-encoded (limiter keys hold no `:`), and a
 * key that is still not one (empty, ill-formed, over 255 UTF-8 bytes) as `%h` and the SHA-256 of its UTF-16
 * units (an encoded key never holds `%h`).
 */
export function requestKey(raw: string): string {
  let key = raw;
  if (raw.includes('%') || raw.includes(':')) key = raw.replaceAll('%', '%25').replaceAll(':', '%3A');
  if (key.length > 0 && (key.length * 3 <= MAX_KEY_BYTES || Buffer.byteLength(key, 'utf8') <= MAX_KEY_BYTES) && key.isWellFormed()) return key;
  return `%h${createHash('sha256').update(Buffer.from(raw, 'utf16le')).digest('base64url')}`;
}
