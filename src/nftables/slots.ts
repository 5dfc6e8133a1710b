// Weights as slot counts, Maglev-style: each endpoint gets a share of the
// SLOTS slots proportional to its weight (largest remainder, so the counts
// are exact at a granularity of 1/SLOTS), and claims its slots along its own
// pseudo-random permutation of the table, taking turns with the others. The
// result depends only on the endpoints and their weights, and one endpoint
// coming or going moves few slots besides its own.

import { SLOTS } from './layout.js';

export interface SlotEndpoint {
  /** `ip:port`: the endpoint's identity and the hash input. */
  readonly id: string;
  readonly weight: number;
}

function fnv1a(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Slot counts by largest remainder; ties go to the endpoint first in order. */
export function slotCounts(endpoints: readonly SlotEndpoint[], slots = SLOTS): number[] {
  const total = endpoints.reduce((sum, ep) => sum + Math.max(0, ep.weight), 0);
  if (total <= 0) return endpoints.map(() => 0);
  const exact = endpoints.map((ep) => (Math.max(0, ep.weight) / total) * slots);
  const counts = exact.map(Math.floor);
  let left = slots - counts.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => ({ i, rest: x - Math.floor(x) })).sort((a, b) => b.rest - a.rest || a.i - b.i);
  for (const { i } of order) {
    if (left === 0) break;
    counts[i]!++;
    left--;
  }
  return counts;
}

/**
 * The endpoint id of every slot, or [] when no endpoint has weight. Each
 * endpoint walks offset, offset+skip, ... (skip odd, so the walk visits all
 * SLOTS slots) and takes the next free one until its count is reached.
 */
export function assignSlots(endpoints: readonly SlotEndpoint[], slots = SLOTS): string[] {
  const counts = slotCounts(endpoints, slots);
  if (counts.every((c) => c === 0)) return [];
  const table: (string | undefined)[] = new Array(slots).fill(undefined);
  const walkers = endpoints.map((ep, i) => ({
    id: ep.id,
    left: counts[i]!,
    next: fnv1a(ep.id, 0) % slots,
    skip: ((fnv1a(ep.id, 0x9e3779b9) % (slots / 2)) * 2 + 1) % slots || 1,
  }));
  let filled = 0;
  while (filled < slots) {
    for (const w of walkers) {
      if (w.left === 0) continue;
      while (table[w.next] !== undefined) w.next = (w.next + w.skip) % slots;
      table[w.next] = w.id;
      w.next = (w.next + w.skip) % slots;
      w.left--;
      filled++;
    }
  }
  return table as string[];
}
