import type { IPFamily } from '../selection/selection.js';
import type { Table } from './plan-types.js';

export type BackendMode = 'nft' | 'legacy';

/**
 * What the sync engine needs from iptables. The real implementation runs
 * iptables-restore/iptables-save; the fake keeps tables in memory with the
 * same semantics (atomic per table, line-numbered errors).
 */
export interface IptablesBackend {
  readonly mode: BackendMode;
  /** iptables (IPv4, when absent) or ip6tables (IPv6). */
  readonly family?: IPFamily;
  /** Applies a restore payload with --noflush; all-or-nothing per table. */
  restore(payload: string): Promise<void>;
  /** The iptables-save text of one table. */
  save(table: Table): Promise<string>;
  /** Applies an `ipset restore -exist` payload (the agent's own sets only); throws when ipset refuses it. */
  restoreSets(payload: string): Promise<void>;
  /** `ipset save NAME`, or null when no such set exists. */
  saveSet(name: string): Promise<string | null>;
}

/**
 * iptables gave up waiting for the xtables lock that another writer (kube-proxy,
 * another agent) held: nothing was applied, and the payload is not at fault, so
 * no group is to blame. The sync fails and is retried.
 */
export class LockTimeoutError extends Error {
  constructor(message: string, readonly stderr: string) {
    super(message);
    this.name = 'LockTimeoutError';
  }
}

/** A restore the kernel (or fake) refused; nothing of the failing table was applied. */
export class RestoreError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
    /** 1-based line of the payload the backend blamed, when it said. */
    readonly line: number | undefined,
  ) {
    super(message);
    this.name = 'RestoreError';
  }
}

/** A backend that takes every payload and holds nothing: for planning and rendering alone (dry run, offline explain). */
export function planOnlyBackend(family: IPFamily): IptablesBackend {
  return { mode: 'nft', family, restore: async () => {}, save: async () => '', restoreSets: async () => {}, saveSet: async () => null };
}
