import { cidrContains, cidrsOverlap, mustParseCidr, parseAddress, type Cidr, type IPFamily } from './address.js';

export type RangeKind = 'pod' | 'service' | 'node';

/** One configured network of one cluster. */
export interface ClusterRange {
  readonly cluster: string;
  readonly kind: RangeKind;
  /** Canonical text of the CIDR. */
  readonly cidr: string;
  readonly parsed: Cidr;
  readonly family: IPFamily;
}

/**
 * A remote range that collides with another cluster's network. `other` is a
 * local range (otherIsLocal) or another remote one; then both are withheld.
 */
export interface Overlap {
  /** Stable identity, e.g. for deduplicating Kubernetes Events. */
  readonly key: string;
  readonly range: ClusterRange;
  readonly other: ClusterRange;
  readonly otherIsLocal: boolean;
  /** One line naming both clusters and both CIDRs, and what the agent does about it. */
  readonly message: string;
}

export interface Networks {
  /** The local cluster's pod, service and node ranges (clusterCIDR included). */
  readonly local: readonly ClusterRange[];
  /** Remote ranges that overlap nothing: these get routes. */
  readonly routed: readonly ClusterRange[];
  /** Remote ranges in at least one overlap: no route, and their endpoints are left out. */
  readonly withheld: readonly ClusterRange[];
  readonly overlaps: readonly Overlap[];
}

/** The part of the configuration the analysis reads (the config schema satisfies it). */
export interface NetworkConfig {
  readonly clusterName: string;
  readonly clusterCIDR: string;
  /** Both families (the config's clusterCIDR list); clusterCIDR is its IPv4 entry. */
  readonly clusterCIDRs?: readonly string[];
  readonly clusters: readonly {
    readonly name: string;
    readonly podCIDRs?: readonly string[];
    readonly serviceCIDRs?: readonly string[];
    readonly nodeCIDRs?: readonly string[];
  }[];
}

function ranges(cluster: string, kind: RangeKind, cidrs: readonly string[] | undefined): ClusterRange[] {
  return (cidrs ?? []).map((text) => {
    const parsed = mustParseCidr(text);
    return { cluster, kind, cidr: parsed.text, parsed, family: parsed.family };
  });
}

/** The local pod CIDRs from `clusterCIDR`, both families, each once. */
function clusterCIDRs(config: NetworkConfig): string[] {
  const all = [...(config.clusterCIDRs ?? []), ...(config.clusterCIDR === '' ? [] : [config.clusterCIDR])];
  return [...new Set(all.map((c) => mustParseCidr(c).text))];
}

function describe(r: ClusterRange, local: boolean): string {
  return `${local ? 'the local cluster ' : 'cluster '}${r.cluster}'s ${r.kind} CIDR ${r.cidr}`;
}

function overlap(range: ClusterRange, other: ClusterRange, otherIsLocal: boolean): Overlap {
  const outcome = otherIsLocal ? `no route for ${range.cidr}` : `no route for either`;
  return {
    key: `${range.cluster}/${range.kind}/${range.cidr}~${other.cluster}/${other.kind}/${other.cidr}`,
    range, other, otherIsLocal,
    message: `${describe(range, false)} overlaps ${describe(other, otherIsLocal)}: ${outcome}; endpoints in it are left out`,
  };
}

/**
 * Splits the configured remote networks of both families (each compared only
 * with ranges of its own family) into those routed and those withheld
 * because they overlap the local cluster's networks or another remote
 * cluster's: a packet to such an address has no single right destination.
 */
export function analyseNetworks(config: NetworkConfig): Networks {
  const localEntry = config.clusters.find((c) => c.name === config.clusterName && c.name !== '');
  const local = localEntry
    ? [...ranges(localEntry.name, 'pod', localEntry.podCIDRs), ...ranges(localEntry.name, 'service', localEntry.serviceCIDRs), ...ranges(localEntry.name, 'node', localEntry.nodeCIDRs)]
    : [];
  for (const cidr of clusterCIDRs(config)) {
    if (!local.some((r) => r.kind === 'pod' && r.cidr === cidr)) local.push(...ranges(config.clusterName || 'local', 'pod', [cidr]));
  }
  const remote = config.clusters
    .filter((c) => c !== localEntry)
    .flatMap((c) => [...ranges(c.name, 'pod', c.podCIDRs), ...ranges(c.name, 'service', c.serviceCIDRs)]);

  const overlaps: Overlap[] = [];
  remote.forEach((r, i) => {
    for (const l of local) if (cidrsOverlap(r.parsed, l.parsed)) overlaps.push(overlap(r, l, true));
    for (const other of remote.slice(i + 1)) {
      if (other.cluster !== r.cluster && cidrsOverlap(r.parsed, other.parsed)) overlaps.push(overlap(r, other, false));
    }
  });
  const withheld = new Set<ClusterRange>();
  for (const o of overlaps) {
    withheld.add(o.range);
    if (!o.otherIsLocal) withheld.add(o.other);
  }
  return { local, routed: remote.filter((r) => !withheld.has(r)), withheld: remote.filter((r) => withheld.has(r)), overlaps };
}

/** The withheld range an endpoint address (either family) falls in, if any. */
export function withheldRange(ip: string, withheld: readonly ClusterRange[]): ClusterRange | undefined {
  const address = parseAddress(ip);
  return address === null ? undefined : withheld.find((r) => cidrContains(r.parsed, address));
}
