import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { Config } from '../config/schema.js';
import type { BackoffOptions } from '../kube/backoff.js';
import { errorText, type Logger } from '../log.js';
import { ClusterResolver } from '../model/clusters.js';
import { buildGroup, type GroupContext } from '../model/group.js';
import { convertService, convertSlice, objectText, serviceRef, sliceRef } from '../model/records.js';
import { EndpointIndex } from '../model/endpoint-index.js';
import { ModelStore } from '../model/store.js';
import { ProblemLog } from './problem-log.js';
import type { GroupStatus } from './quarantine.js';
import type { ApplyStats, Dataplane } from './dataplane.js';
import { Reconciler, type GroupState, type QuarantineChange } from './reconciler.js';
import { analyseNetworks } from '../network/overlap.js';
import { staleUdpFlows, type StaleUdpFlow } from '../conntrack/stale-flows.js';
import { ALL_HEALTHY, type Decision, type HealthView } from '../policy/select.js';
import { groupMembers, selectGroup, type FrontendSelection, type GroupSelection, type SelectionContext } from '../selection/selection.js';

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
  /** The kernel interface the engine programs (one per IP family). */
  readonly dataplane: Dataplane;
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

export { MAX_ISOLATION_RESTORES, type QuarantineChange } from './reconciler.js';

export interface DecisionChange {
  readonly group: string;
  readonly before: Decision | null;
  readonly after: Decision | null;
}

/**
 * The pipeline: API objects → records (store) → service groups (model) →
 * selection (policy + health) → the data plane's desired state → diff →
 * one transaction. It keeps the last applied state and selection of each
 * group so a partial sync costs what the changed groups cost, whatever the
 * number of services.
 */
export class SyncEngine {
  private readonly store: ModelStore;
  private config: Config;
  private groupCtx!: GroupContext;
  private selectionCtx!: SelectionContext;
  private readonly problems: ProblemLog;
  private readonly dataplane: Dataplane;
  /** Makes the data plane hold every group's state; keeps each group's status and retries. */
  private readonly reconciler: Reconciler;
  /**
   * The UDP frontends of each group's selection as last applied: what
   * conntrack cleanup compares (TCP flows are left alone, so their selections
   * need not be kept).
   */
  private readonly appliedUdp = new Map<string, { readonly frontends: readonly FrontendSelection[] }>();
  /** Selections planned but not yet applied; undefined for a group that is gone. */
  private readonly pendingSelections = new Map<string, GroupSelection | undefined>();
  /** Decision of each group as last applied. */
  private readonly decisions = new Map<string, Decision | null>();
  /** The endpoints each group uses, by cluster: probe targets, and the groups a verdict touches. */
  private readonly endpointIndex = new EndpointIndex();
  private dirty = new Set<string>();
  /** When the oldest change in `dirty` arrived. */
  private dirtySince: number | null = null;

  constructor(private readonly opts: EngineOptions) {
    this.config = opts.config;
    this.store = new ModelStore(opts.config.servicePrefix);
    this.problems = new ProblemLog(opts.log);
    this.dataplane = opts.dataplane;
    this.reconciler = new Reconciler({
      dataplane: opts.dataplane, log: opts.log, now: opts.now ?? (() => performance.now()),
      quarantineBackoff: opts.quarantineBackoff, onQuarantine: opts.onQuarantine,
      frontendsOf: (key) => this.frontendNamesOf(key),
    });
    this.updateConfig(opts.config);
  }

  /** Takes a new config: planning inputs change at once and the next sync is a full one. */
  updateConfig(c: Config): void {
    this.config = c;
    this.store.servicePrefix = c.servicePrefix;
    this.groupCtx = { servicePrefix: c.servicePrefix, clusters: new ClusterResolver(c.clusterName, c.clusters.map((x) => x.name)), withheld: analyseNetworks(c).withheld };
    this.selectionCtx = { localCluster: c.clusterName, policy: c.trafficPolicy, health: this.opts.health ?? ALL_HEALTHY };
    this.dataplane.configure({ clusterCIDR: c.clusterCIDR, clusterCIDRs: c.clusterCIDRs, localCluster: c.clusterName, masqueradeBit: c.masqueradeBit, maxChainsPerRestore: c.maxChainsPerRestore });
    this.reconciler.invalidate();
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
    this.problems.report(objectText(serviceRef(svc.metadata?.namespace, svc.metadata?.name)), problems);
    // No record: its identity is not a Kubernetes name (reported); it never entered the model.
    return record ? this.markDirty(this.store.upsertService(record)) : false;
  }

  deleteService(svc: V1Service): boolean {
    const namespace = svc.metadata?.namespace ?? '';
    const name = svc.metadata?.name ?? '';
    this.problems.clear(objectText(serviceRef(namespace, name)));
    return this.markDirty(this.store.deleteService(namespace, name));
  }

