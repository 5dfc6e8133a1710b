import { Backoff } from '../kube/backoff.js';

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface RunnerOptions {
  /** Least time between the starts of two syncs (ms). */
  readonly minInterval: number;
  /** A full sync at least this often (ms). */
  readonly period: number;
  /** First retry delay after a failure (ms); doubles per failure up to maxBackoff. */
  readonly initialBackoff: number;
  readonly maxBackoff: number;
  /** One sync; it may ask for another in `retryInMs` (a quarantined group's retry falls due). */
  readonly run: (full: boolean) => Promise<{ readonly retryInMs: number | null } | void>;
  readonly onError: (err: unknown, failures: number, retryInMs: number) => void;
  /**
   * A targeted repair of the kernel's state (drift someone else caused),
   * requested with requestRepair(); it runs in a sync's slot, before the
   * sync when both are due. A failure is handled like a failed sync.
   */
  readonly repair?: () => Promise<void>;
  /**
   * Deferred kernel work on a fixed period (IPVS: deleting drained real
   * servers), run in a sync's slot, after the sync when both are due, so the
   * kernel is written from this loop only. `run` handles its own failures
   * (a sweep is simply tried again next period).
   */
  readonly sweep?: { readonly run: () => Promise<void>; readonly intervalMs: number };
  readonly clock?: Clock;
}

/**
 * Rate-limited sync loop. Requests only set flags, so any number of changes
 * arriving while a sync is running or waiting collapse into the next one. A
 * request made when the last sync started more than minInterval ago runs at
 * once (on the next tick, to gather a synchronous burst); otherwise it waits
 * for the interval to pass. A failed sync is retried as a full sync with
 * exponential backoff. A sync that set groups aside names when the first is
 * due for a retry, and a partial sync is requested then. A sweep falls due
 * every sweep period and runs in the next slot, after its sync.
 */
export class SyncRunner {
  private readonly clock: Clock;
  private pendingPartial = false;
  private pendingFull = false;
  private pendingRepair = false;
  private pendingSweep = false;
  private sweepTimer: unknown = null;
  private running: Promise<void> | null = null;
  private timer: unknown = null;
  private timerAt = Infinity;
  private periodTimer: unknown = null;
  private retryTimer: unknown = null;
  private lastStart = -Infinity;
  private notBefore = -Infinity;
  private failures = 0;
  private backoff: Backoff;
  private stopped = false;
  private minInterval: number;
  private period: number;

  constructor(private readonly opts: RunnerOptions) {
    this.clock = opts.clock ?? realClock;
    this.minInterval = opts.minInterval;
    this.period = opts.period;
    this.backoff = new Backoff({ initialMs: opts.initialBackoff, maxMs: opts.maxBackoff, jitter: false });
  }

  /** New intervals (live config); they apply from the next scheduling decision. */
  setIntervals(minInterval: number, period: number): void {
    this.minInterval = minInterval;
    this.period = period;
  }

  /** Starts with a full sync; the first sweep is due one period later. */
  start(): void {
    this.requestFull();
    this.armSweep();
  }

  request(): void {
    this.pendingPartial = true;
    this.schedule();
  }

  requestFull(): void {
    this.pendingFull = true;
    this.schedule();
  }

  /** The kernel changed under the agent: a repair runs in the next slot (minInterval applies, as to syncs). */
  requestRepair(): void {
    if (!this.opts.repair) return;
    this.pendingRepair = true;
    this.schedule();
  }

  /** Stops scheduling and waits for a sync in flight to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelTimer();
    if (this.periodTimer !== null) this.clock.clearTimeout(this.periodTimer);
    if (this.retryTimer !== null) this.clock.clearTimeout(this.retryTimer);
    if (this.sweepTimer !== null) this.clock.clearTimeout(this.sweepTimer);
    await this.running;
  }

  private schedule(): void {
    if (this.stopped || this.running || !(this.pendingPartial || this.pendingFull || this.pendingRepair || this.pendingSweep)) return;
    const now = this.clock.now();
    const at = Math.max(now, this.lastStart + this.minInterval, this.notBefore);
    if (at >= this.timerAt) return;
    this.cancelTimer();
    this.timerAt = at;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      void this.runOnce();
    }, at - now);
  }

  private cancelTimer(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  private async runOnce(): Promise<void> {
    if (this.stopped) return;
    const full = this.pendingFull;
    const sync = full || this.pendingPartial;
    const repair = this.pendingRepair;
    const sweep = this.pendingSweep;
    this.pendingFull = false;
    this.pendingPartial = false;
    this.pendingRepair = false;
    this.pendingSweep = false;
    this.lastStart = this.clock.now();
    this.running = (async () => {
      if (repair) await this.opts.repair!();
      return sync ? { ran: true, outcome: await this.opts.run(full) } : { ran: false, outcome: undefined };
    })().then(
      async ({ ran, outcome }) => {
        if (ran || repair) {
          this.failures = 0;
          this.backoff.reset();
          this.notBefore = -Infinity;
        }
        if (full) this.armPeriod();
        if (ran) this.armRetry(outcome ? outcome.retryInMs : null);
        if (sweep) await this.runSweep();
      },
      (err: unknown) => {
        this.failures++;
        const delay = this.backoff.next();
        this.notBefore = this.clock.now() + delay;
        this.pendingFull = true;
        this.opts.onError(err, this.failures, delay);
        // The sweep waits for the retried sync's slot.
        if (sweep) this.pendingSweep = true;
      },
    );
    await this.running;
    this.running = null;
    this.schedule();
  }

  private async runSweep(): Promise<void> {
    try {
      await this.opts.sweep!.run();
    } catch {
      // run reports its own failures; the loop goes on and the next period tries again.
    }
    this.armSweep();
  }

  private armSweep(): void {
    if (!this.opts.sweep || this.stopped) return;
    if (this.sweepTimer !== null) this.clock.clearTimeout(this.sweepTimer);
    this.sweepTimer = this.clock.setTimeout(() => {
      this.sweepTimer = null;
      this.pendingSweep = true;
      this.schedule();
    }, this.opts.sweep.intervalMs);
  }

  private armRetry(inMs: number | null): void {
    if (this.retryTimer !== null) this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (inMs === null || this.stopped) return;
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = null;
      this.request();
    }, inMs);
  }

  private armPeriod(): void {
    if (this.periodTimer !== null) this.clock.clearTimeout(this.periodTimer);
    this.periodTimer = this.clock.setTimeout(() => {
      this.periodTimer = null;
      this.requestFull();
    }, this.period);
  }
}
