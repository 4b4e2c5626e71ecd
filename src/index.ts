/**
 * Tallyworks: an actor-style worker-thread counting engine.
 * @packageDocumentation
 */
export { createEngine, Engine, type EngineStats, type EngineShardStats } from './engine.js';
export type { EngineOptions } from './options.js';
export { type Clock, SystemClock, TestClock, SPEC_START } from './clock/clock.js';
export { Window, WindowSet } from './windows/window.js';
export { WINDOW_UNITS, type WindowOptions, type WindowUnit } from './windows/window-options.js';
export { validateKey, sanitizeKey, MAX_KEY_BYTES } from './keys.js';
export {
  ErrorCode,
  type ErrorCodeValue,
  TallyworksError,
  TallyworksTypeError,
  TallyworksRangeError,
} from '../common/errors.js';
