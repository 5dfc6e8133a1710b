// The agent's own nf_tables tables, `ip` and `ip6` clusterset-proxy, alike
// but for the address type: a fixed skeleton of base chains and rules,
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

import type { IPFamily } from '../selection/selection.js';

/** The table's name, in each family served: `table ip clusterset-proxy` and `table ip6 clusterset-proxy`. */
export const TABLE = 'clusterset-proxy';

/** Slots per frontend: weights are honoured at a granularity of 1/SLOTS. */
export const SLOTS = 64;

/**
 * The slot map is split in SHARDS maps by the ClusterIP's low bits. Reading a
 * map back costs the kernel time quadratic in its size (each dump message
 * walks the hash table from its start), so 64 maps of N elements read back
 * about 64 times faster than one of 64·N. A change still touches one map.
 */
export const SHARDS = 64;

/** The shard of an address: its low 6 bits (the last octet of an IPv4 address, the last group of an IPv6 one). */
export function shardOf(clusterIP: string): number {
  const colon = clusterIP.lastIndexOf(':');
  if (colon < 0) return Number(clusterIP.slice(clusterIP.lastIndexOf('.') + 1)) & (SHARDS - 1);
  return (parseInt(clusterIP.slice(colon + 1) || '0', 16) || 0) & (SHARDS - 1);
}

const two = (n: number) => String(n).padStart(2, '0');
export const shardSet = (shard: number): SetName => `slots-${two(shard)}`;
export const shardChain = (shard: number): string => `dispatch-${two(shard)}`;

export const PRIORITY_REJECT = -120;
export const PRIORITY_DNAT = -110;
export const PRIORITY_MASQUERADE = 90;

export type Field = 'ipv4' | 'ipv6' | 'proto' | 'port' | 'slot';

/** Bytes a field takes in a concatenation: a 16-byte IPv6 address, 4-byte registers for the rest. */
export function fieldBytes(field: Field): number {
  return field === 'ipv6' ? 16 : 4;
}

export function fieldsBytes(fields: readonly Field[]): number {
  let n = 0;
  for (const f of fields) n += fieldBytes(f);
  return n;
}

export interface SetSpec {
  readonly name: SetName;
  /** The declaration line as `nft list` prints it. */
  readonly declaration: string;
  readonly comment: string;
  readonly key: readonly Field[];
  /** Fields of the mapped value; empty for a plain set. */
  readonly data: readonly Field[];
  /** Bytes of a key and of a value (0 for a plain set), as the kernel stores them. */
  readonly keyLen: number;
  readonly dataLen: number;
}

export type SetName = 'service_ports' | 'affinity' | 'no_endpoints' | 'service_ips' | 'hairpin' | 'clusterset_ips' | `slots-${string}`;

type SetText = Omit<SetSpec, 'keyLen' | 'dataLen'>;

function spec(text: SetText): SetSpec {
  return { ...text, keyLen: fieldsBytes(text.key), dataLen: fieldsBytes(text.data) };
}

/** What differs between the two tables: the nft family, its address type and its expressions. */
export interface NftFamily {
  readonly ipFamily: IPFamily;
  /** The nft family keyword: `ip` or `ip6`. */
  readonly name: 'ip' | 'ip6';
  /** NFPROTO_IPV4 or NFPROTO_IPV6. */
  readonly number: number;
  readonly address: 'ipv4' | 'ipv6';
  /** The address type as nft declares it: `ipv4_addr` or `ipv6_addr`. */
  readonly addressType: string;
  /** Every named set and map of the table, in the order `nft list` shows them. */
  readonly sets: readonly SetSpec[];
  readonly setByName: ReadonlyMap<SetName, SetSpec>;
}

function slotMap(f: Pick<NftFamily, 'name' | 'address'>, shard: number): SetSpec {
  return spec({
    name: shardSet(shard), key: [f.address, 'proto', 'port', 'slot'], data: [f.address, 'port'],
    declaration: `typeof ${f.name} daddr . meta l4proto . th dport . numgen random mod ${SLOTS} : ${f.name} daddr . tcp dport`,
    // nft 1.0.6 keeps typeof and comment in one 256-byte user-data area: keep this short.
    // The value is typed `tcp dport` (a port, for every protocol): nft 1.0.6 cannot re-read `th dport` here.
    comment: `ClusterIP . proto . port . slot : endpoint (ClusterIPs ending ${shard} mod ${SHARDS})`,
  });
}

function setsOf(f: Pick<NftFamily, 'name' | 'address' | 'addressType'>): SetSpec[] {
  const addr = f.addressType;
  const frontend = [f.address, 'proto', 'port'] as const;
  return [
    spec({ name: 'service_ports', key: frontend, data: [], declaration: `type ${addr} . inet_proto . inet_service`, comment: 'every service port programmed here, named namespace/service:port' }),
    spec({ name: 'affinity', key: frontend, data: [], declaration: `type ${addr} . inet_proto . inet_service`, comment: 'service ports with ClientIP affinity (slot by client hash)' }),
    spec({ name: 'no_endpoints', key: frontend, data: [], declaration: `type ${addr} . inet_proto . inet_service`, comment: 'service ports without endpoints: rejected' }),
    spec({ name: 'service_ips', key: [f.address], data: [], declaration: `type ${addr}`, comment: 'ClusterIPs dispatched here: masquerade from outside' }),
    spec({ name: 'hairpin', key: [f.address, f.address], data: [], declaration: `type ${addr} . ${addr}`, comment: 'local endpoint . ClusterIP: hairpin masquerade' }),
    spec({ name: 'clusterset_ips', key: [f.address], data: [], declaration: `type ${addr}`, comment: 'ClusterSet IPs dispatched here: masquerade always' }),
    ...Array.from({ length: SHARDS }, (_, i) => slotMap(f, i)),
  ];
}

