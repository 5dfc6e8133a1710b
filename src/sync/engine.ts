import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { Config } from '../config/schema.js';
import { RestoreError, type IptablesBackend } from '../iptables/backend.js';
import { observe, staleKey, type TableDump } from '../iptables/observe.js';
import { batchUnits, renderPayload, unitAtLine } from '../iptables/render.js';
import type { BackoffOptions } from '../kube/backoff.js';
import { parseSave } from '../iptables/save-format.js';
import { errorText, type Logger } from '../log.js';
import { ClusterResolver } from '../model/clusters.js';
import { buildGroup, type GroupContext } from '../model/group.js';
import { convertService, convertSlice, serviceRef, sliceRef } from '../model/records.js';
import { ModelStore } from '../model/store.js';
import { diffFragment, diffPlans, TEARDOWN_KEY } from '../plan/diff.js';
import { assemblePlan, EMPTY_PLAN, planGroup, type PlanContext } from '../plan/planner.js';
import { serviceChainName } from '../plan/names.js';
import { SKELETON_KEY, TABLES, type Fragment, type OwnedChain, type Plan, type SetRule, type Table, type UnitChange } from '../plan/types.js';
import { ProblemLog } from './problem-log.js';
import { Quarantine, type FaultStage, type GroupFault, type GroupStatus } from './quarantine.js';
import { analyseNetworks } from '../network/overlap.js';
import { staleUdpFlows, type StaleUdpFlow } from '../conntrack/stale-flows.js';
import { ALL_HEALTHY, type Decision, type HealthView } from '../policy/select.js';

export interface SyncResult {
  readonly full: boolean;
  /** performance.now() of the oldest change this sync applied; null when none was pending. */
  readonly oldestChangeAt: number | null;
  /** Chains and rules the agent owns after a full sync (a partial sync does not count them). */
  readonly owned: { readonly chains: number; readonly rules: number } | null;
  /** Restores run (0 when nothing changed). */
  readonly restores: number;
  readonly payloadBytes: number;
  readonly chainsWritten: number;
  readonly units: number;
  readonly durationMs: number;
  /** Groups quarantined after this sync (their plan threw or the kernel refused their rules). */
  readonly quarantined: number;
  /** Milliseconds until a quarantined group is due for a retry; null when none is quarantined. */
  readonly retryInMs: number | null;
}

export interface EngineOptions {
  readonly config: Config;
  readonly backend: IptablesBackend;
  readonly log: Logger;
  /** Called after every sync attempt that changed or checked the kernel. */
  readonly onSync?: (result: SyncResult) => void;
  /** Reachability verdicts of the prober; everything is healthy without one. */
  readonly health?: HealthView;
  /** A group's traffic moved (e.g. from its local cluster to a remote one), once the rules are in. */
  readonly onDecision?: (change: DecisionChange) => void;
  /** Deletes UDP conntrack entries still pointing at endpoints a sync removed. */
  readonly flushUdp?: (flows: readonly StaleUdpFlow[]) => Promise<void>;
  /** A group was quarantined or failed for a new reason (`fault` set), or healed (`fault` null); once per change. */
  readonly onQuarantine?: (change: QuarantineChange) => void;
  /** Retry delays of a quarantined group (default QUARANTINE_BACKOFF). */
  readonly quarantineBackoff?: BackoffOptions;
  /** The clock of quarantine retries (default performance.now()). */
  readonly now?: () => number;
}

export interface QuarantineChange {
  readonly group: string;
  /** The new fault; null when the group healed. */
  readonly fault: GroupFault | null;
  /** The fault the group had before, if any. */
  readonly previous: GroupFault | null;
}

/**
 * Extra restores a sync may spend finding the groups the kernel refuses
 * (one per group blamed by line; about 2·log2(n) per group found by
 * bisecting n). Past it the sync fails and is retried; the groups found so
 * far stay set aside, so every retry gets further.
 */
export const MAX_ISOLATION_RESTORES = 32;

export interface DecisionChange {
  readonly group: string;
  readonly before: Decision | null;
  readonly after: Decision | null;
}

