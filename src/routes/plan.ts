import { createHash } from 'node:crypto';
import type { Config, RouteMode } from '../config/schema.js';
import { chooseGateway, type GatewayChoice, type NodeRecord } from './gateway.js';
import { analyseNetworks, type Networks } from '../network/overlap.js';

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

/** The gateway's end of the VXLAN: an FDB entry (MAC → node IP) and a permanent neighbour (IP → MAC). */
export interface Peer {
  readonly ip: string;
  readonly mac: string;
}

export interface PlannedRoute {
  readonly dst: string;
  /** Next hop (the gateway's node IP); null makes the route unreachable. */
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
  readonly peer: Peer | null;
  readonly routes: readonly PlannedRoute[];
  /** Destinations of the rules that select the table. */
  readonly rules: readonly string[];
  readonly sysctls: readonly Sysctl[];
}

export const EMPTY_ROUTE_PLAN: RoutePlan = { link: null, peer: null, routes: [], rules: [], sysctls: [] };

export type RouteRole = 'gateway' | 'member' | 'none';

export interface PlanResult {
  readonly plan: RoutePlan;
  readonly role: RouteRole;
  readonly gateway: GatewayChoice;
  readonly networks: Networks;
}

export type RouteConfig = Pick<Config, 'clusterName' | 'clusters' | 'clusterCIDR' | 'gateway'>;

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

function link(config: RouteConfig, nodeName: string, mode: RouteMode): VxlanLink | null {
  return mode === 'vxlan' ? { name: VXLAN_LINK, ...config.gateway.vxlan, mac: vxlanMac(nodeName), address: VXLAN_RPF_ADDRESS } : null;
}

/**
 * The route plan of one node. The gateway gets the receiving end (VXLAN
 * interface, forwarding, loose reverse-path filter since replies bypass the
 * tunnel) and no routes through itself; every other node routes each remote
 * CIDR that overlaps nothing to the gateway. Without a gateway the routes are
 * unreachable, so remote traffic fails at once instead of leaking to the
 * default route.
 */
export function planRoutes(config: RouteConfig, nodeName: string, nodes: Iterable<NodeRecord>): PlanResult {
  const networks = analyseNetworks(config);
  const gateway = chooseGateway(nodes, config.gateway);
  if (networks.routed.length === 0 || config.clusterName === '') return { plan: EMPTY_ROUTE_PLAN, role: 'none', gateway, networks };
  const mode = config.gateway.mode;
  if (gateway.node?.name === nodeName) {
    const sysctls: Sysctl[] = [{ path: 'net/ipv4/ip_forward', value: '1' }];
    if (mode === 'vxlan') {
      sysctls.push({ path: `net/ipv4/conf/${VXLAN_LINK}/forwarding`, value: '1' }, { path: `net/ipv4/conf/${VXLAN_LINK}/rp_filter`, value: '2' });
    }
    return { plan: { ...EMPTY_ROUTE_PLAN, link: link(config, nodeName, mode), sysctls }, role: 'gateway', gateway, networks };
  }
  const via = gateway.node?.internalIP ?? null;
  const dsts = [...new Set(networks.routed.map((r) => r.cidr))].sort();
  const plan: RoutePlan = {
    link: link(config, nodeName, mode),
    peer: mode === 'vxlan' && via !== null ? { ip: via, mac: vxlanMac(gateway.node!.name) } : null,
    routes: dsts.map((dst) => ({ dst, via, overVxlan: mode === 'vxlan' && via !== null })),
    rules: dsts,
    sysctls: [],
  };
  return { plan, role: 'member', gateway, networks };
}
