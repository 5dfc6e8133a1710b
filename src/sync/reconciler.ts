// The reconciler makes a data plane hold the desired state of every group
// and keeps a status per group: applied, pending, or failed with its reason
// and next retry. A full reconcile reads the kernel back, adopts what a
// previous run left for groups it holds back, and repairs any difference; a
// partial one applies only the groups that changed. A group the data plane
// cannot express, or the kernel refuses, is set aside (quarantined) with the
// state it had and retried on its own backoff, while every other group is
// applied in the same reconcile. Nothing here knows a kernel interface: it
// speaks to a Dataplane.

import type { BackoffOptions } from '../kube/backoff.js';
import { errorText, type Logger } from '../log.js';
import type { FrontendSelection } from '../selection/selection.js';
import type { ApplyStats, Dataplane, KernelState, Transaction } from './dataplane.js';
import { Quarantine, type FaultStage, type GroupFault, type GroupStatus } from './quarantine.js';

/**
 * Extra kernel calls a full reconcile may spend finding the groups the kernel
 * refuses (one per group blamed by line; about 2·log2(n) per group found by
 * bisecting n). Past it the reconcile fails and is retried; the groups found
 * so far stay set aside, so every retry gets further.
 */
export const MAX_ISOLATION_RESTORES = 32;

export interface QuarantineChange {
  readonly group: string;
  /** The new fault; null when the group healed. */
  readonly fault: GroupFault | null;
  /** The fault the group had before, if any. */
  readonly previous: GroupFault | null;
}

/** A group's desired state in the data plane: opaque here. */
export type GroupState = unknown;

export interface ReconcilerOptions {
  readonly dataplane: Dataplane;
  readonly log: Logger;
  /** The clock of retries. */
  readonly now: () => number;
  /** Retry delays of a quarantined group (default QUARANTINE_BACKOFF). */
  readonly quarantineBackoff?: BackoffOptions;
  /** A group was quarantined or failed for a new reason (`fault` set), or healed (`fault` null); once per change. */
  readonly onQuarantine?: (change: QuarantineChange) => void;
  /** Every port of every Service of a group by name, whatever its policy programs (adoption after a restart). */
  readonly frontendsOf: (key: string) => Pick<FrontendSelection, 'name' | 'protocol'>[];
}

/** The outcome of a partial reconcile: applied, or refused so that only a full reconcile can tell whose fault it is. */
export type PartialOutcome = { readonly stats: ApplyStats; readonly tx: Transaction; readonly refused: false } | { readonly refused: true };

export class Reconciler {
  private readonly dataplane: Dataplane<GroupState, KernelState<GroupState>, Transaction>;
  /** The state of each group as last applied. */
  private readonly applied = new Map<string, GroupState>();
  /** Groups set aside: each keeps its last applied state and is retried on its own backoff. */
  private readonly quarantine: Quarantine;
  /** Set until a full reconcile succeeds: the kernel may differ from `applied`. */
  private needsFull = true;

  constructor(private readonly opts: ReconcilerOptions) {
    this.dataplane = opts.dataplane;
    this.quarantine = new Quarantine(opts.now, opts.quarantineBackoff);
  }

  /** Whether the next reconcile must be a full one. */
  get fullDue(): boolean {
    return this.needsFull;
  }

  /** The kernel may differ from what was applied (new config, drift, a failure): the next reconcile is a full one. */
  invalidate(): void {
    this.needsFull = true;
  }

  /** The state last applied for a group. */
  appliedState(key: string): GroupState | undefined {
    return this.applied.get(key);
  }

  // ---- retries

  /** Whether the group is set aside and its retry is not due: it keeps its state without being planned. */
  isWaiting(key: string): boolean {
    return this.quarantine.isWaiting(key);
  }

  /** Set-aside groups whose retry is due. */
  due(): string[] {
    return this.quarantine.due();
  }

  /** One of the group's objects changed: it is retried at the next reconcile, whatever its backoff says. */
  wake(key: string): void {
    this.quarantine.wake(key);
  }

  /** Records a group's failure; logs and reports it when it is news. */
  fault(key: string, stage: FaultStage, reason: string): void {
    const previous = this.quarantine.get(key) ?? null;
    const fault = this.quarantine.fail(key, stage, reason);
    if (!fault) return;
    this.opts.log.warn({ service: key, stage, reason, retryInMs: Math.round(fault.retryAt - this.opts.now()) },
      `service ${key} quarantined: ${reason}; it keeps its last applied rules, every other service is synced, and it is retried with backoff`);
    this.opts.onQuarantine?.({ group: key, fault, previous });
  }