/**
 * The pipeline: API objects → records (store) → service groups (model) →
 * fragments (plan) → diff → restore payloads. It keeps the last applied
 * fragment of each group so a partial sync costs what the changed groups
 * cost, whatever the number of services.
 */
export class SyncEngine {
  private readonly store: ModelStore;
  private config: Config;
  private groupCtx!: GroupContext;
  private planCtx!: PlanContext;
  private readonly problems: ProblemLog;
  private readonly applied = new Map<string, Fragment>();
  /** Decision of each group as last applied. */
  private readonly decisions = new Map<string, Decision | null>();
  /** Decisions planned but not yet applied. */
  private readonly pendingDecisions = new Map<string, Decision | null>();
  /**
   * Candidate endpoints of each group by cluster: probe targets, and the groups
   * a verdict touches. Per group, cluster names alternate with that cluster's
   * endpoints joined into one string (`ip:port,ip:port`, in model order,
   * duplicates kept): one string per cluster instead of one per endpoint.
   */
  private readonly clusterIndex = new Map<string, string[]>();
  private dirty = new Set<string>();
  /** When the oldest change in `dirty` arrived. */
  private dirtySince: number | null = null;
  /** Set until a full sync succeeds: the kernel may differ from `applied`. */
  private needsFull = true;
  /** Groups set aside: each keeps its last applied fragment and is retried on its own backoff. */
  private readonly quarantine: Quarantine;
  private readonly now: () => number;

  constructor(private readonly opts: EngineOptions) {
    this.config = opts.config;
    this.now = opts.now ?? (() => performance.now());
    this.quarantine = new Quarantine(this.now, opts.quarantineBackoff);
    this.store = new ModelStore(opts.config.servicePrefix);
    this.problems = new ProblemLog(opts.log);
    this.updateConfig(opts.config);
  }

  /** Takes a new config: planning inputs change at once and the next sync is a full one. */
  updateConfig(c: Config): void {
    this.config = c;
    this.store.servicePrefix = c.servicePrefix;
    this.groupCtx = { servicePrefix: c.servicePrefix, clusters: new ClusterResolver(c.clusterName, c.clusters.map((x) => x.name)), withheld: analyseNetworks(c).withheld };
    this.planCtx = {
      clusterCIDR: c.clusterCIDR, localCluster: c.clusterName, masqueradeBit: c.masqueradeBit,
      policy: c.trafficPolicy, health: this.opts.health ?? ALL_HEALTHY,
    };
    this.needsFull = true;
    this.dirtySince ??= performance.now();
  }

  /** Whether changes wait for a sync. */
  get hasPendingChanges(): boolean {
    return this.dirty.size > 0;
  }

  get serviceCount(): number {
    return this.store.serviceCount;
  }

  /** Problems standing now, one line each. */
  currentProblems(): string[] {
    return this.problems.current();
  }

  // ---- inputs: each returns whether a group changed, so callers can request a sync

  upsertService(svc: V1Service): boolean {
    const { record, problems } = convertService(svc);
    this.problems.report(serviceRef(svc.metadata?.namespace, svc.metadata?.name), problems);
    // No record: its identity is not a Kubernetes name (reported); it never entered the model.
    return record ? this.markDirty(this.store.upsertService(record)) : false;
  }

  deleteService(svc: V1Service): boolean {
    const namespace = svc.metadata?.namespace ?? '';
    const name = svc.metadata?.name ?? '';
    this.problems.clear(serviceRef(namespace, name));
    return this.markDirty(this.store.deleteService(namespace, name));
  }

  upsertSlice(slice: V1EndpointSlice): boolean {
    const namespace = slice.metadata?.namespace ?? '';
    const name = slice.metadata?.name ?? '';
    const { record, problems } = convertSlice(slice);
    this.problems.report(sliceRef(namespace, name), problems);
    // A slice that lost its service-name label leaves its old Service.
    return this.markDirty(record ? this.store.upsertSlice(record) : this.store.deleteSlice(namespace, name));
  }

