// The built-in chains holding the agent's jumps, read and reordered in-process
// for iptables-nft: the nftables addon dumps one chain's rules on its netlink
// socket (no process, no whole-table cache) and moves a rule first with one
// nf_tables transaction (a copy inserted at the head, the original deleted).
// A rule is recognised as one of the agent's jumps by what iptables-nft
// stores for `-m comment --comment C -j TARGET`: its jump target and the
// comment match's text.

import { loadAddon } from '../nftables/native.js';
import { jumpTarget } from '../iptables/save-format.js';
import type { Jump } from '../iptables/plan-types.js';
import type { IPFamily } from '../selection/selection.js';
import { chainId, type JumpFinding } from './kernel-check.js';

/** One rule of a chain, as far as a drift check looks at it. */
export interface RuleHead {
  readonly handle: number;
  /** The chain it jumps or goes to, an xtables target (DNAT...), or a verdict (ACCEPT, RETURN...). */
  readonly target?: string;
  readonly comment?: string;
}

export interface InProcessJumps {
  /** The netlink port the moves commit through (the watch counts its generations as the agent's own). */
  readonly portid: number;
  /** The rules of a chain in order; empty when the table or chain does not exist. */
  rules(table: string, chain: string): RuleHead[];
  /** One transaction: a copy of rule `keep` first in its chain, `keep` and `drop` deleted; throws (changing nothing) when one is gone. */
  moveFirst(table: string, chain: string, keep: number, drop: readonly number[]): void;
}

/** iptables' tables live in nf_tables family ip (NFPROTO_IPV4), ip6tables' in ip6 (NFPROTO_IPV6). */
const NFPROTO: Record<IPFamily, number> = { ipv4: 2, ipv6: 10 };

/** Over the nftables addon; throws when it is not built. Inside `netns` when set (tests, benchmarks). */
export function nativeJumps(netns?: string, family: IPFamily = 'ipv4'): InProcessJumps {
  const addon = loadAddon();
  const handle = addon.open(netns ? `/var/run/netns/${netns}` : undefined);
  const nfproto = NFPROTO[family];
  return {
    portid: addon.portid(handle),
    rules: (table, chain) => addon.chainRules(handle, nfproto, table, chain),
    moveFirst: (table, chain, keep, drop) => addon.moveFirst(handle, nfproto, table, chain, keep, [...drop]),
  };
}

function commentOf(spec: string): string | undefined {
  return /--comment "([^"]*)"/.exec(spec)?.[1];
}

/** Whether a rule read over netlink is `jump` (same target, same comment). */
export function isJump(rule: RuleHead, jump: Jump): boolean {
  return rule.target !== undefined && rule.target === jumpTarget(jump.spec) && rule.comment === commentOf(jump.spec);
}

/**
 * The rules of chain `table/chain` as the jump assessment reads them: our
 * jump of that chain as its spec, any other rule as a spec of its comment and
 * target (only its target matters there: a KUBE- jump ahead of ours, or a
 * foreign copy of our jump).
 */
export function specsOf(table: string, chain: string, rules: readonly RuleHead[], jumps: readonly Jump[]): string[] {
  const here = jumps.filter((j) => j.table === table && j.chain === chain);
  return rules.map((r) => {
    const ours = here.find((j) => isJump(r, j));
    if (ours) return ours.spec;
    const comment = r.comment === undefined ? '' : `-m comment --comment ${JSON.stringify(r.comment)} `;
    return `${comment}-j ${r.target ?? `(rule ${r.handle})`}`;
  });
}

/** A move that puts one jump first again: the rule to copy first, and its other copies to delete. */
export interface JumpMove {
  readonly table: string;
  readonly chain: string;
  readonly keep: number;
  readonly drop: readonly number[];
}

/**
 * The moves that repair `findings`, or null when one cannot be repaired by a
 * move (a jump that is gone must be written anew). Every other rule jumping
 * to the same target in that chain (a duplicate, a changed copy) goes.
 */
export function jumpMoves(findings: readonly JumpFinding[], read: ReadonlyMap<string, readonly RuleHead[]>, jumps: readonly Jump[]): JumpMove[] | null {
  const moves: JumpMove[] = [];
  for (const f of findings) {
    const rules = read.get(chainId(f.table, f.chain)) ?? [];
    const jump = jumps.find((j) => j.table === f.table && j.chain === f.chain && j.spec === f.spec)!;
    const keep = rules.find((r) => isJump(r, jump));
    if (f.cause !== 'jump_order' || !keep) return null;
    const target = jumpTarget(jump.spec);
    moves.push({ table: f.table, chain: f.chain, keep: keep.handle, drop: rules.filter((r) => r !== keep && r.target === target).map((r) => r.handle) });
  }
  return moves;
}
