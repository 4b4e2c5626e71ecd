/**
 * A lane: the router's side of one shard, in three parts — its memory (./shard-memory.ts: arena,
 * allocator, free lists, result cells, lax indexes, consistent reads), its batch pipeline
 * (./batch-pipeline.ts: the open batch, backpressure, waiters, drains, the end-of-turn send) and the
 * supervision of its thread (./shard-supervisor.ts: attach, restart, replay). This class wires them
 * together and is what the record kinds' front ends (windows, events, counters) talk to.
 */
import type { TallyworksError } from '../../common/errors.js';
import type { ShardViews } from '../../common/layout.js';
import type { CalConfig, RecordKind, ShardStats } from '../../common/messages.js';
import type { ResolvedOptions } from '../options.js';
import { BatchPipeline, type PipelineConfig } from './batch-pipeline.js';
import { DecisionArena } from './decision-arena.js';
import { MISSED, ShardMemory } from './shard-memory.js';
import { ShardSupervisor } from './shard-supervisor.js';

export { MISSED } from './shard-memory.js';

/** What a lane needs of the engine options (see EngineOptions for each one's meaning). */
export type LaneConfig = PipelineConfig & Pick<ResolvedOptions, 'maxRestarts' | 'maxShardMemoryBytes'>;

export class Lane {
  readonly index: number;
  readonly memory: ShardMemory;
  /** Decision records' memory (./decision-arena.ts): written by deciders, never by the shard. */
  readonly decisions: DecisionArena;
  /** The batch pipeline: record kinds append their ops to it directly (`lane.batches.append`). */
  readonly batches: BatchPipeline;
  private readonly supervisor: ShardSupervisor;

  constructor(index: number, config: LaneConfig, timeCell: SharedArrayBuffer, touchClock?: () => void) {
    this.index = index;
    this.memory = new ShardMemory(index, config.maxShardMemoryBytes);
    this.decisions = new DecisionArena(index, config.maxShardMemoryBytes);
    this.batches = new BatchPipeline(index, config, this.memory, timeCell, touchClock, (on) => this.supervisor.keepAlive(on));
    this.supervisor = new ShardSupervisor(index, config, this.memory, this.batches, timeCell);
  }

  start(): Promise<void> {
    return this.supervisor.start();
  }

  // ── ops ───────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Reserves `words` 8-byte words for a new record of `kind` and queues its creation in the open batch,
   * with the kind's two parameters (common/messages.ts INIT_STRIDE).
   */
  createRecord(words: number, kind: RecordKind, a: number, b = 0): number {
    this.batches.check();
    const offset = this.memory.takeRecord(words);
    this.batches.appendInit(offset, kind, a, b);
    return offset;
  }

  /**
   * Lets a record go (compact): the shard clears it in order with the ops before, and its words are reused
   * for a record of the same size once the shard has applied that. The caller must drop its handle.
   */
  releaseRecord(offset: number, words: number): Promise<void> {
    this.batches.appendCtrl({ type: 'release', offset });
    // Many records let go in one turn (an idle sweep, a compaction) share one drain.
    return this.drainSoon().then(() => this.memory.returnRecord(offset, words));
  }

  /** {@link releaseRecord} for many records of one size: one promise for all of them. */
  releaseRecords(offsets: readonly number[], words: number): Promise<void> {
    for (const offset of offsets) this.batches.appendCtrl({ type: 'release', offset });
    return this.drainSoon().then(() => {
      for (const offset of offsets) this.memory.returnRecord(offset, words);
    });
  }

  /** Registers a calendar config with the shard (in order, before any record that uses it). */
  registerCalendar(config: CalConfig): void {
    this.batches.check();
    this.supervisor.calendars.push(config);
    this.batches.appendCalendar(config);
  }

  allocLaxIndex(): number {
    return this.memory.allocLaxIndex();
  }

  allocCell(): number {
    return this.memory.allocCell();
  }

  freeCell(cell: number): void {
    this.memory.freeCell(cell);
  }

  readCell(cell: number): [number, number] {
    return this.memory.readCell(cell);
  }

  resetCell(cell: number): void {
    this.memory.resetCell(cell);
  }

  // ── reads ─────────────────────────────────────────────────────────────────────────────────────────

  isIdle(): boolean {
    return this.batches.isIdle();
  }

  drain(): Promise<void> {
    return this.batches.drain();
  }

  private soon: Promise<void> | undefined;
  /**
   * A drain at the end of this turn, shared by every caller of the turn: many stored counters reloaded at
   * once go to the shard as one batch, not one batch each.
   */
  drainSoon(): Promise<void> {
    this.soon ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.soon = undefined;
      return this.batches.drain();
    });
    return this.soon;
  }

  readConsistent<T>(offset: number, read: (views: ShardViews) => T): T | typeof MISSED {
    return this.memory.readConsistent(offset, read);
  }

  /**
   * Reads the record at `offset` at the clock's now once the shard has applied everything this thread sent
   * to it, so a read sees every op issued before it.
   */
  async readSettled<T>(offset: number, clock: { now(): number }, read: (views: ShardViews, now: number) => T): Promise<T> {
    for (;;) {
      if (!this.batches.isIdle()) await this.batches.drain();
      const now = clock.now();
      const value = this.memory.readConsistent(offset, (v) => read(v, now));
      if (value !== MISSED) return value;
      // A writer held the record's seqlock for the whole spin: its thread died mid-write. The replacement
      // repairs the record; give the event loop a turn so the restart can run.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  // ── lifecycle ─────────────────────────────────────────────────────────────────────────────────────

  async stats(): Promise<ShardStats & { restarts: number; inflight: number; queuedOps: number; decisionBytes: number }> {
    const s = await this.supervisor.stats();
    return { ...s, restarts: this.supervisor.restarts, inflight: this.batches.inflightCount(), queuedOps: this.batches.queuedOps(), decisionBytes: this.decisions.byteLength };
  }

  /** Drains, then refuses further ops and ends the shard's thread. */
  async close(): Promise<void> {
    try {
      await this.batches.close();
    } finally {
      await this.supervisor.close();
    }
    if (this.batches.failed !== undefined) throw this.batches.failed;
  }

  /** Test hook: kills the shard thread as a crash would. */
  killThreadForTest(): Promise<void> {
    return this.supervisor.killThreadForTest();
  }

  get failed(): TallyworksError | undefined {
    return this.batches.failed;
  }

  /** The shard's header, arena and dirty bitmap (what the flusher attaches to). */
  get header(): SharedArrayBuffer {
    return this.memory.header;
  }

  get arena(): SharedArrayBuffer {
    return this.memory.arena;
  }

  get dirty(): SharedArrayBuffer {
    return this.memory.dirty;
  }
}
