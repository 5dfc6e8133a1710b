// The desired data plane as plain values. Rule specs are stored in the exact
// canonical form `iptables-save` prints (without the leading "-A CHAIN "), so
// a plan read back from the kernel compares equal to the plan that wrote it.

export type Table = 'nat' | 'filter';
export const TABLES: readonly Table[] = ['nat', 'filter'];

/** A chain the agent owns whole: any difference rewrites it entirely. */
export interface OwnedChain {
  readonly table: Table;
  readonly name: string;
  readonly rules: readonly string[];
}

/**
 * A rule in a shared owned chain whose rules are independent of order
 * (the dispatch chains): added and deleted one by one, never rewritten.
 */
export interface SetRule {
  readonly table: Table;
  readonly chain: string;
  readonly spec: string;
}

/** A jump from a built-in chain into an owned chain, kept at position 1. */
export interface Jump {
  readonly table: Table;
  readonly chain: string;
  readonly spec: string;
}

/** Everything one unit (a service group, or the fixed skeleton) contributes. */
export interface Fragment {
  readonly key: string;
  readonly chains: readonly OwnedChain[];
  readonly setRules: readonly SetRule[];
}

export interface ChainRef {
  readonly table: Table;
  readonly name: string;
}

export interface Plan {
  /** Dispatch chains holding SetRules: created when absent, never flushed. */
  readonly setChains: readonly ChainRef[];
  /** Chains every other piece relies on; created first, deleted last. */
  readonly skeleton: Fragment;
  /** Per service group, keyed by Fragment.key. */
  readonly fragments: ReadonlyMap<string, Fragment>;
  readonly jumps: readonly Jump[];
}

/** Operations on one table, applied atomically by one restore section. */
export interface TableOps {
  /** Chains declared in the payload: created if new, flushed if present. */
  readonly declare: string[];
  readonly deleteRules: { chain: string; spec: string }[];
  readonly appendRules: { chain: string; spec: string }[];
  /** Jumps (re)inserted at position 1 of a built-in chain. */
  readonly insertFirst: { chain: string; spec: string }[];
  readonly deleteChains: string[];
}

/** The change of one unit; units can be batched into restores independently. */
export interface UnitChange {
  readonly key: string;
  readonly ops: Readonly<Record<Table, TableOps>>;
  /** Number of chains this unit declares: the cost driver of nft restores. */
  readonly chainCount: number;
}

export interface Transaction {
  readonly units: readonly UnitChange[];
}

export const SKELETON_KEY = '';

export function emptyTableOps(): TableOps {
  return { declare: [], deleteRules: [], appendRules: [], insertFirst: [], deleteChains: [] };
}

export function chainKey(table: Table, name: string): string {
  return `${table}/${name}`;
}