  deleteSlice(slice: V1EndpointSlice): boolean {
    const namespace = slice.metadata?.namespace ?? '';
    const name = slice.metadata?.name ?? '';
    this.problems.clear(sliceRef(namespace, name));
    return this.markDirty(this.store.deleteSlice(namespace, name));
  }

  private markDirty(keys: readonly string[]): boolean {
    if (keys.length === 0) return false;
    for (const key of keys) {
      this.dirty.add(key);
      this.quarantine.wake(key);
    }
    this.dirtySince ??= performance.now();
    return true;
  }

  /** Takes the pending changes: their group keys and when the oldest arrived. */
  private takeDirty(): { keys: Set<string>; since: number | null } {
    const taken = { keys: this.dirty, since: this.dirtySince };
    this.dirty = new Set();
    this.dirtySince = null;
    return taken;
  }

  private restoreDirty(taken: { keys: Set<string>; since: number | null }): void {
    for (const key of taken.keys) this.dirty.add(key);
    if (taken.since !== null) this.dirtySince = Math.min(taken.since, this.dirtySince ?? Infinity);
  }

  // ---- planning

  private fragmentOf(key: string): Fragment | undefined {
    const { group, problems } = buildGroup(key, this.store, this.groupCtx);
    this.clusterIndex.delete(key);
    if (!group) {
      this.problems.reportGroup(key, problems);
      this.pendingDecisions.set(key, null);
      return undefined;
    }
    const planned = planGroup(group, this.planCtx);
    this.problems.reportGroup(key, [...problems, ...planned.problems]);
    this.pendingDecisions.set(key, planned.decision);
    const byCluster = new Map<string, string[]>();
    for (const fe of [...group.frontends, ...(group.local ? [group.local] : [])]) {
      for (const port of fe.ports) {
        for (const ep of port.endpoints) {
          const list = byCluster.get(ep.cluster) ?? [];
          if (list.length === 0) byCluster.set(ep.cluster, list);
          list.push(`${ep.ip}:${ep.port}`);
        }
      }
    }
    if (byCluster.size > 0) {
      const entry: string[] = [];
      for (const [cluster, eps] of byCluster) entry.push(cluster, eps.join(ENDPOINT_SEPARATOR));
      this.clusterIndex.set(key, entry);
    }
    return planned.settings.mode === 'off' ? undefined : planned.fragment;
  }

  /** Endpoints to probe, per cluster, deduplicated across groups. */
  probeTargets(): Map<string, string[]> {
    const sets = new Map<string, Set<string>>();
    for (const entry of this.clusterIndex.values()) {
      for (let i = 0; i < entry.length; i += 2) {
        const cluster = entry[i]!;
        let set = sets.get(cluster);
        if (!set) sets.set(cluster, (set = new Set()));
        for (const ep of entry[i + 1]!.split(ENDPOINT_SEPARATOR)) set.add(ep);
      }
    }
    return new Map([...sets].map(([cluster, set]) => [cluster, [...set]]));
  }

  /** A cluster (or local endpoint `ip:port`) changed verdict: every group using it is replanned. */
  healthChanged(kind: 'cluster' | 'endpoint', target: string): boolean {
    const keys: string[] = [];
    for (const [key, entry] of this.clusterIndex) {
      for (let i = 0; i < entry.length; i += 2) {
        if (kind === 'cluster' ? entry[i] === target : listHas(entry[i + 1]!, target)) {
          keys.push(key);
          break;
        }
      }
    }
    return this.markDirty(keys);
  }

  /** The complete desired plan; also refreshes every group's problems. A group whose planning throws keeps what it has. */
  desiredPlan(): Plan {
    return assemblePlan(this.planAll().fragments, this.planCtx);
  }

  /** The restore payload that would build the whole data plane from nothing (--dry-run). */
  fullPayload(): string {
    return renderPayload(diffPlans(EMPTY_PLAN, this.desiredPlan()).units);
  }

