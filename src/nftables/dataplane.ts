// The nftables data plane: desired group states in, nf_tables batches out.
// It keeps a mirror of what it applied, so a change costs the elements of
// the groups that changed (one atomic batch, no read of the kernel); the
// kernel is read back only by a full sync, which adopts a table that already
// matches without writing, and repairs one that drifted (a missing element,
// rule or the whole table).

import { chainMatches, NftError, type NftablesClient, type NftOp, type ObservedSet, type ObservedTable } from './client.js';
import { diffElements, diffGroup, mergeBatches, batchSize, bySet, type ElementBatch } from './diff.js';
import { SETS, SET_BY_NAME, SHARDS, SLOTS, TABLE, FAMILY, shardOf, shardSet, type SetName, type Skeleton } from './layout.js';
import { encodeInto } from './codec.js';
import { diffPacked, packSlots, SLOT_DATA_LEN, SLOT_KEY_LEN, type Packed } from './packed.js';
import { elementId, groupElements, sharedElements, type Element, type NftGroup, type NftPort } from './plan.js';
import { renderTable } from './render.js';

export interface NftSyncResult {
  readonly full: boolean;
  /** Elements deleted and added. */
  readonly elements: number;
  /** Whether the skeleton (table, sets, chains, rules) was written. */
  readonly skeletonWritten: boolean;
  /** Batches committed. */
  readonly batches: number;
  /** A full sync found the table as desired and wrote nothing. */
  readonly adopted: boolean;
  readonly durationMs: number;
}

export interface NftDataplaneOptions {
  /** Largest batch a full sync sends at once when it fills the maps from empty (default 100,000 elements). */
  readonly fillBatchElements?: number;
}

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
    return !s || (s.keyLen === 4 * spec.key.length && s.dataLen === 4 * spec.data.length);
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

/**
 * The operations that make the kernel's sets equal the groups' elements, and
 * how many elements they write. The shared sets compare as elements; the slot
 * maps shard by shard as bytes.
 */
export function diffTable(observed: ObservedTable | null, groups: Iterable<NftGroup>): { ops: NftOp[]; elements: number } {
  const have = new Map((observed?.sets ?? []).map((s) => [s.name, s]));
  const current = new Map<string, Element>();
  for (const name of SHARED_SETS) for (const e of have.get(name)?.elements ?? []) current.set(elementId(e.set, e.key), e);
  const byShard: NftPort[][] = Array.from({ length: SHARDS }, () => []);
  const shared = new Map<string, Element>();
  for (const g of groups) {
    for (const e of sharedElements(g)) shared.set(elementId(e.set, e.key), e);
    for (const p of g.ports) if (p.slots.length > 0) byShard[shardOf(p.clusterIP)]!.push(p);
  }
  const batch = diffElements(current, shared);
  const deletes: NftOp[] = [];
  const adds: NftOp[] = [];
  let elements = batchSize(batch);
  byShard.forEach((ports, shard) => {
    const set = shardSet(shard);
    const seen = have.get(set);
    const haveBytes = seen ? packedOf(seen) : { keys: Buffer.alloc(0), data: Buffer.alloc(0), count: 0 };
    const d = diffPacked(haveBytes, packSlots(ports), SLOT_KEY_LEN, SLOT_DATA_LEN);
    if (d.deletes.count > 0) deletes.push({ op: 'deletePacked', set, keys: d.deletes.keys });
    if (d.adds.count > 0) adds.push({ op: 'addPacked', set, keys: d.adds.keys, data: d.adds.data });
    elements += d.deletes.count + d.adds.count;
  });
  const text = toOps(batch);
  return { ops: [...text.filter((o) => o.op === 'deleteElements'), ...deletes, ...text.filter((o) => o.op === 'addElements'), ...adds], elements };
}

/** One owner's element operations: a group's key, or STALE_PART for elements no desired group owns. */
export interface OwnedOps {
  readonly key: string;
  readonly ops: NftOp[];
}

export const STALE_PART = '~stale';

/**
 * diffTable attributed to groups: each desired group's operations against
 * what the kernel holds of its elements, then one part deleting what no group
 * owns. The kernel's slot maps are indexed once, by packed key.
 */
