/**
 * Stat buffer links: how the app's worker threads increment a buffer that lives on the engine's thread.
 *
 * A {@link BufferClient} in the worker keeps its own key → position map and Float64 counts, so its `increment`
 * is as cheap and allocation-free as the buffer's. At the end of each turn of the worker (or when many
 * keys are waiting) it ships the counts it holds as one msgpack message over the link's MessagePort, and
 * the buffer adds them as if they had been incremented there. `sync()` resolves once the buffer has
 * everything incremented before it; the buffer's `close()` collects what every linked thread still holds.
 */
import { MessageChannel, MessagePort } from 'node:worker_threads';
import { decode, encode } from '../../common/codec.js';
import { argumentRangeError, argumentTypeError, closedError, protocolError } from '../../common/errors.js';
import type { BufferLinkToClient as ToClient, BufferLinkToHost as ToHost } from '../../common/messages.js';
import { validateBufferKey } from '../keys.js';

/** Hand this to a worker thread (`worker.postMessage(link, [link.port])`) and call `connectBuffer` there. */
export interface BufferLink {
  /** The buffer's name. */
  readonly buffer: string;
  readonly port: MessagePort;
}


/** Keys waiting in a client before it ships them without waiting for the end of the turn. */
const SHIP_KEYS = 4096;
/** A client forgets its keys (frees the map) when it knows more than this many after a shipment. */
const FORGET_KEYS = 65_536;

/** The buffer's side: one port per link. */
export class LinkHost {
  private readonly ports = new Set<MessagePort>();

  constructor(
    private readonly name: string,
    private readonly apply: (key: string, n: number) => void,
  ) {}

  open(): BufferLink {
    const { port1, port2 } = new MessageChannel();
    port1.on('close', () => this.ports.delete(port1));
    this.ports.add(port1);
    port1.on('message', (m: ToHost) => this.receive(port1, m));
    port1.unref();
    return { buffer: this.name, port: port2 };
  }

  private receive(port: MessagePort, m: ToHost): void {
    switch (m.t) {
      case 'add': {
        const [keys, counts] = decode<[string[], number[]]>(m.data);
        for (let i = 0; i < keys.length; i++) this.apply(keys[i]!, counts[i]!);
        return;
      }
      case 'sync':
        port.postMessage({ t: 'synced', id: m.id } satisfies ToClient);
        return;
      case 'bye':
        port.close();
        return;
      default:
        throw protocolError(`buffer "${this.name}" link`, m satisfies never);
    }
  }

  /** Asks every linked thread for what it holds; waits up to `timeoutMs` for each to answer (or to end). */
  async close(timeoutMs: number): Promise<void> {
    if (this.ports.size === 0) return;
    const all = [...this.ports].map(
      (port) =>
        new Promise<void>((resolve) => {
          port.once('close', () => resolve());
          port.ref();
          port.postMessage({ t: 'close' } satisfies ToClient);
        }),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(all), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    for (const port of this.ports) port.close();
  }
}

/** A worker thread's handle on a stat buffer. Create with {@link connectBuffer}. */
export class BufferClient {
  readonly buffer: string;
  private readonly port: MessagePort;
  private readonly index = new Map<string, number>();
  private keys: string[] = [];
  private counts = new Float64Array(1024);
  private dirty = new Int32Array(1024);
  private isDirty = new Uint8Array(1024);
  private dirtyCount = 0;
  private shipping: NodeJS.Immediate | undefined;
  private closed = false;
  private nextSync = 1;
  private readonly syncs = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();

  /** @internal use {@link connectBuffer} */
  constructor(link: BufferLink) {
    this.buffer = link.buffer;
    this.port = link.port;
    this.port.on('message', (m: ToClient) => {
      switch (m.t) {
        case 'synced':
          this.syncs.get(m.id)?.resolve();
          this.syncs.delete(m.id);
          if (this.syncs.size === 0) this.port.unref();
          return;
        case 'close':
          this.end();
          return;
        default:
          throw protocolError(`buffer "${this.buffer}" link`, m satisfies never);
      }
    });
    this.port.on('close', () => {
      this.closed = true;
      // The buffer never confirmed these: what they cover may not have reached it.
      for (const { reject } of this.syncs.values()) reject(closedError(`buffer "${this.buffer}" (its link closed before the buffer confirmed)`));
      this.syncs.clear();
    });
    this.port.unref();
  }