  /**
   * Every group's fragment. Quarantined groups whose retry is not due (a
   * change to their objects makes it due) are not replanned: they keep their
   * last applied fragment, as does a group whose planning throws now. `held`
   * lists the groups keeping their old fragment.
   */
  private planAll(): { fragments: Map<string, Fragment>; held: Set<string> } {
    const fragments = new Map<string, Fragment>();
    const held = new Set<string>();
    for (const key of this.store.allGroupKeys()) {
      const planned = this.quarantine.isWaiting(key) ? null : this.planned(key);
      const f = planned ? planned.fragment : this.applied.get(key);
      if (!planned) held.add(key);
      if (f) fragments.set(key, f);
    }
    return { fragments, held };
  }

  /** The group's fragment as planned now; null (and the group quarantined) when model, planning or policy throw. */
  private planned(key: string): { fragment: Fragment | undefined } | null {
    try {
      return { fragment: this.fragmentOf(key) };
    } catch (err) {
      // Its old decision stays in force with its old rules.
      this.pendingDecisions.delete(key);
      this.fault(key, 'plan', `planning its rules failed: ${errorText(err)}`);
      return null;
    }
  }

  // ---- syncs

  /**
   * Rewrites what differs between the kernel and the desired plan, adopting
   * what a previous run left. A group the kernel refuses is set aside and
   * the rest applied in the same sync.
   */
  async syncFull(): Promise<SyncResult> {
    const started = performance.now();
    const taken = this.takeDirty();
    const { fragments, held } = this.planAll();
    let outcome;
    try {
      outcome = await this.applyIsolating(fragments, held);
    } catch (err) {
      this.needsFull = true;
      this.restoreDirty(taken);
      throw err;
    }
    await this.commit(fragments, true);
    this.healApplied(this.store.allGroupKeys(), held);
    this.needsFull = false;
    return this.finish(true, started, taken.since, outcome.stats, ownedBy(outcome.plan));
  }

  /** Applies the changes of the groups touched since the last sync, and retries the quarantined groups that are due. */
  async syncPartial(): Promise<SyncResult> {
    if (this.needsFull) return this.syncFull();
    const started = performance.now();
    const taken = this.takeDirty();
    const units: UnitChange[] = [];
    const next = new Map<string, Fragment | undefined>();
    for (const key of new Set([...taken.keys, ...this.quarantine.due()])) {
      // Put back after a failed sync: it waits for its retry.
      if (this.quarantine.isWaiting(key)) continue;
      const planned = this.planned(key);
      if (!planned) continue;
      next.set(key, planned.fragment);
      const change = diffFragment(key, this.applied.get(key), planned.fragment);
      if (change) units.push(change);
    }
    try {
      const { stats, refused } = await this.applyUntilRefused(units);
      // A refused payload: a full sync reads the kernel back and sets the guilty group aside.
      if (refused) throw refused.rendering || refused.error instanceof RestoreError ? new Isolate() : refused.error;
      await this.commit(next, false);
      this.healApplied(next.keys(), new Set());
      if (this.opts.log.isLevelEnabled('debug')) {
        for (const u of units) {
          for (const chain of [...u.ops.nat.declare, ...u.ops.filter.declare]) this.opts.log.debug({ service: u.key, chain }, 'chain rewritten');
        }
      }
      return this.finish(false, started, taken.since, stats, null);
    } catch (err) {
      // The kernel's state is now uncertain: the retry is a full sync.
      this.needsFull = true;
      this.restoreDirty(taken);
      if (err instanceof Isolate) return this.syncFull();
      throw err;
    }
  }

