/**
 * What each kind of Redis counter data runs through the strict client (./strict-redis.ts): strict counters
 * (apply.lua, or inc.lua for a call of unconditional increments only) and instance-aware strict counters
 * (ia.lua), and how a single op's answer is read from a call's results.
 */
import type { Buffer } from 'node:buffer';
import { Cmp } from '../../common/messages.js';
import type { RedisClient } from '../../common/redis.js';
import { type ApplyReply, applyResults, type IaCaller, iaPartitionKeys, incResults, Mode, runApply, runIa, runInc } from '../../common/scripts.js';
import { Pick } from './counters.js';

/**
 * What a kind of Redis counter data runs: its partitions' kind, its script, and its results' shape. Strict
 * counters ({@link STRICT}) and instance-aware strict counters ({@link instanceAware}) share the rest.
 */
export interface StrictFlavor {
  /** The kind in the partition names ('s', 'is'). */
  readonly kind: string;
  /** Result values per op. */
  readonly stride: number;
  /** Runs one call (`args`: 5 values per op) on partition hash `partition`. */
  send(client: RedisClient, partition: string, marker: string, seq: number, args: Array<string | number>): Promise<ApplyReply>;
  /** A landed call's results from the packed bytes its marker holds. */
  fromMarker(packed: Buffer, args: ReadonlyArray<string | number>): Array<number | false>;
  /**
   * What a single op's caller gets from the call's `results` (op at `from`), or undefined: refused. The
   * op's "before" value (for {@link refusedError}) is at `stride * from + stride / 2` in every flavour.
   */
  pick(results: readonly number[], from: number, pick: number): unknown;
}

/** Strict counters: apply.lua, or inc.lua for a call of unconditional increments only. */
export const STRICT: StrictFlavor = {
  kind: 's',
  stride: 2,
  send(client, partition, marker, seq, args) {
    const pairs = seq > 0 ? incPairs(args) : undefined;
    return pairs === undefined ? runApply(client, partition, marker, seq, args) : runInc(client, partition, marker, seq, pairs);
  },
  fromMarker(packed, args) {
    const pairs = incPairs(args);
    return pairs === undefined ? applyResults(packed) : incResults(packed, pairs);
  },
  pick(results, from, pick) {
    const next = results[2 * from]!;
    const old = results[2 * from + 1]!;
    if (Number.isNaN(next)) return undefined;
    return pick === Pick.NEW ? next : pick === Pick.OLD ? old : [next, old];
  },
};

/** What an instance-aware op's caller gets besides {@link Pick}'s: [cumulative after, my slice before] (delOnInstance). */
export const PICK_CUMULATIVE_AND_OLD_SLICE = 3;

/** Instance-aware strict counters of `caller` (ia.lua: 4 results per op). */
export function instanceAware(caller: IaCaller): StrictFlavor {
  return {
    kind: 'is',
    stride: 4,
    send: (client, partition, marker, seq, args) => runIa(client, iaPartitionKeys(partition), marker, seq, caller, args),
    fromMarker: (packed) => applyResults(packed),
    pick: (results, from, pick) => iaPick(results, 4 * from, pick),
  };
}

/**
 * An instance-aware op's answer from its 4 results at `at`: see {@link Pick}; undefined when refused, or
 * when the cumulative after it is not a safe integer (live slices of a returning instance added up past
 * the range: a read reports that as an error rather than an inexact number).
 */
export function iaPick(results: readonly number[], at: number, pick: number): unknown {
  const c1 = results[at]!;
  const m1 = results[at + 1]!;
  const c0 = results[at + 2]!;
  const m0 = results[at + 3]!;
  if (!Number.isSafeInteger(c1)) return undefined;
  if (pick === Pick.NEW) return [c1, m1];
  if (pick === Pick.OLD) return [c0, m0];
  if (pick === PICK_CUMULATIVE_AND_OLD_SLICE) return [c1, m0];
  return [
    [c1, m1],
    [c0, m0],
  ];
}

/**
 * The lean script's ops (field, n per op) from apply.lua's (mode, field, cmp, x, n per op), or undefined
 * when one of them is not an unconditional increment.
 */
function incPairs(args: ReadonlyArray<string | number>): Array<string | number> | undefined {
  const pairs = new Array<string | number>((args.length / 5) * 2);
  for (let i = 0, j = 0; i < args.length; i += 5, j += 2) {
    if (args[i] !== Mode.INC || args[i + 2] !== Cmp.ALWAYS) return undefined;
    pairs[j] = args[i + 1]!;
    pairs[j + 1] = args[i + 4]!;
  }
  return pairs;
}