  /** Lifts the quarantine of groups that were planned and applied (`tried` minus `held`), or are gone (not in `present()`). */
  heal(tried: Iterable<string>, held: ReadonlySet<string>, presentGroups: () => ReadonlySet<string>): void {
    if (this.quarantine.size === 0) return;
    const present = presentGroups();
    const done = new Set([...tried].filter((k) => !held.has(k)));
    for (const key of this.quarantine.keys()) {
      if (present.has(key) && !done.has(key)) continue;
      const previous = this.quarantine.lift(key)!;
      this.opts.log.info({ service: key, failures: previous.failures }, `service ${key} healed: ${present.has(key) ? 'its rules are applied' : 'it is gone'}; quarantine lifted`);
      this.opts.onQuarantine?.({ group: key, fault: null, previous });
    }
  }

  /** A group's status; `changed`: its objects changed since the last reconcile. */
  status(key: string, changed: boolean): GroupStatus {
    const fault = this.quarantine.get(key);
    if (fault) return { state: 'failed', ...fault };
    return changed || this.needsFull ? { state: 'pending' } : { state: 'applied' };
  }

  get quarantinedCount(): number {
    return this.quarantine.size;
  }

  /** Milliseconds until the earliest retry (0 when one is due); null when nothing is set aside. */
  nextRetryIn(): number | null {
    return this.quarantine.nextRetryIn();
  }

  // ---- reconciles

  /**
   * Applies the changes of `next` (per group: its new state, undefined for
   * none) against what was last applied. A refusal leaves the kernel
   * uncertain: the caller runs a full reconcile, which finds the group at fault.
   */
  async reconcileGroups(next: ReadonlyMap<string, GroupState | undefined>): Promise<PartialOutcome> {
    const tx = this.dataplane.merge([...next].map(([key, state]) => this.dataplane.diffGroup(key, this.applied.get(key), state)));
    let outcome;
    try {
      outcome = await this.dataplane.apply(tx);
    } catch (err) {
      this.needsFull = true;
      throw err;
    }
    if (outcome.refused) {
      this.needsFull = true;
      if (outcome.refused.kind === 'error') throw outcome.refused.error;
      return { refused: true };
    }
    this.record(next, false);
    return { stats: outcome.stats, tx, refused: false };
  }

  /**
   * Makes the kernel hold `desired`, setting aside each group the kernel
   * refuses: blamed by the part the kernel names, else found by bisecting the
   * groups of the refused call. A refused group keeps its last applied state
   * (or what the kernel holds for it, or nothing); `desired` and `held` are
   * updated to match, and `onSetAside` hears of each. Each round reads the
   * kernel back first, so parts a refused call committed are accounted for.
   */
  async reconcileFull(desired: Map<string, GroupState>, held: Set<string>, onSetAside: (key: string) => void): Promise<{ stats: ApplyStats; owned: { chains: number; rules: number } }> {
    let stats;
    try {
      stats = await this.applyIsolating(desired, held, onSetAside);
    } catch (err) {
      this.needsFull = true;
      throw err;
    }
    this.record(desired, true);
    this.needsFull = false;
    return { stats, owned: this.dataplane.owned(desired) };
  }

  /** Removes everything the data plane owns. */
  async cleanup(): Promise<ApplyStats> {
    const stats = await this.dataplane.cleanup();
    this.applied.clear();
    return stats;
  }

  /** Records states as applied; `all`: `next` is the whole desired state, so groups missing from it are gone. */
  private record(next: ReadonlyMap<string, GroupState | undefined>, all: boolean): void {
    const keys = all ? new Set([...this.applied.keys(), ...next.keys()]) : new Set(next.keys());
    for (const key of keys) {
      const after = next.get(key);
      if (after) this.applied.set(key, after);
      else this.applied.delete(key);
    }
  }

