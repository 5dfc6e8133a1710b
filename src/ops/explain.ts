import type { ClusterEndpoint, Frontend, GroupSource } from '../model/group.js';
import { problemText } from '../model/records.js';
import type { SyncEngine } from '../sync/engine.js';
import { familyOfAddress, type IPFamily } from '../selection/selection.js';
import type { EndpointState } from './metrics.js';

// "Where does my traffic go, and why": one service group as the model sees
// it, the policy's decision, the rules planned and the rules in the kernel.
// The report is plain JSON (the agent serves it on /explain; the CLI renders
// it), built by pure functions from what the engine and the kernel say.

export interface ExplainEndpoint {
  readonly address: string;
  readonly state: EndpointState;
  /** Share of the port's new connections, from the planned chain's rules; 0 when not selected. */
  readonly share: number;
}

export interface ExplainCluster {
  readonly name: string;
  readonly local: boolean;
  readonly health: string;
  /** The policy's weight (active-active), else null. */
  readonly weight: number | null;
  /** Why it receives traffic of this port, or why not. */
  readonly verdict: string;
  readonly endpoints: readonly ExplainEndpoint[];
}

export interface ExplainPort {
  readonly label: string;
  readonly port: number;
  readonly protocol: string;
  /** null when this Service's ClusterIP is not programmed (kube-proxy serves it). */
  readonly chain: string | null;
  /** The port at each ClusterSet IP of the Service, and the kernel object serving it (same selection as the ClusterIP's); absent without one. */
  readonly clusterset?: readonly { readonly ip: string; readonly handle: string }[];
  readonly clusters: readonly ExplainCluster[];
}

export interface ExplainService {
  readonly namespace: string;
  readonly name: string;
  readonly role: 'multi-cluster' | 'local';
  readonly clusterIP: string;
  /** ClusterSet IPs programmed for this Service (a derived Service's load-balancer ingress IPs); absent without one. */
  readonly clustersetIPs?: readonly string[];
  readonly affinitySeconds: number | null;
  readonly ports: readonly ExplainPort[];
}

export interface ExplainReport {
  readonly query: string;
  readonly group: string;
  readonly found: boolean;
  readonly source: GroupSource | null;
  readonly localCluster: string;
  readonly services: readonly ExplainService[];
  readonly policy: { readonly mode: string; readonly clusterWeights: Readonly<Record<string, number>>; readonly failoverOrder: readonly string[]; readonly unifiedName: boolean } | null;
  readonly decision: { readonly target: string; readonly clusters: readonly string[]; readonly failOpen: boolean } | null;
  readonly rules: {
    readonly planned: readonly string[];
    /** Lines of the data plane's own text (iptables-save rules, nftables elements); null when the kernel could not be read (see note). */
    readonly kernel: readonly string[] | null;
    readonly inSync: boolean | null;
    readonly note: string;
  };
  readonly problems: readonly string[];
}

export type ClusterHealthLookup = (cluster: string) => string;

export function endpointState(ep: Pick<ClusterEndpoint, 'ready' | 'serving' | 'terminating'>): EndpointState {
  if (ep.ready) return 'ready';
  return ep.serving && ep.terminating ? 'serving_terminating' : 'not_ready';
}

/** `ns/name` of either Service of a group (`derived-x` or `x`) → the group's key. */
export function parseServiceArg(text: string): { namespace: string; name: string } | null {
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(text);
  return m ? { namespace: m[1]!, name: m[3]! } : null;
}

