import type { GroupSelection } from '../selection/selection.js';
import { LAYOUTS, SET_CHAINS, skeletonFragment } from './layout.js';
import { servicePortRules, type RuleContext } from './service-rules.js';
import type { Fragment, OwnedChain, Plan, SetRule } from './plan-types.js';

export interface PlanContext extends RuleContext {
  readonly masqueradeBit: number;
}

/**
 * A group's fragment from its selection: a chain and dispatch rules per
 * selected frontend port, and per ClusterSet IP a dispatch rule and a chain.
 * A group whose policy is `off` selects no frontend and
 * owns nothing.
 */
export function planFragment(selection: GroupSelection, ctx: RuleContext): Fragment {
  const perFrontend = selection.frontends.map((fe) => servicePortRules(fe, ctx));
  // A port's addresses share its chains (one name, the same rules): each is kept once.
  const seen = new Set<string>();
  const firstOfName = (c: OwnedChain) => (seen.has(c.name) ? false : (seen.add(c.name), true));
  const chains = ([] as OwnedChain[]).concat(...perFrontend.map((r) => r.chains.filter(firstOfName)));
  // Fragments are kept as applied for every group: map and concat allocate
  // exactly the elements they hold, where push would leave spare capacity.
  return {
    key: selection.key,
    chains,
    setRules: ([] as SetRule[]).concat(...perFrontend.map((r) => r.setRules)),
  };
}

/** Assembles a whole plan from per-group fragments, with the skeleton and jumps of the rules' family. */
export function assemblePlan(fragments: ReadonlyMap<string, Fragment>, ctx: Pick<PlanContext, 'masqueradeBit' | 'family'>): Plan {
  const family = ctx.family ?? 'ipv4';
  return { setChains: SET_CHAINS, skeleton: skeletonFragment(ctx.masqueradeBit, family), fragments, jumps: LAYOUTS[family].jumps };
}

/** The plan that owns nothing: diffing against it removes everything (--cleanup). */
export const EMPTY_PLAN: Plan = {
  setChains: [],
  skeleton: { key: '', chains: [], setRules: [] },
  fragments: new Map(),
  jumps: [],
};
