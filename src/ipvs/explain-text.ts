// What explain shows in IPVS mode: a group's fwmark virtual services with
// their scheduler and the Service port each serves, their real servers with
// weights and the cluster each belongs to, planned and as the kernel holds
// them. The kernel's lines add each real server's connection counts and mark
// the drains in progress (a removed TCP real server at weight 0 until its
// connections end or its bound passes); another owner's address service for
// one of the group's ClusterIPs is listed as unused, since IPVS consults
// fwmark services first.

import type { GroupSelection } from '../selection/selection.js';
import type { GroupText, ServiceName } from '../sync/dataplane.js';
import { isAgentMark, markHex } from './marks.js';
import type { IpvsFrontend } from './dataplane.js';
import { hostPort, sameDest, sameService, type DestSpec, type ObservedDest, type ServiceSpec } from './types.js';

/** The kernel's IPVS table as explain reads it: every service, the real servers of the agent's own. */
export interface IpvsExplainRead {
  readonly services: readonly ServiceSpec[];
  /** Real servers of each owned (fwmark) service, by mark. */
  readonly dests: ReadonlyMap<number, readonly ObservedDest[]>;
}

export function isIpvsExplainRead(value: unknown): value is IpvsExplainRead {
  return typeof value === 'object' && value !== null && 'services' in value && 'dests' in value;
}

/** A planned frontend, as explain needs it. */
export type ExplainFrontend = Pick<IpvsFrontend, 'mark' | 'ip' | 'port' | 'protocol' | 'comment' | 'service' | 'dests'>;

/** Where a draining real server stands: the time it is deleted by at the latest (ms since the epoch), when this process started the drain. */
export type DrainBound = (mark: number, dest: DestSpec) => number | undefined;

const IP_VS_SVC_F_PERSISTENT = 0x0001;

const destId = (d: { address: string; port: number }) => `${d.address}/${d.port}`;

function serviceText(fe: ExplainFrontend, service: ServiceSpec): string {
  const persistence = service.flags & IP_VS_SVC_F_PERSISTENT ? ` persistent ${service.timeout}s` : '';
  return `FWM ${markHex(fe.mark)} ${service.scheduler}${persistence} serves ${fe.comment} (${hostPort(fe.ip, fe.port)}/${fe.protocol})`;
}

function destText(d: DestSpec, cluster: string | undefined): string {
  return `  -> ${hostPort(d.address, d.port)} ${d.forward} weight ${d.weight}${cluster ? ` (${cluster})` : ''}`;
}

function rejectText(fe: ExplainFrontend): string {
  return `no virtual service for ${fe.comment} (${hostPort(fe.ip, fe.port)}/${fe.protocol}): no usable endpoint, connections are rejected`;
}

function plannedLines(fe: ExplainFrontend, clusters: ReadonlyMap<string, string>): string[] {
  if (!fe.service) return [rejectText(fe)];
  return [serviceText(fe, fe.service), ...fe.dests.map((d) => destText(d, clusters.get(destId(d))))];
}

function sameDests(planned: readonly DestSpec[], kernel: readonly DestSpec[]): boolean {
  if (planned.length !== kernel.length) return false;
  const byId = new Map(kernel.map((d) => [destId(d), d]));
  return planned.every((p) => {
    const k = byId.get(destId(p));
    return k !== undefined && sameDest(p, k);
  });
}

/**
 * The group's planned virtual services and the kernel's (`kernel` null: the
 * table could not be read). In sync when every planned service is in the
 * kernel with its scheduler and exactly its real servers and weights, real
 * servers draining at weight 0 aside.
 */
export function ipvsGroupText(
  selection: GroupSelection,
  frontends: readonly ExplainFrontend[],
  services: readonly ServiceName[],
  kernel: IpvsExplainRead | null,
  drainBound: DrainBound,
): GroupText {
  const clusters = new Map<string, string>();
  for (const fe of selection.frontends) for (const ep of fe.endpoints) clusters.set(destId({ address: ep.ip, port: ep.port }), ep.cluster);
  const planned = frontends.flatMap((fe) => plannedLines(fe, clusters));
  if (!kernel) return { planned, kernel: null, inSync: null };

  const owned = new Map<number, ServiceSpec>();
  for (const s of kernel.services) if (s.key.kind === 'fwmark' && isAgentMark(s.key.fwmark)) owned.set(s.key.fwmark >>> 0, s);
  const lines: string[] = [];
  let inSync = true;
  for (const fe of frontends) {
    const service = owned.get(fe.mark);
    if (!service) {
      lines.push(fe.service ? `FWM ${markHex(fe.mark)} missing: the kernel has no virtual service for ${fe.comment}` : rejectText(fe));
      inSync &&= fe.service === null;
      continue;
    }
    lines.push(serviceText(fe, service));
    const planned = new Set(fe.dests.map(destId));
    const dests = kernel.dests.get(fe.mark) ?? [];
    const serving: DestSpec[] = [];
    for (const d of [...dests].sort((a, b) => a.address.localeCompare(b.address, 'en', { numeric: true }) || a.port - b.port)) {
      const conns = `${d.activeConns} active, ${d.inactiveConns} inactive connections`;
      if (d.weight === 0 && !planned.has(destId(d))) {
        const bound = drainBound(fe.mark, d);
        const until = bound === undefined ? 'deleted once idle' : `deleted once idle, at the latest ${new Date(bound).toISOString()}`;
        lines.push(`${destText(d, clusters.get(destId(d)))} draining: ${conns}; ${until}`);
        continue;
      }
      serving.push(d);
      lines.push(`${destText(d, clusters.get(destId(d)))}: ${conns}`);
    }
    inSync &&= fe.service !== null && sameService(fe.service, service) && sameDests(fe.dests, serving);
  }
  // Address services for the group's ClusterIPs are someone else's (kube-proxy's in IPVS mode): unused while ours exist.
  const clusterIPs = new Set([...services.map((s) => s.clusterIP), ...frontends.map((fe) => fe.ip)]);
  for (const s of kernel.services) {
    if (s.key.kind !== 'address' || !clusterIPs.has(s.key.address)) continue;
    lines.push(`${s.key.protocol.toUpperCase()} ${hostPort(s.key.address, s.key.port)} ${s.scheduler}: not the agent's; unused while the agent's fwmark service takes this ClusterIP's packets first`);
  }
  return { planned, kernel: lines, inSync };
}
