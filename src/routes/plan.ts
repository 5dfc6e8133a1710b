import { createHash } from 'node:crypto';
import type { Config, RouteMode } from '../config/schema.js';
import { chooseGateway, type GatewayChoice, type NodeRecord } from './gateway.js';
import { analyseNetworks, type Networks } from '../network/overlap.js';
import { canonicalAddress, type IPFamily } from '../network/address.js';

/** The agent's VXLAN interface: the same name on every node, gateway or not. */
export const VXLAN_LINK = 'mcs-vx0';

/** What identifies the agent's objects in the kernel: nothing else is read or touched. */
export interface Ownership {
  readonly table: number;
  readonly priority: number;
  readonly link: string;
}

export interface VxlanLink {
  readonly name: string;
  readonly vni: number;
  readonly port: number;
  readonly mtu: number;
  readonly mac: string;
  /** A host-scope IPv4 address (see VXLAN_RPF_ADDRESS). */
  readonly address: string;
  /**
   * The family of the outer packets: the gateway's IPv4 InternalIP carries the
   * tunnel when it has one, else its IPv6 one. The kernel fixes it at creation.
   * null (no gateway): whatever the interface has is kept; a new one is IPv4.
   */
  readonly underlay: IPFamily | null;
}

/**
 * The kernel's reverse-path filter rejects every packet arriving on an
 * interface without IPv4 address whenever rp_filter is on, even in loose mode
 * (the systemd default for new interfaces), and on the gateway replies bypass
 * the VXLAN. A host-scope loopback address gives the check something to pass
 * against; being host-scoped it is never picked as a source address, and
 * 127.0.0.0/8 collides with nothing routable.
 */
export const VXLAN_RPF_ADDRESS = '127.77.67.1';

/** A MAC and an address: the gateway's end of the VXLAN as an FDB entry (MAC → underlay IP) or a neighbour (next hop IP → MAC). */
export interface Peer {
  readonly ip: string;
  readonly mac: string;
}

export interface PlannedRoute {
  /** Canonical CIDR, either family. */
  readonly dst: string;
  /** Next hop (the gateway's node IP of the destination's family); null makes the route unreachable. */
  readonly via: string | null;
  readonly overVxlan: boolean;
}

/** A file under /proc/sys and its value. */
export interface Sysctl {
  readonly path: string;
  readonly value: string;
}

/** Desired state, as data. */
export interface RoutePlan {
  readonly link: VxlanLink | null;
  /** The FDB entry: the gateway's VXLAN MAC → its underlay address. */
  readonly peer: Peer | null;
  /** Permanent neighbours on the interface: the gateway's address of each routed family → its VXLAN MAC. */
  readonly neighbors: readonly Peer[];
  readonly routes: readonly PlannedRoute[];
  /** Destinations of the rules that select the table. */
  readonly rules: readonly string[];
  readonly sysctls: readonly Sysctl[];
}

export const EMPTY_ROUTE_PLAN: RoutePlan = { link: null, peer: null, neighbors: [], routes: [], rules: [], sysctls: [] };

/**
 * The metric of the agent's routes as the kernel stores them: IPv6 routes
 * added without one get IP6_RT_PRIO_USER (1024), IPv4 routes 0.
 */
export function routeMetric(dst: string): number {
  return dst.includes(':') ? 1024 : 0;
}

export type RouteRole = 'gateway' | 'member' | 'none';

export interface PlanResult {
  readonly plan: RoutePlan;
  readonly role: RouteRole;
  readonly gateway: GatewayChoice;
  readonly networks: Networks;
}

export type RouteConfig = Pick<Config, 'clusterName' | 'clusters' | 'clusterCIDR' | 'clusterCIDRs' | 'gateway'>;

export function ownership(config: Pick<Config, 'gateway'>): Ownership {
  return { table: config.gateway.routeTable, priority: config.gateway.rulePriority, link: VXLAN_LINK };
}

/**
 * A node's VXLAN MAC, derived from its name so that any node can address the
 * gateway's interface without asking it: locally administered, unicast.
 */
