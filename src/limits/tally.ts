/** Decisions a limiter returned on this thread, by outcome: what engine.metrics() reports per limiter. */
export interface DecisionTally {
  /** Admitted (the suppressed strategy: admitted below or above its soft limit). */
  allowed: number;
  /** Refused (the suppressed strategy: declined). */
  rejected: number;
}

export function newTally(): DecisionTally {
  return { allowed: 0, rejected: 0 };
}

/** Counts `d` in `tally` and returns it. */
export function tallied<D extends { readonly allowed: boolean }>(tally: DecisionTally, d: D): D {
  if (d.allowed) tally.allowed++;
  else tally.rejected++;
  return d;
}
