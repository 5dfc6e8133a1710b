// The policy's selection of every frontend of a group, as the data planes
// take it (a plain record per ClusterIP:port).

import type { ServiceGroup } from '../../src/model/group.js';
import type { FrontendInput } from '../../src/nftables/plan.js';
import { resolvePolicy, type PolicyConfig } from '../../src/policy/policy.js';
import { selectByPolicy, type HealthView } from '../../src/policy/select.js';

export function frontendInputs(group: ServiceGroup, ctx: { policy: PolicyConfig; localCluster: string; health: HealthView }): FrontendInput[] {
  const members = [...group.frontends, ...(group.local ? [group.local] : [])];
  const settings = resolvePolicy(group.key, ctx.policy, members).settings;
  if (settings.mode === 'off') return [];
  const candidates = new Map<string, ServiceGroup['frontends'][number]['ports'][number]['endpoints'][number][]>();
  for (const fe of members) for (const port of fe.ports) candidates.set(`${port.label}/${port.protocol}`, [...(candidates.get(`${port.label}/${port.protocol}`) ?? []), ...port.endpoints]);
  const programmed = settings.unifiedName && group.local ? members : group.frontends;
  return programmed.flatMap((fe) => fe.ports.map((port) => ({
    ip: fe.clusterIP, port: port.port, protocol: port.protocol,
    name: { namespace: fe.namespace, service: fe.name, port: port.label },
    affinity: fe.affinitySeconds,
    endpoints: selectByPolicy(candidates.get(`${port.label}/${port.protocol}`)!, settings, ctx.localCluster, ctx.health).endpoints,
  })));
}
