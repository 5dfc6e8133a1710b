import type { IPFamily } from '../selection/selection.js';
import type { ChainRef, Fragment, Jump, OwnedChain } from './plan-types.js';
import { SKELETON_KEY } from './plan-types.js';

// The fixed skeleton, written once: everything else hangs off these chains.
//
//   ipset  MCS-FRONTENDS (hash:ip,port): every ClusterIP and ClusterSet IP,protocol:port the agent dispatches
//          (MCS-FRONTENDS6, family inet6, for ip6tables: ipsets are per network namespace, not per family)
//   nat    PREROUTING, OUTPUT -> MCS-SERVICES, only for destinations in MCS-FRONTENDS (ahead of KUBE-SERVICES)
//          POSTROUTING        -> MCS-POSTROUTING
//          MCS-SERVICES: 64 rules by the ClusterIP's low six bits -> MCS-DISPATCH-00 .. MCS-DISPATCH-63
//          MCS-DISPATCH-NN: one dispatch rule per ClusterIP:port of that bucket -> MCS-SVC-<hash>,
//                           and per ClusterSet IP:port -> MCS-EXT-<hash> (mark for masquerade) -> MCS-SVC-<hash>
//   filter FORWARD, OUTPUT (new connections to MCS-FRONTENDS) -> MCS-SERVICES: REJECT for ports without endpoints
//
// A connection to anything else costs one hashed set lookup per hook, whatever
// the number of services; one to a service walks at most 64 bucket rules and
// its bucket's share of the dispatch rules instead of one rule per service.

export const CHAIN_PREFIX = 'MCS-';
export const SERVICES_CHAIN = 'MCS-SERVICES';
export const MARK_MASQ_CHAIN = 'MCS-MARK-MASQ';
export const POSTROUTING_CHAIN = 'MCS-POSTROUTING';
export const SERVICE_CHAIN_PREFIX = 'MCS-SVC-';
export const EXTERNAL_CHAIN_PREFIX = 'MCS-EXT-';
export const BUCKET_CHAIN_PREFIX = 'MCS-DISPATCH-';
/** The ipset of every IPv4 frontend (ClusterIP or ClusterSet IP,protocol:port) the agent dispatches; the jumps into MCS-SERVICES match it. */
export const FRONTEND_SET = 'MCS-FRONTENDS';
/** IPv6's: one namespace holds both sets, and ip6tables matches only a set of family inet6. */
export const FRONTEND_SET6 = 'MCS-FRONTENDS6';

export function frontendSetOf(family: IPFamily): string {
  return family === 'ipv6' ? FRONTEND_SET6 : FRONTEND_SET;
}

/** Dispatch buckets, chosen by the destination address's low bits (a ClusterSet IP's own) (the nftables mode's slot maps split the same way). */
export const BUCKETS = 64;

const PORTALS = '-m comment --comment "clusterset-proxy service portals"';

export function bucketChain(bucket: number): string {
  return `${BUCKET_CHAIN_PREFIX}${String(bucket).padStart(2, '0')}`;
}

/** The bucket of an address as the model writes it (dotted quad, or RFC 5952 IPv6): its low six bits. */
export function bucketOf(ip: string): number {
  const dot = ip.lastIndexOf('.');
  const colon = ip.lastIndexOf(':');
  // IPv6 ends in a hex group ('' after a trailing "::"); a dotted tail (IPv4, or IPv6 written with one) in a decimal byte.
  const low = dot > colon ? Number(ip.slice(dot + 1)) : Number.parseInt(ip.slice(colon + 1) || '0', 16);
  return low % BUCKETS;
}

const BUCKET_CHAINS: readonly ChainRef[] = Array.from({ length: BUCKETS }, (_, i) => ({ table: 'nat' as const, name: bucketChain(i) }));

/** Chains whose rules are added and removed one by one: the nat buckets and filter's reject list. */
export const SET_CHAINS: readonly ChainRef[] = [
  ...BUCKET_CHAINS,
  { table: 'filter', name: SERVICES_CHAIN },
];

