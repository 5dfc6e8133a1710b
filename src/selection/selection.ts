// Selection: policy plus a health view turn a service group into one record
// per frontend (a ClusterIP:port or a ClusterSet IP:port, of either IP
// family): which endpoints, with which weights, and why. Each address selects
// from the endpoints of its own family only, so a family without endpoints
// rejects while the other serves. Plain values, neutral to any kernel interface: every data plane
// programs from these, and explain, metrics, conntrack cleanup and Events
// read them. Pure: the same group, policy and health give the same records.

import type { Frontend, FrontendPort, ServiceGroup } from '../model/group.js';
import { serviceRef, type Problem, type Protocol } from '../model/records.js';
import { resolvePolicy, type PolicyConfig, type PolicySettings } from '../policy/policy.js';
import { selectByPolicy, type Decision, type HealthView, type WeightedEndpoint } from '../policy/select.js';

export type IPFamily = 'ipv4' | 'ipv6';

/**
 * Which address of a Service a frontend is: its ClusterIP, or a ClusterSet IP
 * (the MCS API's address for the whole clusterset, which Karmada writes into
 * the derived Service's status.loadBalancer.ingress). Both select alike; the
 * data planes masquerade a ClusterSet IP's traffic as kube-proxy does a
 * load-balancer IP's.
 */
export type FrontendKind = 'cluster-ip' | 'clusterset-ip';

/** One address a Service is served at. */
export interface FrontendAddress {
  readonly kind: FrontendKind;
  readonly family: IPFamily;
  readonly ip: string;
}

/** Whose frontend this is: the names chains, comments and explain use. */
export interface FrontendName {
  readonly namespace: string;
  /** The Service carrying the address (`derived-x`, or `x`). */
  readonly service: string;
  /** The port's name, or its number when unnamed. */
  readonly port: string;
}

/** One frontend and where its new connections go. */
export interface FrontendSelection {
  readonly kind: FrontendKind;
  readonly family: IPFamily;
  readonly ip: string;
  readonly port: number;
  readonly protocol: Protocol;
  readonly name: FrontendName;
  /** ClientIP session affinity timeout in seconds; null without affinity. */
  readonly affinity: number | null;
  /** Selected endpoints in a stable order; empty: connections are rejected. */
  readonly endpoints: readonly WeightedEndpoint[];
  readonly decision: Decision;
}

/** A group's selection: one record per programmed frontend, and the verdict for the group. */
export interface GroupSelection {
  readonly key: string;
  readonly settings: PolicySettings;
  /** Where the group's traffic goes; null when the policy is `off` (nothing is programmed). */
  readonly decision: Decision | null;
  /** Empty when the policy is `off`. */
  readonly frontends: readonly FrontendSelection[];
  readonly problems: readonly Problem[];
}

export interface SelectionContext {
  readonly policy: PolicyConfig;
  readonly localCluster: string;
  readonly health: HealthView;
}

const candidateKey = (family: IPFamily, p: FrontendPort) => `${family}/${p.label}/${p.protocol}`;

/** The family of an address the model validated (canonical text): only IPv6 text has a colon. */
export function familyOfAddress(ip: string): IPFamily {
  return ip.includes(':') ? 'ipv6' : 'ipv4';
}

/** Every Service of the group: the multi-cluster ones first, the local one last (it wins annotation precedence). */
export function groupMembers(group: ServiceGroup): Frontend[] {
  return [...group.frontends, ...(group.local ? [group.local] : [])];
}

/**
 * The addresses a Service is served at: its ClusterIPs (IPv4 first), then
 * each of its ClusterSet IPs of a family it has a ClusterIP of (the model
 * reports the others); an address given twice is served once. Each address
 * selects the endpoints of its own family.
 */
