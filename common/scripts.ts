/**
 * The Lua scripts the engine runs in Redis (common/scripts/*.lua), each a typed {@link RedisScript}: its
 * source, its SHA (pinned in test/common/scripts.test.ts) and the one call that runs it, so no code reaches
 * for a method ioredis adds at run time. The script numbers (op modes, comparators, reply status) are the
 * constants below and in messages.ts; the same test reads them from the script's header.
 *
 * Imported by the flusher thread as well as the main thread: imports nothing main-only.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { decode, encode } from './codec.js';

export { IaMode, Mode, type ModeCode } from './messages.js';
/** Reply status of the apply script. */
export const ApplyStatus = { APPLIED: 1, REPLAYED: 2, STALE: 3 } as const;
export type ApplyStatusCode = (typeof ApplyStatus)[keyof typeof ApplyStatus];

/** How long a call's marker outlives its last use: a call in flight longer than this could be doubled. */
export const MARKER_TTL_MS = 24 * 60 * 60 * 1000;

/** What a script needs of a client: ioredis's defineCommand (EVALSHA, EVAL on NOSCRIPT, per connection). */
interface ScriptHost {
  defineCommand(name: string, definition: { lua: string; numberOfKeys?: number }): void;
}

/**
 * One script: `Args` are its keys then its arguments, `Reply` what Redis answers (Buffers for bulk strings
 * when `buffers` is set). `define` registers it on a client the engine opened; `run` defines it on first
 * use (a client the user passed to redisSink) and calls it.
 */
export class RedisScript<Args extends ReadonlyArray<string | number | Buffer>, Reply> {
  readonly lua: string;
  readonly sha: string;

  constructor(
    readonly file: string,
    private readonly command: string,
    /** undefined: the call's first argument is the number of keys (a script of as many keys as ops). */
    private readonly numberOfKeys: number | undefined,
    private readonly buffers: boolean,
  ) {
    this.lua = readFileSync(new URL(`../../common/scripts/${file}`, import.meta.url), 'utf8');
    this.sha = createHash('sha1').update(this.lua).digest('hex');
  }

  define(client: ScriptHost): void {
    client.defineCommand(this.command, { numberOfKeys: this.numberOfKeys, lua: this.lua });
  }

  run(client: ScriptHost, ...args: Args): Promise<Reply> {
    const methods = client as unknown as Record<string, ((...a: Args) => Promise<Reply>) | undefined>;
    const name = this.buffers ? `${this.command}Buffer` : this.command;
    if (typeof methods[name] !== 'function') this.define(client);
    return methods[name]!.call(client, ...args);
  }
}

/** common/scripts/apply.lua: one call's counter ops on one partition, at most once per (instance, seq). */
export const APPLY = new RedisScript<[partition: string, marker: string, seq: number, ttlMs: number, ops: Buffer], [status: number, packed: Buffer]>(
  'apply.lua',
  'twApply',
  2,
  true,
);

/**
 * common/scripts/inc.lua: apply.lua's common case (every op an unconditional increment), leaner; the same
 * marker and sequence.
 */
export const INC = new RedisScript<[partition: string, marker: string, seq: number, ttlMs: number, ops: Buffer], [status: number, packed: Buffer]>('inc.lua', 'twInc', 2, true);

/** common/scripts/ia.lua: one call's instance-aware counter ops on one partition, at most once per (engine, seq). */
export const IA = new RedisScript<
  [partition: string, marker: string, registry: string, generations: string, sweep: string, seq: number, ttlMs: number, instance: string, thresholdMs: number, ops: Buffer],
  [status: number, packed: Buffer]
>('ia.lua', 'twIa', 5, true);

/** common/scripts/ia-beat.lua: a heartbeat (or leaving) on one instance-aware partition; answers the live incarnations. */
export const IA_BEAT = new RedisScript<
  [partition: string, registry: string, generations: string, sweep: string, instance: string, thresholdMs: number, retentionMs: number, mode: number],
  string[]
>('ia-beat.lua', 'twIaBeat', 4, false);

/** What ia-beat.lua does for its caller. */
export const BeatMode = { BEAT: 1, LEAVE: 2 } as const;

/** The keys of one instance-aware partition besides its hash (all in its slot: the hash's name is the tag). */
export interface IaPartitionKeys {
  readonly partition: string;
  readonly registry: string;
  readonly generations: string;
  readonly sweep: string;
}

