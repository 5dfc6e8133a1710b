// What IPVS mode needs beside the IPVS table, as desired-state values:
//
//   mangle PREROUTING, OUTPUT -> MCS-IPVS-MARK: each owned frontend's packets
//          (ClusterIP or ClusterSet IP, protocol, port) get the frontend's mark,
//          so IPVS finds the agent's fwmark service before kube-proxy's address
//          service (kube-proxy's for a ClusterSet IP, a load-balancer IP to it,
//          included).
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

/** Runs one command (argv[0] looked up in PATH) and resolves with its stdout; rejects when it fails. */
export type Exec = (argv: readonly string[], input?: string) => Promise<string>;

export interface AuxTools {
  readonly exec: Exec;
  /** `iptables` or `iptables-legacy`: the backend kube-proxy uses on this node. */
  readonly iptables: string;
}

const BUILTIN = new Set(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']);

/** A rule in a built-in chain as `-A chain spec` or `-I chain n spec`: its chain, its spec, and whether it goes first. */
function builtinRule(line: string): { chain: string; spec: string; first: boolean } | null {
  const m = /^-([AI]) (\S+)(?: 1)? (.*)$/.exec(line);
  if (!m || !BUILTIN.has(m[2]!)) return null;
  return { chain: m[2]!, spec: m[3]!, first: m[1] === 'I' };
}

/** Splits a rule spec into argv, keeping quoted comments whole. */
function specArgs(spec: string): string[] {
  return [...spec.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
}

/**
 * Applies the auxiliary state: the agent's chains are rewritten whole, rules
 * in built-in chains are added once (checked with -C first), then the routing
 * rules and the sysctls. Other rules are never touched.
 */
export async function applyAux(aux: AuxState, tools: AuxTools): Promise<void> {
  for (const [table, lines] of aux.tables) {
    const own = lines.filter((l) => !builtinRule(l));
    await tools.exec([`${tools.iptables}-restore`, '--noflush'], [`*${table}`, ...own, 'COMMIT', ''].join('\n'));
    for (const line of lines) {
      const rule = builtinRule(line);
      if (!rule) continue;
      const args = specArgs(rule.spec);
      try {
        await tools.exec([tools.iptables, '-w', '-t', table, '-C', rule.chain, ...args]);
      } catch {
        await tools.exec([tools.iptables, '-w', '-t', table, ...(rule.first ? ['-I', rule.chain, '1'] : ['-A', rule.chain]), ...args]);
      }
    }
  }
  for (const line of aux.routing) {
    const argv = ['ip', ...line.split(' ')];
    if (line.startsWith('rule add')) {
      const pref = line.split(' ')[3]!;
      const existing = await tools.exec(['ip', 'rule', 'show', 'pref', pref]);
      if (existing.trim() !== '') continue;
    }
    await tools.exec(argv);
  }
  for (const [key, value] of aux.sysctls) await tools.exec(['sysctl', '-qw', `${key}=${value}`]);
}

/** Removes every auxiliary rule, chain and route the agent added; sysctls stay as set. */
export async function removeAux(aux: AuxState, tools: AuxTools): Promise<void> {
  for (const [table, lines] of aux.tables) {
    for (const line of lines) {
      const rule = builtinRule(line);
      if (!rule) continue;
      const args = specArgs(rule.spec);
      for (;;) {
        try {
          await tools.exec([tools.iptables, '-w', '-t', table, '-D', rule.chain, ...args]);
        } catch {
          break;
        }
      }
    }
    for (const line of lines) {
      const chain = /^:(\S+) /.exec(line)?.[1];
      if (!chain) continue;
      await tools.exec([tools.iptables, '-w', '-t', table, '-F', chain]).catch(() => undefined);
      await tools.exec([tools.iptables, '-w', '-t', table, '-X', chain]).catch(() => undefined);
    }
  }
  for (const pref of [RULE_PREF_LO, RULE_PREF_LOCAL]) {
    await tools.exec(['ip', 'rule', 'del', 'pref', String(pref)]).catch(() => undefined);
  }
  await tools.exec(['ip', 'route', 'flush', 'table', String(ROUTE_TABLE)]).catch(() => undefined);
}
