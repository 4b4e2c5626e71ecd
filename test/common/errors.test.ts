/** The error hierarchy: each class matches only itself and its subclasses, also after crossing a thread. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { MessageChannel, Worker } from 'node:worker_threads';
import { connectControl, releaseControl } from '../../common/control.js';
import { redactSecrets, reviveError, type WireError } from '../../common/errors.js';
import * as tw from '../../src/index.js';

const { ErrorCode, TallyworksError, TallyworksTypeError, TallyworksRangeError, UndeliveredError, LimitExceededError } = tw;
const worker = new URL('../fixtures/error-worker.js', import.meta.url);

/** Every error class the package exports, with one instance of each. */
const classes = [
  ['TallyworksError', TallyworksError, new TallyworksError(ErrorCode.CLOSED, 'x')],
  ['TallyworksTypeError', TallyworksTypeError, new TallyworksTypeError(ErrorCode.INVALID_KEY, 'x')],
  ['TallyworksRangeError', TallyworksRangeError, new TallyworksRangeError(ErrorCode.INVALID_ARGUMENT, 'x')],
  ['UndeliveredError', UndeliveredError, new UndeliveredError([['k', 1]])],
  ['LimitExceededError', LimitExceededError, new LimitExceededError('id', { allowed: false, constraint: 'c', retryAfterMs: undefined })],
] as const;

/** Which classes an instance of each class must answer to (its own, its bases). */
const answersTo: Record<string, string[]> = {
  TallyworksError: ['TallyworksError'],
  TallyworksTypeError: ['TallyworksTypeError', 'TallyworksError'],
  TallyworksRangeError: ['TallyworksRangeError', 'TallyworksError'],
  UndeliveredError: ['UndeliveredError', 'TallyworksError'],
  LimitExceededError: ['LimitExceededError', 'TallyworksError'],
};

test('the package exports exactly these error classes', () => {
  const exported = Object.entries(tw).filter(([, v]) => typeof v === 'function' && (v as { prototype?: unknown }).prototype instanceof Error);
  assert.deepEqual(exported.map(([k]) => k).sort(), classes.map(([k]) => k).sort());
});

test('every exported class against every other: an instance matches its own class and its bases only', () => {
  for (const [name, , instance] of classes) {
    for (const [other, cls] of classes) {
      assert.equal(instance instanceof cls, answersTo[name]!.includes(other), `${name} instanceof ${other}`);
    }
    assert.equal(instance.name, name);
    assert.ok(instance instanceof Error);
  }
  assert.ok(new TallyworksTypeError(ErrorCode.INVALID_KEY, 'x') instanceof TypeError);
  assert.ok(new TallyworksRangeError(ErrorCode.INVALID_ARGUMENT, 'x') instanceof RangeError);
  for (const [, cls] of classes) {
    assert.equal(new Error('plain') instanceof cls, false);
    assert.equal((null as unknown as object) instanceof cls, false);
    assert.equal(({ code: 'TW_CLOSED' }) instanceof cls, false);
  }
});

test('a subclass of an exported class matches itself and its bases, not its siblings', () => {
  class MyUndelivered extends UndeliveredError {}
  const e = new MyUndelivered([['k', 1]]);
  assert.ok(e instanceof MyUndelivered && e instanceof UndeliveredError && e instanceof TallyworksError);
  assert.equal(e instanceof LimitExceededError, false);
  assert.equal(new UndeliveredError([]) instanceof MyUndelivered, false);
  assert.equal(e.name, 'MyUndelivered');
});

function assertRebuilt(errors: unknown[]): void {
  const [undelivered, limited, range, auth] = errors as [tw.UndeliveredError, tw.LimitExceededError, tw.TallyworksRangeError, tw.TallyworksError];
  assert.ok(undelivered instanceof UndeliveredError && undelivered instanceof TallyworksError);
  assert.equal(undelivered instanceof LimitExceededError, false);
  assert.equal(Object.getPrototypeOf(undelivered), UndeliveredError.prototype, 'rebuilt as its own class');
  assert.equal(undelivered.code, ErrorCode.UNDELIVERED);
  assert.deepEqual(undelivered.undelivered, [['a', 3]]);
  assert.equal((undelivered.cause as Error).message, 'root cause');
  assert.match(undelivered.stack ?? '', /UndeliveredError/);
  assert.ok(limited instanceof LimitExceededError);
  assert.equal(limited instanceof UndeliveredError, false);
  assert.deepEqual(limited.decision, { allowed: false, constraint: 'atMost(1, 1 hour)', retryAfterMs: 10 });
  assert.ok(range instanceof TallyworksRangeError && range instanceof RangeError && range instanceof TallyworksError);
  assert.equal(range instanceof TallyworksTypeError, false);
  assert.equal(range.code, ErrorCode.INVALID_ARGUMENT);
  assert.equal(auth.code, ErrorCode.REDIS_AUTH);
  assert.ok(auth.cause instanceof TallyworksError);
  assert.equal((auth.cause as tw.TallyworksError).code, ErrorCode.REDIS_UNAVAILABLE);
}