function nftFamily(ipFamily: IPFamily, name: 'ip' | 'ip6', number: number): NftFamily {
  const address = ipFamily;
  const addressType = ipFamily === 'ipv4' ? 'ipv4_addr' : 'ipv6_addr';
  const sets = setsOf({ name, address, addressType });
  return { ipFamily, name, number, address, addressType, sets, setByName: new Map(sets.map((s) => [s.name, s])) };
}

/** `table ip clusterset-proxy` (NFPROTO_IPV4) and `table ip6 clusterset-proxy` (NFPROTO_IPV6). */
export const NFT_IPV4 = nftFamily('ipv4', 'ip', 2);
export const NFT_IPV6 = nftFamily('ipv6', 'ip6', 10);

export function nftFamilyOf(family: IPFamily): NftFamily {
  return family === 'ipv4' ? NFT_IPV4 : NFT_IPV6;
}

/** The set names, the same in both families, in the table's order. */
export const SET_NAMES: readonly SetName[] = NFT_IPV4.sets.map((s) => s.name);

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
  readonly family: NftFamily;
  readonly comment: string;
  readonly sets: readonly SetSpec[];
  readonly chains: readonly ChainSpec[];
}

export interface SkeletonContext {
  /** Pod CIDR of this cluster in the table's family; '' disables masquerading of outside traffic. */
  readonly clusterCIDR: string;
  /** Default: IPv4. */
  readonly family?: NftFamily;
}

const frontendExpr = (ip: string) => `${ip} daddr . meta l4proto . th dport`;

function rejectRule(ip: string): string {
  // `reject` answers ICMP port unreachable in table ip, ICMPv6 port unreachable in table ip6.
  return `ct state new ${frontendExpr(ip)} @no_endpoints reject comment "service port without endpoints"`;
}

/** The shard's verdict by the address's low 6 bits: `0.0.0.N` in ip, `::N` (hex) in ip6. */
function shardRule(f: NftFamily): string {
  const low = (n: number) => (f.ipFamily === 'ipv4' ? `0.0.0.${n}` : `::${n.toString(16)}`);
  const entries = Array.from({ length: SHARDS }, (_, i) => `${low(i)} : goto ${shardChain(i)}`);
  return `${f.name} daddr & ${low(SHARDS - 1)} vmap { ${entries.join(', ')} } comment "slot map of the ClusterIP"`;
}

function dispatchRules(ip: string, shard: number): string[] {
  const map = `@${shardSet(shard)}`;
  const frontend = frontendExpr(ip);
  return [
    `${frontend} @affinity dnat ${ip} to ${frontend} . jhash ${ip} saddr mod ${SLOTS} map ${map} comment "ClientIP affinity: slot by client address"`,
    `dnat ${ip} to ${frontend} . numgen random mod ${SLOTS} map ${map} comment "slot at random, weighted by slot counts"`,
  ];
}

/** The skeleton for a config and family: the only part of the table that holds rules. */
export function planSkeleton(ctx: SkeletonContext): Skeleton {
  const family = ctx.family ?? NFT_IPV4;
  const ip = family.name;
  const masquerade: string[] = [];
  if (ctx.clusterCIDR !== '') {
    masquerade.push(`ct status dnat ct original ${ip} daddr @service_ips ${ip} saddr != ${ctx.clusterCIDR} masquerade fully-random comment "from outside the cluster"`);
  }
  masquerade.push(`ct status dnat ${ip} saddr . ct original ${ip} daddr @hairpin masquerade fully-random comment "hairpin"`);
  masquerade.push(`ct status dnat ct original ${ip} daddr @clusterset_ips masquerade fully-random comment "clusterset IP"`);
  const reject = rejectRule(ip);
  const shard = shardRule(family);
  return {
    family,
    comment: 'clusterset-proxy: multi-cluster Service dispatch, owned by clusterset-proxy (deleted by --cleanup)',
    sets: family.sets,
    chains: [
      { name: 'reject-prerouting', type: 'filter', hook: 'prerouting', priority: PRIORITY_REJECT, comment: 'before kube-proxy (-110 filter, -100 nat): reject service ports with no endpoints', rules: [reject] },
      { name: 'reject-output', type: 'filter', hook: 'output', priority: PRIORITY_REJECT, comment: 'the same for connections from this node', rules: [reject] },
      { name: 'dnat-prerouting', type: 'nat', hook: 'prerouting', priority: PRIORITY_DNAT, comment: 'before kube-proxy\'s nat (-100): the first DNAT of a new connection wins', rules: [shard] },
      { name: 'dnat-output', type: 'nat', hook: 'output', priority: PRIORITY_DNAT, comment: 'the same for connections from this node', rules: [shard] },
      ...Array.from({ length: SHARDS }, (_, i): ChainSpec => ({ name: shardChain(i), comment: `dnat for ClusterIPs ending ${i} mod ${SHARDS}`, rules: dispatchRules(ip, i) })),
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