export function diffTableByGroup(observed: ObservedTable | null, desired: ReadonlyMap<string, NftGroup>): OwnedOps[] {
  const have = new Map((observed?.sets ?? []).map((s) => [s.name, s]));
  const shared = new Map<string, Element>();
  for (const name of SHARED_SETS) for (const e of have.get(name)?.elements ?? []) shared.set(elementId(e.set, e.key), e);
  const shards = new Map<string, KernelShard>();
  const shard = (set: SetName) => {
    let s = shards.get(set);
    if (!s) {
      const seen = have.get(set);
      shards.set(set, (s = indexShard(seen ? packedOf(seen) : { keys: Buffer.alloc(0), data: Buffer.alloc(0), count: 0 })));
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
      const want = packSlots([p]);
      const slots = byFrontend.get(want.keys.toString('latin1', 0, FRONTEND_LEN));
      if (!slots) {
        // Nothing of this frontend in the kernel (a cold start): every slot is an addition.
        ops.push({ op: 'addPacked', set, keys: want.keys, data: want.data });
        continue;
      }
      const del: number[] = [];
      const add: number[] = [];
      for (let j = 0; j < want.count; j++) {
        const i = slots[want.keys.readUInt32LE(j * SLOT_KEY_LEN + FRONTEND_LEN)]!;
        if (i < 0 || used[i]) {
          add.push(j);
          continue;
        }
        used[i] = 1;
        const a = i * SLOT_DATA_LEN;
        const b = j * SLOT_DATA_LEN;
        if (packed.data.readUInt32LE(a) !== want.data.readUInt32LE(b) || packed.data.readUInt32LE(a + 4) !== want.data.readUInt32LE(b + 4)) {
          del.push(i);
          add.push(j);
        }
      }
      if (del.length > 0) ops.unshift({ op: 'deletePacked', set, keys: rows(packed.keys, del, SLOT_KEY_LEN) });
      if (add.length > 0) ops.push({ op: 'addPacked', set, keys: rows(want.keys, add, SLOT_KEY_LEN), data: rows(want.data, add, SLOT_DATA_LEN) });
    }
    if (ops.length > 0) parts.push({ key, ops });
  }
  const stale: NftOp[] = toOps({ deletes: [...shared.values()], adds: [] });
  for (const set of SETS.map((x) => x.name).filter((n) => n.startsWith('slots-'))) {
    const { packed, used } = shard(set);
    const left: number[] = [];
    for (let i = 0; i < packed.count; i++) if (!used[i]) left.push(i);
    if (left.length > 0) stale.push({ op: 'deletePacked', set, keys: rows(packed.keys, left, SLOT_KEY_LEN) });
  }
  if (stale.length > 0) parts.push({ key: STALE_PART, ops: stale });
  return parts;
}

/** Bytes of a slot key before the slot: ClusterIP, protocol and port, 4 bytes each. */
const FRONTEND_LEN = SLOT_KEY_LEN - 4;

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