test('errors sent over a port as wire errors are rebuilt as their own classes', async () => {
  const w = new Worker(worker, { workerData: { mode: 'wire' } });
  const [wires] = (await once(w, 'message')) as [WireError[]];
  await w.terminate();
  assertRebuilt(wires.map((wire) => reviveError(wire)));
});

test('a control call that throws on another thread rejects with the error as its own class', async () => {
  const { port1, port2 } = new MessageChannel();
  const w = new Worker(worker, { workerData: { mode: 'control', control: port2 }, transferList: [port2] });
  const remote = connectControl<{ fail(i: number): never }>(port1);
  try {
    const errors: unknown[] = [];
    for (let i = 0; i < 4; i++) errors.push(await Promise.resolve(remote.fail(i)).then(() => assert.fail('the call threw'), (e: unknown) => e));
    assertRebuilt(errors);
  } finally {
    releaseControl(remote);
    port1.close();
    await w.terminate();
  }
});

test("a worker thread's uncaught Tallyworks error is rebuilt as its own class", async () => {
  const w = new Worker(worker, { workerData: { mode: 'uncaught' } });
  const [err] = (await once(w, 'error')) as [Error];
  assert.equal(err instanceof UndeliveredError, false, 'Node alone does not keep the class');
  const revived = reviveError(err) as tw.UndeliveredError;
  assert.ok(revived instanceof UndeliveredError && revived instanceof TallyworksError);
  assert.equal(Object.getPrototypeOf(revived), UndeliveredError.prototype);
  assert.deepEqual(revived.undelivered, [['k', -2]]);
  assert.equal(revived.code, ErrorCode.UNDELIVERED);
});

test('reviveError leaves values that are no Tallyworks error as they are', () => {
  const plain = new Error('x');
  assert.equal(reviveError(plain), plain);
  assert.equal(reviveError('text'), 'text');
  const live = new UndeliveredError([]);
  assert.equal(reviveError(live), live);
});

test('redactSecrets masks the credentials of URLs, however they are written', () => {
  assert.equal(redactSecrets('redis://:hunter2@127.0.0.1:6379/0'), 'redis://***@127.0.0.1:6379/0');
  assert.equal(redactSecrets('rediss://app:s3cr3t@cache.example:6380 and more'), 'rediss://***@cache.example:6380 and more');
  assert.equal(redactSecrets('http://token@host/x'), 'http://***@host/x');
  for (const odd of ['redis://user:pa/ss@127.0.0.1:6390', 'redis://:p@ss:w/rd%41#?x@h:1', 'redis://us@er:hunter2@x', 'redis:/user:hunter2@x', 'redis:user:hunter2@x']) {
    const shown = redactSecrets(odd);
    assert.ok(!/pa\/ss|p@ss|hunter2|rd%41/.test(shown), `${odd} shown as ${shown}`);
    assert.match(shown, /\*\*\*@/);
  }
  assert.equal(redactSecrets('redis://127.0.0.1:6379'), 'redis://127.0.0.1:6379');
  // An address without a scheme is no URL; text without "@" has no credentials.
  assert.equal(redactSecrets('mail ops@example.com, port 6379: closed'), 'mail ops@example.com, port 6379: closed');
});

test('an unrelated class that shares a name with an exported class, or with another lookalike, matches neither', () => {
  const Lookalike = class UndeliveredError extends TallyworksError {};
  const real = new UndeliveredError([['k', 1]]);
  const fake = new Lookalike(ErrorCode.UNDELIVERED, 'x');
  assert.equal(real instanceof Lookalike, false);
  assert.equal(fake instanceof UndeliveredError, false);
  assert.ok(fake instanceof Lookalike && fake instanceof TallyworksError);
  const X = (() => class AppError extends TallyworksError {})();
  const Y = (() => class AppError extends TallyworksError {})();
  assert.equal(new X(ErrorCode.CLOSED, 'a') instanceof Y, false);
  assert.equal(new Y(ErrorCode.CLOSED, 'a') instanceof X, false);
  const anonymousA = (() => class extends TallyworksError {})();
  const anonymousB = (() => class extends TallyworksError {})();
  assert.equal(new anonymousA(ErrorCode.CLOSED, 'a') instanceof anonymousB, false);
});
