// The seam between the backend-neutral pipeline (service state → selection)
// and one kernel interface. A Dataplane turns selections into desired state
// as plain values, reads the kernel back, computes the change between the two
// as one transaction and applies it. One instance per IP family and mode; the
// sync engine drives any of them the same way, keeping per-group status,
// retries and quarantine on its side.

import { familyOfAddress, type FrontendSelection, type GroupSelection, type IPFamily } from '../selection/selection.js';

/** What applying a transaction cost. */
export interface ApplyStats {
  /** Calls into the kernel interface (restores, netlink batches). */
  readonly restores: number;
  readonly payloadBytes: number;
  /** Objects rewritten whole (chains, sets, services): the cost driver. */
  readonly chainsWritten: number;
  /** Group changes in the transaction. */
  readonly units: number;
}

/**
 * A transaction as the engine sees it: the keys of the changes it holds, in
 * order (group keys, and the backend's own: '' for its fixed skeleton, others
 * for objects nobody owns any more).
 */
export interface Transaction {
  readonly keys: readonly string[];
}

/**
 * Why part of a transaction did not apply; everything before it did.
 * - `render`: the desired state of some groups cannot be expressed (`failing`);
 * - `refused`: the kernel refused a batch holding `groups`; `blamed` is the
 *   group the kernel named, when it named one;
 * - `error`: a failure no group's content explains (a held lock, a broken tool).
 */
export type Refusal =
  | { readonly kind: 'render'; readonly error: unknown; readonly failing: readonly { readonly group: string; readonly error: unknown }[] }
  | { readonly kind: 'refused'; readonly error: unknown; readonly groups: readonly string[]; readonly blamed: string | null; readonly reason: string }
  | { readonly kind: 'error'; readonly error: unknown };

export interface ApplyOutcome {
  readonly stats: ApplyStats;
  readonly refused: Refusal | null;
}

/** The kernel's state read back, attributed to the groups of the desired state it was read against. */
export interface KernelState<G> {
  /** What the kernel holds for one group of the desired state. */
  group(key: string): G | undefined;
}

/** The settings every data plane reads from the running config. */
export interface DataplaneSettings {
  /** The IPv4 pod CIDR of this cluster, '' for none. */
  readonly clusterCIDR: string;
  /** Pod CIDRs of both families (at most one each), where the IPv6 one comes from; absent: none in IPv6. */
  readonly clusterCIDRs?: readonly string[];
  readonly localCluster: string;
  readonly masqueradeBit: number;
  /** Upper bound of objects written per kernel call, where the backend's cost grows with it. */
  readonly maxChainsPerRestore: number;
}

/** The pod CIDR of one family, '' when the cluster has none in it: what masquerading rules of that family compare with. */
export function clusterCIDROf(settings: DataplaneSettings, family: IPFamily): string {
  if (family === 'ipv4') return settings.clusterCIDR;
  return settings.clusterCIDRs?.find((c) => familyOfAddress(c) === family) ?? '';
}

/** Where a frontend is programmed and how its new connections are shared (explain). */
export interface FrontendDescription {
  /** The kernel object serving it (a chain, a map element). */
  readonly handle: string;
  /** Share of new connections per `cluster ip:port`, as the kernel will draw them. */
  readonly shares: ReadonlyMap<string, number>;
}

/** A group's planned kernel objects and the kernel's, as lines of the data plane's own text (explain). */
export interface GroupText {
  readonly planned: readonly string[];
  /** null when the kernel could not be read. */
  readonly kernel: readonly string[] | null;
  /** Whether the kernel holds exactly the planned objects; null when it could not be read. */
  readonly inSync: boolean | null;
}

/** A Service of a group, as explain names it. */
export interface ServiceName {
  readonly namespace: string;
  readonly name: string;
  readonly clusterIP: string;
}

/**
 * One kernel interface for one IP family. `G` is a group's desired state,
 * `K` the kernel read back, `T` a transaction: values the engine passes
 * around without looking inside.
 */
export interface Dataplane<G = unknown, K extends KernelState<G> = KernelState<G>, T extends Transaction = Transaction> {
  /** `iptables-nft`, `iptables-legacy`, …: for logs. */
  readonly name: string;
  readonly family: IPFamily;
  /** Takes the running config's settings; the next plan uses them. */
  configure(settings: DataplaneSettings): void;
  /** A group's desired state from its selection; undefined when it programs nothing. */
  plan(selection: GroupSelection): G | undefined;
  /** Reads the kernel back, attributing what it holds to the groups of `desired` (full sync, adoption, drift). */
  observe(desired: ReadonlyMap<string, G>): Promise<K>;
  /** The change from `last` (null: an empty kernel) to the whole desired state, fixed skeleton included. */
  diff(last: K | null, desired: ReadonlyMap<string, G>): T;
  /** The change of one group from its last applied state. */
  diffGroup(key: string, last: G | undefined, next: G | undefined): T;
  /** Concatenates group changes into one transaction. */
  merge(parts: readonly T[]): T;
  /** Applies a transaction, stopping at the first part the kernel refuses. */
  apply(tx: T): Promise<ApplyOutcome>;
  /** Whether the kernel interface takes an empty transaction (a refusal is then the content's fault). */
  works(): Promise<boolean>;
  /** Removes everything this data plane owns. */
  cleanup(): Promise<ApplyStats>;
  /** The transaction as the kernel interface's own text (dry run). */
  render(tx: T): string;
  /** What the kernel holds for frontends no desired group owns (a group held back after a restart keeps it). */
  adopt(key: string, frontends: readonly Pick<FrontendSelection, 'name' | 'protocol'>[], kernel: K): G | undefined;
  /** Objects and rules the desired state owns (metrics). */
  owned(desired: ReadonlyMap<string, G>): { readonly chains: number; readonly rules: number };
  /** Each group's objects a transaction rewrites (debug logs). */
  written(tx: T): { readonly group: string; readonly name: string }[];
  /** How one frontend is programmed (explain). */
  describe(frontend: FrontendSelection): FrontendDescription;
  /** Removed endpoints still in the kernel while their connections finish (IPVS real servers at weight 0); absent where removal is immediate (metrics). */
  draining?(): number;
  // A data plane without the two below shows no kernel objects in explain.
  /** One read of the kernel that explainGroup() attributes to any group (explain shares it between requests); throws when it cannot read. */
  readForExplain?(): Promise<unknown>;
  /**
   * A group's planned objects and what `kernel` (a readForExplain() value;
   * null: unreadable) holds of them or of its `services`, as text (explain).
   */
  explainGroup?(selection: GroupSelection, services: readonly ServiceName[], kernel: unknown): GroupText;
}