export function vxlanMac(nodeName: string): string {
  const bytes = createHash('sha256').update(`clusterset-proxy/${nodeName}`).digest().subarray(0, 6);
  bytes[0] = (bytes[0]! & 0xfe) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/**
 * The IPv6 next hop of a node's VXLAN interface: the link-local address the
 * kernel derives from its MAC (EUI-64), so every node knows it without asking.
 * IPv6 refuses an on-link next hop that another interface's subnet holds (the
 * gateway's InternalIP is on the node subnet), and needs none for a link-local one.
 */
export function vxlanLinkLocal(mac: string): string {
  const b = mac.split(':').map((h) => parseInt(h, 16));
  const groups = [((b[0]! ^ 0x02) << 8) | b[1]!, (b[2]! << 8) | 0xff, 0xfe00 | b[3]!, (b[4]! << 8) | b[5]!];
  return canonicalAddress(`fe80::${groups.map((g) => g.toString(16)).join(':')}`)!;
}

/** The family of the tunnel's outer packets: IPv4 when the gateway has an IPv4 InternalIP, else IPv6. */
export function underlayOf(gateway: NodeRecord | null): IPFamily | null {
  if (!gateway) return null;
  return gateway.internalIPs.IPv4 !== undefined ? 'IPv4' : gateway.internalIPs.IPv6 !== undefined ? 'IPv6' : null;
}

function link(config: RouteConfig, nodeName: string, mode: RouteMode, gateway: NodeRecord | null): VxlanLink | null {
  if (mode !== 'vxlan') return null;
  return { name: VXLAN_LINK, ...config.gateway.vxlan, mac: vxlanMac(nodeName), address: VXLAN_RPF_ADDRESS, underlay: underlayOf(gateway) };
}

/**
 * The route plan of one node. The gateway gets the receiving end (VXLAN
 * interface, forwarding, loose reverse-path filter since replies bypass the
 * tunnel) and no routes through itself; every other node routes each remote
 * CIDR that overlaps nothing to the gateway's address of the CIDR's family
 * (over VXLAN, IPv6 to the link-local address of the gateway's interface).
 * Without a gateway, or one without an address of that family, the routes are
 * unreachable, so remote traffic fails at once instead of leaking to the
 * default route.
 */
export function planRoutes(config: RouteConfig, nodeName: string, nodes: Iterable<NodeRecord>): PlanResult {
  const networks = analyseNetworks(config);
  const gateway = chooseGateway(nodes, config.gateway);
  if (networks.routed.length === 0 || config.clusterName === '') return { plan: EMPTY_ROUTE_PLAN, role: 'none', gateway, networks };
  const mode = config.gateway.mode;
  const families = new Set(networks.routed.map((r) => r.family));
  if (gateway.node?.name === nodeName) {
    const sysctls: Sysctl[] = [{ path: 'net/ipv4/ip_forward', value: '1' }];
    if (mode === 'vxlan') {
      sysctls.push({ path: `net/ipv4/conf/${VXLAN_LINK}/forwarding`, value: '1' }, { path: `net/ipv4/conf/${VXLAN_LINK}/rp_filter`, value: '2' });
    }
    // IPv6 has no reverse-path filter; forwarding is one switch for all interfaces.
    if (families.has('IPv6')) sysctls.push({ path: 'net/ipv6/conf/all/forwarding', value: '1' });
    return { plan: { ...EMPTY_ROUTE_PLAN, link: link(config, nodeName, mode, gateway.node), sysctls }, role: 'gateway', gateway, networks };
  }
  const gw = gateway.node;
  const underlay = underlayOf(gw);
  const tunnel = mode === 'vxlan' && gw !== null && underlay !== null;
  const mac = gw ? vxlanMac(gw.name) : '';
  const byDst = new Map(networks.routed.map((r) => [r.cidr, r.family]));
  const dsts = [...byDst.keys()].sort();
  // Over the tunnel, IPv6 goes to the gateway's link-local tunnel address, whatever the underlay.
  const viaOf = (family: IPFamily): string | null =>
    tunnel && family === 'IPv6' ? vxlanLinkLocal(mac) : gw?.internalIPs[family] ?? null;
  const hops = [...families].sort().map(viaOf).filter((ip): ip is string => ip !== null);
  const plan: RoutePlan = {
    link: link(config, nodeName, mode, gw),
    peer: tunnel ? { ip: gw.internalIPs[underlay]!, mac } : null,
    neighbors: tunnel ? hops.map((ip) => ({ ip, mac })) : [],
    routes: dsts.map((dst) => {
      const via = viaOf(byDst.get(dst)!);
      return { dst, via, overVxlan: tunnel && via !== null };
    }),
    rules: dsts,
    sysctls: [],
  };
  return { plan, role: 'member', gateway, networks };
}
