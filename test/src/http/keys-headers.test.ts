/**
 * Request keys and header text: ipKey's grouping of IPv6 addresses, requestKey one to one onto valid
 * limiter keys (a property test: distinct strings never share a key), and rateLimitHeaders' exact shapes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ipKey, type PolicyOutcome, rateLimitHeaders, requestKey, validateKey } from '../../../src/index.js';

test('ipKey: IPv4 as it is, IPv4-mapped as IPv4, IPv6 as its /64 network in canonical text', () => {
  const cases: Array<[string, number | undefined, string]> = [
    ['203.0.113.5', undefined, '203.0.113.5'],
    ['::ffff:203.0.113.5', undefined, '203.0.113.5'],
    ['::FFFF:cb00:7105', undefined, '203.0.113.5'],
    ['2001:DB8:1:2:3:4:5:6', undefined, '2001:db8:1:2::/64'],
    ['2001:db8:0001:0002::', undefined, '2001:db8:1:2::/64'],
    ['2001:db8::1.2.3.4', 128, '2001:db8::102:304'],
    ['fe80::1%eth0', undefined, 'fe80::/64'],
    ['2001:db8:1:2:3:4:5:6', 56, '2001:db8:1::/56'],
    ['2001:db8:1:ff00::', 56, '2001:db8:1:ff00::/56'],
    ['2001:db8:0:0:1::', 128, '2001:db8:0:0:1::'], // RFC 5952: the longest run of zeros is the one shortened
    ['::1', 128, '::1'],
    ['not an address', undefined, 'not an address'],
  ];
  for (const [ip, subnet, key] of cases) assert.equal(ipKey(ip, subnet), key, `${ip} /${subnet ?? 64}`);
  assert.throws(() => ipKey('::1', 0), /ipv6Subnet/);
});

test('requestKey: every string maps to a valid limiter key, and distinct strings to distinct keys', () => {
  const strings = fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: fc.constantFrom('%', ':', '3', 'A', 'a', '5', '2', 'h') }), fc.string({ minLength: 80, maxLength: 300, unit: 'grapheme' }));
  fc.assert(
    fc.property(strings, strings, (a, b) => {
      const ka = requestKey(a);
      assert.equal(validateKey(ka), ka);
      if (a !== b) assert.notEqual(ka, requestKey(b));
      else assert.equal(ka, requestKey(b));
    }),
    { numRuns: 5000 },
  );
  assert.equal(requestKey('user:1'), 'user%3A1');
  assert.equal(requestKey('user%3A1'), 'user%253A1');
  assert.match(requestKey('\uD800'), /^%h/, 'a lone surrogate');
  assert.match(requestKey(''), /^%h/);
  assert.notEqual(requestKey('\uD800'), requestKey('\uDC00'));
});

test('rateLimitHeaders: exact text of each draft; Retry-After only when refused, at least 1', () => {
  const two: PolicyOutcome = {
    allowed: false,
    retryAfterSeconds: 0,
    quotas: [
      { name: 'permin', limit: 50, windowSeconds: 60, remaining: 0, resetSeconds: 17 },
      { name: 'perhr', limit: 1000, windowSeconds: 3600, remaining: 958.6, resetSeconds: 3600 },
    ],
  };
  assert.deepEqual(rateLimitHeaders(two, 'draft-8'), [
    ['RateLimit-Policy', '"permin";q=50;w=60, "perhr";q=1000;w=3600'],
    ['RateLimit', '"permin";r=0;t=17, "perhr";r=958;t=3600'],
    ['Retry-After', '1'],
  ]);
  assert.deepEqual(rateLimitHeaders(two, 'draft-7'), [
    ['RateLimit-Policy', '50;w=60, 1000;w=3600'],
    ['RateLimit', 'limit=50, remaining=0, reset=17'],
    ['Retry-After', '1'],
  ]);
  assert.deepEqual(rateLimitHeaders({ ...two, allowed: true }, 'draft-6'), [
    ['RateLimit-Policy', '50;w=60, 1000;w=3600'],
    ['RateLimit-Limit', '50'],
    ['RateLimit-Remaining', '0'],
    ['RateLimit-Reset', '17'],
  ]);
  assert.deepEqual(rateLimitHeaders({ ...two, retryAfterSeconds: 42 }, false), [['Retry-After', '42']]);
});
