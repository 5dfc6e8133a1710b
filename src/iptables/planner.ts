import { exact } from '../model/records.js';
import type { GroupSelection } from '../selection/selection.js';
import { JUMPS, SET_CHAINS, skeletonFragment } from './layout.js';
import { servicePortRules, type RuleContext } from './service-rules.js';
import type { Fragment, OwnedChain, Plan, SetRule } from './plan-types.js';

export interface PlanContext extends RuleContext {
  readonly masqueradeBit: number;
}

/**
 * A group's fragment from its selection: a chain and dispatch rules per
 * selected frontend port, and per ClusterSet IP a dispatch rule and a chain. A group whose policy is `off` selects no frontend and
 * owns nothing.
 */
export function planFragment(selection: GroupSelection, ctx: RuleContext): Fragment {
  const chains: OwnedChain[] = [];
  const setRules: SetRule[] = [];
  const named = new Set<string>();
  for (const fe of selection.frontends) {
    const rules = servicePortRules(fe, ctx);
    // A port's addresses share its chains: the first copy stands for all.
    for (const chain of rules.chains) {
      if (named.has(chain.name)) continue;
      named.add(chain.name);
      chains.push(chain);
    }
    setRules.push(...rules.setRules);
  }
  // Fragments are kept as applied for every group: without the spare capacity push leaves.
  return { key: selection.key, chains: exact(chains), setRules: exact(setRules) };
}

/** Assembles a whole plan from per-group fragments. */
export function assemblePlan(fragments: ReadonlyMap<string, Fragment>, ctx: Pick<PlanContext, 'masqueradeBit'>): Plan {
  return { setChains: SET_CHAINS, skeleton: skeletonFragment(ctx.masqueradeBit), fragments, jumps: JUMPS };
}

/** The plan that owns nothing: diffing against it removes everything (--cleanup). */
export const EMPTY_PLAN: Plan = {
  setChains: [],
  skeleton: { key: '', chains: [], setRules: [] },
  fragments: new Map(),
  jumps: [],
};