export function iaPartitionKeys(partition: string): IaPartitionKeys {
  return { partition, registry: `${partition}:r`, generations: `${partition}:g`, sweep: `${partition}:w` };
}

/** How an instance-aware call identifies its caller: the instance, and the dead-instance threshold it counts by. */
export interface IaCaller {
  readonly instanceId: string;
  readonly thresholdMs: number;
}

/**
 * Runs the instance-aware script: `ops` are 5 values per op (see common/scripts/ia.lua); results are 4 per
 * op: cumulative after, my slice after, cumulative before, my slice before (after = false: refused).
 */
export async function runIa(client: ScriptHost, keys: IaPartitionKeys, marker: string, seq: number, caller: IaCaller, ops: Array<string | number>): Promise<ApplyReply> {
  const [status, packed] = await IA.run(client, keys.partition, marker, keys.registry, keys.generations, keys.sweep, seq, MARKER_TTL_MS, caller.instanceId, caller.thresholdMs, encodeArgs(ops));
  const code = Number(status) as ApplyStatusCode;
  return { status: code, results: code === ApplyStatus.STALE ? [] : applyResults(packed) };
}

/** Heartbeat (or leave) on one instance-aware partition; the instance ids live there after it. */
export async function runBeat(client: ScriptHost, keys: IaPartitionKeys, caller: IaCaller, retentionMs: number, mode: number): Promise<string[]> {
  const live = await IA_BEAT.run(client, keys.partition, keys.registry, keys.generations, keys.sweep, caller.instanceId, caller.thresholdMs, retentionMs, mode);
  return [...new Set(live.map((inc) => inc.slice(0, inc.lastIndexOf('#'))))];
}

/** common/scripts/rl.lua: one call's sliding-window rate-limit decisions on one partition (index, then an entity per op). */
export const RATE = new RedisScript<[numberOfKeys: number, ...keysThenArgs: Array<string | Buffer>], Buffer>('rl.lua', 'twRate', undefined, true);

/** common/scripts/rl-clean.lua: deletes the entities of a partition's index idle longer than the given ms. */
export const RATE_CLEAN = new RedisScript<[numberOfKeys: number, ...keysThenArgs: Array<string | number>], number>('rl-clean.lua', 'twRateClean', undefined, false);

/** rl.lua's strategies and its suppressed outcomes. */
export const RateStrategy = { ABSOLUTE: 1, SUPPRESSED: 2, COMMIT: 3 } as const;
export const RateOutcome = { BELOW_SOFT: 0, ADMITTED: 1, DECLINED: 2 } as const;

/**
 * Runs rl.lua: `entities` one per op, `config` [strategy, windows, windowMs, groupMs, …], `ops` flat (see
 * the script); 4 result values per op.
 */
export async function runRate(client: ScriptHost, index: string, entities: readonly string[], config: readonly number[], ops: readonly number[]): Promise<number[]> {
  const packed = await RATE.run(client, entities.length + 1, index, ...entities, encodeArgs(config), encodeArgs(ops));
  return numbers(decode<Array<number | bigint>>(packed) as Array<number | bigint | false>) as number[];
}

/**
 * Runs rl.lua's COMMIT strategy: as {@link runRate}, with the calling engine's `marker` for the partition
 * and the call's sequence (a sequence the marker holds already counts nothing: see the script).
 */
export async function runRateCommit(client: ScriptHost, index: string, marker: string, seq: number, entities: readonly string[], config: readonly number[], ops: readonly number[]): Promise<number[]> {
  const packed = await RATE.run(client, entities.length + 2, index, marker, ...entities, encodeArgs(config), encodeArgs(ops), String(seq), String(MARKER_TTL_MS));
  return numbers(decode<Array<number | bigint>>(packed) as Array<number | bigint | false>) as number[];
}

/** Runs rl-clean.lua on `entities` of `index`: deletes those idle longer than `staleAfterMs` (Redis time); returns how many. */
export async function runRateClean(client: ScriptHost, index: string, entities: readonly string[], staleAfterMs: number): Promise<number> {
  return Number(await RATE_CLEAN.run(client, entities.length + 1, index, ...entities, staleAfterMs));
}

/** common/scripts/buffer-sink.lua: one stat buffer flush into a hash, once per flush id. */
export const BUFFER_SINK = new RedisScript<[hash: string, marker: string, ttlMs: number, entries: Buffer], number>('buffer-sink.lua', 'twBufferSink', 2, false);

