/** The shared-memory layout: header offsets aligned, in bounds and not overlapping; records word-aligned. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as L from '../../common/layout.js';

test('header Int32 and Float64 offsets are in bounds and never overlap', () => {
  const i32 = [L.H_APPLIED_SEQ, L.H_BATCH_SEQ, L.H_USED_WORDS, L.H_FLUSH_OFFSET, L.H_UNDO_OFFSET, L.H_ATTACHES, L.H_RECORDS];
  const f64 = [L.HF_UNDO_POS, L.HF_UNDO_OLD, L.HF_STEP, L.HF_UNDO_STEP];
  const bytes: Array<[number, number, string]> = [
    ...i32.map((i): [number, number, string] => [i * 4, i * 4 + 4, `i32[${i}]`]),
    ...f64.map((i): [number, number, string] => [i * 8, i * 8 + 8, `f64[${i}]`]),
  ];
  assert.equal(new Set(i32).size, i32.length, 'Int32 offsets are distinct');
  for (const [start, end, name] of bytes) {
    assert.ok(end <= L.HEADER_BYTES, `${name} inside the header`);
    assert.equal(start % (name.startsWith('f64') ? 8 : 4), 0, `${name} aligned`);
  }
  for (const a of bytes) for (const b of bytes) {
    if (a === b) continue;
    assert.ok(a[1] <= b[0] || b[1] <= a[0], `${a[2]} and ${b[2]} overlap`);
  }
  // The router spins on appliedSeq: nothing the shard writes per op may share its cache line.
  const line = (byte: number): number => Math.floor(byte / L.CACHE_LINE_BYTES);
  const appliedLine = line(L.H_APPLIED_SEQ * 4);
  for (const hot of [L.HF_UNDO_POS, L.HF_UNDO_OLD, L.HF_STEP, L.HF_UNDO_STEP]) assert.notEqual(line(hot * 8), appliedLine);
  assert.notEqual(line(L.H_UNDO_OFFSET * 4), appliedLine);
  assert.notEqual(line(L.H_USED_WORDS * 4), appliedLine);
  assert.notEqual(line(L.H_FLUSH_OFFSET * 4), appliedLine);
});

test('counter record: Int32 fields before the Float64 ones, every field inside the record', () => {
  const f64 = [L.CNTF_TOTAL, L.CNTF_COMMITTED, L.CNTF_REMOTE, L.CNTF_REMOTE_AT, L.CNTF_TARGET, L.CNTF_REMOTE_MINE];
  assert.equal(new Set(f64).size, f64.length);
  assert.ok(2 * Math.min(...f64) > L.CNT_LAX, 'the lax index (Int32) ends before the first Float64 field');
  assert.ok(L.CNT_LAX >= 2, 'after the seqlock and the kind');
  assert.ok(L.CNT_CALL_OP > L.CNT_LAX && 2 * Math.min(...f64) > L.CNT_CALL_OP, 'the call op index (Int32) between the lax index and the Float64 fields');
  assert.equal(L.CNT_RECORD_WORDS, Math.max(...f64) + 1);
});

test('calendar record: header words, rings and buckets fit the size the layout gives', () => {
  // 6 rings, 256 buckets (the defaults): 4 header words + (6 heads + 256 buckets) / 2 words = 1080 bytes.
  assert.equal(L.calRecordWords(6, 256), 135);
  assert.ok(2 * L.CALF_LATEST >= L.CAL_LATEST_K + 1 && 2 * L.CALF_LATEST + 1 < L.CAL_RINGS, 'the Float64 field between the Int32 fields and the rings');
  assert.equal(L.calBucketBase(L.ARENA_FIRST_WORD, 6), 2 * L.ARENA_FIRST_WORD + L.CAL_RINGS + 6);
  assert.ok(L.CAL_RINGS > Math.max(L.CAL_CONFIG, L.CAL_WIDE, L.CAL_LATEST_K));
  assert.ok(L.calBucketBase(0, 6) + 256 <= 2 * L.calRecordWords(6, 256), 'buckets end inside the record');
  assert.ok(L.calBucketBase(0, 5) + 255 <= 2 * L.calRecordWords(5, 255), 'an odd bucket count still fits');
});

test('hop record fields sit after the seqlock/kind word and buckets follow them', () => {
  const fields = [L.HOP_UNIT_MS, L.HOP_SIZE, L.HOP_HEAD, L.HOP_HEAD_START, L.HOP_HEAD_POS];
  assert.ok(Math.min(...fields) >= 1, 'word 0 holds the seqlock and the kind');
  assert.equal(new Set(fields).size, fields.length);
  assert.equal(L.HOP_BUCKETS, Math.max(...fields) + 1);
  assert.equal(L.hopRecordWords(5), L.HOP_BUCKETS + 5);
  assert.ok(L.ARENA_FIRST_WORD > 0, 'offset 0 means no record');
});

test('views are rebuilt when the arena grows, and serial numbers compare across the Int32 wrap', () => {
  const arena = new SharedArrayBuffer(64, { maxByteLength: 1024 });
  const views = L.shardViews(new SharedArrayBuffer(L.HEADER_BYTES), arena);
  assert.equal(views.f64.length, 8);
  arena.grow(256);
  L.refreshArenaViews(views, arena);
  assert.equal(views.f64.length, 32);
  assert.equal(views.i32.length, 64);
  assert.ok(L.seqAfter(1, 0));
  assert.ok(!L.seqAfter(0, 0));
  assert.ok(L.seqAfter(-2147483648, 2147483647), 'wrapped sequence comes after');
  assert.ok(!L.seqAfter(2147483647, -2147483648));
});
