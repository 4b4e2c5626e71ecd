/**
 * The calendar record kind's write algorithms, run through a direct journal (no thread, no undo): for any
 * sequence of events — in the latest unit, in later ones, in the past, past 2^32 per bucket — every ring
 * reads what a naive event list says, and every change leaves the record's seqlock even. The same
 * algorithms under the shard's real journal, cut at every write, are tested in test/workers/cal-journal.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { CalUnit } from '../../../common/calendar.js';
import { allocWords, ARENA_FIRST_WORD, H_USED_WORDS, HEADER_BYTES, refreshArenaViews, shardViews } from '../../../common/layout.js';
import type { CalConfig } from '../../../common/messages.js';
import { readRing, readRingTrimmed, sumRing } from '../../../common/records/calendar/read.js';
import { CalShape } from '../../../common/records/calendar/shape.js';
import { CalendarWriter, initCal } from '../../../common/records/calendar/write.js';
import { DirectJournal, type RecordMemory } from '../../../common/records/journal.js';

const T0 = Date.UTC(2024, 5, 17, 10, 30);
const config: CalConfig = { id: 1, timeZone: 'America/New_York', rings: [[CalUnit.minute, 6], [CalUnit.hour, 5], [CalUnit.day, 4]] };

/** One calendar record at ARENA_FIRST_WORD in a fresh arena (room to promote), with a writer on it. */
function record(shape: CalShape) {
  const header = new SharedArrayBuffer(HEADER_BYTES);
  const arena = new SharedArrayBuffer((ARENA_FIRST_WORD + shape.words + 2) * 8, { maxByteLength: 1 << 20 });
  const views = shardViews(header, arena);
  const o = ARENA_FIRST_WORD;
  views.header[H_USED_WORDS] = o + shape.words + 2;
  const memory: RecordMemory = {
    shard: 0,
    views,
    allocate(words) {
      const c = allocWords(views.header, arena, words);
      if (c !== -1) refreshArenaViews(views, arena);
      return c;
    },
  };
  initCal(views, o, shape);
  return { views, o, cell: o + shape.words, writer: new CalendarWriter(memory, new DirectJournal(views)) };
}

test('property: every ring reads the naive model of the events, whatever their order and size', () => {
  const shape = new CalShape(config);
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          // Mostly forward, sometimes far back (recordAt into the rings), in steps of seconds to hours.
          dt: fc.oneof(fc.integer({ min: 0, max: 90 }), fc.integer({ min: -7200, max: 7200 })),
          n: fc.oneof(fc.integer({ min: 1, max: 5 }), fc.constant(2 ** 32)),
        }),
        { maxLength: 80 },
      ),
      (steps) => {
        const { views, o, writer } = record(shape);
        const events: Array<{ t: number; n: number }> = [];
        let t = T0;
        let newest = T0;
        for (const step of steps) {
          t += step.dt * 1000;
          writer.add(o, shape, t, step.n);
          events.push({ t, n: step.n });
          newest = Math.max(newest, t);
          assert.equal(views.i32[2 * o]! % 2, 0, 'the seqlock is released after every add');
        }
        shape.seek(newest);
        for (let r = 0; r < shape.rings.length; r++) {
          const ring = shape.rings[r]!;
          const kNow = shape.ks[r]!;
          const out = new Array<number>(ring.count);
          readRing(views, o, shape, r, kNow, ring.count, out);
          // The trimmed read (a persist's) writes the same buckets and counts up to the oldest non-zero one.
          const trimmed = new Array<number>(ring.count).fill(-1);
          const used = readRingTrimmed(views, o, shape, r, kNow, ring.count, trimmed);
          assert.deepEqual(trimmed, out, `ring ${r}: the trimmed read`);
          let want = ring.count;
          while (want > 0 && out[want - 1] === 0) want--;
          assert.equal(used, want, `ring ${r}: buckets up to the oldest non-zero one`);
          for (let i = 0; i < ring.count; i++) {
            const k = kNow - i;
            const want = events.filter((e) => shape.calendar.index(ring.unit, e.t) === k).reduce((s, e) => s + e.n, 0);
            assert.equal(out[i], want, `ring ${r} unit ${k}`);
          }
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('merge adds and import writes exported buckets by absolute unit index', () => {
  const shape = new CalShape(config);
  const { views, o, writer } = record(shape);
  writer.add(o, shape, T0, 2);
  const minute = shape.calendar.index(CalUnit.minute, T0);
  writer.load(o, shape, { type: 'merge', offset: o, t: T0, heads: [minute, null, null], values: [[5, 7]] });
  shape.seek(T0);
  const out = new Array<number>(2);
  readRing(views, o, shape, 0, shape.ks[0]!, 2, out);
  assert.deepEqual(out, [7, 7], 'merge: 2 + 5 this minute, 7 the minute before');
  writer.load(o, shape, { type: 'import', offset: o, t: T0, heads: [minute, null, null], values: [[1]] });
  readRing(views, o, shape, 0, shape.ks[0]!, 2, out);
  assert.deepEqual(out, [1, 0], 'import: the record is what was imported');
  assert.equal(sumRing(views, o, shape, 1, shape.ks[1]!, 5), 0, 'import: a ring the source lacks is empty');
});
