import type { IPFamily } from '../network/address.js';
import { routeMetric, type Peer, type PlannedRoute, type RoutePlan, type VxlanLink } from './plan.js';

/** The agent's interface as the kernel reports it. */
export interface ObservedLink {
  readonly index: number;
  readonly name: string;
  readonly kind: string;
  readonly vni: number | null;
  readonly port: number | null;
  readonly learning: boolean | null;
  readonly mtu: number;
  readonly mac: string;
  readonly up: boolean;
  /** The family of its outer packets, as its alias records it (IPv4 for an interface without one). */
  readonly underlay: IPFamily;
  /** Its IPv4 addresses. */
  readonly addresses: readonly string[];
}

export interface ObservedRoute {
  readonly dst: string;
  readonly type: 'unicast' | 'unreachable' | 'other';
  readonly gateway: string | null;
  readonly oif: number | null;
  readonly metric: number;
  readonly tos: number;
}

/** Only objects carrying the agent's table, rule priority or interface. */
export interface ObservedState {
  readonly link: ObservedLink | null;
  /** Permanent FDB entries of the agent's interface. */
  readonly fdb: readonly Peer[];
  /** Permanent neighbours (both families) of the agent's interface. */
  readonly neighbors: readonly Peer[];
  /** Every route of the agent's table, both families. */
  readonly routes: readonly ObservedRoute[];
  /** Destinations of the rules with the agent's priority and table. */
  readonly rules: readonly string[];
  /** Current values of the planned sysctls; null when the file does not exist (yet). */
  readonly sysctls: Readonly<Record<string, string | null>>;
}

export type RouteOp =
  | { readonly kind: 'link-add'; readonly link: VxlanLink }
  | { readonly kind: 'link-set'; readonly link: VxlanLink }
  | { readonly kind: 'link-del'; readonly name: string }
  | { readonly kind: 'addr-add'; readonly link: string; readonly address: string }
  | { readonly kind: 'sysctl'; readonly path: string; readonly value: string }
  | { readonly kind: 'fdb-add' | 'fdb-del' | 'neigh-set' | 'neigh-del'; readonly link: string; readonly peer: Peer }
  | { readonly kind: 'route-set'; readonly route: PlannedRoute }
  | { readonly kind: 'route-del'; readonly route: ObservedRoute }
  | { readonly kind: 'rule-add' | 'rule-del'; readonly dst: string };

function linkMatches(want: VxlanLink, have: ObservedLink): boolean {
  return have.kind === 'vxlan' && have.vni === want.vni && have.port === want.port && have.learning === false
    && (want.underlay === null || have.underlay === want.underlay);
}

/** keptLink: the index of the interface that stays; goneLink: that of one about to be deleted. */
function routeMatches(want: PlannedRoute, have: ObservedRoute, keptLink: number | null, goneLink: number | null): boolean {
  if (want.via === null) return have.type === 'unreachable';
  if (have.type !== 'unicast' || have.gateway !== want.via) return false;
  return want.overVxlan ? keptLink !== null && have.oif === keptLink : goneLink === null || have.oif !== goneLink;
}

const samePeer = (a: Peer, b: Peer): boolean => a.ip === b.ip && a.mac === b.mac;

/**
 * The operations that turn the observed state into the plan, ordered so that
 * traffic never meets a half-built path: the interface and the new peer
 * first, routes re-pointed in place (replace, no gap), rules added after their
 * routes and removed before them, the old peer and the interface last.
 */
export function diffRoutes(plan: RoutePlan, observed: ObservedState): RouteOp[] {
  const head: RouteOp[] = [];
  const tail: RouteOp[] = [];
  let have = observed;
  let keptLink: number | null = null;

  if (plan.link) {
    const link = observed.link;
    if (link && !linkMatches(plan.link, link)) {
      // VNI, port, learning and the underlay family are fixed at creation. Deleting the interface takes its entries and routes along.
      head.push({ kind: 'link-del', name: plan.link.name });
      have = { ...observed, link: null, fdb: [], neighbors: [], routes: observed.routes.filter((r) => r.oif !== link.index) };
    }
    if (!have.link) head.push({ kind: 'link-add', link: plan.link });
    else {
      keptLink = have.link.index;
      if (have.link.mtu !== plan.link.mtu || have.link.mac !== plan.link.mac || !have.link.up) head.push({ kind: 'link-set', link: plan.link });
    }
    if (!have.link?.addresses.includes(plan.link.address)) head.push({ kind: 'addr-add', link: plan.link.name, address: plan.link.address });
  }
  for (const s of plan.sysctls) {
    if (have.sysctls[s.path] !== s.value) head.push({ kind: 'sysctl', path: s.path, value: s.value });
  }
  if (plan.link && plan.peer) {
    const peer = plan.peer;
    if (!have.fdb.some((e) => samePeer(e, peer))) head.push({ kind: 'fdb-add', link: plan.link.name, peer });
  }
  if (plan.link) {
    for (const n of plan.neighbors) {
      if (!have.neighbors.some((h) => samePeer(h, n))) head.push({ kind: 'neigh-set', link: plan.link.name, peer: n });
    }
  }

  // Routes: one per destination at the family's metric (routeMetric); anything else in the table is stale.
  const kept = new Set<ObservedRoute>();
  for (const want of plan.routes) {
    const current = have.routes.find((r) => r.dst === want.dst && r.metric === routeMetric(want.dst) && r.tos === 0);
    if (current) kept.add(current);
    // A route just created by link-add cannot match: its interface index is new.
    if (!current || !routeMatches(want, current, keptLink, plan.link ? null : have.link?.index ?? null)) head.push({ kind: 'route-set', route: want });
  }
  const wantedRules = new Set(plan.rules);
  const seenRules = new Set<string>();
  const staleRules: string[] = [];
  for (const dst of have.rules) {
    if (wantedRules.has(dst) && !seenRules.has(dst)) seenRules.add(dst);
    else staleRules.push(dst);
  }
  for (const dst of plan.rules) if (!seenRules.has(dst)) head.push({ kind: 'rule-add', dst });
  for (const dst of staleRules) tail.push({ kind: 'rule-del', dst });
  for (const r of have.routes) if (!kept.has(r)) tail.push({ kind: 'route-del', route: r });

  if (plan.link && have.link) {
    const name = plan.link.name;
    for (const n of have.neighbors) if (!plan.neighbors.some((w) => w.ip === n.ip)) tail.push({ kind: 'neigh-del', link: name, peer: n });
    // Replacing keeps one entry per MAC (FDB) and per IP (neighbour): only other keys are stale.
    for (const e of have.fdb) if (!plan.peer || e.mac !== plan.peer.mac) tail.push({ kind: 'fdb-del', link: name, peer: e });
  }
  if (!plan.link && observed.link) tail.push({ kind: 'link-del', name: observed.link.name });
  return [...head, ...tail];
}
