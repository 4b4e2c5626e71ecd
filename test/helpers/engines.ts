/** An engine on a test clock for the length of one test. */
import { createEngine, type Engine, TestClock } from '../../src/index.js';

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
