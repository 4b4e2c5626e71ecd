/** Engines for the length of one test, closed after it even when an assertion failed. */
import { afterEach } from 'node:test';
import { createEngine, type Engine, type EngineOptions, TestClock } from '../../src/index.js';

/** Engines a test opened with {@link open}; closed after each test (a failed test must not leave threads behind). */
export const opened: Engine[] = [];

/** A new engine (one shard unless `options` say otherwise), closed after the test. */
export async function open(options: EngineOptions): Promise<Engine> {
  const engine = await createEngine({ shards: 1, ...options });
  opened.push(engine);
  return engine;
}

afterEach(async () => {
  const engines = opened.splice(0);
  await Promise.allSettled(engines.map((e) => e.close()));
});

/** Runs `body` with a 2-shard engine on a fresh test clock, and closes the engine after it. */
export async function withTestEngine(body: (engine: Engine, clock: TestClock) => void | Promise<void>): Promise<void> {
  const clock = new TestClock();
  const engine = await createEngine({ clock, shards: 2 });
  try {
    await body(engine, clock);
  } finally {
    await engine.close();
  }
}
