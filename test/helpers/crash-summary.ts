/**
 * The one line each crash-recovery suite prints at its end: how many crash
 * points it injected and the longest time from the restart to convergence,
 * with the point where that was measured (docs/hotplug.md, Crash recovery).
 */

/** One injected point and its time to convergence, ms. */
export interface Convergence {
  point: string;
  ms: number;
}

export function crashSummary(results: readonly Convergence[]): string {
  if (results.length === 0) return 'crash recovery: 0 crash points injected';
  const worst = results.reduce((a, b) => (b.ms > a.ms ? b : a));
  return `crash recovery: ${results.length} crash points injected, longest convergence ${worst.ms} ms (at ${worst.point})`;
}
