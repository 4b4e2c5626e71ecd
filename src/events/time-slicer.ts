/** How long work over many ids (export, persist) runs before it lets the event loop turn. */
const SLICE_MS = 10;

/**
 * A function to await between the items of a long loop: it yields to the event loop (timers, I/O) once
 * {@link SLICE_MS} have passed since the last yield, so a loop over a million ids never stalls the process.
 * (Awaiting a resolved promise alone does not: microtasks run before any timer.)
 */
export function timeSlicer(): () => Promise<void> | undefined {
  let since = performance.now();
  let n = 0;
  return () => {
    // The clock is read every 64 items: cheap next to reading an id's record.
    if ((++n & 63) !== 0 || performance.now() - since < SLICE_MS) return undefined;
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        since = performance.now();
        resolve();
      }),
    );
  };
}
