/**
 * The engine: starts the shard actors, owns the router and the clock, hands out windows, and closes
 * everything it started.
 */
import { closedError } from '../common/errors.js';
import type { ShardStats } from '../common/messages.js';
import type { Clock } from './clock/clock.js';
import { type EngineOptions, resolveOptions, type ResolvedOptions } from './options.js';
import { EventStore } from './events/store.js';
import type { EventStoreOptions } from './events/store-options.js';
import { Router } from './router/router.js';
import { Window, WindowSet } from './windows/window.js';
import { resolveWindowOptions, type WindowOptions } from './windows/window-options.js';

/** Per-shard figures from the shard actors' control plane. */
export interface EngineShardStats extends ShardStats {
  /** Times the shard thread was replaced after dying. */
  readonly restarts: number;
  /** Batches sent and not yet acknowledged. */
  readonly inflight: number;
}

export interface EngineStats {
  readonly shards: readonly EngineShardStats[];
}

/** Symbol under which tests reach the engine's internals (not exported from the package). */
export const internals = Symbol('tallyworks.internals');

/** An in-process counting engine. Create with {@link createEngine}; close with `close()` or `await using`. */
export class Engine implements AsyncDisposable {
  /** The clock every window of this engine reads. */
  readonly clock: Clock;
  /** Number of shard threads. */
  readonly shards: number;
  private readonly options: ResolvedOptions;
  private readonly router: Router;
  private readonly windowSets = new Map<string, WindowSet>();
  private readonly stores: EventStore[] = [];
  private closing: Promise<void> | undefined;
  /** Calendar event counts with the engine's default store options (tiny_counter parity). */
  readonly events: EventStore;

  /** @internal use {@link createEngine} */
  constructor(options: ResolvedOptions, router: Router) {
    this.options = options;
    this.clock = options.clock;
    this.shards = options.shards;
    this.router = router;
    this.events = this.eventStore(options.events);
  }

  /**
   * A new event store with its own ids, rings and time zone (the engine's `timeZone` by default). Every
   * store is persisted (when it has storage) and closed with the engine.
   */
  eventStore(options: EventStoreOptions = {}): EventStore {
    if (this.closing !== undefined) throw closedError('engine');
    const store = new EventStore(options, this.options.timeZone, this.stores.length + 1, this.router, this.clock);
    this.stores.push(store);
    return store;
  }

  /** The set of hopping windows of this shape; the same object for the same shape. */
  windows(options: WindowOptions): WindowSet {
    if (this.closing !== undefined) throw closedError('engine');
    const shape = resolveWindowOptions(options);
    const name = `${shape.size}x${shape.unitMs}`;
    let set = this.windowSets.get(name);
    if (set === undefined) {
      set = new WindowSet(shape, this.router, this.clock);
      this.windowSets.set(name, set);
    }
    return set;
  }

  /** The hopping window `id` of this shape (windows of different shapes never share counts). */
  window(id: string, options: WindowOptions): Window {
    return this.windows(options).window(id);
  }

  /** Resolves once every shard has applied every op observed before the call. */
  async flush(): Promise<void> {
    if (this.closing !== undefined) throw closedError('engine');
    await Promise.all(this.router.lanes.map((l) => l.drain()));
  }

  /** Figures from every shard actor (over the control plane). */
  async stats(): Promise<EngineStats> {
    if (this.closing !== undefined) throw closedError('engine');
    return { shards: await Promise.all(this.router.lanes.map((l) => l.stats())) };
  }

  /**
   * Applies every batch, then ends every shard thread and the clock's ticker. Idempotent: every call
   * returns the same promise. Rejects with the first shard failure, after everything is closed anyway.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        // Stores persist first: reading their counters needs the shards.
        const persisted = await Promise.allSettled(this.stores.map((st) => st.close()));
        await this.router.close();
        const failed = persisted.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed !== undefined) throw failed.reason;
      } finally {
        await this.clock.release();
      }
    })();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal test access */
  get [internals](): { router: Router; options: ResolvedOptions } {
    return { router: this.router, options: this.options };
  }
}

/** Validates `options`, starts the shard threads, and resolves once every shard is attached. */
export async function createEngine(options: EngineOptions = {}): Promise<Engine> {
  const resolved = resolveOptions(options);
  const { clock } = resolved;
  clock.retain();
  const router = new Router(resolved.shards, resolved, clock.timeCell);
  try {
    await router.start();
  } catch (err) {
    await router.close().catch(() => undefined);
    await clock.release();
    throw err;
  }
  let engine: Engine;
  try {
    engine = new Engine(resolved, router);
    await engine.events.ready();
  } catch (err) {
    await router.close().catch(() => undefined);
    await clock.release();
    throw err;
  }
  return engine;
}
