import type { V1Node } from '@kubernetes/client-node';
import type { Config, RouteMode } from '../config/schema.js';
import type { Logger } from '../log.js';
import { RoutesDataplane } from './dataplane.js';
import { nodeRecord, sameRecord, type NodeRecord } from './gateway.js';
import type { RouteExecutor } from './netlink-executor.js';
import type { Overlap } from '../network/overlap.js';
import type { PlanResult, RouteRole } from './plan.js';

/** What the route half of the agent is doing, for metrics, Events and /explain. */
export interface RouteStatus {
  readonly mode: RouteMode;
  /** gateway: this node holds the tunnel; member: it routes to the gateway; none: nothing to route. */
  readonly role: RouteRole;
  /** The active gateway; null when there is none or nothing to route (role none). */
  readonly gateway: { readonly node: string; readonly ip: string; readonly reason: string } | null;
  /** Remote CIDRs this node routes to the gateway (unreachable while there is none). */
  readonly routed: readonly string[];
  /** Standing overlaps between configured networks; each has a stable `key` and a one-line `message`. */
  readonly overlaps: readonly Overlap[];
  readonly lastSync: { readonly at: number; readonly ok: boolean; readonly durationMs: number; readonly operations: number; readonly error?: string } | null;
  /** The last change of gateway this node applied: eventToAppliedMs runs from the Node event to the routes re-pointed. */
  readonly lastFailover: { readonly from: string | null; readonly to: string | null; readonly eventToAppliedMs: number | null; readonly at: number } | null;
}

export interface RouteSyncResult {
  readonly operations: number;
  readonly durationMs: number;
}

export interface ReconcilerOptions {
  readonly config: Config;
  readonly nodeName: string;
  readonly executor: RouteExecutor;
  readonly log: Logger;
  /** Called after every sync attempt, successful or not. */
  readonly onStatus?: (status: RouteStatus) => void;
}

/**
 * Node records + config → plan → observe → one diff → apply, through a
 * RoutesDataplane. Every sync observes the owned objects afresh, so one that
 * failed half-way, or a route someone deleted, is repaired by the next.
 */
export class RouteReconciler {
  private config: Config;
  private readonly dataplane: RoutesDataplane;
  private readonly nodes = new Map<string, NodeRecord>();
  private current!: PlanResult;
  /** Gateway of the last applied plan; undefined before the first. */
  private appliedGateway: string | null | undefined = undefined;
  /** When the oldest Node change not yet applied arrived (performance.now()). */
  private changedSince: number | null = null;
  /** Overlap keys already logged. */
  private readonly reported = new Set<string>();
  private warnedNoClusterName = false;
  private lastSync: RouteStatus['lastSync'] = null;
  private lastFailover: RouteStatus['lastFailover'] = null;

  constructor(private readonly opts: ReconcilerOptions) {
    this.config = opts.config;
    // The gateway section needs a restart: owned table, priority and informer selector stay fixed.
    this.dataplane = new RoutesDataplane(opts.executor, opts.config);
    this.replan();
  }

  /** Takes a new config (live reload); the gateway section keeps its start-up value. */
  updateConfig(c: Config): void {
    this.config = { ...c, gateway: this.config.gateway };
    this.replan();
  }

  /** Returns whether something the plan depends on changed (heartbeats do not). */
  upsertNode(node: V1Node): boolean {
    const record = nodeRecord(node);
    if (!record) return false;
    const before = this.nodes.get(record.name);
    if (before && sameRecord(before, record)) return false;
    this.nodes.set(record.name, record);
    return this.noteChange();
  }

  deleteNode(node: V1Node): boolean {
    const name = node.metadata?.name;
    if (!name || !this.nodes.delete(name)) return false;
    return this.noteChange();
  }

  status(): RouteStatus {
    const { gateway, role, plan, networks } = this.current;
    return {
      mode: this.config.gateway.mode,
      role,
      gateway: gateway.node && role !== 'none' ? { node: gateway.node.name, ip: gateway.node.internalIP ?? '', reason: gateway.reason } : null,
      routed: plan.routes.filter((r) => r.via !== null).map((r) => r.dst),
      overlaps: networks.overlaps,
      lastSync: this.lastSync,
      lastFailover: this.lastFailover,
    };
  }

  /** Brings the kernel to the plan. Throws on failure; the next sync reads the kernel afresh. */
  async sync(): Promise<RouteSyncResult> {
    const started = performance.now();
    const since = this.changedSince;
    this.changedSince = null;
    const planned = this.current;
    try {
      const observed = await this.dataplane.observe(planned.plan);
      const operations = await this.dataplane.apply(this.dataplane.diff(observed, planned.plan));
      const durationMs = performance.now() - started;
      this.lastSync = { at: Date.now(), ok: true, durationMs, operations };
      this.noteApplied(planned, since, operations, durationMs);
      return { operations, durationMs };
    } catch (err) {
      this.changedSince = since;
      const error = err instanceof Error ? err.message : String(err);
      this.lastSync = { at: Date.now(), ok: false, durationMs: performance.now() - started, operations: 0, error };
      throw err;
    } finally {
      this.opts.onStatus?.(this.status());
    }
  }

  private noteChange(): true {
    this.changedSince ??= performance.now();
    this.replan();
    return true;
  }

  private replan(): void {
    this.current = this.dataplane.plan(this.config, this.opts.nodeName, this.nodes.values());
    for (const o of this.current.networks.overlaps) {
      if (this.reported.has(o.key)) continue;
      this.reported.add(o.key);
      this.opts.log.error(
        { cluster: o.range.cluster, cidr: o.range.cidr, otherCluster: o.other.cluster, otherCidr: o.other.cidr },
        `overlapping networks: ${o.message}`,
      );
    }
    // An overlap fixed and reintroduced is reported again.
    for (const key of this.reported) if (!this.current.networks.overlaps.some((o) => o.key === key)) this.reported.delete(key);
    if (this.config.clusterName === '' && this.current.networks.routed.length > 0 && !this.warnedNoClusterName) {
      this.warnedNoClusterName = true;
      this.opts.log.warn('clusterName is not set: remote clusters cannot be told from this one, so no cross-cluster route is installed');
    }
  }

  private noteApplied(planned: PlanResult, since: number | null, operations: number, durationMs: number): void {
    // With nothing to route, no gateway carries this node's traffic.
    const to = planned.role === 'none' ? null : planned.gateway.node?.name ?? null;
    if (this.appliedGateway === to) return;
    const from = this.appliedGateway ?? null;
    const first = this.appliedGateway === undefined;
    this.appliedGateway = to;
    if (first && planned.role === 'none') return;
    const eventToAppliedMs = since === null ? null : Math.round((performance.now() - since) * 10) / 10;
    const fields = { gateway: to, previous: from, reason: planned.gateway.reason, role: planned.role, operations, durationMs: Math.round(durationMs * 10) / 10, eventToAppliedMs };
    if (first) {
      this.opts.log.info(fields, to === null ? 'no active gateway' : 'active gateway');
      return;
    }
    this.lastFailover = { from, to, eventToAppliedMs, at: Date.now() };
    if (to === null) this.opts.log.warn(fields, 'no active gateway: remote CIDRs are unreachable from this node');
    else this.opts.log.info(fields, 'active gateway changed; routes re-pointed');
  }
}