  /**
   * Makes the kernel match `fragments`, setting aside each group the kernel
   * refuses: blamed by the line the tool names, else found by bisecting the
   * groups of the refused restore. A refused group keeps its last applied
   * fragment (or what the kernel holds for it, or nothing); `fragments` and
   * `held` are updated to match. Each round reads the kernel back first, so
   * tables a refused restore committed before failing are accounted for.
   */
  private async applyIsolating(fragments: Map<string, Fragment>, held: Set<string>): Promise<{ stats: ApplyStats; plan: Plan }> {
    let total: ApplyStats = { restores: 0, payloadBytes: 0, chainsWritten: 0, units: 0 };
    /** Restores spent after the first attempt, probes included. */
    let extra = 0;
    let first = true;
    let applied = false;
    let lastError: unknown = null;
    /** While bisecting: groups among which the kernel refuses one at least, and that refusal. */
    let bisect: { suspects: string[]; error: RestoreError; batch: readonly UnitChange[] } | null = null;
    for (;; first = false) {
      if (extra >= MAX_ISOLATION_RESTORES) throw lastError;
      let desired = assemblePlan(fragments, this.planCtx);
      const dumps = await this.readKernel();
      let observed = observe(dumps, desired);
      if (first && this.adoptHeld(fragments, held, observed.plan)) {
        desired = assemblePlan(fragments, this.planCtx);
        observed = observe(dumps, desired);
      }
      // A trial applies the first half of the suspects; every other group keeps what the kernel holds.
      const trial = bisect ? new Set(bisect.suspects.slice(0, Math.ceil(bisect.suspects.length / 2))) : null;
      const target = trial ? holdBack(desired, observed.plan, (key) => !trial.has(key)) : desired;
      const { units } = diffPlans(observed.plan, target, observed.strayJumps);
      if (first && units.length > 0) {
        this.opts.log.info({ units: units.length, staleOrDrifted: units.map((u) => u.key).filter((k) => k !== '').slice(0, 20) }, 'full sync: kernel state differs from the desired plan; repairing');
      }
      const { stats, refused } = await this.applyUntilRefused(units);
      total = addStats(total, stats);
      if (!first) extra += stats.restores + (refused && !refused.rendering ? 1 : 0);
      applied ||= stats.restores > 0;
      const setAside = (key: string, stage: FaultStage, reason: string) => {
        // Blamed again while held: its old rules are refused too, so it gets none.
        const fallback = held.has(key) ? undefined : this.applied.get(key) ?? observed.plan.fragments.get(key);
        if (fallback) fragments.set(key, fallback);
        else fragments.delete(key);
        held.add(key);
        this.pendingDecisions.delete(key);
        this.fault(key, stage, reason);
      };
      if (!refused) {
        if (!bisect || !trial) return { stats: total, plan: desired };
        // The trial went in, so the refused group is among the other suspects.
        const rest: string[] = bisect.suspects.filter((k) => !trial.has(k));
        if (rest.length === 1) setAside(rest[0]!, 'kernel', refusalReason(bisect.error, bisect.batch));
        bisect = rest.length === 1 ? null : { suspects: rest, error: bisect.error, batch: bisect.batch };
        continue;
      }
      const { error, batch } = refused;
      lastError = error;
      if (refused.rendering) {
        const failing = unrenderable(batch).filter(([u]) => isGroupKey(u.key));
        if (failing.length === 0) throw error;
        for (const [u, err] of failing) setAside(u.key, 'plan', `rendering its rules failed: ${errorText(err)}`);
        continue;
      }
      if (!(error instanceof RestoreError)) throw error;
      const blamed = error.line === undefined ? null : unitAtLine(batch, error.line);
      if (blamed && isGroupKey(blamed.key)) {
        setAside(blamed.key, 'kernel', refusalReason(error, batch));
        bisect = null;
        continue;
      }
      const groups = batch.map((u) => u.key).filter(isGroupKey);
      // Nothing of a group was refused (the skeleton, or the tool itself failing): not a group's fault.
      if (groups.length === 0) throw error;
      if (groups.length > 1) {
        bisect = { suspects: groups, error, batch };
        continue;
      }
      // One group refused alone: its fault, unless nothing at all gets through (a held lock, a broken tool).
      if (!applied) {
        extra++;
        if (!(await this.restoreWorks())) throw error;
        applied = true;
      }
      setAside(groups[0]!, 'kernel', refusalReason(error, batch));
      bisect = null;
    }
  }

