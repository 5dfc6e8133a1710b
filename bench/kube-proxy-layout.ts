import { hash16 } from '../src/iptables/names.js';
import { CLUSTER_CIDR, SERVICE_PORT, TARGET_PORT, type BenchService } from './workload.js';

// The same services laid out as kube-proxy 1.26+ (iptables mode) writes them:
// KUBE-SERVICES dispatches each ClusterIP:port to a KUBE-SVC-* chain, which
// picks one KUBE-SEP-* chain per endpoint with cascading `statistic` rules;
// each SEP chain marks hairpin traffic and DNATs. A partial sync
// (MinimizeIPTablesRestore) rewrites the top-level chains whole (KUBE-SERVICES
// holds one rule per service port) plus the changed service's chains, and
// deletes the chains that went away. Rules are spelled as kube-proxy writes
// them, not as iptables-save prints them.

const MASQ_MARK = '0x4000';
const NODEPORTS_RULE = '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS';

const NAT_TOP = ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ'];
const FILTER_TOP = ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL'];

/** kube-proxy creates these jumps with single iptables commands before its first restore; written here once, untimed. */
export function kubeProxyJumps(): string {
  const nat = NAT_TOP.map((c) => `:${c} - [0:0]`);
  const filter = FILTER_TOP.map((c) => `:${c} - [0:0]`);
  return [
    '*nat', ...nat,
    '-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    'COMMIT',
    '*filter', ...filter,
    '-I FORWARD 1 -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
    '-I OUTPUT 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    'COMMIT',
    '',
  ].join('\n');
}

function portName(s: BenchService): string {
  return `${s.namespace}/derived-${s.name}:http`;
}

function svcChain(s: BenchService): string {
  return `KUBE-SVC-${hash16(`${portName(s)}tcp`)}`;
}

function sepChain(s: BenchService, ip: string): string {
  return `KUBE-SEP-${hash16(`${portName(s)}tcp${ip}:${TARGET_PORT}`)}`;
}

function endpointsOf(s: BenchService): string[] {
  return s.endpoints.flat();
}

/** kube-proxy prints probabilities with 10 decimals. */
function probability(n: number): string {
  return (1 / n).toFixed(10);
}

function dispatchRule(s: BenchService): string {
  return `-A KUBE-SERVICES -m comment --comment "${portName(s)} cluster IP" -m tcp -p tcp -d ${s.clusterIP} --dport ${SERVICE_PORT} -j ${svcChain(s)}`;
}

/** Declarations and rules of one service's SVC and SEP chains. */
function serviceChains(s: BenchService, chains: string[], rules: string[]): void {
  const svc = svcChain(s);
  const eps = endpointsOf(s);
  chains.push(`:${svc} - [0:0]`);
  rules.push(`-A ${svc} -m comment --comment "${portName(s)} cluster IP" -m tcp -p tcp -d ${s.clusterIP} --dport ${SERVICE_PORT} ! -s ${CLUSTER_CIDR} -j KUBE-MARK-MASQ`);
  eps.forEach((ip, i) => {
    const pick = i < eps.length - 1 ? ` -m statistic --mode random --probability ${probability(eps.length - i)}` : '';
    rules.push(`-A ${svc} -m comment --comment "${portName(s)} -> ${ip}:${TARGET_PORT}"${pick} -j ${sepChain(s, ip)}`);
  });
  for (const ip of eps) {
    const sep = sepChain(s, ip);
    chains.push(`:${sep} - [0:0]`);
    rules.push(`-A ${sep} -m comment --comment ${portName(s)} -s ${ip} -j KUBE-MARK-MASQ`);
    rules.push(`-A ${sep} -m comment --comment ${portName(s)} -m tcp -p tcp -j DNAT --to-destination ${ip}:${TARGET_PORT}`);
  }
}

function payload(services: readonly BenchService[], changed: readonly BenchService[], deletedChains: readonly string[]): string {
  const chains = NAT_TOP.map((c) => `:${c} - [0:0]`);
  const rules = [
    `-A KUBE-POSTROUTING -m mark ! --mark ${MASQ_MARK}/${MASQ_MARK} -j RETURN`,
    `-A KUBE-POSTROUTING -j MARK --xor-mark ${MASQ_MARK}`,
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    `-A KUBE-MARK-MASQ -j MARK --or-mark ${MASQ_MARK}`,
  ];
  for (const s of changed) serviceChains(s, chains, rules);
  for (const s of services) rules.push(dispatchRule(s));
  rules.push(NODEPORTS_RULE);
  for (const c of deletedChains) {
    chains.push(`:${c} - [0:0]`);
    rules.push(`-X ${c}`);
  }
  return [
    '*filter',
    ...FILTER_TOP.map((c) => `:${c} - [0:0]`),
    '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
    `-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark ${MASQ_MARK}/${MASQ_MARK} -j ACCEPT`,
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    'COMMIT',
    '*nat', ...chains, ...rules, 'COMMIT', '',
  ].join('\n');
}

/** kube-proxy's first sync: every chain of every service in one restore. */
export function kubeProxyFullPayload(services: readonly BenchService[]): string {
  return payload(services, services, []);
}

/** Chain counts of the full layout, for the report. */
export function kubeProxyChainCount(services: readonly BenchService[]): number {
  return NAT_TOP.length + FILTER_TOP.length + services.reduce((n, s) => n + 1 + endpointsOf(s).length, 0);
}

/**
 * kube-proxy's partial sync after one endpoint of `service` was replaced
 * (`service` already holds the new address): the top-level chains rewritten
 * whole, the service's chains rewritten, the removed endpoint's chain deleted.
 */
export function kubeProxyPartialPayload(services: readonly BenchService[], service: BenchService, removedIp: string): string {
  return payload(services, [service], [sepChain(service, removedIp)]);
}

/**
 * The full layout cut into restores of about `maxChains` chains each, to load
 * a table too large for one nft restore before timing partial syncs on it
 * (kube-proxy itself has no such mode).
 */
export function* kubeProxyLoadChunks(services: readonly BenchService[], maxChains: number): Generator<string> {
  const perService = 1 + (services[0] ? endpointsOf(services[0]).length : 0);
  const step = Math.max(1, Math.floor(maxChains / perService));
  for (let i = 0; i < services.length; i += step) {
    const part = services.slice(i, i + step);
    const chains: string[] = [];
    const rules: string[] = [];
    for (const s of part) serviceChains(s, chains, rules);
    for (const s of part) rules.push(dispatchRule(s));
    yield ['*nat', ...chains, ...rules, 'COMMIT', ''].join('\n');
  }
}