/** Reads the kernel for explain; a failure is reported in the explanation rather than thrown. */
export async function readKernelForExplain(read: () => Promise<unknown>): Promise<unknown> {
  try {
    return await read();
  } catch (err) {
    return `could not read the kernel's rules: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
  }
}

/**
 * The explanation of the group `namespace/name` belongs to. `kernel` is what
 * the engine's data plane read for explain (readForExplain(): iptables-save
 * text per table, or the nftables table), or why there is none.
 */
export function explain(engine: SyncEngine, query: { namespace: string; name: string }, kernel: unknown, health: ClusterHealthLookup): ExplainReport {
  const key = engine.groupKeyOf(query.namespace, query.name);
  const { build, selection, config } = engine.inspectGroup(key);
  const group = build.group;
  const problems = [...build.problems, ...(selection?.problems ?? [])].map(problemText);
  const base = { query: `${query.namespace}/${query.name}`, group: key, localCluster: config.clusterName };
  if (!group || !selection) {
    return {
      ...base, found: false, source: null, services: [], policy: null, decision: null, problems,
      rules: { planned: [], kernel: null, inSync: null, note: 'no service group: neither a derived Service, a MultiClusterService nor a Service handed over to clusterset-proxy (kube-proxy alone serves it)' },
    };
  }
  const settings = selection.settings;
  const members: { fe: Frontend; role: ExplainService['role'] }[] = [
    ...group.frontends.map((fe) => ({ fe, role: 'multi-cluster' as const })),
    ...(group.local ? [{ fe: group.local, role: 'local' as const }] : []),
  ];
  // A Service's ClusterSet IPs of one family (they select that family's endpoints).
  const clustersetOf = (fe: Frontend, family: IPFamily) => selection.frontends.filter((f) => f.kind === 'clusterset-ip' && f.family === family && f.name.namespace === fe.namespace && f.name.service === fe.name);
  // A dual-stack Service is shown once per ClusterIP, each with the ClusterSet IPs and endpoints of its family.
  const services = members.flatMap(({ fe, role }) => fe.clusterIPs.map((clusterIP): ExplainService => {
    const family = familyOfAddress(clusterIP);
    const clusterset = clustersetOf(fe, family);
    return {
      namespace: fe.namespace,
      name: fe.name,
      role,
      clusterIP,
      ...nonEmpty('clustersetIPs', [...new Set(clusterset.map((f) => f.ip))]),
      affinitySeconds: fe.affinitySeconds,
      ports: fe.ports.map((port): ExplainPort => {
        const selected = selection.frontends.find((f) => f.kind === 'cluster-ip' && f.ip === clusterIP && f.port === port.port && f.protocol === port.protocol);
        const described = selected ? engine.plane.describe(selected) : undefined;
        const shares = described?.shares ?? new Map<string, number>();
        // Every member's endpoints of this port are candidates (selection pools them by port name and protocol).
        const candidates = members.flatMap(({ fe: m }) => m.ports.filter((p) => p.label === port.label && p.protocol === port.protocol).flatMap((p) => p.endpoints))
          .filter((ep) => familyOfAddress(ep.ip) === family);
        const clusters = [...new Set(candidates.map((ep) => ep.cluster))].sort((a, b) => (a === config.clusterName ? -1 : b === config.clusterName ? 1 : a.localeCompare(b)));
        return {
          label: port.label,
          port: port.port,
          protocol: port.protocol,
          chain: described?.handle ?? null,
          ...nonEmpty('clusterset', clusterset.filter((f) => f.port === port.port && f.protocol === port.protocol).map((f) => ({ ip: f.ip, handle: engine.plane.describe(f).handle }))),
          clusters: clusters.map((name): ExplainCluster => {
            const eps = dedupe(candidates.filter((ep) => ep.cluster === name)).map((ep) => ({
              address: `${ep.ip}:${ep.port}`,
              state: endpointState(ep),
              share: shares.get(`${name} ${ep.ip}:${ep.port}`) ?? 0,
            }));
            const receives = eps.some((ep) => ep.share > 0);
            const clusterHealth = health(name);
            return {
              name,
              local: name === config.clusterName,
              health: clusterHealth,
              weight: settings.mode === 'active-active' ? settings.clusterWeights[name] ?? 1 : null,
              verdict: verdictOf(receives, eps, clusterHealth, settings.mode, selected !== undefined, selection.decision?.failOpen ?? false),
              endpoints: eps,
            };
          }),
        };
      }),
    };
  }));
  const names = services.map((s) => ({ namespace: s.namespace, name: s.name, clusterIP: s.clusterIP }));
  const shown = engine.plane.explainGroup?.(selection, names, typeof kernel === 'string' ? null : kernel);
  const { planned, kernel: kernelLines, inSync } = shown ?? { planned: [], kernel: null, inSync: null };
  return {
    ...base,
    found: true,
    source: group.source,
    services,
    policy: { mode: settings.mode, clusterWeights: settings.clusterWeights, failoverOrder: settings.failoverOrder, unifiedName: settings.unifiedName },
    decision: selection.decision ? { target: selection.decision.target, clusters: selection.decision.clusters, failOpen: selection.decision.failOpen } : null,
    rules: {
      planned,
      kernel: kernelLines,
      inSync,
      note: !shown ? `the ${engine.plane.name} data plane does not show its kernel objects` : typeof kernel === 'string' ? kernel : inSync ? 'the kernel holds exactly the planned rules' : 'the kernel differs from the plan: a sync is pending or failing (see the agent\'s log)',
    },
    problems,
  };
}

/** `{ [key]: list }`, or nothing for an empty list: reports of Services without ClusterSet IPs read as before. */
function nonEmpty<K extends string, V>(key: K, list: readonly V[]): Partial<Record<K, readonly V[]>> {
  return list.length === 0 ? {} : ({ [key]: list } as Record<K, readonly V[]>);
}

function dedupe(eps: readonly ClusterEndpoint[]): ClusterEndpoint[] {
  const seen = new Set<string>();
  return eps.filter((ep) => {
    const id = `${ep.ip}:${ep.port}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

function verdictOf(selected: boolean, eps: readonly ExplainEndpoint[], health: string, mode: string, programmed: boolean, failOpen: boolean): string {
  if (!programmed) return 'this ClusterIP is not programmed by clusterset-proxy (unifiedName is off): kube-proxy serves it';
  if (selected) return failOpen ? 'receives traffic (every cluster is unhealthy: all are used rather than none)' : 'receives traffic';
  if (!eps.some((ep) => ep.state !== 'not_ready')) return 'no traffic: no ready (or serving while terminating) endpoint';
  if (health.startsWith('unhealthy')) return 'no traffic: the cluster is unhealthy';
  switch (mode) {
    case 'local-first': return 'no traffic: local-first keeps traffic in the local cluster while it has usable endpoints';
    case 'failover': return 'no traffic: a cluster earlier in the failover order is healthy';
    case 'active-active': return 'no traffic: its weight is 0';
    default: return 'no traffic';
  }
}

function percent(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

/** The report as text for a terminal. */
export function renderExplain(r: ExplainReport): string {
  const out: string[] = [];
  if (!r.found) {
    out.push(`${r.query}: ${r.rules.note}.`);
    for (const p of r.problems) out.push(`  problem: ${p}`);
    return `${out.join('\n')}\n`;
  }
  const sourceText: Record<GroupSource, string> = {
    'service-import': 'ServiceImport (derived Service)',
    'multi-cluster-service': 'MultiClusterService',
    'service-proxy-name': 'Service handed over with service.kubernetes.io/service-proxy-name',
  };
  out.push(`Service group ${r.group} (${sourceText[r.source!]}); this node's cluster: ${r.localCluster || '(clusterName unset)'}`);
  if (r.policy) {
    const extra = [
      r.policy.mode === 'active-active' && Object.keys(r.policy.clusterWeights).length > 0 ? `weights ${Object.entries(r.policy.clusterWeights).map(([c, w]) => `${c}=${w}`).join(', ')}` : '',
      r.policy.mode === 'failover' && r.policy.failoverOrder.length > 0 ? `order ${r.policy.failoverOrder.join(' > ')}` : '',
      `unifiedName ${r.policy.unifiedName}`,
    ].filter((s) => s !== '');
    out.push(`Policy: ${r.policy.mode} (${extra.join('; ')})`);
  }
  if (r.decision) {
    const where = r.decision.target === 'none' ? 'no cluster has a usable endpoint: connections are rejected' : `${r.decision.target} (${r.decision.clusters.join(', ')})`;
    out.push(`Decision: traffic goes ${where}${r.decision.failOpen ? '; every cluster is unhealthy, so all are used rather than none' : ''}`);
  } else {
    out.push('Decision: policy off: clusterset-proxy programs nothing for this group');
  }
  for (const s of r.services) {
    const affinity = s.affinitySeconds === null ? '' : `, session affinity ClientIP ${s.affinitySeconds}s`;
    out.push('');
    const ips = s.clustersetIPs ?? [];
    const clusterset = ips.length === 0 ? '' : `, clusterset IP${ips.length > 1 ? 's' : ''} ${ips.join(', ')}`;
    out.push(`${s.role === 'local' ? 'Local Service' : 'Service'} ${s.namespace}/${s.name}: ClusterIP ${s.clusterIP}${clusterset}${affinity}`);
    for (const p of s.ports) {
      out.push(`  port ${p.label} ${p.port}/${p.protocol} -> ${p.chain ?? '(not programmed: kube-proxy serves it)'}`);
      for (const c of p.clusterset ?? []) out.push(`    at clusterset IP ${c.ip}:${p.port} -> ${c.handle} (the same selection)`);
      for (const c of p.clusters) {
        const weight = c.weight === null ? '' : `, weight ${c.weight}`;
        out.push(`    cluster ${c.name}${c.local ? ' (local)' : ''}: health ${c.health}${weight}: ${c.verdict}`);
        for (const ep of c.endpoints) out.push(`      ${ep.address.padEnd(21)} ${ep.state.padEnd(19)} ${ep.share > 0 ? percent(ep.share) : '-'}`);
      }
      if (p.clusters.length === 0) out.push('    no endpoints in any cluster');
    }
  }
  out.push('');
  out.push(`Rules in the kernel: ${r.rules.note}`);
  for (const l of r.rules.kernel ?? []) out.push(`  ${l}`);
  if (!r.rules.inSync) {
    out.push('Rules planned:');
    for (const l of r.rules.planned) out.push(`  ${l}`);
  }
  if (r.problems.length > 0) {
    out.push('');
    out.push('Problems:');
    for (const p of r.problems) out.push(`  ${p}`);
  }
  return `${out.join('\n')}\n`;
}