  /**
   * A held group this process never applied (the agent restarted) keeps the
   * rules the kernel holds for it: the chains its ports name and the dispatch
   * rules jumping to them. Otherwise they would be deleted as nobody's.
   */
  private adoptHeld(fragments: Map<string, Fragment>, held: ReadonlySet<string>, kernel: Plan): boolean {
    let adopted = false;
    for (const key of held) {
      if (fragments.has(key)) continue;
      const chains: OwnedChain[] = [];
      const setRules: SetRule[] = [];
      for (const name of this.chainNamesOf(key)) {
        const stale = kernel.fragments.get(staleKey('nat', name));
        chains.push(...(stale?.chains ?? []));
        setRules.push(...(stale?.setRules ?? []));
      }
      if (chains.length === 0) continue;
      fragments.set(key, { key, chains, setRules });
      adopted = true;
    }
    return adopted;
  }

  /** The service chains a group's ports name, whatever its policy programs; none when its model does not build. */
  private chainNamesOf(key: string): string[] {
    let group;
    try {
      group = buildGroup(key, this.store, this.groupCtx).group;
    } catch {
      return [];
    }
    const members = group ? [...group.frontends, ...(group.local ? [group.local] : [])] : [];
    return members.flatMap((fe) => fe.ports.map((p) => serviceChainName(fe.namespace, fe.name, p.label, p.protocol)));
  }

  /** Whether the tool applies an empty payload: a refusal of one group alone is then that group's fault. */
  private async restoreWorks(): Promise<boolean> {
    try {
      await this.opts.backend.restore('*nat\nCOMMIT\n');
      return true;
    } catch {
      return false;
    }
  }

  /** Records a group's failure; logs and reports it when it is news. */
  private fault(key: string, stage: FaultStage, reason: string): void {
    const previous = this.quarantine.get(key) ?? null;
    const fault = this.quarantine.fail(key, stage, reason);
    if (!fault) return;
    this.opts.log.warn({ service: key, stage, reason, retryInMs: Math.round(fault.retryAt - this.now()) },
      `service ${key} quarantined: ${reason}; it keeps its last applied rules, every other service is synced, and it is retried with backoff`);
    this.opts.onQuarantine?.({ group: key, fault, previous });
  }

  /** Lifts the quarantine of groups that were planned and applied (or are gone). */
  private healApplied(keys: Iterable<string>, held: ReadonlySet<string>): void {
    if (this.quarantine.size === 0) return;
    const present = this.store.allGroupKeys();
    const tried = new Set([...keys].filter((k) => !held.has(k)));
    for (const key of this.quarantine.keys()) {
      if (present.has(key) && !tried.has(key)) continue;
      const previous = this.quarantine.lift(key)!;
      this.opts.log.info({ service: key, failures: previous.failures }, `service ${key} healed: ${present.has(key) ? 'its rules are applied' : 'it is gone'}; quarantine lifted`);
      this.opts.onQuarantine?.({ group: key, fault: null, previous });
    }
  }

  /** The group's state in the data plane (explain, and the reconciler's status). */
  groupStatus(key: string): GroupStatus {
    const fault = this.quarantine.get(key);
    if (fault) return { state: 'failed', ...fault };
    return this.dirty.has(key) || this.needsFull ? { state: 'pending' } : { state: 'applied' };
  }

  /** Groups quarantined now. */
  get quarantinedCount(): number {
    return this.quarantine.size;
  }

  /** Removes every chain, rule and jump the agent owns (--cleanup). */
  async cleanup(): Promise<SyncResult> {
    const started = performance.now();
    const observed = observe(await this.readKernel(), EMPTY_PLAN);
    const { units } = diffPlans(observed.plan, EMPTY_PLAN, observed.strayJumps);
    // One restore: teardown relies on every fragment's removal in the same transaction.
    const payload = renderPayload(units);
    if (payload !== '') await this.opts.backend.restore(payload);
    this.applied.clear();
    const stats = { restores: payload === '' ? 0 : 1, payloadBytes: payload.length, chainsWritten: sumChains(units), units: units.length };
    return this.finish(true, started, null, stats, { chains: 0, rules: 0 });
  }

