// What explain shows in iptables mode: a group's chains and rules as
// iptables-save prints them, planned and as the kernel's tables hold them.

import type { GroupSelection } from '../selection/selection.js';
import type { GroupText, ServiceName } from '../sync/dataplane.js';
import { SET_CHAINS } from './layout.js';
import { TABLES, type Fragment, type Table } from './plan-types.js';
import { planFragment } from './planner.js';
import type { RuleContext } from './service-rules.js';
import { parseSave } from './save-format.js';

/** The group's planned rules and the kernel's; `dumps` is iptables-save text per table, null when unreadable. */
export function iptablesGroupText(selection: GroupSelection, services: readonly ServiceName[], dumps: ReadonlyMap<Table, string> | null, ctx: RuleContext): GroupText {
  const fragment = planFragment(selection, ctx);
  const planned = ruleLines(fragment);
  const kernel = dumps === null ? null : kernelRules(dumps, fragment, services);
  return { planned, kernel, inSync: kernel === null ? null : sameLines(planned, kernel) };
}

/** The fragment as iptables-save prints it: chain declarations, then rules, per table. */
function ruleLines(fragment: Fragment): string[] {
  const lines: string[] = [];
  for (const table of TABLES) {
    const chains = fragment.chains.filter((c) => c.table === table);
    const sets = fragment.setRules.filter((r) => r.table === table);
    if (chains.length === 0 && sets.length === 0) continue;
    lines.push(`*${table}`);
    for (const c of chains) lines.push(`:${c.name} - [0:0]`);
    for (const r of sets) lines.push(`-A ${r.chain} ${r.spec}`);
    for (const c of chains) for (const spec of c.rules) lines.push(`-A ${c.name} ${spec}`);
  }
  return lines;
}

/** What the kernel holds for the same chains, and the dispatch rules of the group's ClusterIPs. */
function kernelRules(dumps: ReadonlyMap<Table, string>, fragment: Fragment, services: readonly ServiceName[]): string[] {
  const lines: string[] = [];
  const comments = services.map((fe) => `--comment "${fe.namespace}/${fe.name}:`);
  const chainNames = new Set(fragment.chains.map((c) => c.name));
  for (const table of TABLES) {
    const saved = parseSave(dumps.get(table) ?? '').get(table)?.chains ?? new Map();
    const present = fragment.chains.filter((c) => c.table === table && saved.has(c.name));
    const ours = (spec: string) => comments.some((c) => spec.includes(c)) || [...chainNames].some((n) => spec.endsWith(`-j ${n}`));
    const dispatch = SET_CHAINS.filter((c) => c.table === table)
      .flatMap((c) => (saved.get(c.name)?.rules ?? []).filter(ours).map((spec: string) => `-A ${c.name} ${spec}`));
    if (present.length === 0 && dispatch.length === 0) continue;
    lines.push(`*${table}`);
    for (const c of present) lines.push(`:${c.name} - [0:0]`);
    lines.push(...dispatch);
    for (const c of present) for (const spec of saved.get(c.name)!.rules) lines.push(`-A ${c.name} ${spec}`);
  }
  return lines;
}

const DISPATCH_LINE = new Set(SET_CHAINS.map((c) => `-A ${c.name} `));

function isDispatchLine(line: string): boolean {
  const second = line.indexOf(' ', 3);
  return second !== -1 && DISPATCH_LINE.has(line.slice(0, second + 1));
}

/** Dispatch rules are a set (their order in a dispatch chain is irrelevant); chains are compared in order. */
function sameLines(a: readonly string[], b: readonly string[]): boolean {
  return [...a].sort().join('\n') === [...b].sort().join('\n') && a.filter((l) => !isDispatchLine(l)).join('\n') === b.filter((l) => !isDispatchLine(l)).join('\n');
}
