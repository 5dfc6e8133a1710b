import { KARMADA_DISPATCH_CONTROLLER, KARMADA_IMPORT_CONTROLLER, type SliceRecord } from './records.js';

export const UNKNOWN_CLUSTER = 'unknown';
const IMPORTED_PREFIX = 'imported-';

/** Which cluster a slice's endpoints live in, and whether the answer was a guess. */
export interface SliceOrigin {
  readonly cluster: string;
  /** Set when the slice name matched no configured cluster. */
  readonly unknownPrefix: boolean;
}

/**
 * Attributes slices to clusters. Karmada's ServiceImport path names slices
 * `imported-<cluster>-<slice>` with no label naming the cluster; cluster
 * names may contain '-', so the longest configured name that matches wins.
 */
export class ClusterResolver {
  private readonly byLength: readonly string[];

  constructor(readonly localCluster: string, clusterNames: readonly string[]) {
    this.byLength = [...new Set([...clusterNames, localCluster].filter((n) => n !== ''))].sort((a, b) => b.length - a.length);
  }

  originOf(slice: SliceRecord): SliceOrigin {
    if (slice.provisionCluster) return { cluster: slice.provisionCluster, unknownPrefix: false };
    if (slice.managedBy === KARMADA_IMPORT_CONTROLLER) return this.fromName(slice.name, IMPORTED_PREFIX);
    if (slice.managedBy === KARMADA_DISPATCH_CONTROLLER) return this.fromName(slice.name, '');
    return { cluster: this.localCluster || 'local', unknownPrefix: false };
  }

  private fromName(sliceName: string, prefix: string): SliceOrigin {
    if (sliceName.startsWith(prefix)) {
      const rest = sliceName.slice(prefix.length);
      const match = this.byLength.find((name) => rest.startsWith(`${name}-`));
      if (match) return { cluster: match, unknownPrefix: false };
    }
    return { cluster: UNKNOWN_CLUSTER, unknownPrefix: true };
  }
}