  /**
   * Records fragments as applied, then does what follows a change of
   * selection: stale UDP flows are flushed and decision changes announced.
   * `all`: `next` is the whole plan, so groups missing from it are gone.
   */
  private async commit(next: ReadonlyMap<string, Fragment | undefined>, all: boolean): Promise<void> {
    const flows: StaleUdpFlow[] = [];
    const keys = all ? new Set([...this.applied.keys(), ...next.keys()]) : new Set(next.keys());
    for (const key of keys) {
      const after = next.get(key);
      flows.push(...staleUdpFlows(this.applied.get(key), after));
      if (after) this.applied.set(key, after);
      else this.applied.delete(key);
    }
    for (const [key, after] of this.pendingDecisions) {
      const known = this.decisions.has(key);
      const before = this.decisions.get(key) ?? null;
      if (after === null) this.decisions.delete(key);
      else this.decisions.set(key, after);
      // A group's first decision is no change; nor is a group that went away.
      if (!known || after === null || sameDecision(before, after)) continue;
      this.opts.log.info({ service: key, from: before?.target ?? 'none', to: after.target, clusters: after.clusters, failOpen: after.failOpen }, `service ${key} now sends traffic to ${after.target === 'none' ? 'no cluster' : after.clusters.join(', ')}`);
      this.opts.onDecision?.({ group: key, before, after });
    }
    this.pendingDecisions.clear();
    if (flows.length > 0 && this.opts.flushUdp) await this.opts.flushUdp(flows);
  }

  /** Where a group's traffic goes as last applied (explain, metrics). */
  decisionOf(key: string): Decision | null {
    return this.decisions.get(key) ?? null;
  }

  private async readKernel(): Promise<Map<Table, TableDump>> {
    const dumps = new Map<Table, TableDump>();
    for (const table of TABLES) {
      const saved = parseSave(await this.opts.backend.save(table)).get(table);
      dumps.set(table, saved?.chains ?? new Map());
    }
    return dumps;
  }

  /**
   * Renders and restores the units batch by batch, stopping at the first
   * batch that fails to render or that the backend refuses; the batches
   * before it stay applied.
   */
  private async applyUntilRefused(units: readonly UnitChange[]): Promise<{ stats: ApplyStats; refused: Refusal | null }> {
    // legacy replaces the whole table on every restore, so splitting would only multiply that cost.
    const limit = this.opts.backend.mode === 'nft' ? this.config.maxChainsPerRestore : Infinity;
    let payloadBytes = 0;
    let restores = 0;
    const stats = () => ({ restores, payloadBytes, chainsWritten: sumChains(units), units: units.length });
    for (const batch of batchUnits(units, limit)) {
      let payload;
      try {
        payload = renderPayload(batch);
      } catch (error) {
        return { stats: stats(), refused: { error, batch, rendering: true } };
      }
      if (payload === '') continue;
      try {
        await this.opts.backend.restore(payload);
      } catch (error) {
        return { stats: stats(), refused: { error, batch, rendering: false } };
      }
      payloadBytes += payload.length;
      restores++;
    }
    return { stats: stats(), refused: null };
  }

  private finish(full: boolean, started: number, oldestChangeAt: number | null, stats: ApplyStats, owned: SyncResult['owned']): SyncResult {
    const retryInMs = this.quarantine.nextRetryIn();
    const result = { full, oldestChangeAt, owned, ...stats, durationMs: performance.now() - started, quarantined: this.quarantine.size, retryInMs };
    this.opts.onSync?.(result);
    return result;
  }

  // ---- read-only views and a hook for operations (src/ops: metrics, Events, explain)

  /** Receives each problem when first reported. */
  set onProblem(fn: ProblemLog['onNew']) {
    this.problems.onNew = fn;
  }

  groupKeys(): Set<string> {
    return this.store.allGroupKeys();
  }

  /** The group a Service belongs to: `derived-<x>` and `<x>` share `ns/x`. */
  groupKeyOf(namespace: string, serviceName: string): string {
    return this.store.groupKeyOf(namespace, serviceName);
  }

  /** The group as the model builds it now; no side effect. */
  groupModel(key: string): ReturnType<typeof buildGroup> {
    return buildGroup(key, this.store, this.groupCtx);
  }

