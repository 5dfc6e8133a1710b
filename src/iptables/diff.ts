import {
  chainKey, emptyTableOps, SKELETON_KEY,
  type Fragment, type Jump, type Plan, type SetRule, type Table, type TableOps, type Transaction, type UnitChange,
} from './plan-types.js';

/** Unit that removes the skeleton; it must run after every fragment's removal. */
export const TEARDOWN_KEY = '~teardown';

type Ops = Record<Table, TableOps>;

function newOps(): Ops {
  return { nat: emptyTableOps(), filter: emptyTableOps() };
}

function isEmpty(ops: Ops): boolean {
  return Object.values(ops).every((t) => Object.values(t).every((list: unknown[]) => list.length === 0));
}

function sameRules(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((rule, i) => rule === b[i]);
}

function ruleId(r: SetRule | Jump): string {
  return `${r.table}\0${r.chain}\0${r.spec}`;
}

function unit(key: string, ops: Ops, chainCount: number): UnitChange | null {
  return isEmpty(ops) ? null : { key, ops, chainCount };
}

/**
 * The change that turns one fragment into another: changed chains are
 * re-declared (flushed) and rewritten whole, removed chains flushed and
 * deleted, dispatch rules added or deleted one by one. Hot path: its cost is
 * proportional to the two fragments only.
 */
export function diffFragment(key: string, prev: Fragment | undefined, next: Fragment | undefined): UnitChange | null {
  const ops = newOps();
  let chainCount = 0;
  const gone = new Map((prev?.chains ?? []).map((c) => [chainKey(c.table, c.name), c]));
  for (const chain of next?.chains ?? []) {
    const id = chainKey(chain.table, chain.name);
    const old = gone.get(id);
    gone.delete(id);
    if (old && sameRules(old.rules, chain.rules)) continue;
    const t = ops[chain.table];
    t.declare.push(chain.name);
    for (const spec of chain.rules) t.appendRules.push({ chain: chain.name, spec });
    chainCount++;
  }
  for (const chain of gone.values()) {
    ops[chain.table].declare.push(chain.name);
    ops[chain.table].deleteChains.push(chain.name);
    chainCount++;
  }
  const before = new Set((prev?.setRules ?? []).map(ruleId));
  const after = new Set((next?.setRules ?? []).map(ruleId));
  for (const r of prev?.setRules ?? []) if (!after.has(ruleId(r))) ops[r.table].deleteRules.push({ chain: r.chain, spec: r.spec });
  for (const r of next?.setRules ?? []) if (!before.has(ruleId(r))) ops[r.table].appendRules.push({ chain: r.chain, spec: r.spec });
  return unit(key, ops, chainCount);
}

/**
 * The whole change from `prev` (the last applied plan, or the kernel's state
 * read back) to `next`. `strayJumps` are jumps found misplaced or duplicated
 * in built-in chains: deleted, and re-inserted first when wanted.
 */
export function diffPlans(prev: Plan, next: Plan, strayJumps: readonly Jump[] = []): Transaction {
  const setup = newOps();
  const teardown = newOps();
  const had = new Set(prev.setChains.map((c) => chainKey(c.table, c.name)));
  const wants = new Set(next.setChains.map((c) => chainKey(c.table, c.name)));
  for (const c of next.setChains) if (!had.has(chainKey(c.table, c.name))) setup[c.table].declare.push(c.name);
  // Removed set chains are emptied by the fragments' rule deletions, so they are not re-declared.
  for (const c of prev.setChains) if (!wants.has(chainKey(c.table, c.name))) teardown[c.table].deleteChains.push(c.name);

  const prevJumps = new Set(prev.jumps.map(ruleId));
  const nextJumps = new Set(next.jumps.map(ruleId));
  // Strays go with the re-insertion, in the same restore: -D removes the first match.
  for (const j of strayJumps) setup[j.table].deleteRules.push({ chain: j.chain, spec: j.spec });
  for (const j of prev.jumps) if (!nextJumps.has(ruleId(j))) teardown[j.table].deleteRules.push({ chain: j.chain, spec: j.spec });
  for (const j of next.jumps) if (!prevJumps.has(ruleId(j))) setup[j.table].insertFirst.push({ chain: j.chain, spec: j.spec });

  // Skeleton chains are created in the first unit and deleted in the last.
  const skeleton = diffFragment(SKELETON_KEY, prev.skeleton, next.skeleton);
  for (const table of ['nat', 'filter'] as const) {
    const s = skeleton?.ops[table];
    if (!s) continue;
    const removed = new Set(s.deleteChains);
    setup[table].declare.push(...s.declare.filter((c) => !removed.has(c)));
    setup[table].appendRules.push(...s.appendRules);
    teardown[table].declare.push(...s.declare.filter((c) => removed.has(c)));
    teardown[table].deleteChains.push(...s.deleteChains);
  }

  const units: UnitChange[] = [];
  const declared = (ops: Ops) => ops.nat.declare.length + ops.filter.declare.length;
  const first = unit(SKELETON_KEY, setup, declared(setup));
  if (first) units.push(first);
  const keys = new Set([...prev.fragments.keys(), ...next.fragments.keys()]);
  for (const key of keys) {
    const change = diffFragment(key, prev.fragments.get(key), next.fragments.get(key));
    if (change) units.push(change);
  }
  const last = unit(TEARDOWN_KEY, teardown, declared(teardown));
  if (last) units.push(last);
  return { units };
}
