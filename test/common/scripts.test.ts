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
import { APPLY, ApplyStatus, BeatMode, BUFFER_SINK, IA, IA_BEAT, IaMode, INC, Mode, RATE, RATE_CLEAN, RateOutcome, RateStrategy, type RedisScript } from '../../common/scripts.js';

const PINNED: Record<string, string> = {
  'apply.lua': '37ffb63220097aaa7d26931384bebc2b2f3609f8',
  'buffer-sink.lua': '3b20ea00a38a99f582b4662a8f98fafc49abf73c',
  'inc.lua': '6793509baf3bd2986d0d8740f3cfb81c4ac98c93',
  'ia.lua': 'eee46c798e7d0a2a36c8354a23eec14e014ac0f4',
  'ia-beat.lua': '07d994f7e8c0e63bad45dcf4fa9fcce33a44443b',
  'rl.lua': 'f7c082cd47b2dd77a9964e4955c68df1c76201e6',
  'rl-clean.lua': 'f3a3b0e2ae380790d3cd803761aef0310ab52b1a',
};

test('every script under common/scripts is a RedisScript with its SHA pinned', () => {
  const files = readdirSync(new URL('../../../common/scripts/', import.meta.url)).filter((f) => f.endsWith('.lua'));
  const scripts = [APPLY, BUFFER_SINK, INC, IA, IA_BEAT, RATE, RATE_CLEAN] as ReadonlyArray<RedisScript<never, unknown>>;
  assert.deepEqual(files.sort(), scripts.map((s) => s.file).sort(), 'a script that is not a RedisScript');
  for (const script of scripts) {
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
  assert.deepEqual(luaConstants('ABSOLUTE', RATE as never), { ...RateStrategy }, "rl.lua's strategies");
  assert.deepEqual(luaConstants('BELOW_SOFT', RATE as never), { ...RateOutcome }, "rl.lua's suppressed outcomes");
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

test('rl.lua and rl-clean.lua touch only the keys they are given: the index (KEYS[1]), the entities and a commit\'s marker (KEYS[2…])', () => {
  for (const script of [RATE, RATE_CLEAN] as ReadonlyArray<RedisScript<never, unknown>>) {
    const calls = [...script.lua.matchAll(/redis\.p?call\(\s*'([A-Za-z]+)'\s*(?:,\s*([^,)]*))?/g)];
    assert.ok(calls.length > 0, script.file);
    for (const [text, command, keyArg] of calls) {
      if (command === 'TIME') continue;
      assert.ok(['e', 'index', 'marker', 'KEYS[1]'].includes(keyArg!.trim()), `${script.file}: ${command} touches ${keyArg}, not a given key: ${text}`);
    }
    // `e` is only ever bound to an entity key, `index` to KEYS[1].
    for (const m of script.lua.matchAll(/\b(?:local )?e\s*=[^=](.*)/g)) assert.match(m[1]!, /^\s*KEYS\[i\]/, `${script.file}: e = ${m[1]}`);
    assert.ok(!/\.\.\s*['"]:/.test(script.lua.split('\n').filter((l) => /redis\.p?call/.test(l)).join('\n')), 'no key name is built inside a call');
  }
  assert.match(RATE.lua, /^local index = KEYS\[1\]$/m);
  // `marker` is bound to KEYS[2] for a commit only (its entities then follow).
  assert.deepEqual([...RATE.lua.matchAll(/marker = ([^\n]*)/g)].map((m) => m[1]), ['2, 0, nil', '3, tonumber(ARGV[3]), KEYS[2]']);
});
