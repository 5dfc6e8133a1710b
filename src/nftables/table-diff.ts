// A full sync's compare: the table as read back against the desired groups,
// as element operations attributed to the group owning them (and one part
// for elements nobody owns), and whether the skeleton must be (re)written.
// Pure: the read-back table and the desired groups in, operations out.

import { chainMatches, type NftOp, type ObservedSet, type ObservedTable } from './client.js';
import { bySet, diffElements, type ElementBatch } from './diff.js';
import { SET_NAMES, SLOTS, shardOf, shardSet, type NftFamily, type SetName, type Skeleton } from './layout.js';
import { encodeInto } from './codec.js';
import { packSlots, slotLengths, type Packed } from './packed.js';
import { elementId, sharedElements, type Element, type NftGroup } from './plan.js';

/** What a full sync decides from the kernel's skeleton: pure. */
export interface SkeletonCheck {
  readonly writeSkeleton: boolean;
  /** The skeleton cannot be repaired in place (a set of ours with another type): delete the table first. */
  readonly recreate: boolean;
}

export function checkSkeleton(observed: ObservedTable | null, skeleton: Skeleton): SkeletonCheck {
  if (!observed) return { writeSkeleton: true, recreate: false };
  const sets = new Map(observed.sets.map((s) => [s.name, s]));
  const chains = new Map(observed.chains.map((c) => [c.name, c]));
  const shapeOk = skeleton.sets.every((spec) => {
    const s = sets.get(spec.name);
    return !s || (s.keyLen === spec.keyLen && s.dataLen === spec.dataLen);
  });
  const skeletonOk = shapeOk
    && skeleton.sets.every((spec) => sets.has(spec.name))
    && skeleton.chains.every((spec) => {
      const c = chains.get(spec.name);
      return c !== undefined && chainMatches(spec, c);
    })
    && observed.chains.length === skeleton.chains.length;
  return { writeSkeleton: !skeletonOk, recreate: !shapeOk };
}

/** One owner's element operations: a group's key, or STALE_PART for elements no desired group owns. */
export interface OwnedOps {
  readonly key: string;
  readonly ops: NftOp[];
}

export const STALE_PART = '~stale';

/**
 * The operations that make the kernel's sets hold the desired groups'
 * elements, attributed to groups: each desired group's operations against
 * what the kernel holds of its elements, then one part deleting what no group
 * owns. The shared sets compare as elements; the slot maps as bytes, each
 * indexed once by packed key.
 */
export function diffTableByGroup(observed: ObservedTable | null, desired: ReadonlyMap<string, NftGroup>, family: NftFamily): OwnedOps[] {
  const { keyLen, dataLen } = slotLengths(family);
  const frontendLen = keyLen - 4;
  const have = new Map((observed?.sets ?? []).map((s) => [s.name, s]));
  const shared = new Map<string, Element>();
  for (const name of SHARED_SETS) for (const e of have.get(name)?.elements ?? []) shared.set(elementId(e.set, e.key), e);
  const shards = new Map<string, KernelShard>();
  const shard = (set: SetName) => {
    let s = shards.get(set);
    if (!s) {
      const seen = have.get(set);
      shards.set(set, (s = indexShard(seen ? packedOf(seen, family) : { keys: Buffer.alloc(0), data: Buffer.alloc(0), count: 0 }, keyLen)));
    }
    return s;
  };
  const parts: OwnedOps[] = [];
  for (const [key, g] of desired) {
    const want = new Map(sharedElements(g).map((e) => [elementId(e.set, e.key), e] as const));
    const mine = new Map<string, Element>();
    for (const id of want.keys()) {
      const e = shared.get(id);
      if (e) {
        mine.set(id, e);
        shared.delete(id);
      }
    }
    const ops = toOps(diffElements(mine, want));
    for (const p of g.ports) {
      if (p.slots.length === 0) continue;
      const set = shardSet(shardOf(p.clusterIP));
      const { packed, byFrontend, used } = shard(set);
      const want = packSlots([p], family);
      const slots = byFrontend.get(want.keys.toString('latin1', 0, frontendLen));
      if (!slots) {
        // Nothing of this frontend in the kernel (a cold start): every slot is an addition.
        ops.push({ op: 'addPacked', set, keys: want.keys, data: want.data });
        continue;
      }
      const del: number[] = [];
      const add: number[] = [];
      for (let j = 0; j < want.count; j++) {
        const i = slots[want.keys.readUInt32LE(j * keyLen + frontendLen)]!;
        if (i < 0 || used[i]) {
          add.push(j);
          continue;
        }
        used[i] = 1;
        if (packed.data.compare(want.data, j * dataLen, (j + 1) * dataLen, i * dataLen, (i + 1) * dataLen) !== 0) {
          del.push(i);
          add.push(j);
        }
      }
      if (del.length > 0) ops.unshift({ op: 'deletePacked', set, keys: rows(packed.keys, del, keyLen) });
      if (add.length > 0) ops.push({ op: 'addPacked', set, keys: rows(want.keys, add, keyLen), data: rows(want.data, add, dataLen) });
    }
    if (ops.length > 0) parts.push({ key, ops });
  }
  const stale: NftOp[] = toOps({ deletes: [...shared.values()], adds: [] });
  for (const set of SET_NAMES.filter((n) => n.startsWith('slots-'))) {
    const { packed, used } = shard(set);
    const left: number[] = [];
    for (let i = 0; i < packed.count; i++) if (!used[i]) left.push(i);
    if (left.length > 0) stale.push({ op: 'deletePacked', set, keys: rows(packed.keys, left, keyLen) });
  }
  if (stale.length > 0) parts.push({ key: STALE_PART, ops: stale });
  return parts;
}