  private async applyIsolating(desired: Map<string, GroupState>, held: Set<string>, onSetAside: (key: string) => void): Promise<ApplyStats> {
    let total: ApplyStats = { restores: 0, payloadBytes: 0, chainsWritten: 0, units: 0 };
    /** Kernel calls spent after the first attempt, probes included. */
    let extra = 0;
    let first = true;
    let applied = false;
    let lastError: unknown = null;
    /** While bisecting: groups among which the kernel refuses one at least, and why. */
    let bisect: { suspects: string[]; reason: string } | null = null;
    for (;; first = false) {
      if (extra >= MAX_ISOLATION_RESTORES) throw lastError;
      let kernel = await this.dataplane.observe(desired);
      if (first && this.adoptHeld(desired, held, kernel)) kernel = await this.dataplane.observe(desired);
      // A trial applies the first half of the suspects; every other group keeps what the kernel holds.
      const trial = bisect ? new Set(bisect.suspects.slice(0, Math.ceil(bisect.suspects.length / 2))) : null;
      const target = trial ? holdBack(desired, kernel, (key) => !trial.has(key)) : desired;
      const tx = this.dataplane.diff(kernel, target);
      if (first && tx.keys.length > 0) {
        this.opts.log.info({ units: tx.keys.length, staleOrDrifted: tx.keys.filter((k) => k !== '').slice(0, 20) }, 'full sync: kernel state differs from the desired plan; repairing');
      }
      const { stats, refused } = await this.dataplane.apply(tx);
      total = addStats(total, stats);
      if (!first) extra += stats.restores + (refused && refused.kind !== 'render' ? 1 : 0);
      applied ||= stats.restores > 0;
      const setAside = (key: string, stage: FaultStage, reason: string) => {
        // Blamed again while held: its old state is refused too, so it gets none.
        const fallback = held.has(key) ? undefined : this.applied.get(key) ?? kernel.group(key);
        if (fallback) desired.set(key, fallback);
        else desired.delete(key);
        held.add(key);
        onSetAside(key);
        this.fault(key, stage, reason);
      };
      if (!refused) {
        if (!bisect || !trial) return total;
        // The trial went in, so the refused group is among the other suspects.
        const rest: string[] = bisect.suspects.filter((k) => !trial.has(k));
        if (rest.length === 1) setAside(rest[0]!, 'kernel', bisect.reason);
        bisect = rest.length === 1 ? null : { suspects: rest, reason: bisect.reason };
        continue;
      }
      lastError = refused.error;
      if (refused.kind === 'render') {
        if (refused.failing.length === 0) throw refused.error;
        for (const f of refused.failing) setAside(f.group, 'plan', `rendering its rules failed: ${errorText(f.error)}`);
        continue;
      }
      if (refused.kind === 'error') throw refused.error;
      if (refused.blamed !== null) {
        setAside(refused.blamed, 'kernel', refused.reason);
        bisect = null;
        continue;
      }
      const groups = refused.groups;
      // Nothing of a group was refused (the skeleton, or the tool itself failing): not a group's fault.
      if (groups.length === 0) throw refused.error;
      if (groups.length > 1) {
        bisect = { suspects: [...groups], reason: refused.reason };
        continue;
      }
      // One group refused alone: its fault, unless nothing at all gets through (a held lock, a broken tool).
      if (!applied) {
        extra++;
        if (!(await this.dataplane.works())) throw refused.error;
        applied = true;
      }
      setAside(groups[0]!, 'kernel', refused.reason);
      bisect = null;
    }
  }

  /**
   * A held group this process never applied (the agent restarted) keeps the
   * state the kernel holds for it under its frontends' names. Otherwise it
   * would be deleted as nobody's.
   */
  private adoptHeld(desired: Map<string, GroupState>, held: ReadonlySet<string>, kernel: KernelState<GroupState>): boolean {
    let adopted = false;
    for (const key of held) {
      if (desired.has(key)) continue;
      const state = this.dataplane.adopt(key, this.opts.frontendsOf(key), kernel);
      if (state === undefined) continue;
      desired.set(key, state);
      adopted = true;
    }
    return adopted;
  }
}

function addStats(a: ApplyStats, b: ApplyStats): ApplyStats {
  return { restores: a.restores + b.restores, payloadBytes: a.payloadBytes + b.payloadBytes, chainsWritten: a.chainsWritten + b.chainsWritten, units: a.units + b.units };
}

/** `desired` with the state of the groups `keep` selects replaced by what the kernel holds for them. */
function holdBack(desired: ReadonlyMap<string, GroupState>, kernel: KernelState<GroupState>, keep: (key: string) => boolean): Map<string, GroupState> {
  const states = new Map<string, GroupState>();
  for (const [key, state] of desired) {
    const kept = keep(key) ? kernel.group(key) : state;
    if (kept !== undefined) states.set(key, kept);
  }
  return states;
}
