import type { ServiceGroup } from '../model/group.js';
import { JUMPS, SET_CHAINS, skeletonFragment } from './layout.js';
import { selectEndpoints } from './selection.js';
import { servicePortRules, type RuleContext } from './service-rules.js';
import type { Fragment, OwnedChain, Plan, SetRule } from './types.js';

export interface PlanContext extends RuleContext {
  readonly masqueradeBit: number;
}

/** The fragment of one service group: a chain and dispatch rules per port of each frontend. */
export function planGroup(group: ServiceGroup, ctx: PlanContext): Fragment {
  const chains: OwnedChain[] = [];
  const setRules: SetRule[] = [];
  for (const fe of group.frontends) {
    for (const port of fe.ports) {
      const rules = servicePortRules(fe, port, selectEndpoints(port), ctx);
      chains.push(rules.chain);
      setRules.push(...rules.setRules);
    }
  }
  return { key: group.key, chains, setRules };
}

/** Assembles a whole plan from per-group fragments. */
export function assemblePlan(fragments: ReadonlyMap<string, Fragment>, ctx: PlanContext): Plan {
  return { setChains: SET_CHAINS, skeleton: skeletonFragment(ctx.masqueradeBit), fragments, jumps: JUMPS };
}

/** The plan that owns nothing: diffing against it removes everything (--cleanup). */
export const EMPTY_PLAN: Plan = {
  setChains: [],
  skeleton: { key: '', chains: [], setRules: [] },
  fragments: new Map(),
  jumps: [],
};
