// nft text of a table's skeleton: the script `nft -f` applies (declarations,
// then each chain flushed and refilled in one transaction, so the maps keep
// their elements); --dry-run prints it before the element commands.

import { commentText, priorityText, TABLE, type ChainSpec, type SetSpec, type Skeleton } from './layout.js';

const q = (text: string) => `"${commentText(text)}"`;

function setLines(s: SetSpec): string[] {
  return [`\t${s.data.length > 0 ? 'map' : 'set'} ${s.name} {`, `\t\t${s.declaration}`, `\t\tcomment ${q(s.comment)}`, '\t}'];
}

function chainHeader(c: ChainSpec): string[] {
  const lines = [`\t\tcomment ${q(c.comment)}`];
  if (c.type && c.hook && c.priority !== undefined) lines.push(`\t\ttype ${c.type} hook ${c.hook} priority ${priorityText({ type: c.type, hook: c.hook, priority: c.priority })}; policy accept;`);
  return lines;
}

/** A chain's declaration without its rules (they follow, after the flush). */
function chainLines(c: ChainSpec): string[] {
  return [`\tchain ${c.name} {`, ...chainHeader(c), '\t}'];
}

/**
 * What `nft -f` applies to write or repair the skeleton; existing elements
 * stay. nft sets the table's flags from the script: `dormant` creates the
 * table (or keeps it) unhooked, and a script without it wakes the table.
 */
export function renderSkeletonScript(s: Skeleton, dormant = false): string {
  const family = s.family.name;
  // Every table block of the script sets the flags, the second one too.
  const flags = dormant ? ['	flags dormant'] : [];
  const lines = [`table ${family} ${TABLE} {`, ...flags, `	comment ${q(s.comment)}`];
  for (const set of s.sets) lines.push(...setLines(set));
  for (const c of s.chains) lines.push(...chainLines(c));
  lines.push('}');
  for (const c of s.chains) lines.push(`flush chain ${family} ${TABLE} ${c.name}`);
  lines.push(`table ${family} ${TABLE} {`, ...flags);
  for (const c of s.chains) lines.push(`\tchain ${c.name} {`, ...c.rules.map((r) => `\t\t${r}`), '\t}');
  lines.push('}');
  return lines.join('\n') + '\n';
}
