import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { Config } from '../config/schema.js';
import type { IptablesBackend } from '../iptables/backend.js';
import { observe, type TableDump } from '../iptables/observe.js';
import { batchUnits, renderPayload } from '../iptables/render.js';
import { parseSave } from '../iptables/save-format.js';
import type { Logger } from '../log.js';
import { ClusterResolver } from '../model/clusters.js';
import { buildGroup, type GroupContext } from '../model/group.js';
import { convertService, convertSlice, serviceRef, sliceRef } from '../model/records.js';
import { ModelStore } from '../model/store.js';
import { diffFragment, diffPlans } from '../plan/diff.js';
import { assemblePlan, EMPTY_PLAN, planGroup, type PlanContext } from '../plan/planner.js';
import { TABLES, type Fragment, type Plan, type Table, type UnitChange } from '../plan/types.js';
import { ProblemLog } from './problem-log.js';

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
}

export interface EngineOptions {
  readonly config: Config;
  readonly backend: IptablesBackend;
  readonly log: Logger;
  /** Called after every sync attempt that changed or checked the kernel. */
  readonly onSync?: (result: SyncResult) => void;
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
  private dirty = new Set<string>();
  /** When the oldest change in `dirty` arrived. */
  private dirtySince: number | null = null;
  /** Set until a full sync succeeds: the kernel may differ from `applied`. */
  private needsFull = true;

  constructor(private readonly opts: EngineOptions) {
    this.config = opts.config;
    this.store = new ModelStore(opts.config.servicePrefix);
    this.problems = new ProblemLog(opts.log);
    this.updateConfig(opts.config);
  }

  /** Takes a new config: planning inputs change at once and the next sync is a full one. */
  updateConfig(c: Config): void {
    this.config = c;
    this.store.servicePrefix = c.servicePrefix;
    this.groupCtx = { servicePrefix: c.servicePrefix, clusters: new ClusterResolver(c.clusterName, c.clusters.map((x) => x.name)) };
    this.planCtx = { clusterCIDR: c.clusterCIDR, localCluster: c.clusterName, masqueradeBit: c.masqueradeBit };
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
    this.problems.report(serviceRef(record!.namespace, record!.name), problems);
    return this.markDirty(this.store.upsertService(record!));
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
    for (const key of keys) this.dirty.add(key);
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
    this.problems.reportGroup(key, problems);
    return group ? planGroup(group, this.planCtx) : undefined;
  }

  /** The complete desired plan; also refreshes every group's problems. */
  desiredPlan(): Plan {
    const fragments = new Map<string, Fragment>();
    for (const key of this.store.allGroupKeys()) {
      const f = this.fragmentOf(key);
      if (f) fragments.set(key, f);
    }
    return assemblePlan(fragments, this.planCtx);
  }

  /** The restore payload that would build the whole data plane from nothing (--dry-run). */
  fullPayload(): string {
    return renderPayload(diffPlans(EMPTY_PLAN, this.desiredPlan()).units);
  }

  // ---- syncs

  /** Rewrites what differs between the kernel and the desired plan, adopting what a previous run left. */
  async syncFull(): Promise<SyncResult> {
    const started = performance.now();
    const taken = this.takeDirty();
    const desired = this.desiredPlan();
    let stats;
    try {
      const observed = observe(await this.readKernel(), desired);
      const { units } = diffPlans(observed.plan, desired, observed.strayJumps);
      if (units.length > 0) {
        this.opts.log.info({ units: units.length, staleOrDrifted: units.map((u) => u.key).filter((k) => k !== '').slice(0, 20) }, 'full sync: kernel state differs from the desired plan; repairing');
      }
      stats = await this.apply(units);
    } catch (err) {
      this.needsFull = true;
      this.restoreDirty(taken);
      throw err;
    }
    this.applied.clear();
    for (const [key, f] of desired.fragments) this.applied.set(key, f);
    this.needsFull = false;
    return this.finish(true, started, taken.since, stats, ownedBy(desired));
  }

  /** Applies the changes of the groups touched since the last sync. */
  async syncPartial(): Promise<SyncResult> {
    if (this.needsFull) return this.syncFull();
    const started = performance.now();
    const taken = this.takeDirty();
    const units: UnitChange[] = [];
    const next = new Map<string, Fragment | undefined>();
    for (const key of taken.keys) {
      const f = this.fragmentOf(key);
      next.set(key, f);
      const change = diffFragment(key, this.applied.get(key), f);
      if (change) units.push(change);
    }
    try {
      const stats = await this.apply(units);
      for (const [key, f] of next) {
        if (f) this.applied.set(key, f);
        else this.applied.delete(key);
      }
      return this.finish(false, started, taken.since, stats, null);
    } catch (err) {
      // The kernel's state is now uncertain: the retry is a full sync.
      this.needsFull = true;
      this.restoreDirty(taken);
      throw err;
    }
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

  private async readKernel(): Promise<Map<Table, TableDump>> {
    const dumps = new Map<Table, TableDump>();
    for (const table of TABLES) {
      const saved = parseSave(await this.opts.backend.save(table)).get(table);
      dumps.set(table, saved?.chains ?? new Map());
    }
    return dumps;
  }

  private async apply(units: readonly UnitChange[]): Promise<ApplyStats> {
    // legacy replaces the whole table on every restore, so splitting would only multiply that cost.
    const limit = this.opts.backend.mode === 'nft' ? this.config.maxChainsPerRestore : Infinity;
    let payloadBytes = 0;
    let restores = 0;
    for (const batch of batchUnits(units, limit)) {
      const payload = renderPayload(batch);
      if (payload === '') continue;
      await this.opts.backend.restore(payload);
      payloadBytes += payload.length;
      restores++;
    }
    return { restores, payloadBytes, chainsWritten: sumChains(units), units: units.length };
  }

  private finish(full: boolean, started: number, oldestChangeAt: number | null, stats: ApplyStats, owned: SyncResult['owned']): SyncResult {
    const result = { full, oldestChangeAt, owned, ...stats, durationMs: performance.now() - started };
    this.opts.onSync?.(result);
    return result;
  }
}

type ApplyStats = Pick<SyncResult, 'restores' | 'payloadBytes' | 'chainsWritten' | 'units'>;

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