/** The dispatch chains the legacy drift poll reads: nat MCS-SERVICES (its bucket rules) and every set chain. */
export const POLLED_DISPATCH_CHAINS: readonly ChainRef[] = [
  { table: 'nat', name: SERVICES_CHAIN },
  ...SET_CHAINS,
];

/** What differs between the families' skeletons: the set the jumps match, and how a bucket's address bits are written. */
export interface FamilyLayout {
  readonly frontendSet: string;
  readonly jumps: readonly Jump[];
  /** nat MCS-SERVICES: one rule per bucket, as iptables-save (ip6tables-save) prints a non-contiguous mask. */
  readonly bucketRules: readonly string[];
}

function familyLayout(family: IPFamily): FamilyLayout {
  const frontendSet = frontendSetOf(family);
  const toFrontends = `-m set --match-set ${frontendSet} dst,dst`;
  const bucketMatch = family === 'ipv6'
    ? (i: number) => `-d ::${i === 0 ? '' : i.toString(16)}/::${(BUCKETS - 1).toString(16)}`
    : (i: number) => `-d 0.0.0.${i}/0.0.0.${BUCKETS - 1}`;
  return {
    frontendSet,
    jumps: [
      { table: 'nat', chain: 'PREROUTING', spec: `${toFrontends} ${PORTALS} -j ${SERVICES_CHAIN}` },
      { table: 'nat', chain: 'OUTPUT', spec: `${toFrontends} ${PORTALS} -j ${SERVICES_CHAIN}` },
      { table: 'nat', chain: 'POSTROUTING', spec: `-m comment --comment "clusterset-proxy postrouting rules" -j ${POSTROUTING_CHAIN}` },
      { table: 'filter', chain: 'FORWARD', spec: `-m conntrack --ctstate NEW ${toFrontends} ${PORTALS} -j ${SERVICES_CHAIN}` },
      { table: 'filter', chain: 'OUTPUT', spec: `-m conntrack --ctstate NEW ${toFrontends} ${PORTALS} -j ${SERVICES_CHAIN}` },
    ],
    bucketRules: Array.from({ length: BUCKETS }, (_, i) =>
      `${bucketMatch(i)} -m comment --comment "ClusterIPs ending ${i} mod ${BUCKETS}" -j ${bucketChain(i)}`),
  };
}

export const LAYOUTS: Readonly<Record<IPFamily, FamilyLayout>> = { ipv4: familyLayout('ipv4'), ipv6: familyLayout('ipv6') };

/** IPv4's jumps and bucket rules: the ones the drift watch reads back (it watches the IPv4 tables). */
export const JUMPS = LAYOUTS.ipv4.jumps;
export const BUCKET_RULES = LAYOUTS.ipv4.bucketRules;

export function markHex(bit: number): string {
  return `0x${(2 ** bit).toString(16)}`;
}

/** The chains behind masquerading; rules as iptables-save prints them (--or-mark is saved as --set-xmark). */
export function skeletonFragment(masqueradeBit: number, family: IPFamily = 'ipv4'): Fragment {
  const mark = markHex(masqueradeBit);
  const chains: OwnedChain[] = [
    { table: 'nat', name: SERVICES_CHAIN, rules: LAYOUTS[family].bucketRules },
    {
      table: 'nat', name: MARK_MASQ_CHAIN,
      rules: [`-m comment --comment "clusterset-proxy: mark for masquerade" -j MARK --set-xmark ${mark}/${mark}`],
    },
    {
      table: 'nat', name: POSTROUTING_CHAIN,
      rules: [
        `-m mark ! --mark ${mark}/${mark} -j RETURN`,
        // Clear the bit so a packet re-entering the stack is not masqueraded twice.
        `-j MARK --set-xmark ${mark}/0x0`,
        '-m comment --comment "clusterset-proxy: masquerade traffic to services" -j MASQUERADE --random-fully',
      ],
    },
  ];
  return { key: SKELETON_KEY, chains, setRules: [] };
}
