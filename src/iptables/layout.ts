import type { ChainRef, Fragment, Jump, OwnedChain } from './plan-types.js';
import { SKELETON_KEY } from './plan-types.js';

// The fixed skeleton, written once: everything else hangs off these chains.
//
//   nat    PREROUTING, OUTPUT -> MCS-SERVICES   (ahead of KUBE-SERVICES)
//          POSTROUTING        -> MCS-POSTROUTING
//          MCS-SERVICES: one dispatch rule per ClusterIP:port -> MCS-SVC-<hash>,
//                        and per ClusterSet IP:port -> MCS-EXT-<hash> (mark for masquerade) -> MCS-SVC-<hash>
//   filter FORWARD, OUTPUT (new connections) -> MCS-SERVICES: REJECT for ports without endpoints

export const CHAIN_PREFIX = 'MCS-';
export const SERVICES_CHAIN = 'MCS-SERVICES';
export const MARK_MASQ_CHAIN = 'MCS-MARK-MASQ';
export const POSTROUTING_CHAIN = 'MCS-POSTROUTING';
export const SERVICE_CHAIN_PREFIX = 'MCS-SVC-';
export const EXTERNAL_CHAIN_PREFIX = 'MCS-EXT-';

const PORTALS = '-m comment --comment "clusterset-proxy service portals"';

export const SET_CHAINS: readonly ChainRef[] = [
  { table: 'nat', name: SERVICES_CHAIN },
  { table: 'filter', name: SERVICES_CHAIN },
];

export const JUMPS: readonly Jump[] = [
  { table: 'nat', chain: 'PREROUTING', spec: `${PORTALS} -j ${SERVICES_CHAIN}` },
  { table: 'nat', chain: 'OUTPUT', spec: `${PORTALS} -j ${SERVICES_CHAIN}` },
  { table: 'nat', chain: 'POSTROUTING', spec: `-m comment --comment "clusterset-proxy postrouting rules" -j ${POSTROUTING_CHAIN}` },
  { table: 'filter', chain: 'FORWARD', spec: `-m conntrack --ctstate NEW ${PORTALS} -j ${SERVICES_CHAIN}` },
  { table: 'filter', chain: 'OUTPUT', spec: `-m conntrack --ctstate NEW ${PORTALS} -j ${SERVICES_CHAIN}` },
];

export function markHex(bit: number): string {
  return `0x${(2 ** bit).toString(16)}`;
}

/** The chains behind masquerading; rules as iptables-save prints them (--or-mark is saved as --set-xmark). */
export function skeletonFragment(masqueradeBit: number): Fragment {
  const mark = markHex(masqueradeBit);
  const chains: OwnedChain[] = [
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