/**
 * A kernel slot map indexed by frontend: the element index of each of its
 * slots (-1: none). One map entry per frontend, not per element, keeps a full
 * sync's compare of 640,000 elements to integer reads. `used` marks the
 * elements a desired slot matched; the rest are stale.
 */
interface KernelShard {
  readonly packed: Packed;
  readonly byFrontend: Map<string, Int32Array>;
  readonly used: Uint8Array;
}

/** `keyLen`: bytes of a slot key; the frontend (ClusterIP, protocol, port) is all but its last 4 (the slot). */
function indexShard(packed: Packed, keyLen: number): KernelShard {
  const byFrontend = new Map<string, Int32Array>();
  const used = new Uint8Array(packed.count);
  for (let i = 0; i < packed.count; i++) {
    const at = i * keyLen;
    const slot = packed.keys.readUInt32LE(at + keyLen - 4);
    if (slot >= SLOTS) continue; // no desired slot has it: stale
    const frontend = packed.keys.toString('latin1', at, at + keyLen - 4);
    let slots = byFrontend.get(frontend);
    if (!slots) byFrontend.set(frontend, (slots = new Int32Array(SLOTS).fill(-1)));
    slots[slot] = i;
  }
  return { packed, byFrontend, used };
}

/** The rows `indexes` of a packed column of `width`-byte rows. */
function rows(column: Buffer, indexes: readonly number[], width: number): Buffer {
  const out = Buffer.allocUnsafe(indexes.length * width);
  indexes.forEach((i, k) => column.copy(out, k * width, i * width, (i + 1) * width));
  return out;
}

/** A slot map's elements as bytes: as read, or encoded from text (the fake's). */
function packedOf(s: ObservedSet, family: NftFamily): Packed {
  if (s.packed) return s.packed;
  const spec = family.setByName.get(s.name as SetName)!;
  const els = s.elements;
  const keys = Buffer.alloc(els.length * spec.keyLen);
  const data = Buffer.alloc(els.length * spec.dataLen);
  els.forEach((e, i) => {
    encodeInto(spec.key, e.key, keys, i * spec.keyLen);
    if (e.data !== undefined) encodeInto(spec.data, e.data, data, i * spec.dataLen);
  });
  return { keys, data, count: els.length };
}

/** The sets outside the slot maps, compared element by element. */
const SHARED_SETS = SET_NAMES.filter((n) => !n.startsWith('slots-'));

/** A batch as operations: deletions first, then additions, grouped by set. */
export function toOps(batch: ElementBatch): NftOp[] {
  const ops: NftOp[] = [];
  for (const [set, elements] of bySet(batch.deletes)) ops.push({ op: 'deleteElements', set, elements });
  for (const [set, elements] of bySet(batch.adds)) ops.push({ op: 'addElements', set, elements });
  return ops;
}