  upsertSlice(slice: V1EndpointSlice): boolean {
    const namespace = slice.metadata?.namespace ?? '';
    const name = slice.metadata?.name ?? '';
    const { record, problems } = convertSlice(slice);
    this.problems.report(objectText(sliceRef(namespace, name)), problems);
    // A slice that lost its service-name label leaves its old Service.
    return this.markDirty(record ? this.store.upsertSlice(record) : this.store.deleteSlice(namespace, name));
  }

  deleteSlice(slice: V1EndpointSlice): boolean {
    const namespace = slice.metadata?.namespace ?? '';
    const name = slice.metadata?.name ?? '';
    this.problems.clear(objectText(sliceRef(namespace, name)));
    return this.markDirty(this.store.deleteSlice(namespace, name));
  }

  private markDirty(keys: readonly string[]): boolean {
    if (keys.length === 0) return false;
    for (const key of keys) {
      this.dirty.add(key);
      this.reconciler.wake(key);
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

  private fragmentOf(key: string): GroupState | undefined {
    const { group, problems } = buildGroup(key, this.store, this.groupCtx);
    this.endpointIndex.set(key, null);
    if (!group) {
      this.problems.reportGroup(key, problems);
      this.pendingSelections.set(key, undefined);
      return undefined;
    }
    const selection = selectGroup(group, this.selectionCtx);
    const state = this.dataplane.plan(selection);
    this.problems.reportGroup(key, [...problems, ...selection.problems]);
    this.pendingSelections.set(key, selection);
    this.endpointIndex.set(key, group);
    return state;
  }

  /** Endpoints to probe, per cluster, deduplicated across groups. */
  probeTargets(): Map<string, string[]> {
    return this.endpointIndex.byCluster();
  }

  /** A cluster (or local endpoint `ip:port`) changed verdict: every group using it is replanned. */
  healthChanged(kind: 'cluster' | 'endpoint', target: string): boolean {
    return this.markDirty(this.endpointIndex.groupsUsing(kind, target));
  }

  /** Every group's desired state in the data plane, as planned now; also refreshes every group's problems. */
  desiredState(): ReadonlyMap<string, unknown> {
    return this.planAll().fragments;
  }

  /** The data plane's own text for building everything from nothing (--dry-run); also refreshes every group's problems. */
  fullPayload(): string {
    return this.dataplane.render(this.dataplane.diff(null, this.planAll().fragments));
  }

  /**
   * Every group's fragment. Quarantined groups whose retry is not due (a
   * change to their objects makes it due) are not replanned: they keep their
   * last applied fragment, as does a group whose planning throws now. `held`
   * lists the groups keeping their old fragment.
   */
  private planAll(): { fragments: Map<string, GroupState>; held: Set<string> } {
    const fragments = new Map<string, GroupState>();
    const held = new Set<string>();
    for (const key of this.store.allGroupKeys()) {
      const planned = this.reconciler.isWaiting(key) ? null : this.planned(key);
      const f = planned ? planned.fragment : this.reconciler.appliedState(key);
      if (!planned) held.add(key);
      if (f) fragments.set(key, f);
    }
    return { fragments, held };
  }

  /** The group's fragment as planned now; null (and the group quarantined) when model, planning or policy throw. */
  private planned(key: string): { fragment: GroupState | undefined } | null {
    try {
      return { fragment: this.fragmentOf(key) };
    } catch (err) {
      // Its old decision stays in force with its old rules.
      this.pendingSelections.delete(key);
      this.reconciler.fault(key, 'plan', `planning its rules failed: ${errorText(err)}`);
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
      // A group set aside keeps its old decision with its old state.
      outcome = await this.reconciler.reconcileFull(fragments, held, (key) => this.pendingSelections.delete(key));
      await this.commit(fragments, true);
    } catch (err) {
      this.reconciler.invalidate();
      this.restoreDirty(taken);
      throw err;
    }
    if (this.reconciler.quarantinedCount > 0) {
      const present = this.store.allGroupKeys();
      this.reconciler.heal(present, held, () => present);
    }
    return this.finish(true, started, taken.since, outcome.stats, outcome.owned);
  }

  /** Applies the changes of the groups touched since the last sync, and retries the quarantined groups that are due. */
  async syncPartial(): Promise<SyncResult> {
    if (this.reconciler.fullDue) return this.syncFull();
    const started = performance.now();
    const taken = this.takeDirty();
    const next = new Map<string, GroupState | undefined>();
    for (const key of new Set([...taken.keys, ...this.reconciler.due()])) {
      // Put back after a failed sync: it waits for its retry.
      if (this.reconciler.isWaiting(key)) continue;
      const planned = this.planned(key);
      if (!planned) continue;
      next.set(key, planned.fragment);
    }
    try {
      const outcome = await this.reconciler.reconcileGroups(next);
      // A refused transaction: a full sync reads the kernel back and sets the guilty group aside.
      if (outcome.refused) throw new Isolate();
      await this.commit(next, false);
      this.reconciler.heal(next.keys(), new Set(), () => this.store.allGroupKeys());
      if (this.opts.log.isLevelEnabled('debug')) {
        for (const w of this.dataplane.written(outcome.tx)) this.opts.log.debug({ service: w.group, chain: w.name }, 'chain rewritten');
      }
      return this.finish(false, started, taken.since, outcome.stats, null);
    } catch (err) {
      // The kernel's state is now uncertain: the retry is a full sync.
      this.reconciler.invalidate();
      this.restoreDirty(taken);
      if (err instanceof Isolate) return this.syncFull();
      throw err;
    }
  }

  /** Every port of every Service of a group, whatever its policy programs; none when its model does not build. */
  private frontendNamesOf(key: string): Pick<FrontendSelection, 'name' | 'protocol'>[] {
    let group;
    try {
      group = buildGroup(key, this.store, this.groupCtx).group;
    } catch {
      return [];
    }
    const members = group ? groupMembers(group) : [];
    return members.flatMap((fe) => fe.ports.map((p) => ({ name: { namespace: fe.namespace, service: fe.name, port: p.label }, protocol: p.protocol })));
  }

  /** The group's state in the data plane (explain, and the reconciler's status). */
  groupStatus(key: string): GroupStatus {
    return this.reconciler.status(key, this.dirty.has(key));
  }

  /** Groups quarantined now. */
  get quarantinedCount(): number {
    return this.reconciler.quarantinedCount;
  }

  /** Removes every chain, rule and jump the agent owns (--cleanup). */
  async cleanup(): Promise<SyncResult> {
    const started = performance.now();
    const stats = await this.reconciler.cleanup();
    this.appliedUdp.clear();
    return this.finish(true, started, null, stats, { chains: 0, rules: 0 });
  }

  /**
   * What follows applied states: the selections they came from become the
   * applied ones, stale UDP flows are flushed and decision changes announced.
   * `all`: `next` is the whole desired state, so groups missing from it are gone.
   */
  private async commit(next: ReadonlyMap<string, GroupState | undefined>, all: boolean): Promise<void> {
    const flows: StaleUdpFlow[] = [];
    // A group that kept its old state (held, refused) keeps its old selection: it has no pending one.
    const changed = new Map(this.pendingSelections);
    if (all) for (const key of this.appliedUdp.keys()) if (!next.has(key) && !changed.has(key)) changed.set(key, undefined);
    for (const [key, selection] of changed) {
      const udp = selection && next.get(key) !== undefined ? selection.frontends.filter((f) => f.protocol === 'UDP') : [];
      const before = this.appliedUdp.get(key);
      if (before) flows.push(...staleUdpFlows(before, { frontends: udp }));
      if (udp.length > 0) this.appliedUdp.set(key, { frontends: udp });
      else this.appliedUdp.delete(key);
    }
    for (const [key, selection] of this.pendingSelections) {
      const after = selection?.decision ?? null;
      const known = this.decisions.has(key);
      const before = this.decisions.get(key) ?? null;
      if (after === null) this.decisions.delete(key);
      else this.decisions.set(key, after);
      // A group's first decision is no change; nor is a group that went away.
      if (!known || after === null || sameDecision(before, after)) continue;
      this.opts.log.info({ service: key, from: before?.target ?? 'none', to: after.target, clusters: after.clusters, failOpen: after.failOpen }, `service ${key} now sends traffic to ${after.target === 'none' ? 'no cluster' : after.clusters.join(', ')}`);
      this.opts.onDecision?.({ group: key, before, after });
    }
    this.pendingSelections.clear();
    if (flows.length > 0 && this.opts.flushUdp) await this.opts.flushUdp(flows);
  }


  private finish(full: boolean, started: number, oldestChangeAt: number | null, stats: ApplyStats, owned: SyncResult['owned']): SyncResult {
    const retryInMs = this.reconciler.nextRetryIn();
    const result = { full, oldestChangeAt, owned, ...stats, durationMs: performance.now() - started, quarantined: this.reconciler.quarantinedCount, retryInMs };
    this.opts.onSync?.(result);
    return result;
  }

  // ---- read-only views and a hook for operations (src/ops: metrics, Events, explain)

  /** Receives each problem when first reported. */
  set onProblem(fn: ProblemLog['onNew']) {
    this.problems.onNew = fn;
  }

  /** A group's data-plane state as last applied (the drift watch compares the kernel with it). */
  appliedState(key: string): unknown {
    return this.reconciler.appliedState(key);
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

  /** The group built and selected now, and the config selection used; no side effect. */
  inspectGroup(key: string) {
    const build = this.groupModel(key);
    const selection = build.group ? selectGroup(build.group, this.selectionCtx) : null;
    return { build, selection, config: this.config };
  }

  /** The data plane this engine programs. */
  get plane(): Dataplane {
    return this.dataplane;
  }
}

function sameDecision(a: Decision | null, b: Decision): boolean {
  return a !== null && a.target === b.target && a.failOpen === b.failOpen && a.clusters.join() === b.clusters.join();
}

/** Thrown inside a partial sync to hand a refused payload over to a full sync. */
class Isolate extends Error {}
