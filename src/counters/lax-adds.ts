/**
 * The add of a lax counter (plain or instance-aware) with Redis, and the cap on keys holding undelivered
 * deltas (`maxPendingKeys`), shared by both kinds: one count of the keys Redis has not taken yet.
 */
import { argumentRangeError, argumentTypeError, ErrorCode, TallyworksError } from '../../common/errors.js';
import { CNTF_COMMITTED } from '../../common/layout.js';
import type { FlusherClient } from '../flusher/flusher-client.js';
import type { CounterRecord } from './local-counters.js';

/** The error for a delta that is not a safe integer: a TypeError for a non-number, else a RangeError. */
export function badDelta(n: unknown): never {
  if (typeof n !== 'number') throw argumentTypeError('n', 'a safe integer (|x| ≤ 2^53 − 1)', n);
  throw argumentRangeError('n', 'a safe integer (|x| ≤ 2^53 − 1)', n);
}

export class LaxAdds {
  /**
   * Keys that may hold an undelivered delta: counted when this thread first adds to a clean key, and let go
   * once the flusher has delivered everything added to them (committed = appended). The cap is enforced on
   * this count, where a key is first accepted, not on the flusher's gauge, which lags a cycle.
   */
  private readonly capped = new Set<CounterRecord>();
  /** The flusher cycle at the last look for delivered keys (at most one look per cycle at the cap). */
  private sweptAtCycle = -1;

  constructor(
    private readonly flusher: FlusherClient | undefined,
    private readonly maxPendingKeys: number,
  ) {}

  /** The add itself, once `n` is checked: the pending-keys cap (with Redis), then the shard op. */
  add(rec: CounterRecord, n: number): void {
    if (this.flusher !== undefined) {
      // Given up: nothing would deliver the delta. (A flusher being replaced still takes adds.)
      if (this.flusher.failed !== undefined) throw this.flusher.failed;
      if (!rec.capped) this.admitKey(rec);
      rec.appended += n;
    }
    rec.lane.batches.append(rec.offset, n);
  }

  /**
   * A clean key is about to hold a delta: counted, unless `maxPendingKeys` keys may already hold one. At the
   * cap, the counted keys whose deltas the flusher has delivered since are let go first (a look at each one's
   * committed total, at most once per flusher cycle: a Redis outage keeps them all pending); if none was,
   * the add is refused with TW_CAPACITY and nothing is added.
   */
  private admitKey(rec: CounterRecord): void {
    if (this.capped.size >= this.maxPendingKeys) {
      const cycle = this.flusher!.cycles();
      if (cycle !== this.sweptAtCycle) {
        this.sweptAtCycle = cycle;
        for (const r of this.capped) {
          if (r.lane.readConsistent(r.offset, (v) => v.f64[r.offset + CNTF_COMMITTED]!) === r.appended) {
            r.capped = false;
            this.capped.delete(r);
          }
        }
      }
      if (this.capped.size >= this.maxPendingKeys) {
        throw new TallyworksError(
          ErrorCode.CAPACITY,
          `${this.maxPendingKeys} lax counters hold deltas Redis has not taken yet (maxPendingKeys); "${rec.key}" is not one of them, so its increment was refused`,
        );
      }
    }
    rec.capped = true;
    this.capped.add(rec);
  }
}
