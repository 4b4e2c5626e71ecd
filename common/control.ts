/**
 * The control plane: comlink's one home. Typed RPC to the actors (stats, flushNow, close) over a
 * MessagePort. Never used on a hot path: a comlink call costs 30–50 µs.
 *
 * Imported by worker threads: imports nothing main-only.
 */
import * as Comlink from 'comlink';
// comlink has no `exports` map; its Node adapter is a UMD file whose module.exports is the function.
import nodeEndpointModule from 'comlink/dist/umd/node-adapter.js';

type NodeEndpointFn = (port: MessagePort) => Comlink.Endpoint;
const nodeEndpoint = ((nodeEndpointModule as unknown as { default?: unknown }).default ?? nodeEndpointModule) as NodeEndpointFn;
import type { MessagePort } from 'node:worker_threads';
import { reviveError, toWireError, type WireError } from './errors.js';

// A control call that throws reaches the caller as its own class with its code and fields (comlink's own
// handler keeps only message, name and stack). The default handler's canHandle recognises a thrown value.
const thrown = Comlink.transferHandlers.get('throw')!;
Comlink.transferHandlers.set('throw', {
  canHandle: thrown.canHandle,
  serialize: ({ value }: { value: unknown }) => [toWireError(value), []],
  deserialize: (wire: unknown) => {
    throw reviveError(wire as WireError);
  },
} as typeof thrown);

export type Remote<T> = Comlink.Remote<T>;

/** Serves `api` on `port` (actor side). */
export function exposeControl(api: object, port: MessagePort): void {
  Comlink.expose(api, nodeEndpoint(port));
}

/** A typed proxy for the api served on `port` (caller side). */
export function connectControl<T>(port: MessagePort): Remote<T> {
  return Comlink.wrap<T>(nodeEndpoint(port));
}

/** Ends the proxy's use of its port. */
export function releaseControl(remote: Remote<unknown>): void {
  remote[Comlink.releaseProxy]();
}
