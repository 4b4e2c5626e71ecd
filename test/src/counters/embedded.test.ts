/** Strict and lax counters embedded (no Redis): the key rules, and the shared counter scenarios in one process. */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { ErrorCode, sanitizeKey, validateKey } from '../../../src/index.js';
import { batchTests, embeddedMode, expectError, it, laxValueScenarios, type Mode, strictScenarios } from '../../helpers/counter-scenarios.js';

// ── scenario 1: keys (no engine needed) ─────────────────────────────────────────────────────────────

describe('scenario 1: keys', () => {
  it('"", 256×"a", "u:1" rejected; 255×"a" ok; sanitize("user:123") → "user123"; sanitize(":") errors', async () => {
    await expectError(() => validateKey(''), ErrorCode.INVALID_KEY, 'validateKey("")', TypeError);
    await expectError(() => validateKey('a'.repeat(256)), ErrorCode.INVALID_KEY, 'validateKey(256×a)', TypeError);
    await expectError(() => validateKey('u:1'), ErrorCode.INVALID_KEY, 'validateKey("u:1")', TypeError);
    // The limit is in UTF-8 bytes, not characters: 86 × "€" is 258 bytes, 85 × "€" is 255.
    await expectError(() => validateKey('€'.repeat(86)), ErrorCode.INVALID_KEY, 'validateKey(86×€ = 258 bytes)', TypeError);
    assert.equal(validateKey('a'.repeat(255)), 'a'.repeat(255));
    assert.equal(validateKey('€'.repeat(85)), '€'.repeat(85));
    assert.equal(sanitizeKey('user:123'), 'user123');
    assert.equal(sanitizeKey('a:b:c'), 'abc');
    await expectError(() => sanitizeKey(':'), ErrorCode.INVALID_KEY, 'sanitizeKey(":")', TypeError);
    await expectError(() => sanitizeKey('::'), ErrorCode.INVALID_KEY, 'sanitizeKey("::")', TypeError);
  });
});


// ── embedded mode ───────────────────────────────────────────────────────────────────────────────────

describe('counters embedded (no Redis)', () => {
  const mode = (): Mode => embeddedMode;
  describe('strict scenarios 2–8', () => strictScenarios(mode));
  describe('lax values', () => laxValueScenarios(mode));
  describe('batches, validation, coalescing', () => batchTests(mode));
  it('scenario 16 equivalent: inc 5; close() resolves; the engine refuses further calls', async () => {
    const e = await embeddedMode.engine();
    assert.equal(await e.lax.inc('k', 5), 5);
    assert.equal(await e.lax.get('k'), 5);
    await e.close();
    await expectError(() => e.lax.get('k'), ErrorCode.CLOSED, 'lax.get after close');
    await expectError(() => e.strict.inc('k'), ErrorCode.CLOSED, 'strict.inc after close');
  });
});

