// The nftables data plane: desired group states in, nf_tables batches out.
// It keeps a mirror of what it applied, so a change costs the elements of
// the groups that changed (one atomic batch, no read of the kernel); the
// kernel is read back only by a full sync, which adopts a table that already
// matches without writing, and repairs one that drifted (a missing element,
// rule or the whole table).

import { NftError, type NftablesClient, type NftOp, type ObservedTable } from './client.js';
import { diffElements, diffGroup, mergeBatches, batchSize } from './diff.js';
import { SHARDS, TABLE, shardOf, shardSet, type NftFamily, type Skeleton } from './layout.js';
import { diffPacked, packSlots, slotLengths } from './packed.js';
import { elementId, groupElements, sharedElements, type Element, type NftGroup, type NftPort } from './plan.js';
import { renderTable } from './render.js';
import { checkSkeleton, packedOf, SHARED_SETS, toOps } from './table-diff.js';

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

/**
 * The operations that make the kernel's sets equal the groups' elements, and
 * how many elements they write. The shared sets compare as elements; the slot
 * maps shard by shard as bytes.
 */
export function diffTable(observed: ObservedTable | null, groups: Iterable<NftGroup>, family: NftFamily): { ops: NftOp[]; elements: number } {
  const { keyLen, dataLen } = slotLengths(family);
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
    const haveBytes = seen ? packedOf(seen, family) : { keys: Buffer.alloc(0), data: Buffer.alloc(0), count: 0 };
    const d = diffPacked(haveBytes, packSlots(ports, family), keyLen, dataLen);
    if (d.deletes.count > 0) deletes.push({ op: 'deletePacked', set, keys: d.deletes.keys });
    if (d.adds.count > 0) adds.push({ op: 'addPacked', set, keys: d.adds.keys, data: d.adds.data });
    elements += d.deletes.count + d.adds.count;
  });
  const text = toOps(batch);
  return { ops: [...text.filter((o) => o.op === 'deleteElements'), ...deletes, ...text.filter((o) => o.op === 'addElements'), ...adds], elements };
}

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
      const diff = diffTable(null, groups.values(), this.client.family);
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
        size += op.op === 'addPacked' ? op.keys.length / slotLengths(this.client.family).keyLen : op.op === 'addElements' ? op.elements.length : 1;
        if (size >= this.fillBatch) await flush();
      }
      if (pending.length > 0) await flush();
      elements = diff.elements;
    } else {
      const diff = diffTable(observed, groups.values(), this.client.family);
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
    if (!this.skeleton) return `# table ${this.client.family.name} ${TABLE} not written yet\n`;
    return renderTable(this.skeleton, [...this.applied.values()].flatMap((g) => [...groupElements(g).values()]));
  }
}

