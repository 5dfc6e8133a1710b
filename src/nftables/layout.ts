// The agent's own nf_tables table: a fixed skeleton of base chains and rules,
// written once, that dispatches through maps. Everything that changes with
// Services and endpoints lives in the maps' elements, so an endpoint change
// is an element update that never makes the kernel re-validate the ruleset.
//
//   filter prerouting/output  -120  reject new connections to frontends in @no_endpoints
//   nat    prerouting/output  -110  goto dispatch-NN by the ClusterIP's low 6 bits (a constant verdict map),
//                                   there dnat to @slots-NN[ClusterIP . proto . port . slot]
//                                   slot = jhash(saddr) mod 64 for frontends in @affinity, else random
//   nat    postrouting         90   masquerade DNATed connections to @service_ips from outside the
//                                   cluster CIDR, hairpin connections in @hairpin, and every one
//                                   to @clusterset_ips (ClusterSet IPs, as kube-proxy does LB IPs)
//
// kube-proxy hooks nat at -100 (iptables and nftables modes alike) and its
// nftables filter chains at -110; the first nat chain that DNATs a new
// connection decides, so -110 runs first whatever started first.

/** The table's name and family: `table ip clusterset-proxy`. */
export const TABLE = 'clusterset-proxy';
export const FAMILY = 'ip';
/** NFPROTO_IPV4. */
export const FAMILY_NUMBER = 2;

/** Slots per frontend: weights are honoured at a granularity of 1/SLOTS. */
export const SLOTS = 64;

/**
 * The slot map is split in SHARDS maps by the ClusterIP's low bits. Reading a
 * map back costs the kernel time quadratic in its size (each dump message
 * walks the hash table from its start), so 64 maps of N elements read back
 * about 64 times faster than one of 64·N. A change still touches one map.
 */
export const SHARDS = 64;

export function shardOf(clusterIP: string): number {
  return Number(clusterIP.slice(clusterIP.lastIndexOf('.') + 1)) & (SHARDS - 1);
}

const two = (n: number) => String(n).padStart(2, '0');
export const shardSet = (shard: number): SetName => `slots-${two(shard)}`;
export const shardChain = (shard: number): string => `dispatch-${two(shard)}`;

export const PRIORITY_REJECT = -120;
export const PRIORITY_DNAT = -110;
export const PRIORITY_MASQUERADE = 90;

export type Field = 'ipv4' | 'proto' | 'port' | 'slot';

export interface SetSpec {
  readonly name: SetName;
  /** The declaration line as `nft list` prints it. */
  readonly declaration: string;
  readonly comment: string;
  readonly key: readonly Field[];
  /** Fields of the mapped value; empty for a plain set. */
  readonly data: readonly Field[];
}

export type SetName = 'service_ports' | 'affinity' | 'no_endpoints' | 'service_ips' | 'hairpin' | 'clusterset_ips' | `slots-${string}`;

function slotMap(shard: number): SetSpec {
  return {
    name: shardSet(shard), key: ['ipv4', 'proto', 'port', 'slot'], data: ['ipv4', 'port'],
    declaration: `typeof ip daddr . meta l4proto . th dport . numgen random mod ${SLOTS} : ip daddr . tcp dport`,
    // nft 1.0.6 keeps typeof and comment in one 256-byte user-data area: keep this short.
    // The value is typed `tcp dport` (a port, for every protocol): nft 1.0.6 cannot re-read `th dport` here.
    comment: `ClusterIP . proto . port . slot : endpoint (ClusterIPs ending ${shard} mod ${SHARDS})`,
  };
}

export const SETS: readonly SetSpec[] = [
  {
    name: 'service_ports', key: ['ipv4', 'proto', 'port'], data: [],
    declaration: 'type ipv4_addr . inet_proto . inet_service',
    comment: 'every service port programmed here, named namespace/service:port',
  },
  {
    name: 'affinity', key: ['ipv4', 'proto', 'port'], data: [],
    declaration: 'type ipv4_addr . inet_proto . inet_service',
    comment: 'service ports with ClientIP affinity (slot by client hash)',
  },
  {
    name: 'no_endpoints', key: ['ipv4', 'proto', 'port'], data: [],
    declaration: 'type ipv4_addr . inet_proto . inet_service',
    comment: 'service ports without endpoints: rejected',
  },
  {
    name: 'service_ips', key: ['ipv4'], data: [],
    declaration: 'type ipv4_addr',
    comment: 'ClusterIPs dispatched here: masquerade from outside',
  },
  {
    name: 'hairpin', key: ['ipv4', 'ipv4'], data: [],
    declaration: 'type ipv4_addr . ipv4_addr',
    comment: 'local endpoint . ClusterIP: hairpin masquerade',
  },
  {
    name: 'clusterset_ips', key: ['ipv4'], data: [],
    declaration: 'type ipv4_addr',
    comment: 'ClusterSet IPs dispatched here: masquerade always',
  },
  ...Array.from({ length: SHARDS }, (_, i) => slotMap(i)),
];

export const SET_BY_NAME: ReadonlyMap<SetName, SetSpec> = new Map(SETS.map((s) => [s.name, s]));

