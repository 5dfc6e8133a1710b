// Selection → desired element state, as plain values. A frontend port's
// state is what its elements are built from; elements are derived on demand
// so the mirror of what was applied stays small (a slot table references the
// endpoint strings, 64 pointers per service port).

import type { Protocol } from '../model/records.js';
import { commentText, SET_BY_NAME, shardOf, shardSet, type SetName } from './layout.js';
import { SEPARATOR } from './codec.js';
import { assignSlots } from './slots.js';

/** One ClusterIP:port of one programmed frontend. */
export interface NftPort {
  readonly clusterIP: string;
  readonly protocol: 'tcp' | 'udp' | 'sctp';
  readonly port: number;
  /** `namespace/name:port`, the comment of its elements. */
  readonly name: string;
  readonly affinity: boolean;
  /** Endpoint `ip:port` of each slot; empty when the port has no usable endpoint (rejected). */
  readonly slots: readonly string[];
  /** IPs of this cluster's endpoints among the selected: hairpin sources. */
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

/** One frontend (ClusterIP:port) and the endpoints the policy selected for it: backend-neutral input. */
export interface FrontendInput {
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
      protocol: fe.protocol.toLowerCase() as NftPort['protocol'],
      port: fe.port,
      name: `${fe.name.namespace}/${fe.name.service}:${fe.name.port}`,
      affinity: fe.affinity !== null,
      slots: assignSlots(weighted),
      localIPs: [...local].sort(),
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
    put({ set: 'service_ports', key: frontend, comment: commentText(p.name) });
    if (p.slots.length === 0) {
      put({ set: 'no_endpoints', key: frontend, comment: commentText(p.name) });
      continue;
    }
    if (p.affinity) put({ set: 'affinity', key: frontend, comment: commentText(p.name) });
    put({ set: 'service_ips', key: p.clusterIP, comment: commentText(p.name.slice(0, p.name.lastIndexOf(':'))) });
    for (const ip of p.localIPs) put({ set: 'hairpin', key: ip + SEPARATOR + p.clusterIP, comment: commentText(`${p.name} local endpoint`) });
  }
  return out;
}

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
