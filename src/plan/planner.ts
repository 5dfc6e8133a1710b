import type { Frontend, FrontendPort, ServiceGroup } from '../model/group.js';
import { exact, serviceRef, type Problem } from '../model/records.js';
import { resolvePolicy, type PolicyConfig, type PolicySettings } from '../policy/policy.js';
import { selectByPolicy, type Decision, type HealthView } from '../policy/select.js';
import { JUMPS, SET_CHAINS, skeletonFragment } from './layout.js';
import { servicePortRules, type RuleContext } from './service-rules.js';
import type { Fragment, OwnedChain, Plan, Portal, SetRule } from './types.js';

export interface PlanContext extends RuleContext {
  readonly masqueradeBit: number;
  readonly policy: PolicyConfig;
  readonly health: HealthView;
}

export interface GroupPlan {
  readonly fragment: Fragment;
  readonly settings: PolicySettings;
  /** Where the group's traffic goes; null when the policy is `off`. */
  readonly decision: Decision | null;
  readonly problems: readonly Problem[];
}

const portKey = (p: FrontendPort) => `${p.label}/${p.protocol}`;

/**
 * A group's fragment: a chain and dispatch rules per port of each programmed
 * frontend. Every frontend of the group selects from the same candidates, the
 * endpoints of all its Services' ports of the same name, so `serve` and
 * `derived-serve` lead to the same place.
 */
export function planGroup(group: ServiceGroup, ctx: PlanContext): GroupPlan {
  const members = [...group.frontends, ...(group.local ? [group.local] : [])];
  const resolved = resolvePolicy(group.key, ctx.policy, members);
  const problems = resolved.problems.map((p) => ({ object: serviceRef(group.namespace, p.service), message: p.message }));
  const settings = resolved.settings;
  if (settings.mode === 'off') return { fragment: { key: group.key, chains: [], setRules: [], portals: [] }, settings, decision: null, problems };

  const candidates = new Map<string, FrontendPort['endpoints'][number][]>();
  for (const fe of members) {
    for (const port of fe.ports) {
      const list = candidates.get(portKey(port)) ?? [];
      candidates.set(portKey(port), list.concat(port.endpoints));
    }
  }
  const programmed: Frontend[] = settings.unifiedName && group.local ? members : [...group.frontends];
  const chains: OwnedChain[] = [];
  const setRules: SetRule[] = [];
  const portals: Portal[] = [];
  const decisions: Decision[] = [];
  for (const fe of programmed) {
    for (const port of fe.ports) {
      const selection = selectByPolicy(candidates.get(portKey(port))!, settings, ctx.localCluster, ctx.health);
      const rules = servicePortRules(fe, port, selection.endpoints, ctx);
      chains.push(rules.chain);
      setRules.push(...rules.setRules);
      portals.push({ clusterIP: fe.clusterIP, port: port.port, protocol: port.protocol, chain: rules.chain.name, endpoints: selection.endpoints.map(endpointKey) });
      decisions.push(selection.decision);
    }
  }
  // Fragments are kept as applied for every group: without the spare capacity push leaves.
  return { fragment: { key: group.key, chains: exact(chains), setRules: exact(setRules), portals: exact(portals) }, settings, decision: combine(decisions), problems };
}

/** One verdict for the group: ports that disagree make it `mixed`. */
function combine(decisions: readonly Decision[]): Decision {
  const clusters = [...new Set(decisions.flatMap((d) => d.clusters))];
  const targets = new Set(decisions.map((d) => d.target));
  const target = targets.size === 0 ? 'none' : targets.size === 1 ? [...targets][0]! : 'mixed';
  return { clusters, target, failOpen: decisions.some((d) => d.failOpen) };
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

/**
 * `ip:port`. Built by join, which writes one flat string: a template literal
 * would keep a two-part cons string, twice the memory, for every endpoint of
 * every applied fragment.
 */
function endpointKey(e: { readonly ip: string; readonly port: number }): string {
  return [e.ip, e.port].join(':');
}
