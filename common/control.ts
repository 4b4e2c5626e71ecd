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
