/**
 * The shard's batch application and its crash journal, driven in-process: states a thread killed at each
 * point would leave are built by hand, and a new ShardCore (the replacement thread) must repair them so
 * that the replayed batch counts exactly once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sumHop } from '../../common/records/hop.js';
import * as L from '../../common/layout.js';
import type { BatchEnvelope } from '../../common/messages.js';
import { ShardCore } from '../../workers/shard-core.js';

const T = Date.UTC(2024, 5, 17, 10, 30);
const O = L.ARENA_FIRST_WORD;

function memory() {
  return { header: new SharedArrayBuffer(L.HEADER_BYTES), arena: new SharedArrayBuffer(4096, { maxByteLength: 1 << 20 }) };
}

function batch(seq: number, ops: number, init: boolean): BatchEnvelope {
  return {
    seq,
    inits: init ? Float64Array.of(O, L.KIND_HOP, 1000, 5) : new Float64Array(0),
    calendars: [],
    ctrl: [],
    offsets: new Int32Array(ops).fill(O),
    deltas: new Float64Array(ops).fill(1),
    runStarts: Int32Array.of(0),
    runTimes: Float64Array.of(T),
  };
}

function value(core: ShardCore): number {
  return sumHop(core.views.f64, O, T);
}

test('batches apply in order; a replay is a duplicate; a batch past a gap is refused', () => {
  const m = memory();
  const core = new ShardCore(0, m.header, m.arena, new SharedArrayBuffer(8));
  assert.equal(core.apply(batch(2, 3, true)), 'gap');
  assert.equal(value(core), 0, 'nothing applied');
  assert.equal(core.apply(batch(1, 3, true)), 'applied');
  assert.equal(core.apply(batch(1, 3, true)), 'duplicate');
  assert.equal(core.apply(batch(2, 4, false)), 'applied');
  assert.equal(value(core), 7);
  assert.equal(core.stats().records, 1);
  assert.equal(core.appliedSeq, 2);
});

/** Applies batch 1 fully, then rewinds the header to what a thread killed at op `progress` left. */
function killedAt(progress: number, writeDone: boolean) {
  const m = memory();
  const first = new ShardCore(0, m.header, m.arena, new SharedArrayBuffer(8));
  const b = batch(1, 3, true);
  first.apply(b);
  const { header: h, headerF64: hf, i32, f64 } = first.views;
  const pos = O + L.HOP_BUCKETS + (Math.floor((T + 62135596800000) / 1000) % 5);
  // The bucket holds `progress` ops, plus op `progress` itself if its write happened.
  f64[pos] = progress + (writeDone ? 1 : 0);
  h[L.H_APPLIED_SEQ] = 0;
  h[L.H_BATCH_SEQ] = 1;
  hf[L.HF_STEP] = progress * L.STEP_SCALE;
  hf[L.HF_UNDO_STEP] = progress * L.STEP_SCALE;
  h[L.H_UNDO_OFFSET] = O;
  hf[L.HF_UNDO_POS] = pos;
  hf[L.HF_UNDO_OLD] = progress;
  i32[2 * O] = i32[2 * O]! + 1; // the seqlock left odd mid-write
  return { m, b };
}

for (const progress of [0, 1, 2]) {
  for (const writeDone of [false, true]) {
    test(`killed at op ${progress} ${writeDone ? 'after' : 'before'} its bucket write: the replay counts each op once`, () => {
      const { m, b } = killedAt(progress, writeDone);
      const replacement = new ShardCore(0, m.header, m.arena, new SharedArrayBuffer(8));
      assert.equal(replacement.views.i32[2 * O]! & 1, 0, 'repair releases the seqlock');
      assert.equal(replacement.apply(b), 'applied');
      assert.equal(value(replacement), 3);
      assert.equal(replacement.apply(b), 'duplicate');
      assert.equal(value(replacement), 3);
      assert.equal(replacement.stats().attaches, 2);
      assert.equal(replacement.stats().records, 1, 'the record is not initialised twice');
    });
  }
}

test('killed between the last op and publishing appliedSeq: the replay finishes without re-adding', () => {
  const { m, b } = killedAt(3, false);
  const replacement = new ShardCore(0, m.header, m.arena, new SharedArrayBuffer(8));
  assert.equal(replacement.apply(b), 'applied');
  assert.equal(value(replacement), 3);
});

