import type { V1Node } from '@kubernetes/client-node';
import type { GatewayConfig } from '../config/schema.js';
import { parseAddress, type IPFamily } from '../network/address.js';

/** Set to "true" on a candidate Node to make it the active gateway (after `gateway.node`). */
export const PIN_ANNOTATION = 'clusterset-proxy.io/gateway-pin';

/** What the gateway choice needs of a Node, compared to skip syncs on heartbeats. */
export interface NodeRecord {
  readonly name: string;
  readonly ready: boolean;
  readonly labels: Readonly<Record<string, string>>;
  readonly pinned: boolean;
  /** The InternalIP that names the node: its IPv4 one, else its IPv6 one; null when it has none. */
  readonly internalIP: string | null;
  /** First InternalIP of each family, canonical text. */
  readonly internalIPs: Readonly<Partial<Record<IPFamily, string>>>;
  /** creationTimestamp in ms; Infinity when absent, so such nodes sort last. */
  readonly createdAt: number;
}

export function nodeRecord(node: V1Node): NodeRecord | null {
  const name = node.metadata?.name;
  if (!name) return null;
  // Objects arrive as the API server sent them: the timestamp is a string, not a Date.
  const created = Date.parse(String(node.metadata?.creationTimestamp ?? ''));
  const internalIPs: Partial<Record<IPFamily, string>> = {};
  for (const a of node.status?.addresses ?? []) {
    const address = a.type === 'InternalIP' ? parseAddress(a.address) : null;
    if (address) internalIPs[address.family] ??= address.text;
  }
  return {
    name,
    ready: node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    labels: { ...(node.metadata?.labels ?? {}) },
    pinned: node.metadata?.annotations?.[PIN_ANNOTATION] === 'true',
    internalIP: internalIPs.IPv4 ?? internalIPs.IPv6 ?? null,
    internalIPs,
    createdAt: Number.isNaN(created) ? Infinity : created,
  };
}

export function sameRecord(a: NodeRecord, b: NodeRecord): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export interface GatewayChoice {
  /** The active gateway, null when no candidate exists. */
  readonly node: NodeRecord | null;
  /** Names of the Ready labelled nodes with an InternalIP, sorted. */
  readonly candidates: readonly string[];
  /** Why this one: for the log and the status. */
  readonly reason: string;
}

export function matchesSelector(node: NodeRecord, selector: Readonly<Record<string, string>>): boolean {
  return Object.entries(selector).every(([k, v]) => node.labels[k] === v);
}

/** Oldest first, so a node joining the candidates never takes over; the name breaks ties. */
function byAge(a: NodeRecord, b: NodeRecord): number {
  return a.createdAt - b.createdAt || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/**
 * The active gateway, chosen alike by every node from the same Node set:
 * among Ready nodes carrying the selector's labels and an InternalIP, the one
 * pinned by config (`gateway.node`), else the oldest pinned by annotation,
 * else the oldest.
 */
export function chooseGateway(nodes: Iterable<NodeRecord>, gw: Pick<GatewayConfig, 'nodeSelector' | 'node'>): GatewayChoice {
  const candidates = [...nodes].filter((n) => n.ready && n.internalIP !== null && matchesSelector(n, gw.nodeSelector)).sort(byAge);
  const names = candidates.map((n) => n.name).sort();
  const configured = gw.node === '' ? undefined : candidates.find((n) => n.name === gw.node);
  if (configured) return { node: configured, candidates: names, reason: 'pinned by gateway.node' };
  const unpinned = gw.node === '' ? '' : `gateway.node ${gw.node} is not a Ready labelled node; `;
  const annotated = candidates.find((n) => n.pinned);
  if (annotated) return { node: annotated, candidates: names, reason: `${unpinned}pinned by annotation ${PIN_ANNOTATION}` };
  const oldest = candidates[0];
  if (oldest) return { node: oldest, candidates: names, reason: `${unpinned}oldest of ${names.length} candidate(s)` };
  const selector = Object.entries(gw.nodeSelector).map(([k, v]) => `${k}=${v}`).join(',');
  return { node: null, candidates: [], reason: `no Ready node with an InternalIP matches ${selector}` };
}