  /** Adds `n` (default 1) to `key`: synchronous, allocation-free for a key this thread has seen. */
  increment(key: string, n = 1): void {
    if (this.closed) throw closedError(`buffer "${this.buffer}" (this link)`);
    if (typeof n !== 'number' || !Number.isSafeInteger(n)) {
      if (typeof n !== 'number') throw argumentTypeError('n', 'a safe integer (|n| ≤ 2^53 − 1)', n);
      throw argumentRangeError('n', 'a safe integer (|n| ≤ 2^53 − 1)', n);
    }
    let pos = this.index.get(key);
    if (pos === undefined) pos = this.admit(key);
    let v = this.counts[pos]! + n;
    if (v > Number.MAX_SAFE_INTEGER || v < -Number.MAX_SAFE_INTEGER) {
      this.ship();
      pos = this.index.get(key) ?? this.admit(key);
      v = n;
    }
    this.counts[pos] = v;
    if (this.isDirty[pos] === 0) {
      this.isDirty[pos] = 1;
      this.dirty[this.dirtyCount++] = pos;
      if (this.dirtyCount >= SHIP_KEYS) this.ship();
      else this.shipping ??= setImmediate(this.ship);
    }
  }

  /**
   * Resolves once the buffer holds every increment made here before the call; rejects with TW_CLOSED when
   * the link closed first (the buffer closed and stopped waiting for this thread).
   */
  sync(): Promise<void> {
    if (this.closed) return Promise.reject(closedError(`buffer "${this.buffer}" (this link)`));
    this.ship();
    const id = this.nextSync++;
    this.port.ref();
    this.port.postMessage({ t: 'sync', id } satisfies ToHost);
    return new Promise((resolve, reject) => this.syncs.set(id, { resolve, reject }));
  }

  /**
   * Ships what this thread holds and closes the link (later increments throw TW_CLOSED). Rejects with
   * TW_CLOSED if the buffer closed the link before confirming what was shipped.
   */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return this.sync().then(() => this.end());
  }

  private end(): void {
    if (this.closed) return;
    this.ship();
    this.port.postMessage({ t: 'bye' } satisfies ToHost);
    this.closed = true;
    this.port.close();
  }

  private admit(key: string): number {
    validateBufferKey(key);
    const pos = this.keys.length;
    if (pos === this.counts.length) {
      const counts = new Float64Array(pos * 2);
      const isDirty = new Uint8Array(pos * 2);
      const dirty = new Int32Array(pos * 2);
      counts.set(this.counts);
      isDirty.set(this.isDirty);
      dirty.set(this.dirty);
      this.counts = counts;
      this.isDirty = isDirty;
      this.dirty = dirty;
    }
    this.keys.push(key);
    this.index.set(key, pos);
    return pos;
  }

  /** Sends the counts this thread holds to the buffer, as one message. */
  private readonly ship = (): void => {
    if (this.shipping !== undefined) clearImmediate(this.shipping);
    this.shipping = undefined;
    if (this.dirtyCount === 0) return;
    const keys = new Array<string>(this.dirtyCount);
    const counts = new Array<number>(this.dirtyCount);
    for (let i = 0; i < this.dirtyCount; i++) {
      const pos = this.dirty[i]!;
      keys[i] = this.keys[pos]!;
      counts[i] = this.counts[pos]!;
      this.counts[pos] = 0;
      this.isDirty[pos] = 0;
    }
    this.dirtyCount = 0;
    const data = encode([keys, counts]);
    this.port.postMessage({ t: 'add', data } satisfies ToHost, [data.buffer as ArrayBuffer]);
    if (this.keys.length > FORGET_KEYS) {
      this.index.clear();
      this.keys = [];
    }
  };
}

/** In a worker thread: the handle on the buffer behind `link` (from `buffer.link()` on the engine's thread). */
export function connectBuffer(link: BufferLink): BufferClient {
  if (typeof link !== 'object' || link === null || !(link.port instanceof MessagePort) || typeof link.buffer !== 'string') {
    throw argumentTypeError('link', 'a BufferLink from buffer.link(), transferred with its port', link);
  }
  return new BufferClient(link);
}
