// Selection → desired element state, as plain values. A frontend port's
// state is what its elements are built from; elements are derived on demand
// so the mirror of what was applied stays small (a slot table references the
// endpoint strings, 64 pointers per service port).

import type { Protocol } from '../model/records.js';
import type { FrontendKind } from '../selection/selection.js';
import { commentText, SET_BY_NAME, shardOf, shardSet, type SetName } from './layout.js';
import { SEPARATOR } from './codec.js';
import { assignSlots } from './slots.js';

/** One ClusterIP:port (or ClusterSet IP:port) of one programmed frontend. */
export interface NftPort {
  /** The frontend's address: a ClusterIP, or a ClusterSet IP when `clusterset`. */
  readonly clusterIP: string;
  /** A ClusterSet IP: every connection to it is masqueraded (@clusterset_ips), as kube-proxy does a load-balancer IP's. */
  readonly clusterset: boolean;
  readonly protocol: 'tcp' | 'udp' | 'sctp';
  readonly port: number;
  /** `namespace/name:port`, the comment of its elements (portComment adds the kind of a ClusterSet IP's). */
  readonly name: string;
  readonly affinity: boolean;
  /** Endpoint `ip:port` of each slot; empty when the port has no usable endpoint (rejected). */
  readonly slots: readonly string[];
  /** IPs of this cluster's endpoints among the selected: hairpin sources (none for a ClusterSet IP, masqueraded anyway). */
  readonly localIPs: readonly string[];
}

/** The desired state of one service group (the unit of change). */
export interface NftGroup {
  readonly key: string;
  readonly ports: readonly NftPort[];
}

export interface NftPlanContext {
  readonly localCluster: string;
}

/** One frontend (ClusterIP:port or ClusterSet IP:port) and the endpoints the policy selected for it: backend-neutral input. */
export interface FrontendInput {
  /** Default: a ClusterIP. */
  readonly kind?: FrontendKind;
  readonly ip: string;
  readonly port: number;
  readonly protocol: Protocol;
  readonly name: { readonly namespace: string; readonly service: string; readonly port: string };
  /** ClientIP affinity timeout in seconds; null without affinity. */
  readonly affinity: number | null;
  /** Empty: new connections are rejected. */
  readonly endpoints: readonly { readonly ip: string; readonly port: number; readonly cluster: string; readonly weight: number }[];
}

/** The state of a group from the selection of each of its frontends. */
export function planNftGroup(key: string, frontends: readonly FrontendInput[], ctx: NftPlanContext): NftGroup {
  const ports: NftPort[] = [];
  for (const fe of frontends) {
    const local = new Set<string>();
    const weighted = fe.endpoints.map((ep) => {
      const id = `${ep.ip}:${ep.port}`;
      if (ep.cluster === ctx.localCluster) local.add(ep.ip);
      return { id, weight: ep.weight };
    });
    ports.push({
      clusterIP: fe.ip,
      clusterset: fe.kind === 'clusterset-ip',
      protocol: fe.protocol.toLowerCase() as NftPort['protocol'],
      port: fe.port,
      name: `${fe.name.namespace}/${fe.name.service}:${fe.name.port}`,
      affinity: fe.affinity !== null,
      slots: assignSlots(weighted),
      localIPs: fe.kind === 'clusterset-ip' ? [] : [...local].sort(),
    });
  }
  return { key, ports };
}

/** One element as `nft list` shows it: key text, mapped value text, comment. */
export interface Element {
  readonly set: SetName;
  readonly key: string;
  readonly data?: string;
  readonly comment?: string;
}

function endpointText(id: string): string {
  const colon = id.lastIndexOf(':');
  return [id.slice(0, colon), id.slice(colon + 1)].join(SEPARATOR);
}

/** Every element a group contributes, keyed by `set key` (unique across groups). */
export function groupElements(group: NftGroup): Map<string, Element> {
  const out = new Map<string, Element>();
  for (const e of sharedElements(group)) out.set(elementId(e.set, e.key), e);
  for (const p of group.ports) for (const e of slotElements(p)) out.set(elementId(e.set, e.key), e);
  return out;
}

function frontendKey(p: NftPort): string {
  return p.clusterIP + SEPARATOR + p.protocol + SEPARATOR + p.port;
}

/** A group's elements outside the slot maps: rejects, affinity, masquerade and hairpin. */
export function sharedElements(group: NftGroup): Element[] {
  const out: Element[] = [];
  const seen = new Set<string>();
  const put = (e: Element) => {
    const id = elementId(e.set, e.key);
    if (!seen.has(id)) out.push(e);
    seen.add(id);
  };
  for (const p of group.ports) {
    const frontend = frontendKey(p);
    const comment = commentText(portComment(p));
    put({ set: 'service_ports', key: frontend, comment });
    if (p.slots.length === 0) {
      put({ set: 'no_endpoints', key: frontend, comment });
      continue;
    }
    if (p.affinity) put({ set: 'affinity', key: frontend, comment });
    const service = p.name.slice(0, p.name.lastIndexOf(':'));
    if (p.clusterset) {
      put({ set: 'clusterset_ips', key: p.clusterIP, comment: commentText(service) });
      continue;
    }
    put({ set: 'service_ips', key: p.clusterIP, comment: commentText(service) });
    for (const ip of p.localIPs) put({ set: 'hairpin', key: ip + SEPARATOR + p.clusterIP, comment: commentText(`${p.name} local endpoint`) });
  }
  return out;
}

/** The comment of a port's elements: `namespace/name:port`, and `clusterset IP` after a ClusterSet IP's. */
export function portComment(p: Pick<NftPort, 'name' | 'clusterset'>): string {
  return p.clusterset ? `${p.name} ${CLUSTERSET_COMMENT}` : p.name;
}

export const CLUSTERSET_COMMENT = 'clusterset IP';

/**
 * The slot elements of one port, in its ClusterIP's shard. They carry no
 * comment: they are 64 per port, a comment costs a third more kernel time and
 * memory per element, and service_ips names the ClusterIP in their key.
 */
export function slotElements(p: NftPort): Element[] {
  if (p.slots.length === 0) return [];
  const set = shardSet(shardOf(p.clusterIP));
  const frontend = frontendKey(p) + SEPARATOR;
  return p.slots.map((id, slot) => ({ set, key: frontend + slot, data: endpointText(id) }));
}

export function elementId(set: SetName, key: string): string {
  return `${set} ${key}`;
}

export function sameElement(a: Element, b: Element): boolean {
  return a.data === b.data && (a.comment ?? '') === (b.comment ?? '');
}

export function isSetName(name: string): name is SetName {
  return SET_BY_NAME.has(name as SetName);
}
