import type { Fragment } from '../plan/types.js';

/** UDP flows from a ClusterIP:port to an endpoint that no longer serves it. */
export interface StaleUdpFlow {
  readonly clusterIP: string;
  readonly port: number;
  /** `ip:port` of the endpoint that left the selection. */
  readonly endpoint: string;
}

/**
 * UDP has no connection to end: conntrack keeps sending a client's packets to
 * the endpoint chosen first for as long as it keeps talking. When a selection
 * drops an endpoint, its entries must go so the next packet is balanced anew.
 * TCP is left alone: established flows to live endpoints finish on their own.
 */
export function staleUdpFlows(before: Fragment | undefined, after: Fragment | undefined): StaleUdpFlow[] {
  const flows: StaleUdpFlow[] = [];
  const now = new Map((after?.portals ?? []).map((p) => [`${p.clusterIP}:${p.port}/${p.protocol}`, new Set(p.endpoints)]));
  for (const p of before?.portals ?? []) {
    if (p.protocol !== 'UDP') continue;
    const kept = now.get(`${p.clusterIP}:${p.port}/${p.protocol}`);
    for (const endpoint of p.endpoints) {
      if (!kept?.has(endpoint)) flows.push({ clusterIP: p.clusterIP, port: p.port, endpoint });
    }
  }
  return flows;
}
