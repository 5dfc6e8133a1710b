/** Thresholds that turn probe results into a verdict without flapping. */
export interface Thresholds {
  /** Consecutive failures that make a healthy target unhealthy. */
  readonly unhealthy: number;
  /** Consecutive successes that make an unhealthy target healthy again. */
  readonly healthy: number;
}

interface State {
  healthy: boolean;
  streak: number;
}

/**
 * Verdicts per target (a cluster, or one endpoint). Targets start healthy:
 * a cluster is innocent until its probes fail `unhealthy` times in a row,
 * and must then succeed `healthy` times in a row to return.
 */
export class Hysteresis {
  private readonly states = new Map<string, State>();

  constructor(private thresholds: Thresholds) {}

  setThresholds(thresholds: Thresholds): void {
    this.thresholds = thresholds;
  }

  isHealthy(target: string): boolean {
    return this.states.get(target)?.healthy ?? true;
  }

  /** Records one probe round; returns the new verdict when it changed, else null. */
  record(target: string, ok: boolean): boolean | null {
    let s = this.states.get(target);
    if (!s) this.states.set(target, (s = { healthy: true, streak: 0 }));
    // The streak counts results that argue against the current verdict.
    if (ok === s.healthy) {
      s.streak = 0;
      return null;
    }
    s.streak++;
    if (s.streak < (s.healthy ? this.thresholds.unhealthy : this.thresholds.healthy)) return null;
    s.healthy = ok;
    s.streak = 0;
    return ok;
  }

  /** Drops targets no longer probed, so a cluster that returns starts fresh. */
  retain(targets: ReadonlySet<string>): void {
    for (const t of this.states.keys()) if (!targets.has(t)) this.states.delete(t);
  }
}
