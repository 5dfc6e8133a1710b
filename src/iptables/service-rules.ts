import type { FrontendSelection, IPFamily } from '../selection/selection.js';
import { bucketChain, bucketOf, MARK_MASQ_CHAIN, SERVICES_CHAIN } from './layout.js';
import { affinityListName, externalChainName, portComment, serviceChainName } from './names.js';
import type { WeightedEndpoint } from '../policy/select.js';
import type { OwnedChain, SetRule } from './plan-types.js';

export interface RuleContext {
  /** Pod CIDR of this cluster in the rules' family; '' disables masquerading of outside traffic. */
  readonly clusterCIDR: string;
  readonly localCluster: string;
  /** iptables or ip6tables rules; IPv4 when absent. */
  readonly family?: IPFamily;
}

/** What differs between iptables and ip6tables rule text, as each -save prints it. */
interface FamilyText {
  /** Prefix length of one host. */
  readonly host: string;
  readonly reject: string;
  /** xt_recent's mask of a whole source address. */
  readonly mask: string;
  readonly dnat: (ip: string, port: number) => string;
}

const FAMILY_TEXT: Readonly<Record<IPFamily, FamilyText>> = {
  ipv4: { host: '/32', reject: 'icmp-port-unreachable', mask: '255.255.255.255', dnat: (ip, port) => `${ip}:${port}` },
  ipv6: { host: '/128', reject: 'icmp6-port-unreachable', mask: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', dnat: (ip, port) => `[${ip}]:${port}` },
};

/**
 * What one frontend contributes: its chains and its dispatch/reject rules.
 * A ClusterSet IP's frontend shares the service chain of its port with the
 * ClusterIP's of its family (the same chain, the same rules: planFragment keeps one).
 */
export interface ServicePortRules {
  readonly chains: readonly OwnedChain[];
  readonly setRules: SetRule[];
}

const P31 = 0x80000000;

/**
 * The probability as the kernel stores it (a 31-bit fraction) and
 * iptables-save prints it (11 decimals), so the plan reads back unchanged.
 */
export function probability(p: number): string {
  return (Math.round(p * P31) / P31).toFixed(11);
}

/**
 * A rule spec from its space-separated parts. join builds one flat string,
 * where a template literal keeps a rope of its pieces: at 10k services the
 * applied plan held three times its text that way.
 */
function rule(...parts: string[]): string {
  return parts.join(' ');
}

function comment(text: string): string {
  // xt_comment holds 255 bytes. Every name in it was validated on arrival (src/model/api-values.ts),
  // and the renderer refuses any that could end the quoted token (src/iptables/safe-tokens.ts).
  return `-m comment --comment "${text.slice(0, 255)}"`;
}

/**
 * The chains and dispatch rules of one frontend, from its selection. A
 * ClusterIP dispatches to its port's service chain; a ClusterSet IP to an
 * MCS-EXT- chain that marks every connection for masquerade (as kube-proxy's
 * KUBE-EXT- chain does for a load-balancer IP) and continues in that same
 * service chain.
 */
export function servicePortRules(fe: FrontendSelection, ctx: RuleContext): ServicePortRules {
  const base = portComment(fe.name.namespace, fe.name.service, fe.name.port);
  const chainName = frontendChain(fe);
  const proto = fe.protocol.toLowerCase();
  const text = FAMILY_TEXT[ctx.family ?? 'ipv4'];
  const match = `-d ${fe.ip}${text.host} -p ${proto}`;
  const dport = `-m ${proto} --dport ${fe.port}`;
  const chain = serviceChain(fe, chainName, base, ctx);
  const clusterset = fe.kind === 'clusterset-ip';
  const dispatchTo = clusterset ? externalChain(fe) : chainName;
  const setRules: SetRule[] = [
    { table: 'nat', chain: bucketChain(bucketOf(fe.ip)), spec: rule(match, comment(`${base} ${clusterset ? 'clusterset IP' : 'cluster IP'}`), dport, '-j', dispatchTo) },
  ];
  if (fe.endpoints.length === 0) {
    // The service chain ACCEPTs (ending nat, so no later DNAT of kube-proxy's
    // rewrites the address) and this filter rule rejects the connection at once.
    setRules.push({
      table: 'filter', chain: SERVICES_CHAIN,
      spec: rule(match, comment(`${base} has no endpoints`), dport, '-j REJECT --reject-with', text.reject),
    });
  }
  if (!clusterset) return { chains: [chain], setRules };
  const external: OwnedChain = {
    table: 'nat', name: dispatchTo,
    rules: [rule(comment(`${base} masquerade traffic to the clusterset IP`), '-j', MARK_MASQ_CHAIN), rule('-j', chainName)],
  };
  return { chains: [chain, external], setRules };
}

/** The service chain of a frontend's port: DNAT to the selected endpoints, or ACCEPT when there are none. */
function serviceChain(fe: FrontendSelection, chainName: string, base: string, ctx: RuleContext): OwnedChain {
  const selected = fe.endpoints;
  const proto = fe.protocol.toLowerCase();
  const text = FAMILY_TEXT[ctx.family ?? 'ipv4'];
  if (selected.length === 0) return { table: 'nat', name: chainName, rules: [rule(comment(`${base} has no endpoints`), '-j ACCEPT')] };

  const rules: string[] = [];
  if (ctx.clusterCIDR !== '') {
    rules.push(rule('! -s', ctx.clusterCIDR, comment(`${base} masquerade traffic from outside the cluster`), '-j', MARK_MASQ_CHAIN));
  }
  // Hairpin: only pods of this cluster can be both client and endpoint.
  const localIPs = new Set(selected.filter((ep) => ep.cluster === ctx.localCluster).map((ep) => ep.ip));
  for (const ip of localIPs) rules.push(rule(`-s ${ip}${text.host}`, comment(`${base} hairpin`), '-j', MARK_MASQ_CHAIN));

  const target = (ep: WeightedEndpoint) => `-j DNAT --to-destination ${text.dnat(ep.ip, ep.port)}`;
  const epComment = (ep: WeightedEndpoint) => comment(`${base} -> ${ep.cluster} ${ep.ip}:${ep.port}`);
  const recentOpts = `--mask ${text.mask} --rsource`;
  if (fe.affinity !== null) {
    for (const ep of selected) {
      const list = affinityListName(chainName, `${ep.ip}:${ep.port}`);
      rules.push(rule('-p', proto, epComment(ep), '-m recent --rcheck --seconds', String(fe.affinity), '--reap --name', list, recentOpts, target(ep)));
    }
  }
  let remaining = selected.reduce((sum, ep) => sum + ep.weight, 0);
  selected.forEach((ep, i) => {
    const last = i === selected.length - 1;
    const parts = ['-p', proto, epComment(ep)];
    if (!last) parts.push('-m statistic --mode random --probability', probability(ep.weight / remaining));
    if (fe.affinity !== null) parts.push('-m recent --set --name', affinityListName(chainName, `${ep.ip}:${ep.port}`), recentOpts);
    parts.push(target(ep));
    rules.push(rule(...parts));
    remaining -= ep.weight;
  });
  return { table: 'nat', name: chainName, rules };
}

/** The service chain of a frontend. */
export function frontendChain(fe: Pick<FrontendSelection, 'name' | 'protocol'>): string {
  return serviceChainName(fe.name.namespace, fe.name.service, fe.name.port, fe.protocol);
}

/** The chain a ClusterSet IP of a frontend's port dispatches to. */
export function externalChain(fe: Pick<FrontendSelection, 'name' | 'protocol'>): string {
  return externalChainName(fe.name.namespace, fe.name.service, fe.name.port, fe.protocol);
}
