// What the data plane needs of nf_tables, in the text values `nft list`
// shows. Two implementations with the same semantics: the kernel (through the
// native addon, and `nft -f` for the skeleton's rules) and a fake.

import { commentText, type ChainSpec, type Hook, type NftFamily, type SetName, type Skeleton } from './layout.js';
import type { Element } from './plan.js';
import type { Packed } from './packed.js';

/** One operation of an atomic batch. */
export type NftOp =
  | { readonly op: 'addElements' | 'deleteElements'; readonly set: SetName; readonly elements: readonly Element[] }
  /** Elements as the kernel's bytes (count × key length; values count × value length for maps). */
  | { readonly op: 'addPacked' | 'deletePacked'; readonly set: SetName; readonly keys: Buffer; readonly data?: Buffer }
  | { readonly op: 'flushSet'; readonly set: SetName }
  | { readonly op: 'deleteTable' }
  /** Clears the table's dormant flag: its base chains hook in when the batch commits. */
  | { readonly op: 'wakeTable' };

export interface ObservedChain {
  readonly name: string;
  readonly comment?: string;
  readonly type?: string;
  readonly hook?: Hook;
  readonly priority?: number;
  readonly rules: number;
}

export interface ObservedSet {
  readonly name: string;
  readonly keyLen: number;
  readonly dataLen: number;
  readonly elements: readonly Element[];
  /** The same elements as bytes, when the client has them so (the kernel's dump). */
  readonly packed?: Packed;
}

/** The table as read back from the kernel; null when it does not exist. */
export interface ObservedTable {
  /** The table is dormant: its base chains are not hooked in, so no packet sees it. */
  readonly dormant?: boolean;
  readonly chains: readonly ObservedChain[];
  readonly sets: readonly ObservedSet[];
}

export interface SkeletonOptions {
  /**
   * Leave the table dormant (created so, or kept so): a table being filled
   * is hooked in only by the commit that wakes it, with every element in
   * place. Without it the script wakes a dormant table.
   */
  readonly dormant?: boolean;
}

/** One family's table (`ip` or `ip6` clusterset-proxy) in one kernel. */
export interface NftablesClient {
  readonly family: NftFamily;
  /**
   * Makes the table, its sets and base chains exist as the skeleton says and
   * rewrites the chains' rules, atomically; elements of existing sets stay.
   */
  writeSkeleton(skeleton: Skeleton, options?: SkeletonOptions): Promise<void>;
  /** Applies every operation or none; throws NftError naming the first refused one. */
  commit(ops: readonly NftOp[]): Promise<void>;
  read(): Promise<ObservedTable | null>;
  close(): void;
}

export type NftErrorCode = 'EEXIST' | 'ENOENT' | 'EBUSY' | 'EINVAL' | 'EPERM' | 'ENOMEM' | 'EOPNOTSUPP' | 'EUNKNOWN';

export class NftError extends Error {
  constructor(
    message: string,
    readonly code: NftErrorCode,
    /** Index of the refused operation in the batch; -1 when the batch as a whole failed. */
    readonly opIndex: number,
  ) {
    super(message);
    this.name = 'NftError';
  }
}

/** The chain's spec bytes the kernel keeps and a dump shows, for drift checks. */
export function chainMatches(spec: ChainSpec, seen: ObservedChain): boolean {
  return seen.type === spec.type && seen.hook === spec.hook && seen.priority === spec.priority && seen.rules === spec.rules.length && seen.comment === commentText(spec.comment);
}
