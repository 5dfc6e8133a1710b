import { Backoff, type BackoffOptions } from '../kube/backoff.js';

/** Where a group failed: its model, planning or rendering threw, or the kernel refused its rules. */
export type FaultStage = 'plan' | 'kernel';

/** Why a group is quarantined, and when it is tried again. */
export interface GroupFault {
  readonly stage: FaultStage;
  /** One line naming the cause (the error, or the refused rule and the tool's words). */
  readonly reason: string;
  /** Consecutive failures. */
  readonly failures: number;
  /** When (the engine's clock, ms) the group is tried again if nothing about it changes first. */
  readonly retryAt: number;
}

/**
 * A group's state in the data plane: its rules as planned are in the kernel,
 * or wait for the next sync, or were set aside (the group keeps the rules it
 * had) until a retry or a change of its objects.
 */
export type GroupStatus =
  | { readonly state: 'applied' }
  | { readonly state: 'pending' }
  | ({ readonly state: 'failed' } & GroupFault);

/** Retry delays of a quarantined group: a cheap retry soon, then less often. */
export const QUARANTINE_BACKOFF: BackoffOptions = { initialMs: 1000, maxMs: 60_000 };

/**
 * The groups set aside, each with its own backoff, so one object the agent
 * cannot program neither stops the others nor is retried in a tight loop.
 * Pure bookkeeping: the engine decides what fails and what heals.
 */
export class Quarantine {
  private readonly faults = new Map<string, { fault: GroupFault; readonly backoff: Backoff }>();

  constructor(
    private readonly now: () => number,
    private readonly backoff: BackoffOptions = QUARANTINE_BACKOFF,
  ) {}

  /**
   * Records a failure and schedules the retry. Returns the fault when it is
   * news (the group was not quarantined, or now fails for another reason), so
   * the caller reports each change once, not each retry.
   */
  fail(key: string, stage: FaultStage, reason: string): GroupFault | null {
    const entry = this.faults.get(key);
    const backoff = entry?.backoff ?? new Backoff(this.backoff);
    const fault = { stage, reason, failures: backoff.attempts + 1, retryAt: 0 };
    fault.retryAt = this.now() + backoff.next();
    this.faults.set(key, { fault, backoff });
    return entry?.fault.reason === reason ? null : fault;
  }

  /** One of the group's objects changed: it is tried at the next sync, whatever its backoff says. */
  wake(key: string): void {
    const entry = this.faults.get(key);
    if (entry) entry.fault = { ...entry.fault, retryAt: Math.min(entry.fault.retryAt, this.now()) };
  }

  /** Lifts the group's quarantine; returns the fault it had, if any. */
  lift(key: string): GroupFault | undefined {
    const entry = this.faults.get(key);
    this.faults.delete(key);
    return entry?.fault;
  }

  get(key: string): GroupFault | undefined {
    return this.faults.get(key)?.fault;
  }

  has(key: string): boolean {
    return this.faults.has(key);
  }

  /** Whether the group is quarantined and its retry is not due yet. */
  isWaiting(key: string): boolean {
    const entry = this.faults.get(key);
    return entry !== undefined && entry.fault.retryAt > this.now();
  }

  /** Quarantined groups whose retry is due. */
  due(): string[] {
    const now = this.now();
    return [...this.faults].filter(([, e]) => e.fault.retryAt <= now).map(([key]) => key);
  }

  /** Milliseconds until the earliest retry (0 when one is due); null when nothing is quarantined. */
  nextRetryIn(): number | null {
    let at = Infinity;
    for (const { fault } of this.faults.values()) at = Math.min(at, fault.retryAt);
    return at === Infinity ? null : Math.max(0, at - this.now());
  }

  keys(): string[] {
    return [...this.faults.keys()];
  }

  get size(): number {
    return this.faults.size;
  }
}
