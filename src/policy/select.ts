import type { ClusterEndpoint } from '../model/group.js';
import type { PolicySettings } from './policy.js';

/** An endpoint the data plane sends traffic to, with its relative share. */
export interface WeightedEndpoint {
  readonly ip: string;
  readonly port: number;
  readonly cluster: string;
  readonly weight: number;
}

/**
 * Endpoint conditions as kube-proxy applies them: ready endpoints; when none
 * is ready, those still serving while terminating (so a rollout's last pods
 * drain instead of rejecting). Duplicates across slices count once.
 */
export function usableEndpoints(endpoints: readonly ClusterEndpoint[]): ClusterEndpoint[] {
  const ready = endpoints.filter((ep) => ep.ready);
  const chosen = ready.length > 0 ? ready : endpoints.filter((ep) => ep.serving && ep.terminating);
  const seen = new Set<string>();
  return chosen.filter((ep) => {
    const id = `${ep.ip}:${ep.port}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

/** What the data plane knows of reachability; anything never probed is healthy. */
export interface HealthView {
  clusterHealthy(cluster: string): boolean;
  /** Endpoint-level verdict (local probing); true when not probed. */
  endpointHealthy(ip: string, port: number): boolean;
}

// localeCompare with options builds a collator per call: the hottest line of a 10k-service full sync.
const NUMERIC = new Intl.Collator('en', { numeric: true });

export const ALL_HEALTHY: HealthView = { clusterHealthy: () => true, endpointHealthy: () => true };

/** Where a service port's traffic goes, and why: logged, counted and explained. */
export interface Decision {
  /** Clusters receiving traffic, in the order the policy ranked them. */
  readonly clusters: readonly string[];
  /** `local`, `remote`, `mixed` (both), or `none` (no usable endpoint anywhere). */
  readonly target: 'local' | 'remote' | 'mixed' | 'none';
  /** Every cluster with endpoints was unhealthy, so all are used rather than none. */
  readonly failOpen: boolean;
}

export interface Selection {
  readonly endpoints: readonly WeightedEndpoint[];
  readonly decision: Decision;
}

function byCluster(endpoints: readonly ClusterEndpoint[], health: HealthView): Map<string, ClusterEndpoint[]> {
  const groups = new Map<string, ClusterEndpoint[]>();
  for (const ep of endpoints) {
    let list = groups.get(ep.cluster);
    if (!list) groups.set(ep.cluster, (list = []));
    list.push(ep);
  }
  // Conditions apply per cluster: one cluster's terminating pods must not
  // stand in for another cluster's ready ones. Probed-dead endpoints drop out.
  const usable = new Map<string, ClusterEndpoint[]>();
  for (const [cluster, list] of groups) {
    const eps = usableEndpoints(list).filter((ep) => health.endpointHealthy(ep.ip, ep.port));
    if (eps.length > 0) usable.set(cluster, eps);
  }
  return usable;
}

function rank(clusters: Iterable<string>, settings: PolicySettings, local: string): string[] {
  const rest = [...clusters].sort((a, b) => (a === local ? -1 : b === local ? 1 : a.localeCompare(b)));
  if (settings.mode !== 'failover') return rest;
  const listed = settings.failoverOrder.filter((c) => rest.includes(c));
  return [...listed, ...rest.filter((c) => !listed.includes(c))];
}

/**
 * Applies a traffic policy to one service port's candidate endpoints (every
 * cluster's). Weights are per endpoint: a cluster's share is spread evenly
 * over its endpoints.
 */
export function selectByPolicy(candidates: readonly ClusterEndpoint[], settings: PolicySettings, localCluster: string, health: HealthView): Selection {
  const usable = byCluster(candidates, health);
  const ranked = rank(usable.keys(), settings, localCluster);
  let healthy = ranked.filter((c) => health.clusterHealthy(c));
  const failOpen = healthy.length === 0 && ranked.length > 0;
  if (failOpen) healthy = ranked;

  let chosen: string[];
  switch (settings.mode) {
    case 'failover':
      chosen = healthy.slice(0, 1);
      break;
    case 'active-active':
      chosen = healthy.filter((c) => (settings.clusterWeights[c] ?? 1) > 0);
      break;
    default:
      chosen = healthy.includes(localCluster) ? [localCluster] : healthy;
  }

  const endpoints: WeightedEndpoint[] = [];
  for (const cluster of chosen) {
    const eps = usable.get(cluster)!;
    const share = settings.mode === 'active-active' ? (settings.clusterWeights[cluster] ?? 1) / eps.length : 1;
    for (const ep of eps) endpoints.push({ ip: ep.ip, port: ep.port, cluster, weight: share });
  }
  endpoints.sort((a, b) => a.cluster.localeCompare(b.cluster) || NUMERIC.compare(a.ip, b.ip) || a.port - b.port);
  const hasLocal = chosen.includes(localCluster);
  const target = chosen.length === 0 ? 'none' : hasLocal && chosen.length === 1 ? 'local' : hasLocal ? 'mixed' : 'remote';
  return { endpoints, decision: { clusters: chosen, target, failOpen } };
}