  /** The group built and planned now, what was last applied for it, and the config planning used; no side effect. */
  inspectGroup(key: string) {
    const build = this.groupModel(key);
    return { build, plan: build.group ? planGroup(build.group, this.planCtx) : null, applied: this.applied.get(key) ?? null, config: this.config };
  }
}

/** Joins a cluster's endpoints in clusterIndex; `ip:port` never contains it. */
const ENDPOINT_SEPARATOR = ',';

/** Whether `target` is one of the items of a list joined with ENDPOINT_SEPARATOR. */
function listHas(joined: string, target: string): boolean {
  if (target === '') return false;
  for (let at = joined.indexOf(target); at !== -1; at = joined.indexOf(target, at + 1)) {
    const end = at + target.length;
    if ((at === 0 || joined[at - 1] === ENDPOINT_SEPARATOR) && (end === joined.length || joined[end] === ENDPOINT_SEPARATOR)) return true;
  }
  return false;
}

function sameDecision(a: Decision | null, b: Decision): boolean {
  return a !== null && a.target === b.target && a.failOpen === b.failOpen && a.clusters.join() === b.clusters.join();
}

type ApplyStats = Pick<SyncResult, 'restores' | 'payloadBytes' | 'chainsWritten' | 'units'>;

/** A batch that failed to render or that the backend refused; the batches before it are applied. */
interface Refusal {
  readonly error: unknown;
  readonly batch: readonly UnitChange[];
  readonly rendering: boolean;
}

/** Thrown inside a partial sync to hand a refused payload over to a full sync. */
class Isolate extends Error {}

function addStats(a: ApplyStats, b: ApplyStats): ApplyStats {
  return { restores: a.restores + b.restores, payloadBytes: a.payloadBytes + b.payloadBytes, chainsWritten: a.chainsWritten + b.chainsWritten, units: a.units + b.units };
}

/** `plan` with the fragments of the groups `keep` selects replaced by what the kernel holds for them. */
function holdBack(plan: Plan, kernel: Plan, keep: (key: string) => boolean): Plan {
  const fragments = new Map<string, Fragment>();
  for (const [key, f] of plan.fragments) {
    const kept = keep(key) ? kernel.fragments.get(key) : f;
    if (kept) fragments.set(key, kept);
  }
  return { ...plan, fragments };
}

/** A service group's unit, as opposed to the skeleton's setup and teardown. */
function isGroupKey(key: string): boolean {
  return key !== SKELETON_KEY && key !== TEARDOWN_KEY && !key.startsWith('~');
}

/** The units of a batch that fail to render alone, with their errors. */
function unrenderable(batch: readonly UnitChange[]): [UnitChange, unknown][] {
  const failing: [UnitChange, unknown][] = [];
  for (const u of batch) {
    try {
      renderPayload([u]);
    } catch (err) {
      failing.push([u, err]);
    }
  }
  return failing;
}

/**
 * The refused rule and the tool's words, without line numbers: the same
 * refusal reads the same whatever else the payload held, so a retry that
 * fails the same way is not news.
 */
function refusalReason(error: RestoreError, batch: readonly UnitChange[]): string {
  const line = error.line === undefined ? undefined : renderPayload(batch).split('\n')[error.line - 1];
  const words = (error.stderr.trim() || error.message)
    .split('\n')
    .filter((l) => !/^Try `/.test(l))
    .join('; ')
    .replace(/\bline:? \d+:?\s*/g, '')
    .replace(/\s+/g, ' ')
    .trim();
  return `the kernel refused its rules${line ? ` (${JSON.stringify(line)})` : ''}: ${words}`;
}

function ownedBy(plan: Plan): { chains: number; rules: number } {
  let chains = plan.setChains.length;
  let rules = plan.jumps.length;
  for (const f of [plan.skeleton, ...plan.fragments.values()]) {
    chains += f.chains.length;
    rules += f.setRules.length;
    for (const c of f.chains) rules += c.rules.length;
  }
  return { chains, rules };
}

function sumChains(units: readonly UnitChange[]): number {
  return units.reduce((n, u) => n + u.chainCount, 0);
}
