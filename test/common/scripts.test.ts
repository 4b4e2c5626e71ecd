/**
 * The Lua scripts and the TypeScript constants that speak to them: every script's SHA is pinned (a change
 * to a script is a change to what Redis runs, made on purpose), and the numbers apply.lua names in its
 * header are the op modes, comparators and reply status the TypeScript sends and reads.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Cmp, CounterMode } from '../../common/messages.js';
import { APPLY, ApplyStatus, BeatMode, BUFFER_SINK, IA, IA_BEAT, IaMode, INC, Mode, type RedisScript } from '../../common/scripts.js';

const PINNED: Record<string, string> = {
  'apply.lua': '37ffb63220097aaa7d26931384bebc2b2f3609f8',
  'buffer-sink.lua': '3b20ea00a38a99f582b4662a8f98fafc49abf73c',
  'inc.lua': '6793509baf3bd2986d0d8740f3cfb81c4ac98c93',
  'ia.lua': 'eee46c798e7d0a2a36c8354a23eec14e014ac0f4',
  'ia-beat.lua': '369d8f18ade90d385d38cb74982e8119e2a6e933',
};

test('every script under common/scripts is a RedisScript with its SHA pinned', () => {
  const files = readdirSync(new URL('../../../common/scripts/', import.meta.url)).filter((f) => f.endsWith('.lua'));
  assert.deepEqual(files.sort(), [APPLY.file, BUFFER_SINK.file, INC.file, IA.file, IA_BEAT.file].sort(), 'a script that is not a RedisScript');
  for (const script of [APPLY, BUFFER_SINK, INC, IA, IA_BEAT]) {
    const source = readFileSync(new URL(`../../../common/scripts/${script.file}`, import.meta.url), 'utf8');
    assert.equal(script.lua, source);
    assert.equal(script.sha, createHash('sha1').update(source).digest('hex'));
    assert.equal(script.sha, PINNED[script.file], `common/scripts/${script.file} changed: pin its new SHA on purpose`);
  }
});

/** The `local A, B = 1, 2` line of a script (apply.lua unless given) that declares `first`, as { A: 1, B: 2 }. */
function luaConstants(first: string, script: RedisScript<never, unknown> = APPLY as never): Record<string, number> {
  const line = script.lua.split('\n').find((l) => l.startsWith(`local ${first},`));
  assert.ok(line !== undefined, `${script.file} declares no constants starting with ${first}`);
  const [names, values] = line.slice('local '.length).split('=').map((side) => side.split(',').map((x) => x.trim()));
  assert.equal(names!.length, values!.length, line);
  return Object.fromEntries(names!.map((name, i) => [name, Number(values![i])]));
}

test("apply.lua's op modes, comparators and reply status are the TypeScript constants", () => {
  assert.deepEqual(luaConstants('GET'), { ...Mode });
  assert.deepEqual(luaConstants('ALWAYS'), { ...Cmp });
  assert.deepEqual(luaConstants('APPLIED'), { ...ApplyStatus });
  assert.deepEqual(luaConstants('APPLIED', INC as never), { ...ApplyStatus }, 'inc.lua answers with the same status numbers');
  assert.deepEqual(luaConstants('GET', IA as never), { ...IaMode }, "ia.lua's op modes");
  assert.deepEqual(luaConstants('ALWAYS', IA as never), { ...Cmp });
  assert.deepEqual(luaConstants('APPLIED', IA as never), { ...ApplyStatus });
  assert.deepEqual(luaConstants('BEAT', IA_BEAT as never), { ...BeatMode });
  // The counter modes a strict or embedded op carries are the script's modes of the same name.
  for (const [name, code] of Object.entries(CounterMode)) assert.equal(Mode[name as keyof typeof Mode], code, name);
});

test('apply.lua compares modes and comparators only by name (no bare numbers left)', () => {
  const body = APPLY.lua.split('\n').filter((l) => !l.startsWith('--') && !l.startsWith('local GET') && !l.startsWith('local ALWAYS') && !l.startsWith('local APPLIED'));
  for (const line of body) {
    assert.doesNotMatch(line, /\b(mode|cmp)\s*[=~]=\s*\d/, `bare number in: ${line.trim()}`);
    assert.doesNotMatch(line, /return \{ \d/, `bare status in: ${line.trim()}`);
  }
});
