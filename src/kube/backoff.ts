export interface BackoffOptions {
  /** Delay before the first retry. */
  initialMs?: number;
  /** Upper bound of any delay. */
  maxMs?: number;
  /** Random source in [0, 1); injectable so tests can pin the jitter. */
  random?: () => number;
  /** false: every delay is exactly the doubling base (one process retrying its own work, no herd to spread). */
  jitter?: boolean;
}

/**
 * Exponential backoff with jitter: the n-th delay is drawn from
 * [base/2, base) where base = min(maxMs, initialMs * 2^n). The jitter keeps
 * every node agent of a cluster from hammering a recovering API server in
 * lockstep.
 */
export class Backoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;
  private readonly jitter: boolean;
  private failures = 0;

  constructor(opts: BackoffOptions = {}) {
    this.initialMs = opts.initialMs ?? 200;
    this.maxMs = opts.maxMs ?? 30_000;
    this.random = opts.random ?? Math.random;
    this.jitter = opts.jitter ?? true;
    if (!(this.initialMs > 0) || !(this.maxMs >= this.initialMs)) {
      throw new Error(`invalid backoff: initialMs=${this.initialMs} maxMs=${this.maxMs}`);
    }
  }

  /** Consecutive failures since the last reset. */
  get attempts(): number {
    return this.failures;
  }

  /** Records a failure and returns how long to wait before retrying. */
  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.failures, 30));
    this.failures++;
    return this.jitter ? Math.round(base / 2 + (this.random() * base) / 2) : base;
  }

  reset(): void {
    this.failures = 0;
  }
}
