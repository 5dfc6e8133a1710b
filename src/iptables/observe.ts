import { CHAIN_PREFIX, SET_CHAINS } from './layout.js';
import { jumpTarget } from './save-format.js';
import {
  chainKey, SKELETON_KEY, TABLES,
  type ChainRef, type Fragment, type Jump, type OwnedChain, type Plan, type SetRule, type Table,
} from './plan-types.js';

/** The rules of one table as iptables-save lists them, chain by chain, in order. */
export type TableDump = ReadonlyMap<string, { readonly rules: readonly string[] }>;

export interface ObservedState {
  /** What the kernel holds, shaped like a plan and keyed like `desired` so the two diff unit by unit. */
  readonly plan: Plan;
  /** Our jumps that are misplaced (behind a KUBE- jump) or duplicated: deleted, then re-inserted first. */
  readonly strayJumps: readonly Jump[];
  readonly ownedChains: number;
  readonly ownedRules: number;
}

const STALE = '~stale:';

/** The key of the fragment holding an owned chain no desired fragment owns, with the dispatch rules jumping to it. */
export function staleKey(table: Table, chain: string): string {
  return `${STALE}${chainKey(table, chain)}`;
}

const BUILTIN = new Set(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']);

/**
 * Reads the agent's state out of iptables-save dumps. Only chains carrying
 * the MCS- prefix and jumps into them are looked at; everything else in the
 * tables belongs to someone else. Chains and dispatch rules are assigned to
 * the fragment of `desired` that owns them by name or spec; what no fragment
 * owns becomes a stale fragment of its own, which the diff then deletes.
 */
export function observe(dumps: ReadonlyMap<Table, TableDump>, desired: Plan): ObservedState {
  const owner = new Map<string, string>();
  const own = (f: Fragment) => {
    for (const c of f.chains) owner.set(chainKey(c.table, c.name), f.key);
    for (const r of f.setRules) owner.set(`${chainKey(r.table, r.chain)}\0${r.spec}`, f.key);
  };
  own(desired.skeleton);
  for (const f of desired.fragments.values()) own(f);
  const setChainIds = new Set(SET_CHAINS.map((c) => chainKey(c.table, c.name)));
  const wantedJumps = new Set(desired.jumps.map((j) => `${chainKey(j.table, j.chain)}\0${j.spec}`));

  const fragments = new Map<string, { chains: OwnedChain[]; setRules: SetRule[] }>();
  const fragment = (key: string) => {
    let f = fragments.get(key);
    if (!f) fragments.set(key, (f = { chains: [], setRules: [] }));
    return f;
  };
  const setChains: ChainRef[] = [];
  const jumps: Jump[] = [];
  const strayJumps: Jump[] = [];
  let ownedChains = 0;
  let ownedRules = 0;

  for (const table of TABLES) {
    const dump = dumps.get(table);
    if (!dump) continue;
    for (const [name, { rules }] of dump) {
      if (BUILTIN.has(name)) {
        collectJumps(table, name, rules, wantedJumps, jumps, strayJumps);
        continue;
      }
      if (!name.startsWith(CHAIN_PREFIX)) continue;
      ownedChains++;
      ownedRules += rules.length;
      const id = chainKey(table, name);
      if (setChainIds.has(id)) {
        setChains.push({ table, name });
        for (const spec of rules) {
          // A rule nobody wants goes with the chain it jumps to, so both leave in one restore.
          const target = jumpTarget(spec);
          const targetId = target?.startsWith(CHAIN_PREFIX) ? chainKey(table, target) : null;
          const key = owner.get(`${id}\0${spec}`)
            ?? (targetId !== null ? owner.get(targetId) ?? `${STALE}${targetId}` : `${STALE}${id}\0${spec}`);
          fragment(key).setRules.push({ table, chain: name, spec });
        }
        continue;
      }
      fragment(owner.get(id) ?? staleKey(table, name)).chains.push({ table, name, rules });
    }
  }

  const skeleton = fragments.get(SKELETON_KEY) ?? { chains: [], setRules: [] };
  fragments.delete(SKELETON_KEY);
  const plan: Plan = {
    setChains,
    skeleton: { key: SKELETON_KEY, ...skeleton },
    fragments: new Map([...fragments].map(([key, f]) => [key, { key, ...f }])),
    jumps,
  };
  return { plan, strayJumps, ownedChains, ownedRules };
}

/**
 * A jump is in place when it is the only copy and no KUBE- jump precedes it:
 * the agent's decision must win for the ClusterIPs it owns.
 */
function collectJumps(table: Table, chain: string, rules: readonly string[], wanted: Set<string>, jumps: Jump[], stray: Jump[]): void {
  const ours = rules
    .map((spec, position) => ({ spec, position, target: jumpTarget(spec) }))
    .filter((r) => r.target?.startsWith(CHAIN_PREFIX));
  if (ours.length === 0) return;
  const firstKube = rules.findIndex((spec) => jumpTarget(spec)?.startsWith('KUBE-'));
  const counts = new Map<string, number>();
  for (const r of ours) counts.set(r.spec, (counts.get(r.spec) ?? 0) + 1);
  for (const r of ours) {
    const inPlace = wanted.has(`${chainKey(table, chain)}\0${r.spec}`)
      && counts.get(r.spec) === 1
      && (firstKube === -1 || r.position < firstKube);
    (inPlace ? jumps : stray).push({ table, chain, spec: r.spec });
  }
}
