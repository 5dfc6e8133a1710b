// nft text of the table: the skeleton script `nft -f` applies (declarations,
// then each chain flushed and refilled in one transaction, so the maps keep
// their elements), and the whole table as `nft list table` shows it, for
// --dry-run and explain.

import { commentText, FAMILY, priorityText, TABLE, type ChainSpec, type SetSpec, type Skeleton } from './layout.js';
import type { Element } from './plan.js';

const q = (text: string) => `"${commentText(text)}"`;

function setLines(s: SetSpec, elements: readonly Element[] | null): string[] {
  const lines = [`\t${s.data.length > 0 ? 'map' : 'set'} ${s.name} {`, `\t\t${s.declaration}`, `\t\tcomment ${q(s.comment)}`];
  if (elements && elements.length > 0) {
    const indent = '\t\t\t     ';
    const items = elements.map((e) => `${e.key}${e.comment ? ` comment ${q(e.comment)}` : ''}${e.data !== undefined ? ` : ${e.data}` : ''}`);
    lines.push(`\t\telements = { ${items.join(`,\n${indent}`)} }`);
  }
  lines.push('\t}');
  return lines;
}

function chainHeader(c: ChainSpec): string[] {
  const lines = [`\t\tcomment ${q(c.comment)}`];
  if (c.type && c.hook && c.priority !== undefined) lines.push(`\t\ttype ${c.type} hook ${c.hook} priority ${priorityText({ type: c.type, hook: c.hook, priority: c.priority })}; policy accept;`);
  return lines;
}

function chainLines(c: ChainSpec, withRules: boolean): string[] {
  return [`\tchain ${c.name} {`, ...chainHeader(c), ...(withRules ? c.rules.map((r) => `\t\t${r}`) : []), '\t}'];
}

/**
 * What `nft -f` applies to write or repair the skeleton; existing elements
 * stay. nft sets the table's flags from the script: `dormant` creates the
 * table (or keeps it) unhooked, and a script without it wakes the table.
 */
export function renderSkeletonScript(s: Skeleton, dormant = false): string {
  // Every table block of the script sets the flags, the second one too.
  const flags = dormant ? ['\tflags dormant'] : [];
  const lines = [`table ${FAMILY} ${TABLE} {`, ...flags, `\tcomment ${q(s.comment)}`];
  for (const set of s.sets) lines.push(...setLines(set, null));
  for (const c of s.chains) lines.push(...chainLines(c, false));
  lines.push('}');
  for (const c of s.chains) lines.push(`flush chain ${FAMILY} ${TABLE} ${c.name}`);
  lines.push(`table ${FAMILY} ${TABLE} {`, ...flags);
  for (const c of s.chains) lines.push(`\tchain ${c.name} {`, ...c.rules.map((r) => `\t\t${r}`), '\t}');
  lines.push('}');
  return lines.join('\n') + '\n';
}

/** The table as `nft list table ip clusterset-proxy` prints it, elements sorted. */
export function renderTable(s: Skeleton, elements: Iterable<Element>): string {
  const bySet = new Map<string, Element[]>();
  for (const e of elements) {
    let list = bySet.get(e.set);
    if (!list) bySet.set(e.set, (list = []));
    list.push(e);
  }
  const blocks: string[][] = [];
  for (const set of s.sets) blocks.push(setLines(set, (bySet.get(set.name) ?? []).sort(compareElements)));
  for (const c of s.chains) blocks.push(chainLines(c, true));
  return [`table ${FAMILY} ${TABLE} {`, `\tcomment ${q(s.comment)}`, blocks.map((b) => b.join('\n')).join('\n\n'), '}'].join('\n') + '\n';
}

const NUMERIC = new Intl.Collator('en', { numeric: true });

function compareElements(a: Element, b: Element): number {
  return NUMERIC.compare(a.key, b.key);
}
