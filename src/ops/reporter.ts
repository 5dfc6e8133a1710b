import type { ObjectRef as ApiObjectRef, Problem } from '../model/records.js';
import type { EventRecorder, ObjectRef } from './event-recorder.js';
import type { AgentMetrics } from './metrics.js';

/** Where a group's traffic goes, as the policy decided (structurally src/policy's Decision). */
export interface DecisionView {
  readonly clusters: readonly string[];
  readonly target: 'local' | 'remote' | 'mixed' | 'none';
}

/** Two clusters' (or a cluster's and this cluster's) CIDRs overlapping, on the object that declares one of them. */
export interface CidrOverlap {
  readonly object: ObjectRef;
  readonly message: string;
}

export interface ClusterHealthView {
  readonly healthy: boolean;
  /** Wall-clock ms of the last change of verdict. */
  readonly since: number;
}

const API_VERSIONS: Record<ApiObjectRef['kind'], string> = { Service: 'v1', EndpointSlice: 'discovery.k8s.io/v1' };

/**
 * The object a problem is about, as an Event names it; null when its
 * namespace or name is not a Kubernetes name (reports show those escaped:
 * no Event can name them).
 */
export function eventRefOf(object: ApiObjectRef): ObjectRef | null {
  if (!/^[a-z0-9][-a-z0-9]*$/.test(object.namespace) || !/^[a-z0-9][-a-z0-9.]*$/.test(object.name)) return null;
  return { apiVersion: API_VERSIONS[object.kind], kind: object.kind, namespace: object.namespace, name: object.name };
}

/**
 * The one place that turns what the subsystems observe into metrics and
 * Kubernetes Events. The sync engine, the prober and the route manager call
 * it; it never blocks them (Events are queued by the recorder).
 */
export class OpsReporter {
  private readonly clusters = new Map<string, ClusterHealthView>();
  private readonly gateways = new Map<string, string>();
  private overlapKeys = new Set<string>();

  constructor(
    private readonly metrics: AgentMetrics,
    private readonly events: EventRecorder,
    /** This node, the object of Events about the node's view of the clusterset. */
    private readonly node: ObjectRef,
    private readonly now: () => number = Date.now,
  ) {}

  /** A problem with an object, reported once while it stands (ProblemLog's onNew). */
  problem(p: Problem, scope: 'object' | 'group'): void {
    const ref = eventRefOf(p.object);
    if (!ref) return;
    // Object scope: the object itself is malformed. Group scope: it does not fit with the others (a missing port, an unknown cluster).
    this.events.record(ref, 'Warning', scope === 'object' ? 'Malformed' : 'Inconsistent', `${p.message} (${scope === 'object' ? 'skipped, or only the bad part' : 'the rest of the service is served'})`);
  }

  /**
   * A group was set aside (`reason` set) or healed (`reason` null); called
   * once per change, not per retry. The Event goes on the Service carrying the group.
   */
  quarantine(service: ObjectRef, reason: string | null, previous: string | null): void {
    if (reason !== null) {
      this.events.record(service, 'Warning', 'Quarantined', `rules of ${service.namespace}/${service.name} not applied: ${reason}; it keeps its last applied rules, every other service is synced, and it is retried with backoff`);
    } else if (previous !== null) {
      this.events.record(service, 'Normal', 'QuarantineLifted', `rules of ${service.namespace}/${service.name} applied again (was: ${previous})`);
    }
  }

  /** The prober's verdict on a cluster changed (or was first given). */
  clusterHealth(cluster: string, healthy: boolean, detail = ''): void {
    const before = this.clusters.get(cluster);
    this.metrics.clusterHealth(cluster, healthy);
    if (before?.healthy === healthy) return;
    this.clusters.set(cluster, { healthy, since: this.now() });
    // The first verdict of a healthy cluster is no news.
    if (!before && healthy) return;
    const what = healthy
      ? `cluster ${cluster} is reachable again from node ${this.node.name}; its endpoints are used again`
      : `cluster ${cluster} is unreachable from node ${this.node.name}; its endpoints are taken out of every selection`;
    this.events.record(this.node, healthy ? 'Normal' : 'Warning', healthy ? 'ClusterHealthy' : 'ClusterUnhealthy', detail ? `${what}: ${detail}` : what);
  }

  clusterHealthOf(cluster: string): ClusterHealthView | undefined {
    return this.clusters.get(cluster);
  }

  /** A group's traffic moved; `service` is the Service whose ClusterIP carries it. */
  decisionChanged(service: ObjectRef, before: DecisionView | null, after: DecisionView | null): void {
    if (!before || !after || before.target === after.target) return;
    this.metrics.failover(before.target, after.target);
    const leftLocal = (before.target === 'local' || before.target === 'mixed') && (after.target === 'remote' || after.target === 'none');
    const backToLocal = after.target === 'local';
    const reason = leftLocal ? 'FailedOver' : backToLocal ? 'FailedBack' : 'TrafficMoved';
    const describe = (d: DecisionView) => (d.clusters.length > 0 ? `${d.target} (${d.clusters.join(', ')})` : d.target);
    this.events.record(service, leftLocal || after.target === 'none' ? 'Warning' : 'Normal', reason, `traffic of ${service.namespace}/${service.name} moved from ${describe(before)} to ${describe(after)}`);
  }

  /** The gateway carrying traffic to `cluster` changed; null when none is usable. The Event goes on `object`, else this node. */
  gatewayChanged(cluster: string, gateway: string | null, object: ObjectRef = this.node): void {
    const previous = this.gateways.get(cluster) ?? null;
    if (previous === gateway) return;
    this.metrics.gateway(cluster, gateway, previous);
    if (gateway === null) this.gateways.delete(cluster);
    else this.gateways.set(cluster, gateway);
    const message = gateway === null
      ? `no usable gateway to cluster ${cluster} (was ${previous})`
      : `traffic to cluster ${cluster} now goes through gateway ${gateway}${previous ? ` (was ${previous})` : ''}`;
    this.events.record(object, gateway === null ? 'Warning' : 'Normal', 'GatewayChanged', message);
  }

  /** The overlaps standing now; each new one is reported once. */
  overlaps(list: readonly CidrOverlap[]): void {
    this.metrics.overlaps(list.length);
    const keys = new Set<string>();
    for (const o of list) {
      const key = `${o.object.kind}/${o.object.namespace ?? ''}/${o.object.name}: ${o.message}`;
      keys.add(key);
      if (!this.overlapKeys.has(key)) this.events.record(o.object, 'Warning', 'CIDROverlap', o.message);
    }
    this.overlapKeys = keys;
  }
}