export function frontendAddresses(fe: Pick<Frontend, 'clusterIPs' | 'clustersetIPs'>): FrontendAddress[] {
  const out: FrontendAddress[] = fe.clusterIPs.map((ip) => ({ kind: 'cluster-ip', family: familyOfAddress(ip), ip }));
  for (const ip of fe.clustersetIPs) {
    const family = familyOfAddress(ip);
    if (out.some((a) => a.family === family) && !out.some((a) => a.ip === ip)) out.push({ kind: 'clusterset-ip', family, ip });
  }
  return out;
}

/**
 * The selection of one group. Every frontend selects from the same
 * candidates, the endpoints of all its Services' ports of the same name and
 * protocol, so `serve` and `derived-serve` lead to the same place. The local
 * Service's ClusterIPs are programmed only with `unifiedName`. Each address
 * of a Service (frontendAddresses) gets a record per port; the addresses of
 * one family share the port's one selection from that family's endpoints.
 */
export function selectGroup(group: ServiceGroup, ctx: SelectionContext): GroupSelection {
  const members = groupMembers(group);
  const resolved = resolvePolicy(group.key, ctx.policy, members);
  const problems = resolved.problems.map((p) => ({ object: serviceRef(group.namespace, p.service), message: p.message }));
  const settings = resolved.settings;
  if (settings.mode === 'off') return { key: group.key, settings, decision: null, frontends: [], problems };

  const candidates = new Map<string, FrontendPort['endpoints'][number][]>();
  for (const fe of members) {
    for (const port of fe.ports) {
      for (const ep of port.endpoints) {
        const key = candidateKey(familyOfAddress(ep.ip), port);
        const list = candidates.get(key);
        if (list) list.push(ep);
        else candidates.set(key, [ep]);
      }
    }
  }
  const programmed: readonly Frontend[] = settings.unifiedName && group.local ? members : group.frontends;
  const chosenBy = new Map<string, ReturnType<typeof selectByPolicy>>();
  const choose = (family: IPFamily, port: FrontendPort) => {
    const key = candidateKey(family, port);
    let chosen = chosenBy.get(key);
    if (!chosen) chosenBy.set(key, (chosen = selectByPolicy(candidates.get(key) ?? [], settings, ctx.localCluster, ctx.health)));
    return chosen;
  };
  const frontends: FrontendSelection[] = [];
  for (const fe of programmed) {
    for (const address of frontendAddresses(fe)) {
      for (const port of fe.ports) {
        const chosen = choose(address.family, port);
        frontends.push({
          ...address,
          port: port.port,
          protocol: port.protocol,
          name: { namespace: fe.namespace, service: fe.name, port: port.label },
          affinity: fe.affinitySeconds,
          endpoints: chosen.endpoints,
          decision: chosen.decision,
        });
      }
    }
  }
  return { key: group.key, settings, decision: combine(frontends.map((f) => f.decision)), frontends, problems };
}

/**
 * The part of a group's selection one family's data plane programs: its
 * frontends, and the verdict over them. The group's settings and problems
 * are shared.
 */
export function familySelection(selection: GroupSelection, family: IPFamily): GroupSelection {
  if (selection.frontends.every((f) => f.family === family)) return selection;
  const frontends = selection.frontends.filter((f) => f.family === family);
  return { ...selection, decision: selection.decision && combine(frontends.map((f) => f.decision)), frontends };
}

/** One verdict for the group: ports that disagree make it `mixed`. */
function combine(decisions: readonly Decision[]): Decision {
  const clusters = [...new Set(decisions.flatMap((d) => d.clusters))];
  const targets = new Set(decisions.map((d) => d.target));
  const target = targets.size === 0 ? 'none' : targets.size === 1 ? [...targets][0]! : 'mixed';
  return { clusters, target, failOpen: decisions.some((d) => d.failOpen) };
}

/** `ip:port` of each endpoint a frontend selects (conntrack cleanup, explain). */
export function endpointAddresses(frontend: FrontendSelection): string[] {
  return frontend.endpoints.map((e) => [e.ip, e.port].join(':'));
}