export type Hook = 'prerouting' | 'output' | 'postrouting';
/** NF_INET_* hook numbers. */
export const HOOK_NUMBER: Readonly<Record<Hook, number>> = { prerouting: 0, output: 3, postrouting: 4 };

export interface ChainSpec {
  readonly name: string;
  /** Base chains only: regular chains (reached by goto) have no type, hook or priority. */
  readonly type?: 'filter' | 'nat';
  readonly hook?: Hook;
  readonly priority?: number;
  readonly comment: string;
  /** Rules as `nft list` prints them. */
  readonly rules: readonly string[];
}

export interface Skeleton {
  readonly comment: string;
  readonly sets: readonly SetSpec[];
  readonly chains: readonly ChainSpec[];
}

export interface SkeletonContext {
  /** Pod CIDR of this cluster; '' disables masquerading of outside traffic. */
  readonly clusterCIDR: string;
}

const FRONTEND = 'ip daddr . meta l4proto . th dport';

function rejectRule(): string {
  return `ct state new ${FRONTEND} @no_endpoints reject comment "service port without endpoints"`;
}

function shardRule(): string {
  const entries = Array.from({ length: SHARDS }, (_, i) => `0.0.0.${i} : goto ${shardChain(i)}`);
  return `ip daddr & 0.0.0.${SHARDS - 1} vmap { ${entries.join(', ')} } comment "slot map of the ClusterIP"`;
}

function dispatchRules(shard: number): string[] {
  const map = `@${shardSet(shard)}`;
  return [
    `${FRONTEND} @affinity dnat ip to ${FRONTEND} . jhash ip saddr mod ${SLOTS} map ${map} comment "ClientIP affinity: slot by client address"`,
    `dnat ip to ${FRONTEND} . numgen random mod ${SLOTS} map ${map} comment "slot at random, weighted by slot counts"`,
  ];
}

/** The skeleton for a config: the only part of the table that holds rules. */
export function planSkeleton(ctx: SkeletonContext): Skeleton {
  const masquerade: string[] = [];
  if (ctx.clusterCIDR !== '') {
    masquerade.push(`ct status dnat ct original ip daddr @service_ips ip saddr != ${ctx.clusterCIDR} masquerade fully-random comment "from outside the cluster"`);
  }
  masquerade.push('ct status dnat ip saddr . ct original ip daddr @hairpin masquerade fully-random comment "hairpin"');
  masquerade.push('ct status dnat ct original ip daddr @clusterset_ips masquerade fully-random comment "clusterset IP"');
  return {
    comment: 'clusterset-proxy: multi-cluster Service dispatch, owned by clusterset-proxy (deleted by --cleanup)',
    sets: SETS,
    chains: [
      { name: 'reject-prerouting', type: 'filter', hook: 'prerouting', priority: PRIORITY_REJECT, comment: 'before kube-proxy (-110 filter, -100 nat): reject service ports with no endpoints', rules: [rejectRule()] },
      { name: 'reject-output', type: 'filter', hook: 'output', priority: PRIORITY_REJECT, comment: 'the same for connections from this node', rules: [rejectRule()] },
      { name: 'dnat-prerouting', type: 'nat', hook: 'prerouting', priority: PRIORITY_DNAT, comment: 'before kube-proxy\'s nat (-100): the first DNAT of a new connection wins', rules: [shardRule()] },
      { name: 'dnat-output', type: 'nat', hook: 'output', priority: PRIORITY_DNAT, comment: 'the same for connections from this node', rules: [shardRule()] },
      ...Array.from({ length: SHARDS }, (_, i): ChainSpec => ({ name: shardChain(i), comment: `dnat for ClusterIPs ending ${i} mod ${SHARDS}`, rules: dispatchRules(i) })),
      { name: 'masq-postrouting', type: 'nat', hook: 'postrouting', priority: PRIORITY_MASQUERADE, comment: `source NAT for connections this table DNATed; cluster CIDR ${ctx.clusterCIDR || 'none'}`, rules: masquerade },
    ],
  };
}

/** A priority as `nft list` prints it: by name where nft has one for the chain type and hook. */
export function priorityText(chain: Required<Pick<ChainSpec, 'type' | 'hook' | 'priority'>>): string {
  // nft 1.0.6 names dstnat on prerouting and srcnat on postrouting only; elsewhere the number.
  const standard = chain.type !== 'nat' ? null : chain.hook === 'postrouting' ? (['srcnat', 100] as const) : chain.hook === 'prerouting' ? (['dstnat', -100] as const) : null;
  if (!standard) return String(chain.priority);
  const delta = chain.priority - standard[1];
  if (delta === 0) return standard[0];
  return `${standard[0]} ${delta < 0 ? '-' : '+'} ${Math.abs(delta)}`;
}

/** Text of a comment: nft keeps at most 128 bytes and no double quotes. */
export function commentText(text: string): string {
  const clean = text.replace(/"/g, "'");
  return Buffer.byteLength(clean) <= 128 ? clean : Buffer.from(clean).subarray(0, 128).toString().replace(/\uFFFD+$/, '');
}
