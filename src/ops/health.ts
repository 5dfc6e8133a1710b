/**
 * /healthz and /readyz, as kube-proxy judges them. Healthy unless a change
 * queued for a sync has waited longer than `timeout` unapplied, or, once
 * running, no sync has succeeded for `syncPeriod + timeout` (the periodic
 * full sync is overdue: the loop is stuck). Ready once the first full sync
 * has put the rules in place; it stays ready, since the rules stay.
 * Times are milliseconds on one monotonic clock (performance.now()).
 */
export class HealthState {
  /** Oldest change queued and not yet covered by a successful sync. */
  private pendingSince: number | null = null;
  private lastSuccess: number | null = null;
  private fullSynced = false;

  constructor(
    private timeout: number,
    private syncPeriod: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Live config: new bounds apply to the next check. */
  setBounds(timeout: number, syncPeriod: number): void {
    this.timeout = timeout;
    this.syncPeriod = syncPeriod;
  }

  queued(): void {
    this.pendingSince ??= this.now();
  }

  /**
   * A sync succeeded; it covered changes queued before it started. Changes
   * still pending (queued while it ran) count from its start, an upper bound
   * of their age.
   */
  synced(full: boolean, durationMs: number, stillPending: boolean): void {
    const end = this.now();
    this.lastSuccess = end;
    if (full) this.fullSynced = true;
    this.pendingSince = stillPending ? Math.max(this.pendingSince ?? -Infinity, end - durationMs) : null;
  }

  get ready(): boolean {
    return this.fullSynced;
  }

  /** null when healthy, else why not. */
  unhealthyReason(): string | null {
    const now = this.now();
    if (this.pendingSince !== null && now - this.pendingSince > this.timeout) {
      return `a change queued ${seconds(now - this.pendingSince)} ago is not applied yet (bound ${seconds(this.timeout)})`;
    }
    if (this.lastSuccess !== null && now - this.lastSuccess > this.syncPeriod + this.timeout) {
      return `no sync has succeeded for ${seconds(now - this.lastSuccess)} (bound ${seconds(this.syncPeriod + this.timeout)})`;
    }
    return null;
  }

  /** performance.now() of the last successful sync, or null. */
  get lastSyncedAt(): number | null {
    return this.lastSuccess;
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}
