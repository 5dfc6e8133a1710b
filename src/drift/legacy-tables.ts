// The legacy tables read in-process (native/xtables): one getsockopt copies a
// table's rules out of the kernel, as iptables-legacy does before printing
// them, but without starting a process or formatting text. What a drift check
// needs comes back: the built-in chains' rules (target and comment each) and
// a fingerprint of each of the agent's chains.

import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { addonPath } from '../nftables/native.js';
import type { IPFamily } from '../selection/selection.js';
import type { RuleHead } from './nft-rules.js';

export interface LegacySnapshot {
  /** Each built-in chain's rules in order, without its policy; handle is the position. */
  readonly builtins: ReadonlyMap<string, readonly RuleHead[]>;
  /** A fingerprint of each chain named with the prefix (counters left out, jumps by the name they reach). */
  readonly chains: ReadonlyMap<string, string>;
}

export interface LegacyTables {
  /** null when the table does not exist (it is never created by asking). */
  read(table: string): LegacySnapshot | null;
}

interface XtablesAddon {
  open(family?: 4 | 6): unknown;
  read(handle: unknown, table: string, prefix: string): { builtins: Record<string, { target?: string; comment?: string }[]>; chains: Record<string, string> } | null;
}

const ADDON_FILE = join('native', 'xtables', 'build', 'Release', 'xtables_legacy.node');

/** Over the xtables addon, in this process's network namespace (iptables' tables, or ip6tables' for ipv6); throws when it is not built. */
export function nativeLegacyTables(prefix: string, family: IPFamily = 'ipv4'): LegacyTables {
  const addon = createRequire(import.meta.url)(addonPath(ADDON_FILE)) as XtablesAddon;
  const handle = addon.open(family === 'ipv6' ? 6 : 4);
  const names = family === 'ipv6' ? '/proc/net/ip6_tables_names' : '/proc/net/ip_tables_names';
  // Asking the kernel about a table that is not there would create it: only tables it lists are read.
  const listed = (): Set<string> => {
    try {
      return new Set(readFileSync(names, 'utf8').split('\n').filter(Boolean));
    } catch {
      return new Set();
    }
  };
  return {
    read(table) {
      if (!listed().has(table)) return null;
      const raw = addon.read(handle, table, prefix);
      if (!raw) return null;
      return {
        builtins: new Map(Object.entries(raw.builtins).map(([chain, rules]) => [chain, rules.map((r, i) => ({ handle: i, ...r }))])),
        chains: new Map(Object.entries(raw.chains)),
      };
    },
  };
}
