/**
 * An opt-in graceful shutdown: `closeOnSignals(engine)` closes the engine when the process gets SIGTERM or
 * SIGINT, so that what it accepted (lax deltas, stat buffer counts, event stores with storage) is delivered
 * before the process ends. Tallyworks installs no signal handler unless asked: a library must not decide
 * how an app shuts down.
 *
 * On the first signal the handlers are removed (a second signal therefore ends the process at once, as
 * usual), every target is closed, for at most `timeoutMs`; then, unless the app has handlers of its own
 * for that signal, the signal is raised again, so the process ends exactly as it would have by default.
 */
import { argumentRangeError, argumentTypeError } from '../common/errors.js';

/** Something to close on a signal: an engine (or anything with `close()`). */
export interface Closable {
  close(): Promise<unknown>;
}

export interface CloseOnSignalsOptions {
  /** Default `['SIGTERM', 'SIGINT']`. */
  signals?: readonly NodeJS.Signals[];
  /** How long closing may take before the process ends anyway. Default 10000. */
  timeoutMs?: number;
  /** Receives a close() failure (e.g. an UndeliveredError) or the timeout. Default: printed to stderr. */
  onError?: (err: unknown) => void;
}

/** Installs the handlers; returns the function that removes them again. */
export function closeOnSignals(targets: Closable | readonly Closable[], options: CloseOnSignalsOptions = {}): () => void {
  const list = Array.isArray(targets) ? [...targets] : [targets as Closable];
  if (list.length === 0 || list.some((t) => typeof (t as Closable | undefined)?.close !== 'function')) {
    throw argumentTypeError('targets', 'an engine (anything with close()), or an array of them', targets);
  }
  if (typeof options !== 'object' || options === null) throw argumentTypeError('options', 'an object', options);
  const { signals = ['SIGTERM', 'SIGINT'], timeoutMs = 10_000, onError = (err: unknown) => console.error('tallyworks: closing on a signal failed:', err) } = options;
  if (!Array.isArray(signals) || signals.length === 0 || signals.some((s) => typeof s !== 'string' || !/^SIG[A-Z0-9]+$/.test(s))) {
    throw argumentTypeError('options.signals', 'a non-empty array of signal names such as "SIGTERM"', signals);
  }
  if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > 2 ** 31 - 1) {
    throw argumentRangeError('options.timeoutMs', 'an integer number of ms from 0 to 2147483647', timeoutMs);
  }
  if (typeof onError !== 'function') throw argumentTypeError('options.onError', 'a function', onError);

  const report = (err: unknown): void => {
    try {
      onError(err);
    } catch {
      // A failing reporter must not keep the process from ending.
    }
  };
  const remove = (): void => {
    for (const s of signals) process.off(s, handler);
  };
  const handler = (signal: NodeJS.Signals): void => {
    remove();
    let timer: NodeJS.Timeout | undefined;
    // Ref'd on purpose: the process must stay until the targets closed or the deadline passed.
    const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const closing = Promise.allSettled(list.map((t) => t.close())).then((results) => {
      for (const r of results) if (r.status === 'rejected') report(r.reason);
      return 'closed' as const;
    });
    void Promise.race([closing, deadline]).then((outcome) => {
      clearTimeout(timer);
      if (outcome === 'timeout') report(new Error(`closing did not finish within ${timeoutMs} ms of ${signal}`));
      // The app's own handlers decide what this signal does; otherwise end as the default would.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  };
  for (const s of signals) process.on(s, handler);
  return remove;
}
