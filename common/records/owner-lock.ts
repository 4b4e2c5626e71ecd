/**
 * The owner lock of a decision record: the one Int32 word at i32[2o] that deciders on any thread take with
 * one compare-exchange and give back with one store, and that readers use as a seqlock (common/seqlock.ts).
 *
 *   even value v  free; v is the record's version (it grows by 2 per change, so a reader that saw v before
 *                 and after its reads saw no change)
 *   odd value     held by owner id (value − 1) / 2; i32[2o+2] holds the version the holder took it at
 *
 * Deciders are the only writers of these records (the shard never writes them), so a thread that dies
 * inside its critical section is the one hazard: its lock stays held. Every decider thread has an owner
 * id in a shared table; when the engine's thread learns a linked thread is gone (its link's port closed,
 * seen on the engine thread's event loop) it marks the id dead, and the next decider that meets the lock takes it over with one compare-exchange
 * (only one can win it), repairs the record (the record kind knows how: recompute its totals from its
 * groups) and publishes a version past any a reader may hold. A live holder is waited for: spinning, then
 * `Atomics.wait` with a short timeout where the thread may block (worker threads), never past
 * `timeoutMs`; the main thread only spins, for at most `timeoutMs`, and then throws TW_RECORD_BUSY.
 *
 * Imported by worker threads: imports nothing main-only.
 */
import { ErrorCode, TallyworksError } from '../errors.js';

/** Int32 offset from 2·o of the version the holder took the lock at. */
export const LOCK_VERSION = 2;
/** Owner table states (one Int32 per owner id). */
export const OWNER_FREE = 0;
export const OWNER_ALIVE = 1;
export const OWNER_DEAD = 2;
/** Owner ids a process hands out (ids are not reused; 0 is never an owner). */
export const MAX_OWNERS = 1 << 16;

/** Plain loads of a held lock before the waiter looks at the clock (and, off the main thread, sleeps). */
const SPINS = 1 << 10;
/** How long a worker-thread waiter sleeps between looks, ms. */
const WAIT_MS = 0.05;

/** How a record kind repairs a record whose holder died mid-change. */
export interface Repairer {
  repair(f64: Float64Array, o: number): void;
}

/** One deciding thread: its owner id and what it may do while it waits. */
export class Decider {
  /** The odd lock word this decider writes while it holds a record. */
  readonly held: number;
  /** Locks taken over from dead owners (a figure for tests and stats). */
  takeovers = 0;
  /**
   * True while no other thread can decide on, or read, the records this decider writes (an engine-thread
   * limiter never linked to a worker): then {@link lockRecord} takes nothing and {@link unlockRecord}
   * publishes nothing, since decisions on one thread never overlap. Set false before the first link is
   * handed out, between two decisions; never set back.
   */
  alone = false;

  constructor(
    readonly id: number,
    /** The owner table (Int32, one per id), shared by every thread of the engine. */
    readonly owners: Int32Array,
    /** True off the main thread: the waiter may sleep in Atomics.wait. */
    readonly mayWait: boolean,
    /** The longest a decision waits for a live holder, ms. */
    readonly timeoutMs: number,
  ) {
    if (!(Number.isInteger(id) && id > 0 && id < MAX_OWNERS)) throw new RangeError(`owner id ${id} outside 1..${MAX_OWNERS - 1}`);
    this.held = 2 * id + 1;
  }
}

/**
 * Takes the lock of the record at offset `o`; returns the version to publish with {@link unlockRecord}.
 * A record whose holder is dead is repaired by `repairer` before this returns.
 */
export function lockRecord(i32: Int32Array, f64: Float64Array, o: number, d: Decider, repairer: Repairer): number {
  // Alone, a compare-exchange and a locked store are two full barriers for nothing (one run: unlinked
  // sliding decisions went from about 6.5 to 11 M/s without them).
  if (d.alone) return UNLOCKED;
  const at = 2 * o;
  // A plain load is enough for the guess: the compare-exchange is what decides.
  const v = i32[at]!;
  if ((v & 1) === 0 && Atomics.compareExchange(i32, at, v, d.held) === v) {
    i32[at + LOCK_VERSION] = v;
    return v + 2;
  }
  return lockSlow(i32, f64, o, d, repairer);
}

/** Takes the lock of the record at `o` only if it is free now; -1 if it is held (nothing is waited for). */
export function tryLockRecord(i32: Int32Array, o: number, d: Decider): number {
  const at = 2 * o;
  const v = Atomics.load(i32, at);
  if ((v & 1) !== 0 || Atomics.compareExchange(i32, at, v, d.held) !== v) return -1;
  i32[at + LOCK_VERSION] = v;
  return v + 2;
}

/** True when the record at `o` is held by an owner known to have ended. */
export function holderDead(i32: Int32Array, o: number, d: Decider): boolean {
  const w = Atomics.load(i32, 2 * o);
  return (w & 1) !== 0 && Atomics.load(d.owners, (w - 1) / 2) === OWNER_DEAD;
}

/** What {@link lockRecord} returns to a decider alone on its records: nothing was taken, nothing is published. */
export const UNLOCKED = -2;

/** Publishes the change and frees the lock. */
export function unlockRecord(i32: Int32Array, o: number, version: number): void {
  if (version !== UNLOCKED) Atomics.store(i32, 2 * o, version);
}

function lockSlow(i32: Int32Array, f64: Float64Array, o: number, d: Decider, repairer: Repairer): number {
  const at = 2 * o;
  let spins = 0;
  let deadline = 0;
  for (;;) {
    const w = Atomics.load(i32, at);
    if ((w & 1) === 0) {
      if (Atomics.compareExchange(i32, at, w, d.held) === w) {
        i32[at + LOCK_VERSION] = w;
        return w + 2;
      }
      continue;
    }
    const owner = (w - 1) / 2;
    if (owner === d.id) throw new TallyworksError(ErrorCode.PROTOCOL, `decision record ${o} is already held by this thread (owner ${owner})`);
    if (Atomics.load(d.owners, owner) === OWNER_DEAD) {
      // Only one taker wins the word; a reader may hold any version up to the one the dead holder would
      // have published (taken + 2), so the repaired record publishes taken + 4.
      if (Atomics.compareExchange(i32, at, w, d.held) === w) {
        const taken = i32[at + LOCK_VERSION]!;
        i32[at + LOCK_VERSION] = taken + 2;
        repairer.repair(f64, o);
        d.takeovers++;
        return taken + 4;
      }
      continue;
    }
    if (++spins < SPINS) continue;
    spins = 0;
    const now = performance.now();
    if (deadline === 0) deadline = now + d.timeoutMs;
    else if (now > deadline) {
      throw new TallyworksError(
        ErrorCode.RECORD_BUSY,
        `a decision record stayed locked for ${d.timeoutMs} ms by thread owner ${owner}, not known to have ended (a thread that ended is known once the engine's thread has seen it go); nothing was decided or recorded, retry`,
      );
    }
    if (d.mayWait) Atomics.wait(i32, at, w, WAIT_MS);
  }
}
