import { endpointAddresses, type FrontendSelection } from '../selection/selection.js';

/** UDP flows from a frontend (ClusterIP or ClusterSet IP):port to an endpoint that no longer serves it. */
export interface StaleUdpFlow {
  readonly clusterIP: string;
  readonly port: number;
  /** `ip:port` of the endpoint that left the selection. */
  readonly endpoint: string;
}

type Frontends = { readonly frontends: readonly FrontendSelection[] } | undefined;

/**
 * UDP has no connection to end: conntrack keeps sending a client's packets to
 * the endpoint chosen first for as long as it keeps talking. When a selection
 * drops an endpoint, its entries must go so the next packet is balanced anew.
 * TCP is left alone: established flows to live endpoints finish on their own.
 */
export function staleUdpFlows(before: Frontends, after: Frontends): StaleUdpFlow[] {
  const flows: StaleUdpFlow[] = [];
  const now = new Map((after?.frontends ?? []).map((f) => [`${f.ip}:${f.port}/${f.protocol}`, new Set(endpointAddresses(f))]));
  for (const f of before?.frontends ?? []) {
    if (f.protocol !== 'UDP') continue;
    const kept = now.get(`${f.ip}:${f.port}/${f.protocol}`);
    for (const endpoint of endpointAddresses(f)) {
      if (!kept?.has(endpoint)) flows.push({ clusterIP: f.ip, port: f.port, endpoint });
    }
  }
  return flows;
}
