/**
 * The owner lock of decision records, driven on one thread: a free lock is one compare-exchange, a dead
 * holder's lock is taken over and the record repaired (after which it is an ordinary record again), a
 * live holder is waited for only up to the timeout, readers see every change through the version, and the
 * sliding record's repair puts its totals back to the sum of its groups. (Races between takers run in
 * test/src/limits/threads.test.ts, with real threads.)
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SLF_WINDOWS, SLW_GROUPS, SLW_TAIL, SLW_TOTAL } from '../../../common/layout.js';
import { Decider, lockRecord, MAX_OWNERS, OWNER_ALIVE, OWNER_DEAD, tryLockRecord, unlockRecord } from '../../../common/records/owner-lock.js';
import { decideAbsolute, initSliding, SlidingShape } from '../../../common/records/sliding.js';
import { readBegin, readValid } from '../../../common/seqlock.js';
import { withCode } from '../../helpers/time.js';

function setup(): { i32: Int32Array; f64: Float64Array; owners: Int32Array; a: Decider; b: Decider } {
  const buffer = new SharedArrayBuffer(64 * 1024);
  const owners = new Int32Array(new SharedArrayBuffer(MAX_OWNERS * 4));
  owners[1] = OWNER_ALIVE;
  owners[2] = OWNER_ALIVE;
  return { i32: new Int32Array(buffer), f64: new Float64Array(buffer), owners, a: new Decider(1, owners, false, 20), b: new Decider(2, owners, false, 20) };
}

const noRepair = { repair: (): void => assert.fail('no repair expected') };

describe('owner lock', () => {
  test('lock and unlock publish a new even version; a reader spanning the change is told to retry', () => {
    const { i32, f64, a } = setup();
    const o = 8;
    const s = readBegin(i32, o);
    assert.equal(s, 0);
    const v = lockRecord(i32, f64, o, a, noRepair);
    assert.equal(i32[2 * o], 3, 'held: 2 · owner + 1');
    assert.equal(readBegin(i32, o), -1, 'a reader sees a writer');
    unlockRecord(i32, o, v);
    assert.equal(i32[2 * o], 2);
    assert.equal(readValid(i32, o, s), false);
    assert.equal(tryLockRecord(i32, o, a), 4);
    assert.equal(tryLockRecord(i32, o, a), -1, 'tryLock never waits for a held lock');
  });

  test('a live holder is waited for up to the timeout, then TW_RECORD_BUSY; a dead one is taken over once and repaired', () => {
    const { i32, f64, owners, a, b } = setup();
    const o = 8;
    lockRecord(i32, f64, o, b, noRepair); // b "dies" holding it
    assert.throws(() => lockRecord(i32, f64, o, a, noRepair), withCode('TW_RECORD_BUSY', 'owner 2'));
    Atomics.store(owners, 2, OWNER_DEAD);
    let repaired = 0;
    const v = lockRecord(i32, f64, o, a, { repair: () => repaired++ });
    assert.equal(repaired, 1);
    assert.equal(a.takeovers, 1);
    unlockRecord(i32, o, v);
    assert.equal(v, 4, 'past any version a reader may hold (the dead holder would have published 2)');
    const again = lockRecord(i32, f64, o, a, noRepair);
    unlockRecord(i32, o, again);
    assert.equal(repaired, 1, 'a repaired record is an ordinary one again');
  });

  test('the sliding record repair recomputes totals and tail from the groups a dead decider left', () => {
    const { i32, f64, owners, a, b } = setup();
    const shape = new SlidingShape([{ windowMs: 1000, groupMs: 100 }], false);
    const o = 16;
    const now = 1_700_000_000_000;
    initSliding(i32, f64, o, shape, 7, now, a);
    shape.at(now);
    const limits = Float64Array.of(100);
    for (let i = 0; i < 5; i++) assert.equal(decideAbsolute(i32, f64, o, 7, shape, limits, 3, now, a), 1);
    // b dies after writing a group but before the total: the record says 15, its groups 18.
    lockRecord(i32, f64, o, b, noRepair);
    f64[o + SLF_WINDOWS + SLW_GROUPS + shape.pos[0]!] = 18;
    f64[o + SLF_WINDOWS + SLW_TAIL] = 123; // and garbage in the tail
    Atomics.store(owners, 2, OWNER_DEAD);
    assert.equal(decideAbsolute(i32, f64, o, 7, shape, limits, 1, now, a), 1);
    assert.equal(f64[o + SLF_WINDOWS + SLW_TOTAL], 19, 'the repaired total is the sum of the groups (18), plus the new 1');
    assert.equal(f64[o + SLF_WINDOWS + SLW_TAIL], Math.floor(now / 100));
    assert.equal(decideAbsolute(i32, f64, o, 8, shape, limits, 1, now, a), -1, 'a handle of another allocation is told STALE');
  });
});
