/**
 * Rate limiter links: how an app's worker thread decides on the same decision records as the engine's
 * thread. `limiter.link()` hands out a port, an owner id and the shared cells; `connectRateLimiter(link)`
 * in the worker builds the same `local.absolute` / `local.suppressed` providers over them. A decision in
 * the worker is as synchronous as on the engine's thread: only a key the worker has not met yet costs a
 * round trip (the worker asks, blocks in Atomics.wait until the engine's thread answers, for at most
 * `lockTimeoutMs` × 50), and that answer is the record's place, cached from then on.
 *
 * When a linked thread ends (its port closes, also when it is terminated mid-decision), its owner id is
 * marked dead: a lock it held is taken over and the record repaired by the next decider that meets it
 * (common/records/owner-lock.ts).
 */
import type { TimeSource } from '../clock/clock.js';
import { MessageChannel, MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import { argumentTypeError, closedError, ErrorCode, reviveError, TallyworksError, toWireError } from '../../common/errors.js';
import type { RateLinkToClient as ToClient, RateLinkToHost as ToHost } from '../../common/messages.js';
import { Decider } from '../../common/records/owner-lock.js';
import { SlidingShape, stampOf } from '../../common/records/sliding.js';
import { validateKey } from '../keys.js';
import type { DecisionSegment } from '../router/decision-arena.js';
import { type DecisionContext, LocalAbsolute, LocalSuppressed } from './providers.js';
import type { ResolvedRateOptions } from './rate-options.js';
import type { RecordSource, SlidingDirectory, SlidingEntry } from './sliding-directory.js';

/** Hand this to a worker thread (`new Worker(file, { workerData: link, transferList: [link.port] })`) and call `connectRateLimiter` there. */
export interface RateLimiterLink {
  readonly port: MessagePort;
  /** The linked thread's owner id in the engine's owner table. */
  readonly owner: number;
  readonly owners: SharedArrayBuffer;
  /** Int32 [0] bumped and notified by the engine's thread after each answer; [1] set once the engine closed. */
  readonly wake: SharedArrayBuffer;
  /** The engine clock's time cell, and whether the worker reads it ('cell', a test clock) or Date.now() ('system'). */
  readonly timeCell: SharedArrayBuffer;
  readonly clock: 'cell' | 'system';
  readonly windowSeconds: number;
  readonly groupMs: number;
  readonly hardLimitFactor: number;
  readonly suppressionFactorCacheMs: number;
  readonly lockTimeoutMs: number;
}

/** Handles a linked thread keeps before it first looks for retired ones. */
const PRUNE_MIN = 4096;

/** A test clock's time, read from its cell. */
class CellTime implements TimeSource {
  constructor(private readonly cell: Float64Array) {}

  now(): number {
    return this.cell[0]!;
  }
}

/** The wall clock (a worker thread has no ticker of its own). */
const WALL_TIME: TimeSource = { now: () => Date.now() };

/** The engine's side of a limiter's links: answers where records are, and marks ended threads dead. */
export class RateLinkHost {
  private readonly ports = new Map<MessagePort, Int32Array>();
  private closing = false;

  constructor(
    private readonly directories: { readonly absolute: SlidingDirectory; readonly suppressed: SlidingDirectory },
    private readonly time: TimeSource,
    private readonly markDead: (owner: number) => void,
  ) {}

  open(owner: number, fields: Omit<RateLimiterLink, 'port' | 'owner' | 'wake'>): RateLimiterLink {
    const { port1, port2 } = new MessageChannel();
    const wake = new SharedArrayBuffer(8);
    const cell = new Int32Array(wake);
    this.ports.set(port1, cell);
    port1.on('message', (m: ToHost) => {
      const reply = this.answer(m);
      if (reply === undefined) return;
      port1.postMessage(reply);
      Atomics.add(cell, 0, 1);
      Atomics.notify(cell, 0);
    });
    port1.on('close', () => {
      this.ports.delete(port1);
      // The thread ended (or closed its link): a lock it still held is taken over. Not when the engine
      // closed the port itself: then the thread may still be deciding, and is told to stop instead.
      if (!this.closing) this.markDead(owner);
    });
    port1.unref();
    return { ...fields, port: port2, owner, wake };
  }

  private answer(m: ToHost): ToClient | undefined {
    switch (m.t) {
      case 'resolve':
        try {
          const dir = this.directories[m.strategy];
          const key = validateKey(m.key, 'key');
          if (!m.create && dir.get(key) === undefined) return { t: 'absent', id: m.id };
          const e = dir.getOrCreate(key, this.time.now());
          return { t: 'resolved', id: m.id, segment: e.views.buffer, segmentId: e.lane * 0x1_0000 + e.views.index, offset: e.offset, stamp: e.stamp };
        } catch (err) {
          return { t: 'failed', id: m.id, error: toWireError(err) };
        }
      case 'bye':
        return undefined;
      default:
        // Not from a LinkedRateLimiter: say so, without taking the engine's thread down.
        process.emitWarning(`tallyworks: a rate limiter link received an unknown message (${JSON.stringify((m satisfies never as { t?: unknown }).t)}); ignored`);
        return undefined;
    }
  }

  /** Ends every link (the engine closes): linked threads' decisions throw TW_CLOSED from their next one. */
  close(): void {
    this.closing = true;
    for (const [port, cell] of this.ports) {
      Atomics.store(cell, 1, 1);
      Atomics.add(cell, 0, 1);
      Atomics.notify(cell, 0);
      port.close();
    }
  }
}

/** A worker thread's directory: the records it has met, and the round trip for one it has not. */
class LinkedDirectory implements RecordSource {
  private readonly entries = new Map<string, SlidingEntry>();
  private readonly segments = new Map<number, DecisionSegment>();
  private readonly wake: Int32Array;
  /** The size at which retired handles are dropped (see getOrCreate). */
  private pruneAt = PRUNE_MIN;

  constructor(
    readonly shape: SlidingShape,
    private readonly strategy: 'absolute' | 'suppressed',
    private readonly link: RateLimiterLink,
    /** Request numbers, shared by every directory on the link's port (a late answer must match no other request). */
    private readonly requests: { next: number },
  ) {
    this.wake = new Int32Array(link.wake);
  }

  get(key: string): SlidingEntry | undefined {
    return this.entries.get(key);
  }

  forget(key: string): void {
    this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }

  getOrCreate(key: string): SlidingEntry {
    return this.entries.get(key) ?? this.ask(key, true)!;
  }

  find(key: string): SlidingEntry | undefined {
    return this.entries.get(key) ?? this.ask(key, false);
  }

  /** Asks the engine's thread where the record of `key` is (made if new when `create`), and waits for the answer. */
  private ask(key: string, create: boolean): SlidingEntry | undefined {
    if (Atomics.load(this.wake, 1) !== 0) throw closedError('engine');
    if (this.entries.size >= this.pruneAt) this.prune();
    const id = ++this.requests.next;
    let seen = Atomics.load(this.wake, 0);
    this.link.port.postMessage({ t: 'resolve', id, strategy: this.strategy, key, create } satisfies ToHost);
    const waitMs = this.link.lockTimeoutMs * 50;
    const deadline = performance.now() + waitMs;
    for (;;) {
      for (let m = receiveMessageOnPort(this.link.port); m !== undefined; m = receiveMessageOnPort(this.link.port)) {
        const reply = m.message as ToClient;
        if (reply.id !== id) continue; // an answer to a call that gave up waiting
        if (reply.t === 'failed') throw reviveError(reply.error);
        if (reply.t === 'absent') return undefined;
        const entry: SlidingEntry = { views: this.segmentOf(reply.segmentId, reply.segment), lane: Math.floor(reply.segmentId / 0x1_0000), offset: reply.offset, stamp: reply.stamp };
        this.entries.set(key, entry);
        return entry;
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new TallyworksError(ErrorCode.RECORD_BUSY, `the engine's thread did not say where the record of ${JSON.stringify(key)} is within ${waitMs} ms (is it blocked, or closed?); nothing was decided`);
      }
      Atomics.wait(this.wake, 0, seen, left);
      seen = Atomics.load(this.wake, 0);
    }
  }

  /** Drops the handles of records the engine's cleanup has retired, so that the map holds live keys only. */
  private prune(): void {
    for (const [key, e] of this.entries) if (stampOf(e.views.i32, e.offset) !== e.stamp) this.entries.delete(key);
    this.pruneAt = Math.max(PRUNE_MIN, 2 * this.entries.size);
  }

  private segmentOf(id: number, buffer: SharedArrayBuffer): DecisionSegment {
    let segment = this.segments.get(id);
    if (segment === undefined) {
      segment = { index: id % 0x1_0000, buffer, i32: new Int32Array(buffer), f64: new Float64Array(buffer) };
      this.segments.set(id, segment);
    }
    return segment;
  }
}

/** In a worker thread: a rate limiter deciding on the records of the limiter behind `link`. */
export class LinkedRateLimiter {
  readonly local: { readonly absolute: LocalAbsolute; readonly suppressed: LocalSuppressed };
  private ended = false;

  constructor(private readonly link: RateLimiterLink) {
    const ended = (): boolean => this.ended;
    const cell = new Float64Array(link.timeCell, 0, 1);
    const flags = new Int32Array(link.wake);
    const state = { get closed(): boolean { return ended() || flags[1] !== 0; } };
    const ctx: DecisionContext = { time: link.clock === 'cell' ? new CellTime(cell) : WALL_TIME, state };
    const decider = new Decider(link.owner, new Int32Array(link.owners), true, link.lockTimeoutMs);
    const windows = [{ name: 'window', limit: NaN, windowSeconds: link.windowSeconds, windowMs: link.windowSeconds * 1000, groupMs: link.groupMs }];
    const options: Pick<ResolvedRateOptions, 'windows' | 'hardLimitFactor' | 'suppressionFactorCacheMs' | 'random'> = {
      windows,
      hardLimitFactor: link.hardLimitFactor,
      suppressionFactorCacheMs: link.suppressionFactorCacheMs,
      random: Math.random,
    };
    const requests = { next: 0 };
    const absolute = new LinkedDirectory(new SlidingShape(windows, false), 'absolute', link, requests);
    const suppressed = new LinkedDirectory(new SlidingShape(windows, true), 'suppressed', link, requests);
    this.local = Object.freeze({ absolute: new LocalAbsolute(ctx, absolute, decider, options), suppressed: new LocalSuppressed(ctx, suppressed, decider, options) });
  }

  /** Ends the link: decisions on this thread throw TW_CLOSED from now on (as they do once the engine closed). */
  close(): void {
    if (this.ended) return;
    this.ended = true;
    this.link.port.postMessage({ t: 'bye' } satisfies ToHost);
    this.link.port.close();
  }
}

/** In a worker thread: connects to the limiter behind `link` (from `limiter.link()` on the engine's thread). */
export function connectRateLimiter(link: RateLimiterLink): LinkedRateLimiter {
  if (typeof link !== 'object' || link === null || !(link.port instanceof MessagePort) || !(link.owners instanceof SharedArrayBuffer) || typeof link.owner !== 'number') {
    throw argumentTypeError('link', 'a RateLimiterLink from limiter.link(), transferred with its port', link);
  }
  return new LinkedRateLimiter(link);
}

