// Last applied (or observed) elements against desired ones → one element
// batch: deletions first, then additions. A changed element (new endpoint in
// a slot) is a deletion and an addition of the same key in one batch, which
// the kernel applies atomically.

import type { SetName } from './layout.js';
import { groupElements, sameElement, type Element, type NftGroup } from './plan.js';

export interface ElementBatch {
  readonly deletes: readonly Element[];
  readonly adds: readonly Element[];
}

export function diffElements(last: ReadonlyMap<string, Element>, desired: ReadonlyMap<string, Element>): ElementBatch {
  const deletes: Element[] = [];
  const adds: Element[] = [];
  for (const [id, e] of last) {
    const want = desired.get(id);
    if (!want || !sameElement(e, want)) deletes.push(e);
  }
  for (const [id, e] of desired) {
    const had = last.get(id);
    if (!had || !sameElement(had, e)) adds.push(e);
  }
  return { deletes, adds };
}

/** The change of one group: last applied → desired (either may be absent). */
export function diffGroup(last: NftGroup | undefined, desired: NftGroup | undefined): ElementBatch {
  const none = new Map<string, Element>();
  return diffElements(last ? groupElements(last) : none, desired ? groupElements(desired) : none);
}

/** Elements grouped by set, in the order of first appearance. */
export function bySet(elements: readonly Element[]): Map<SetName, Element[]> {
  const out = new Map<SetName, Element[]>();
  for (const e of elements) {
    let list = out.get(e.set);
    if (!list) out.set(e.set, (list = []));
    list.push(e);
  }
  return out;
}
