// The ipset of dispatched frontends (MCS-FRONTENDS, hash:ip,port; for IPv6
// MCS-FRONTENDS6, family inet6, beside it in the same namespace). The jumps
// into MCS-SERVICES match it, so a connection to anything but a frontend costs
// one hashed lookup. Its members follow the nat dispatch rules: one member per
// rule, derived from the rule itself, so whatever holds the rules (a plan, the
// kernel read back, an adopted group) says which members it needs.
//
// Ordering keeps the set a superset of what the rules dispatch: the set is
// created and members added before the restore that adds their rules, and
// members are deleted (and the set destroyed) only after the restore that
// removed their rules succeeded. A member without a rule costs a walk of one
// bucket; a rule without its member would never be reached.

import type { IPFamily } from '../selection/selection.js';
import { BUCKET_CHAIN_PREFIX, frontendSetOf } from './layout.js';
import type { Fragment, Plan, SetRule } from './plan-types.js';

/** `ip,proto:port` (as ipset prints it) -> the rule's `namespace/name:port` comment. */
export type Members = ReadonlyMap<string, string>;

/** What one transaction does to the set, around its restores. */
export interface SetChange {
  /** Create the set (when absent) before anything else. */
  readonly create: boolean;
  /** Added before the first restore. */
  readonly add: Members;
  /** Deleted after the last restore succeeded. */
  readonly del: readonly string[];
  /** Destroy the set after the last restore succeeded (nothing references it any more). */
  readonly destroy: boolean;
}

export const NO_SET_CHANGE: SetChange = { create: false, add: new Map(), del: [], destroy: false };

// maxelem: ipset's default (65536) is below the service ports a large cluster has.
function createLine(family: IPFamily): string {
  return `create ${frontendSetOf(family)} hash:ip,port family ${family === 'ipv6' ? 'inet6' : 'inet'} hashsize 1024 maxelem 1048576 comment`;
}

// A host address of either family: one data plane's rules are all of its own family.
const DISPATCH = /^-d ([0-9a-f.:]+)\/(?:32|128) -p (tcp|udp|sctp) -m comment --comment "([^"]*) cluster(?:set)? IP" -m \2 --dport (\d+) -j /;

/** The member a nat dispatch rule needs, or null for any other rule. */
export function dispatchMember(rule: SetRule): [entry: string, comment: string] | null {
  if (rule.table !== 'nat' || !rule.chain.startsWith(BUCKET_CHAIN_PREFIX)) return null;
  const m = DISPATCH.exec(rule.spec);
  return m ? [`${m[1]},${m[2]}:${m[4]}`, m[3]!] : null;
}

export function fragmentMembers(fragment: Fragment | undefined, into = new Map<string, string>()): Map<string, string> {
  for (const r of fragment?.setRules ?? []) {
    const member = dispatchMember(r);
    if (member) into.set(member[0], member[1]);
  }
  return into;
}

export function planMembers(plan: Plan): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of plan.fragments.values()) fragmentMembers(f, out);
  return out;
}

/** A plan that jumps anywhere needs the set (the jumps match it). */
export function needsSet(plan: Plan): boolean {
  return plan.jumps.length > 0;
}

/** From what the kernel holds (null: no set) to what `next` needs. */
export function diffSet(kernel: Members | null, next: Plan): SetChange {
  const want = planMembers(next);
  if (!needsSet(next)) {
    return { create: false, add: new Map(), del: [], destroy: kernel !== null };
  }
  const add = new Map([...want].filter(([entry]) => !kernel?.has(entry)));
  const del = kernel === null ? [] : [...kernel.keys()].filter((entry) => !want.has(entry));
  return { create: kernel === null, add, del, destroy: false };
}

/** One group's change: the members its dispatch rules gain and lose. */
export function diffGroupMembers(prev: Fragment | undefined, next: Fragment | undefined): SetChange {
  const before = fragmentMembers(prev);
  const after = fragmentMembers(next);
  const add = new Map([...after].filter(([entry]) => !before.has(entry)));
  const del = [...before.keys()].filter((entry) => !after.has(entry));
  return add.size === 0 && del.length === 0 ? NO_SET_CHANGE : { create: false, add, del, destroy: false };
}

/** Several changes as one: a member added by one part is not deleted by another. */
export function mergeSetChanges(parts: readonly SetChange[]): SetChange {
  if (parts.every((p) => p === NO_SET_CHANGE)) return NO_SET_CHANGE;
  const add = new Map<string, string>();
  for (const p of parts) for (const [entry, comment] of p.add) add.set(entry, comment);
  const del = new Set<string>();
  for (const p of parts) for (const entry of p.del) if (!add.has(entry)) del.add(entry);
  return {
    create: parts.some((p) => p.create),
    add,
    del: [...del],
    destroy: parts.some((p) => p.destroy) && !parts.some((p) => p.create || p.add.size > 0),
  };
}

const SAFE_ENTRY: Readonly<Record<IPFamily, RegExp>> = {
  ipv4: /^\d+\.\d+\.\d+\.\d+,(tcp|udp|sctp):\d+$/,
  ipv6: /^[0-9a-f]*:[0-9a-f.:]*,(tcp|udp|sctp):\d+$/,
};
const SAFE_COMMENT = /^[A-Za-z0-9_./:-]{1,255}$/;

/** An entry of the family's set, or an error: ipset restore reads one command per line, so no member may carry another. */
function safeEntry(entry: string, family: IPFamily): string {
  if (!SAFE_ENTRY[family].test(entry)) throw new Error(`refusing ${family} ipset member ${JSON.stringify(entry)}`);
  return entry;
}

function addLine(entry: string, comment: string, family: IPFamily): string {
  if (!SAFE_COMMENT.test(comment)) throw new Error(`refusing ipset member ${JSON.stringify(entry)} (${JSON.stringify(comment)})`);
  return `add ${frontendSetOf(family)} ${safeEntry(entry, family)} comment "${comment}"`;
}

/** The `ipset restore -exist` payload run before the restores, for the family's set; '' when there is nothing to do. */
export function renderSetBefore(change: SetChange, family: IPFamily): string {
  const lines: string[] = [];
  if (change.create || change.add.size > 0) lines.push(createLine(family));
  for (const [entry, comment] of change.add) lines.push(addLine(entry, comment, family));
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/** The `ipset restore -exist` payload run after the restores succeeded, for the family's set; '' when there is nothing to do. */
export function renderSetAfter(change: SetChange, family: IPFamily): string {
  const name = frontendSetOf(family);
  const lines: string[] = [];
  if (change.destroy) lines.push(`destroy ${name}`);
  else for (const entry of change.del) lines.push(`del ${name} ${safeEntry(entry, family)}`);
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/** The members of `ipset save` output of the family's set. */
export function parseSetSave(text: string, family: IPFamily): Map<string, string> {
  const out = new Map<string, string>();
  const prefix = `add ${frontendSetOf(family)} `;
  for (const line of text.split('\n')) {
    if (!line.startsWith(prefix)) continue;
    const rest = line.slice(prefix.length);
    const space = rest.indexOf(' ');
    const entry = space === -1 ? rest : rest.slice(0, space);
    const comment = /comment "([^"]*)"/.exec(rest)?.[1] ?? '';
    out.set(entry, comment);
  }
  return out;
}
