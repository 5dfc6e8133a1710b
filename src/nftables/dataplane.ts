// The nftables data plane: desired group states in, nf_tables batches out.
// It keeps a mirror of what it applied, so a change costs the elements of
// the groups that changed (one atomic batch, no read of the kernel); the
// kernel is read back only by a full sync, which adopts a table that already
// matches without writing, and repairs one that drifted (a missing element,
// rule or the whole table).

import { chainMatches, NftError, type NftablesClient, type NftOp, type ObservedTable } from './client.js';
import { diffElements, diffGroup, mergeBatches, batchSize, bySet, type ElementBatch } from './diff.js';
import { SETS, TABLE, FAMILY, type Skeleton } from './layout.js';
import { elementId, groupElements, type Element, type NftGroup } from './plan.js';
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

/** What a full sync decides from the kernel's state: pure. */
export interface FullPlan {
  readonly writeSkeleton: boolean;
  /** The skeleton cannot be repaired in place (a set of ours with another type): delete the table first. */
  readonly recreate: boolean;
  readonly batch: ElementBatch;
}

/** Compares the kernel's table with the desired skeleton and elements. */
export function planFullSync(observed: ObservedTable | null, skeleton: Skeleton, desired: ReadonlyMap<string, Element>): FullPlan {
  if (!observed) return { writeSkeleton: true, recreate: false, batch: { deletes: [], adds: [...desired.values()] } };
  const sets = new Map(observed.sets.map((s) => [s.name, s]));
  const chains = new Map(observed.chains.map((c) => [c.name, c]));
  const shapeOk = SETS.every((spec) => {
    const s = sets.get(spec.name);
    return !s || (s.keyLen === 4 * spec.key.length && s.dataLen === 4 * spec.data.length);
  });
  const skeletonOk = shapeOk
    && SETS.every((spec) => sets.has(spec.name))
    && skeleton.chains.every((spec) => {
      const c = chains.get(spec.name);
      return c !== undefined && chainMatches(spec, c);
    })
    && observed.chains.length === skeleton.chains.length;
  const have = new Map<string, Element>();
  if (shapeOk) for (const s of observed.sets) for (const e of s.elements) have.set(elementId(e.set, e.key), e);
  return { writeSkeleton: !skeletonOk, recreate: !shapeOk, batch: diffElements(have, desired) };
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
    const desired = new Map<string, Element>();
    for (const g of groups.values()) for (const [id, e] of groupElements(g)) desired.set(id, e);
    const plan = planFullSync(observed, skeleton, desired);
    let batches = 0;
    if (plan.recreate) {
      await this.client.commit([{ op: 'deleteTable' }]);
      batches++;
    }
    if (plan.writeSkeleton || plan.recreate) await this.client.writeSkeleton(skeleton);
    const batch = plan.recreate ? { deletes: [], adds: [...desired.values()] } : plan.batch;
    if (batchSize(batch) > 0) {
      if (batch.deletes.length === 0 && batch.adds.length > this.fillBatch) {
        // Filling from empty: nothing to keep consistent with, so bounded batches keep memory flat.
        for (let i = 0; i < batch.adds.length; i += this.fillBatch) {
          await this.client.commit(toOps({ deletes: [], adds: batch.adds.slice(i, i + this.fillBatch) }));
          batches++;
        }
      } else {
        await this.client.commit(toOps(batch));
        batches++;
      }
    }
    this.applied.clear();
    for (const [k, g] of groups) this.applied.set(k, g);
    this.skeleton = skeleton;
    const elements = batchSize(batch);
    return {
      full: true, elements, skeletonWritten: plan.writeSkeleton || plan.recreate, batches,
      adopted: observed !== null && !plan.writeSkeleton && elements === 0, durationMs: performance.now() - started,
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