function indexShard(packed: Packed): KernelShard {
  const byFrontend = new Map<string, Int32Array>();
  const used = new Uint8Array(packed.count);
  for (let i = 0; i < packed.count; i++) {
    const at = i * SLOT_KEY_LEN;
    const slot = packed.keys.readUInt32LE(at + FRONTEND_LEN);
    if (slot >= SLOTS) continue; // no desired slot has it: stale
    const frontend = packed.keys.toString('latin1', at, at + FRONTEND_LEN);
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

function packedOf(s: ObservedSet): Packed {
  if (s.packed) return s.packed;
  const spec = SET_BY_NAME.get(s.name as SetName)!;
  const els = s.elements;
  const keys = Buffer.alloc(els.length * SLOT_KEY_LEN);
  const data = Buffer.alloc(els.length * SLOT_DATA_LEN);
  els.forEach((e, i) => {
    encodeInto(spec.key, e.key, keys, i * SLOT_KEY_LEN);
    encodeInto(spec.data, e.data ?? '0.0.0.0 . 0', data, i * SLOT_DATA_LEN);
  });
  return { keys, data, count: els.length };
}

const SHARED_SETS = SETS.filter((s) => !s.name.startsWith('slots-')).map((s) => s.name);

export class NftablesDataplane {
  private readonly applied = new Map<string, NftGroup>();
  private skeleton: Skeleton | null = null;
  private readonly fillBatch: number;

  constructor(private readonly client: NftablesClient, options: NftDataplaneOptions = {}) {
    this.fillBatch = options.fillBatchElements ?? 100_000;
  }

  /** Groups as last applied. */
  get appliedGroups(): ReadonlyMap<string, NftGroup> {
    return this.applied;
  }

  /** Desired = the skeleton and every group; the kernel is read once and made to match. */
  async syncAll(skeleton: Skeleton, groups: ReadonlyMap<string, NftGroup>): Promise<NftSyncResult> {
    const started = performance.now();
    const observed = await this.client.read();
    const check = checkSkeleton(observed, skeleton);
    let batches = 0;
    let elements = 0;
    if (check.recreate) {
      await this.client.commit([{ op: 'deleteTable' }]);
      batches++;
    }
    if (check.writeSkeleton || check.recreate) await this.client.writeSkeleton(skeleton);
    if (!observed || check.recreate) {
      // Filling from empty: nothing to keep consistent with, so bounded batches keep memory flat.
      const diff = diffTable(null, groups.values());
      let pending: NftOp[] = [];
      let size = 0;
      const flush = async () => {
        await this.client.commit(pending);
        batches++;
        pending = [];
        size = 0;
      };
      for (const op of diff.ops) {
        pending.push(op);
        size += op.op === 'addPacked' ? op.keys.length / SLOT_KEY_LEN : op.op === 'addElements' ? op.elements.length : 1;
        if (size >= this.fillBatch) await flush();
      }
      if (pending.length > 0) await flush();
      elements = diff.elements;
    } else {
      const diff = diffTable(observed, groups.values());
      if (diff.ops.length > 0) {
        await this.client.commit(diff.ops);
        batches++;
      }
      elements = diff.elements;
    }
    this.applied.clear();
    for (const [k, g] of groups) this.applied.set(k, g);
    this.skeleton = skeleton;
    return {
      full: true, elements, skeletonWritten: check.writeSkeleton || check.recreate, batches,
      adopted: observed !== null && !check.writeSkeleton && elements === 0, durationMs: performance.now() - started,
    };
  }

  /**
   * Changed groups only (null: the group is gone), against the mirror: one
   * atomic batch. On failure nothing is applied and the mirror is unchanged.
   */
  async applyGroups(changes: ReadonlyMap<string, NftGroup | null>): Promise<NftSyncResult> {
    const started = performance.now();
    const batch = mergeBatches([...changes].map(([k, g]) => diffGroup(this.applied.get(k), g ?? undefined)));
    if (batchSize(batch) > 0) await this.client.commit(toOps(batch));
    for (const [k, g] of changes) {
      if (g) this.applied.set(k, g);
      else this.applied.delete(k);
    }
    return { full: false, elements: batchSize(batch), skeletonWritten: false, batches: batchSize(batch) > 0 ? 1 : 0, adopted: false, durationMs: performance.now() - started };
  }

  /** Deletes the agent's table and nothing else; false when there was none. */
  async cleanup(): Promise<boolean> {
    this.applied.clear();
    this.skeleton = null;
    try {
      await this.client.commit([{ op: 'deleteTable' }]);
      return true;
    } catch (err) {
      if (err instanceof NftError && err.code === 'ENOENT') return false;
      throw err;
    }
  }

  /** The applied table as `nft list table` shows it (elements sorted), for explain. */
  describe(): string {
    if (!this.skeleton) return `# table ${FAMILY} ${TABLE} not written yet\n`;
    return renderTable(this.skeleton, [...this.applied.values()].flatMap((g) => [...groupElements(g).values()]));
  }
}

/** A batch as operations: deletions first, then additions, grouped by set. */
export function toOps(batch: ElementBatch): NftOp[] {
  const ops: NftOp[] = [];
  for (const [set, elements] of bySet(batch.deletes)) ops.push({ op: 'deleteElements', set, elements });
  for (const [set, elements] of bySet(batch.adds)) ops.push({ op: 'addElements', set, elements });
  return ops;
}
