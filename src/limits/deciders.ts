/**
 * The engine's deciding threads: the owner table the decision records' locks name their holders in
 * (common/records/owner-lock.ts), the owner ids handed out (the engine's thread is 1; each linked worker
 * thread gets its own), and the stamps that tell a decision record's allocations apart.
 */
import { ErrorCode, TallyworksError } from '../../common/errors.js';
import { Decider, MAX_OWNERS, OWNER_ALIVE, OWNER_DEAD } from '../../common/records/owner-lock.js';

/** The owner id of the engine's own thread. */
export const MAIN_OWNER = 1;

export class DeciderRegistry {
  /** One Int32 per owner id: OWNER_FREE, OWNER_ALIVE or OWNER_DEAD; shared with linked threads. */
  readonly owners = new Int32Array(new SharedArrayBuffer(MAX_OWNERS * 4));
  private nextOwner = MAIN_OWNER + 1;
  private nextStamp = 1;

  constructor() {
    Atomics.store(this.owners, MAIN_OWNER, OWNER_ALIVE);
  }

  /** A decider for the engine's thread (it only spins, for at most `timeoutMs`). */
  mainDecider(timeoutMs: number): Decider {
    return new Decider(MAIN_OWNER, this.owners, false, timeoutMs);
  }

  /** A new owner id for a thread about to decide (a linked worker). */
  register(): number {
    if (this.nextOwner >= MAX_OWNERS) throw new TallyworksError(ErrorCode.CAPACITY, `this engine has handed out all ${MAX_OWNERS - 2} owner ids for linked threads`);
    const id = this.nextOwner++;
    Atomics.store(this.owners, id, OWNER_ALIVE);
    return id;
  }

  /** The thread of owner `id` is gone: the next decider that meets a lock it held repairs the record. */
  markDead(id: number): void {
    if (id !== MAIN_OWNER) Atomics.store(this.owners, id, OWNER_DEAD);
  }

  /** A stamp for a new decision record (never 0: 0 marks a retired record). */
  stamp(): number {
    const s = this.nextStamp;
    this.nextStamp = s >= 0x7fff_ffff ? 1 : s + 1;
    return s;
  }
}