test('time runs: each op uses the time of its run, also when resuming mid-batch', () => {
  const m = memory();
  const core = new ShardCore(0, m.header, m.arena, new SharedArrayBuffer(8));
  const b: BatchEnvelope = {
    seq: 1,
    inits: Float64Array.of(O, L.KIND_HOP, 1000, 5),
    calendars: [],
    ctrl: [],
    offsets: new Int32Array(4).fill(O),
    deltas: Float64Array.of(1, 2, 4, 8),
    runStarts: Int32Array.of(0, 2),
    runTimes: Float64Array.of(T, T + 10_000), // the second run is two windows later
  };
  core.apply(b);
  assert.equal(sumHop(core.views.f64, O, T + 10_000), 12, 'the first run has left the window');
});

/** Two lax counters (lax indexes 3 and 40) and one embedded counter (lax index -1). */
function counterBatch(seq: number, offsets: number[], deltas: number[], init: boolean): BatchEnvelope {
  const A = O;
  const B = O + L.CNT_RECORD_WORDS;
  const C = O + 2 * L.CNT_RECORD_WORDS;
  return {
    seq,
    inits: init ? Float64Array.of(A, L.KIND_CNT, 3, 0, B, L.KIND_CNT, 40, 0, C, L.KIND_CNT, -1, 0) : new Float64Array(0),
    calendars: [],
    ctrl: [],
    offsets: Int32Array.from(offsets.map((s) => [A, B, C][s]!)),
    deltas: Float64Array.from(deltas),
    runStarts: Int32Array.of(0),
    runTimes: Float64Array.of(T),
  };
}

const total = (core: ShardCore, record: number): number => core.views.f64[O + record * L.CNT_RECORD_WORDS + L.CNTF_TOTAL]!;

test('counter adds: totals exact, dirty bits of lax counters set once the batch is applied, none for embedded ones', () => {
  const m = memory();
  const dirty = new SharedArrayBuffer(8, { maxByteLength: 64 });
  const core = new ShardCore(0, m.header, m.arena, new SharedArrayBuffer(8), [], dirty);
  assert.equal(core.apply(counterBatch(1, [0, 1, 0, 2], [5, 7, -2, 9], true)), 'applied');
  assert.deepEqual([total(core, 0), total(core, 1), total(core, 2)], [3, 7, 9]);
  const bits = new Int32Array(dirty);
  assert.deepEqual([...bits], [1 << 3, 1 << 8], 'bit 3 (word 0) and bit 40 (word 1); the embedded counter marks nothing');
  // The flusher takes the bits; a later batch on counter a sets only its bit again.
  Atomics.exchange(bits, 0, 0);
  Atomics.exchange(bits, 1, 0);
  core.apply(counterBatch(2, [0], [1], false));
  assert.deepEqual([...bits], [1 << 3, 0]);
});

test('a resumed counter batch marks the counters its dead predecessor added to', () => {
  const m = memory();
  const dirty = new SharedArrayBuffer(8, { maxByteLength: 64 });
  const first = new ShardCore(0, m.header, m.arena, new SharedArrayBuffer(8), [], dirty);
  first.apply(counterBatch(1, [2], [1], true));
  // Batch 2 adds to b then a; the thread dies after b's add (op 0 done, its bit only in its own memory).
  const b2 = counterBatch(2, [1, 0], [4, 6], false);
  const { header: h, headerF64: hf, f64 } = first.views;
  f64[O + L.CNT_RECORD_WORDS + L.CNTF_TOTAL] = 4;
  h[L.H_BATCH_SEQ] = 2;
  hf[L.HF_STEP] = 1 * L.STEP_SCALE;
  hf[L.HF_UNDO_STEP] = -1;
  const replacement = new ShardCore(0, m.header, m.arena, new SharedArrayBuffer(8), [], dirty);
  assert.equal(replacement.apply(b2), 'applied');
  assert.deepEqual([total(replacement, 0), total(replacement, 1)], [6, 4], 'each add once');
  assert.deepEqual([...new Int32Array(dirty)], [1 << 3, 1 << 8], 'b (done before the death) is marked too');
});
