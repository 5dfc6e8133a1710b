// What IPVS mode needs beside the IPVS table, as desired-state values:
//
//   mangle PREROUTING, OUTPUT -> MCS-IPVS-MARK: each owned frontend's packets
//          (ClusterIP, protocol, port) get the frontend's mark, so IPVS finds
//          the agent's fwmark service before kube-proxy's address service.
//   nat    PREROUTING, OUTPUT: ACCEPT for the agent's marks, first, so
//          kube-proxy's KUBE-SERVICES never DNATs them.
//   nat    POSTROUTING: MASQUERADE for the agent's marks (IPVS forwards with
//          the mark still set, and net.ipv4.vs.conntrack=1 lets NAT see it).
//   filter INPUT, OUTPUT -> MCS-IPVS-REJECT: a frontend without usable
//          endpoints is rejected.
//   routing: marked packets are delivered locally (a `local 0.0.0.0/0` route in
//          the agent's own table), except those IPVS sends back out from lo,
//          which look the real server up in main; no address on kube-ipvs0
//          or any other interface is needed.
//   sysctls: net.ipv4.vs.conntrack=1 (NAT and masquerade see IPVS traffic),
//          expire_nodest_conn=1 (connections to a deleted real server end at
//          their next packet instead of hanging), conn_reuse_mode=0 (a reused
//          source port is not rescheduled through a slow path; kube-proxy's
//          setting too).

import { markHex, MARK_TAG, MARK_TAG_MASK } from './marks.js';

export const MARK_CHAIN = 'MCS-IPVS-MARK';
export const REJECT_CHAIN = 'MCS-IPVS-REJECT';
/** The agent's routing table for marked traffic, and the rule preferences of its two rules. */
export const ROUTE_TABLE = 0x4d;
export const RULE_PREF_LO = 0x4d0;
export const RULE_PREF_LOCAL = 0x4d1;

export const IPVS_SYSCTLS: ReadonlyMap<string, string> = new Map([
  ['net.ipv4.vs.conntrack', '1'],
  ['net.ipv4.vs.expire_nodest_conn', '1'],
  ['net.ipv4.vs.conn_reuse_mode', '0'],
]);

export interface AuxFrontend {
  readonly ip: string;
  readonly port: number;
  readonly protocol: string;
  /** `namespace/service:port`, the rules' comment. */
  readonly comment: string;
  readonly mark: number;
  /** No usable endpoint: rejected. */
  readonly reject: boolean;
}

export interface AuxState {
  /** iptables-restore payload of the agent's rules, by table. */
  readonly tables: ReadonlyMap<'mangle' | 'nat' | 'filter', readonly string[]>;
  /** `ip rule` and `ip route` arguments. */
  readonly routing: readonly string[];
  readonly sysctls: ReadonlyMap<string, string>;
}

const TAG = `${markHex(MARK_TAG)}/${markHex(MARK_TAG_MASK)}`;

function match(fe: AuxFrontend): string {
  const proto = fe.protocol.toLowerCase();
  return `-d ${fe.ip}/32 -p ${proto} -m ${proto} --dport ${fe.port} -m comment --comment "${fe.comment}"`;
}

/** The auxiliary state for the frontends, in a stable order. */
export function auxState(frontends: readonly AuxFrontend[]): AuxState {
  const sorted = [...frontends].sort((a, b) => a.mark - b.mark);
  const mangle = [
    `:${MARK_CHAIN} - [0:0]`,
    `-A PREROUTING -m comment --comment "clusterset-proxy ipvs frontends" -j ${MARK_CHAIN}`,
    `-A OUTPUT -m comment --comment "clusterset-proxy ipvs frontends" -j ${MARK_CHAIN}`,
    ...sorted.map((fe) => `-A ${MARK_CHAIN} ${match(fe)} -j MARK --set-xmark ${markHex(fe.mark)}/0xffffffff`),
  ];
  const nat = [
    `-I PREROUTING 1 -m mark --mark ${TAG} -m comment --comment "clusterset-proxy ipvs frontends, ahead of KUBE-SERVICES" -j ACCEPT`,
    `-I OUTPUT 1 -m mark --mark ${TAG} -m comment --comment "clusterset-proxy ipvs frontends, ahead of KUBE-SERVICES" -j ACCEPT`,
    `-A POSTROUTING -m mark --mark ${TAG} -m comment --comment "clusterset-proxy: masquerade ipvs traffic" -j MASQUERADE --random-fully`,
  ];
  const filter = [
    `:${REJECT_CHAIN} - [0:0]`,
    `-A INPUT -m conntrack --ctstate NEW -m comment --comment "clusterset-proxy ipvs frontends" -j ${REJECT_CHAIN}`,
    `-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "clusterset-proxy ipvs frontends" -j ${REJECT_CHAIN}`,
    ...sorted.filter((fe) => fe.reject).map((fe) => `-A ${REJECT_CHAIN} ${match(fe)} -j REJECT --reject-with icmp-port-unreachable`),
  ];
  const routing = [
    `rule add pref ${RULE_PREF_LO} iif lo fwmark ${TAG} lookup main`,
    `rule add pref ${RULE_PREF_LOCAL} fwmark ${TAG} lookup ${ROUTE_TABLE}`,
    `route replace local 0.0.0.0/0 dev lo table ${ROUTE_TABLE}`,
  ];
  return { tables: new Map([['mangle', mangle], ['nat', nat], ['filter', filter]]), routing, sysctls: IPVS_SYSCTLS };
}

/** The auxiliary state as text: iptables-restore --noflush tables, then `ip` and sysctl lines as comments. */
export function renderAux(aux: AuxState): string {
  const out: string[] = [];
  for (const [table, lines] of aux.tables) out.push(`*${table}`, ...lines, 'COMMIT');
  for (const line of aux.routing) out.push(`# ip ${line}`);
  for (const [key, value] of aux.sysctls) out.push(`# sysctl -w ${key}=${value}`);
  return out.map((l) => `${l}\n`).join('');
}
