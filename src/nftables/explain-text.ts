// What explain shows in nftables mode: a group's elements of table ip
// clusterset-proxy, planned and as the kernel holds them. Each line is one
// element (`set key comment "namespace/name:port" : value`); a port's 64 slot
// elements read as one line per endpoint with its slot numbers.

import type { GroupText, ServiceName } from '../sync/dataplane.js';
import type { ObservedTable } from './client.js';
import { SEPARATOR } from './codec.js';
import { SETS, SLOTS } from './layout.js';
import { groupElements, type Element, type NftGroup } from './plan.js';

/** The group's planned elements and the kernel's (null: the table could not be read). */
export function nftablesGroupText(planned: NftGroup, services: readonly ServiceName[], kernel: ObservedTable | null | undefined): GroupText {
  const want = [...groupElements(planned).values()];
  const wantLines = elementLines(want);
  if (kernel === undefined) return { planned: wantLines, kernel: null, inSync: null };
  const have = kernelElements(kernel, planned, services);
  return { planned: wantLines, kernel: elementLines(have), inSync: sameElements(want, have) };
}

/** The kernel's elements of the planned frontends, of the group's ClusterIPs and of elements whose comment names a Service of the group. */
function kernelElements(table: ObservedTable | null, planned: NftGroup, services: readonly ServiceName[]): Element[] {
  if (!table) return [];
  const names = services.map((s) => `${s.namespace}/${s.name}`);
  const named = (comment: string | undefined) => comment !== undefined && names.some((n) => comment === n || comment.startsWith(`${n}:`));
  const clusterIPs = new Set([...planned.ports.map((p) => p.clusterIP), ...services.map((s) => s.clusterIP)]);
  const frontends = new Set(planned.ports.map((p) => [p.clusterIP, p.protocol, p.port].join(SEPARATOR)));
  const ofFrontend = (key: string) => frontends.has(key) || clusterIPs.has(key.split(SEPARATOR)[0]!);
  // Frontends the kernel names after the group's Services (a ClusterIP that changed) count too.
  for (const s of table.sets) {
    if (s.name === 'service_ports' || s.name === 'no_endpoints') for (const e of s.elements) if (named(e.comment)) frontends.add(e.key);
  }
  const out: Element[] = [];
  for (const s of table.sets) {
    for (const e of s.elements) {
      const element: Element = { ...e, set: s.name as Element['set'] };
      if (s.name.startsWith('slots-')) {
        if (ofFrontend(e.key.slice(0, e.key.lastIndexOf(SEPARATOR)))) out.push(element);
      } else if (s.name === 'service_ips' || s.name === 'clusterset_ips') {
        if (clusterIPs.has(e.key) || named(e.comment)) out.push(element);
      } else if (s.name === 'hairpin') {
        if (clusterIPs.has(e.key.split(SEPARATOR)[1] ?? '') || named(e.comment)) out.push(element);
      } else if (ofFrontend(e.key) || named(e.comment)) {
        out.push(element);
      }
    }
  }
  return out;
}

function elementText(e: Element): string {
  return `${e.key}${e.comment ? ` comment "${e.comment}"` : ''}${e.data !== undefined ? ` : ${e.data}` : ''}`;
}

function sameElements(a: readonly Element[], b: readonly Element[]): boolean {
  const text = (list: readonly Element[]) => list.map((e) => `${e.set} ${elementText(e)}`).sort().join('\n');
  return text(a) === text(b);
}

const SET_ORDER = new Map(SETS.map((s, i) => [s.name as string, i]));

/** Elements as lines, in the table's set order; slot elements folded per frontend and endpoint. */
export function elementLines(elements: readonly Element[]): string[] {
  const plain: Element[] = [];
  const slots = new Map<string, { set: string; frontend: string; data: string; slots: number[] }>();
  for (const e of elements) {
    if (!e.set.startsWith('slots-')) {
      plain.push(e);
      continue;
    }
    const at = e.key.lastIndexOf(SEPARATOR);
    const frontend = e.key.slice(0, at);
    const id = `${e.set}\n${frontend}\n${e.data ?? ''}`;
    let entry = slots.get(id);
    if (!entry) slots.set(id, (entry = { set: e.set, frontend, data: e.data ?? '', slots: [] }));
    entry.slots.push(Number(e.key.slice(at + SEPARATOR.length)));
  }
  const order = (set: string) => SET_ORDER.get(set) ?? (set.startsWith('slots-') ? SETS.length : SETS.length + 1);
  const lines = plain
    .sort((x, y) => order(x.set) - order(y.set) || x.set.localeCompare(y.set) || x.key.localeCompare(y.key))
    .map((e) => `${e.set} ${elementText(e)}`);
  const folded = [...slots.values()].sort((x, y) => x.set.localeCompare(y.set) || x.frontend.localeCompare(y.frontend) || x.data.localeCompare(y.data));
  for (const f of folded) {
    const numbers = f.slots.sort((x, y) => x - y);
    lines.push(`${f.set} ${f.frontend} . ${ranges(numbers)} : ${f.data} (${numbers.length} of ${SLOTS} slots)`);
  }
  return lines;
}

/** 0,1,2,5,7,8 → `0-2,5,7-8`. */
function ranges(numbers: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < numbers.length; ) {
    let j = i;
    while (j + 1 < numbers.length && numbers[j + 1] === numbers[j]! + 1) j++;
    parts.push(j === i ? String(numbers[i]) : `${numbers[i]}-${numbers[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