export interface ApplyReply {
  readonly status: ApplyStatusCode;
  /** new, old per op (new is false for an INC refused as out of the safe-integer range). */
  readonly results: Array<number | false>;
}

/** Values as one msgpack argument (a Buffer over the encoded bytes: ioredis writes it later, unchanged). */
function encodeArgs(values: ReadonlyArray<string | number>): Buffer {
  const bytes = encode(values);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** msgpack gives 64-bit integers past 2^53 as BigInt (a value someone else wrote): as the nearest number. */
function numbers(results: Array<number | bigint | false>): Array<number | false> {
  return results.map((r) => (typeof r === 'bigint' ? Number(r) : r));
}

/** Runs the apply script: `ops` are 5 values per op (see common/scripts/apply.lua), sent as one msgpack argument. */
export async function runApply(client: ScriptHost, partition: string, marker: string, seq: number, ops: Array<string | number>): Promise<ApplyReply> {
  const [status, packed] = await APPLY.run(client, partition, marker, seq, MARKER_TTL_MS, encodeArgs(ops));
  const code = Number(status) as ApplyStatusCode;
  return { status: code, results: code === ApplyStatus.STALE ? [] : applyResults(packed) };
}

/** What inc.lua answers per op: the new value, or [the value as it is] for a refused increment. */
type IncResult = number | bigint | [number | bigint];

/**
 * inc.lua's results (one per op) in apply.lua's layout (new, old per op), given the ops (field, n per op):
 * old = new − n; a refused increment is new = false, old = the value it found.
 */
export function incResults(packed: Uint8Array, ops: ReadonlyArray<string | number>): Array<number | false> {
  const raw = decode<IncResult[]>(packed);
  const out = new Array<number | false>(2 * raw.length);
  for (let i = 0; i < raw.length; i++) {
    const r = raw[i]!;
    if (typeof r === 'object') {
      out[2 * i] = false;
      out[2 * i + 1] = Number(r[0]);
    } else {
      const v = Number(r);
      out[2 * i] = v;
      out[2 * i + 1] = v - (ops[2 * i + 1] as number);
    }
  }
  return out;
}

/**
 * Runs the lean increment script: `ops` are field, n per op (unconditional increments); the reply is in
 * apply.lua's layout, as {@link runApply}'s.
 */
export async function runInc(client: ScriptHost, partition: string, marker: string, seq: number, ops: Array<string | number>): Promise<ApplyReply> {
  const [status, packed] = await INC.run(client, partition, marker, seq, MARKER_TTL_MS, encodeArgs(ops));
  const code = Number(status) as ApplyStatusCode;
  return { status: code, results: code === ApplyStatus.STALE ? [] : incResults(packed, ops) };
}

/** A call marker's stored bytes: the sequence, and the results as the script packed them. */
export async function readMarkerRaw(client: { getBuffer(key: string): Promise<Buffer | null> }, marker: string): Promise<{ seq: number; packed: Buffer } | undefined> {
  const stored = await client.getBuffer(marker);
  if (stored === null) return undefined;
  const colon = stored.indexOf(0x3a);
  return { seq: Number(stored.subarray(0, colon).toString('latin1')), packed: stored.subarray(colon + 1) };
}

/** apply.lua's packed results as numbers (new, old per op; new is false for a refused op). */
export function applyResults(packed: Uint8Array): Array<number | false> {
  return numbers(decode<Array<number | bigint | false>>(packed));
}

/** Reads a call marker apply.lua wrote: the last sequence of its instance applied on the partition, and its results. */
export async function readMarker(client: { getBuffer(key: string): Promise<Buffer | null> }, marker: string): Promise<{ seq: number; results: Array<number | false> } | undefined> {
  const raw = await readMarkerRaw(client, marker);
  return raw === undefined ? undefined : { seq: raw.seq, results: applyResults(raw.packed) };
}

/**
 * Adds `entries` ([key, count] pairs) to `hash` with HINCRBY, once per flush: true when added now, false
 * when that flush's marker `marker` was there (added before).
 */
export async function addFlush(client: ScriptHost, hash: string, marker: string, ttlMs: number, entries: Array<string | number>): Promise<boolean> {
  return (await BUFFER_SINK.run(client, hash, marker, ttlMs, encodeArgs(entries))) === 1;
}
