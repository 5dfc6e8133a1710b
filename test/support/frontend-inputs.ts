// The policy's selection of every frontend of a group, as the data planes
// take it (a plain record per ClusterIP:port).

import type { ServiceGroup } from '../../src/model/group.js';
import type { FrontendInput } from '../../src/nftables/plan.js';
import type { PolicyConfig } from '../../src/policy/policy.js';
import type { HealthView } from '../../src/policy/select.js';
import { selectGroup } from '../../src/selection/selection.js';

export function frontendInputs(group: ServiceGroup, ctx: { policy: PolicyConfig; localCluster: string; health: HealthView }): FrontendInput[] {
  return [...selectGroup(group, ctx).frontends];
}
