import { TABLES, type TableOps, type UnitChange } from './plan-types.js';
import { assertSafeChain, assertSafeSpec } from './safe-tokens.js';

/**
 * One iptables-restore --noflush payload for a batch of units. Per table:
 * declarations first (create or flush), then deletions of single rules, then
 * appends, then jumps inserted at position 1, then chain deletions, so that
 * every reference is valid at the point the kernel checks it.
 */
export function renderPayload(units: readonly UnitChange[]): string {
  const out: string[] = [];
  for (const table of TABLES) {
    const parts = units.map((u) => u.ops[table]);
    if (parts.every(isEmptyOps)) continue;
    out.push(`*${table}`);
    // Each name and spec passes the token guard (src/iptables/safe-tokens.ts) on its way out:
    // a value that could end its token throws UnsafeTokenError naming the unit, and nothing is emitted.
    parts.forEach((p, i) => {
      for (const chain of p.declare) out.push(`:${safeChain(units[i]!, chain)} - [0:0]`);
    });
    parts.forEach((p, i) => {
      for (const r of p.deleteRules) out.push(`-D ${safeChain(units[i]!, r.chain)} ${safeSpec(units[i]!, r.spec)}`);
    });
    parts.forEach((p, i) => {
      for (const r of p.appendRules) out.push(`-A ${safeChain(units[i]!, r.chain)} ${safeSpec(units[i]!, r.spec)}`);
    });
    parts.forEach((p, i) => {
      for (const r of p.insertFirst) out.push(`-I ${safeChain(units[i]!, r.chain)} 1 ${safeSpec(units[i]!, r.spec)}`);
    });
    parts.forEach((p, i) => {
      for (const chain of p.deleteChains) out.push(`-X ${safeChain(units[i]!, chain)}`);
    });
    out.push('COMMIT');
  }
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

function safeChain(unit: UnitChange, name: string): string {
  assertSafeChain(unit.key, name);
  return name;
}

function safeSpec(unit: UnitChange, spec: string): string {
  assertSafeSpec(unit.key, spec);
  return spec;
}

function isEmptyOps(ops: TableOps): boolean {
  return ops.declare.length + ops.deleteRules.length + ops.appendRules.length + ops.insertFirst.length + ops.deleteChains.length === 0;
}

/**
 * Splits units, in order, into batches declaring at most `maxChains` chains
 * each (a unit larger than that goes alone). iptables-nft-restore's cost grows
 * super-linearly with the chains of one payload, so a cold start of thousands
 * of services is cheaper as several bounded restores.
 */
export function batchUnits(units: readonly UnitChange[], maxChains: number): UnitChange[][] {
  const batches: UnitChange[][] = [];
  let current: UnitChange[] = [];
  let chains = 0;
  for (const u of units) {
    if (current.length > 0 && chains + u.chainCount > maxChains) {
      batches.push(current);
      current = [];
      chains = 0;
    }
    current.push(u);
    chains += u.chainCount;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

/**
 * The unit that wrote 1-based line `line` of renderPayload(units), or null
 * for a table header, a COMMIT or a line past the end. Walks the sections in
 * renderPayload's order, counting instead of rendering: it turns the line a
 * refused restore blames into the group to blame.
 */
export function unitAtLine(units: readonly UnitChange[], line: number): UnitChange | null {
  let at = 0;
  for (const table of TABLES) {
    const parts = units.map((u) => u.ops[table]);
    if (parts.every(isEmptyOps)) continue;
    at++; // *table
    if (line <= at) return null;
    for (const pick of SECTION_ORDER) {
      for (let i = 0; i < parts.length; i++) {
        at += pick(parts[i]!).length;
        if (line <= at) return units[i]!;
      }
    }
    at++; // COMMIT
    if (line <= at) return null;
  }
  return null;
}

/** The lists of one table's operations in the order renderPayload writes them. */
const SECTION_ORDER: readonly ((ops: TableOps) => readonly unknown[])[] = [
  (o) => o.declare, (o) => o.deleteRules, (o) => o.appendRules, (o) => o.insertFirst, (o) => o.deleteChains,
];
