/**
 * Calendar records under thread death, driven in-process: a batch with every kind of calendar write (the
 * pending count, a fold into the rings, a record into the past, a 64-bit promotion, a merge and an
 * import) is cut short at every journaled write — before the write, or after it
 * but before its journal step — and a new ShardCore (the replacement thread) repairs the memory and applies
 * the batch again. Every ring must then read exactly as after an uninterrupted apply.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readRing } from '../../common/records/calendar/read.js';
import { CalShape } from '../../common/records/calendar/shape.js';
import { CalUnit } from '../../common/calendar.js';
import * as L from '../../common/layout.js';
import type { BatchEnvelope, CalConfig, CtrlOp } from '../../common/messages.js';
import { ShardCore } from '../../workers/shard-core.js';

const T = Date.UTC(2024, 5, 17, 10, 30);
const config: CalConfig = { id: 1, timeZone: 'Europe/Berlin', rings: [[CalUnit.minute, 5], [CalUnit.hour, 4], [CalUnit.day, 3]] };
const shape = new CalShape(config);
const A = L.ARENA_FIRST_WORD;
const B = A + shape.words;
const END = B + shape.words;

function memory() {
  const header = new SharedArrayBuffer(L.HEADER_BYTES);
  new Int32Array(header)[L.H_USED_WORDS] = END;
  return { header, arena: new SharedArrayBuffer(END * 8, { maxByteLength: 1 << 20 }) };
}

/** The batch: ops on records A and B at three times, with control ops between them. */
function batch(): BatchEnvelope {
  const ctrl: CtrlOp[] = [
    { type: 'merge', offset: A, t: T + 61_000, heads: [shape.calendar.index(CalUnit.minute, T), shape.calendar.index(CalUnit.hour, T), null], values: [[7, 1], [9], []] },
    { type: 'import', offset: B, t: T + 61_000, heads: [shape.calendar.index(CalUnit.minute, T + 61_000), shape.calendar.index(CalUnit.hour, T), shape.calendar.index(CalUnit.day, T)], values: [[3, 4], [40], [50, 5]] },
  ];
  // [offset, delta, time]; a negative offset is control op −1 − offset.
  const ops: Array<[number, number, number]> = [
    [A, 1, T],
    [B, 2, T],
    [A, 3, T],
    [A, 4, T + 61_000], // a later minute: folds A's pending count into the rings
    [A, 5, T - 7_200_000], // two hours ago: straight into the rings
    [B, 2 ** 32, T + 61_000], // folds B, then a pending count past 2^32
    [B, 1, T + 122_000], // folds it: B's rings are promoted to 64-bit buckets
    [A, 1, T + 61_000], // an event a limit admitted (stamped with the decision's time)
    [B, 1, T + 61_000], // a committed reservation's event
    [A, 6, T + 122_000],
    [-1, 0, T + 122_000],
    [-2, 0, T + 122_000],
    [A, 1, T + 183_000],
  ];
  const runStarts: number[] = [];
  const runTimes: number[] = [];
  ops.forEach(([, , t], i) => {
    if (runTimes.at(-1) !== t) {
      runStarts.push(i);
      runTimes.push(t);
    }
  });
  return {
    seq: 1,
    inits: Float64Array.of(A, L.KIND_CAL, 1, 0, B, L.KIND_CAL, 1, 0),
    calendars: [config],
    ctrl,
    offsets: Int32Array.from(ops, ([o]) => o),
    deltas: Float64Array.from(ops, ([, d]) => d),
    runStarts: Int32Array.from(runStarts),
    runTimes: Float64Array.from(runTimes),
  };
}

/** Every ring of both records, read at `now`, newest first. */
function snapshot(core: ShardCore, now: number): number[][] {
  const reader = new CalShape(config);
  reader.seek(now);
  const out: number[][] = [];
  for (const o of [A, B]) {
    for (let r = 0; r < reader.rings.length; r++) {
      const b = new Array<number>(reader.rings[r]!.count);
      readRing(core.views, o, reader, r, reader.ks[r]!, b.length, b);
      out.push(b);
    }
  }
  return out;
}

const NOW = T + 200_000;
const reference = (() => {
  const m = memory();
  const core = new ShardCore(0, m.header, m.arena, new SharedArrayBuffer(8));
  assert.equal(core.apply(batch()), 'applied');
  return { snapshot: snapshot(core, NOW) };
})();

/** Journaled writes the batch makes, counted on an uninterrupted run. */
const totalWrites = (() => {
  const m = memory();
  const core = new ShardCore(0, m.header, m.arena, new SharedArrayBuffer(8));
  let n = 0;
  const inner = (core as unknown as { write: (pos: number, v: number) => void }).write.bind(core);
  (core as unknown as { write: (pos: number, v: number) => void }).write = (pos, v) => {
    n++;
    inner(pos, v);
  };
  core.apply(batch());
  return n;
})();

class Killed extends Error {}

test('the reference run: the batch means what the test says', () => {
  const [aMin, aHour, aDay, bMin, bHour, bDay] = reference.snapshot;
  // A: 1+3 at 10:30, 4 at 10:31 (+1 decided), 5 two hours ago, 6 at 10:32, 1 at 10:33 (UTC); the merge adds
  // 7 and 1 to the minutes 10:30 and 10:29, 9 to the hour, and nothing to the days (its day ring is null).
  assert.equal(aDay!.reduce((s, v) => s + v, 0), 1 + 3 + 4 + 1 + 5 + 6 + 1);
  assert.deepEqual(aMin, [1, 6, 4 + 1, 1 + 3 + 7, 1]);
  assert.deepEqual(aHour, [1 + 3 + 4 + 1 + 6 + 1 + 9, 0, 5, 0]);
  // B ends as the import wrote it.
  assert.deepEqual(bMin!.slice(0, 3), [0, 0, 3]);
  assert.deepEqual(bHour, [40, 0, 0, 0]);
  assert.deepEqual(bDay, [50, 5, 0]);
  assert.ok(totalWrites > 40, `the batch makes ${totalWrites} journaled writes`);
});

for (const afterWrite of [false, true]) {
  test(`killed at every journaled write (${afterWrite ? 'after the store, before its step' : 'before the store'}): the replay reads exactly as the reference`, () => {
    for (let kill = 0; kill < totalWrites; kill++) {
      const m = memory();
      const first = new ShardCore(0, m.header, m.arena, new SharedArrayBuffer(8));
      let n = 0;
      const inner = (first as unknown as { write: (pos: number, v: number) => void }).write.bind(first);
      (first as unknown as { write: (pos: number, v: number) => void }).write = (pos, v) => {
        if (n++ === kill) {
          if (afterWrite) {
            inner(pos, v);
            first.views.headerF64[L.HF_STEP] = first.views.headerF64[L.HF_STEP]! - 1; // the step store never ran
          }
          throw new Killed();
        }
        inner(pos, v);
      };
      assert.throws(() => first.apply(batch()), Killed);
      const replacement = new ShardCore(0, m.header, m.arena, new SharedArrayBuffer(8), [config]);
      for (const o of [A, B]) assert.equal(replacement.views.i32[2 * o]! & 1, 0, `kill ${kill}: seqlock of ${o} released`);
      assert.equal(replacement.apply(batch()), 'applied');
      assert.deepEqual(snapshot(replacement, NOW), reference.snapshot, `kill at write ${kill}`);
      assert.equal(replacement.apply(batch()), 'duplicate');
    }
  });
}
