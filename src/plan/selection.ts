import type { ClusterEndpoint } from '../model/group.js';

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
