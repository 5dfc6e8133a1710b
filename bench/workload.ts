import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { DEFAULT_CONFIG, type Config } from '../src/config/schema.js';
import { endpoint, importedSlice, service } from '../test/support/fixtures.js';

// The objects a benchmark runs on: N ServiceImports (a Service `derived-svcN`
// and one imported slice per cluster), E endpoints each spread round-robin over
// C clusters, and a generator of one-endpoint changes. Deterministic, so two
// runs and the two layouts see the same objects.

export interface WorkloadSize {
  /** Services. */
  readonly n: number;
  /** Endpoints per service. */
  readonly e: number;
  /** Clusters the endpoints are spread over. */
  readonly c: number;
}

export const CLUSTER_CIDR = '10.244.0.0/16';
export const SERVICE_PORT = 80;
export const TARGET_PORT = 8080;

/** One service as both layouts need it. */
export interface BenchService {
  readonly namespace: string;
  readonly name: string;
  readonly clusterIP: string;
  /** Endpoint IPs per cluster index. */
  readonly endpoints: string[][];
}

/** One endpoint replaced: the slice to send the engine and the service after the change. */
export interface EndpointChange {
  readonly service: BenchService;
  readonly slice: V1EndpointSlice;
  readonly removed: string;
}

export class Workload {
  readonly services: BenchService[] = [];
  readonly clusters: string[];
  private readonly nextIp: number[];
  private changes = 0;

  constructor(readonly size: WorkloadSize) {
    // Names with '-' exercise the longest-match attribution of imported slices.
    this.clusters = Array.from({ length: size.c }, (_, i) => `cluster-${i}`);
    this.nextIp = this.clusters.map(() => 0);
    for (let i = 0; i < size.n; i++) {
      const endpoints: string[][] = this.clusters.map(() => []);
      for (let j = 0; j < size.e; j++) endpoints[j % size.c]!.push(this.podIp(j % size.c));
      this.services.push({ namespace: `ns${i % 16}`, name: `svc${i}`, clusterIP: serviceIp(i), endpoints });
    }
  }

  /** The agent's config for these objects: the node's cluster is none of the C, so every endpoint is remote. */
  config(overrides: Partial<Config> = {}): Config {
    return { ...DEFAULT_CONFIG, clusterName: 'local', clusters: this.clusters.map((name) => ({ name })), clusterCIDR: CLUSTER_CIDR, ...overrides };
  }

  serviceObject(s: BenchService): V1Service {
    return service(s.namespace, `derived-${s.name}`, s.clusterIP, [{ name: 'http', port: SERVICE_PORT }]);
  }

  sliceObject(s: BenchService, cluster: number): V1EndpointSlice {
    return importedSlice(s.namespace, this.clusters[cluster]!, s.name, `derived-${s.name}`, s.endpoints[cluster]!.map((ip) => endpoint(ip)), [{ name: 'http', port: TARGET_PORT }]);
  }

  *objects(): Generator<V1Service | V1EndpointSlice> {
    for (const s of this.services) {
      yield this.serviceObject(s);
      for (let c = 0; c < this.clusters.length; c++) yield this.sliceObject(s, c);
    }
  }

  /** Replaces one endpoint of the service at `index` (mod N) with a fresh address. */
  change(index: number): EndpointChange {
    const s = this.services[index % this.services.length]!;
    const k = this.changes++;
    const cluster = k % this.clusters.length;
    const list = s.endpoints[cluster]!;
    const at = Math.floor(k / this.clusters.length) % list.length;
    const removed = list[at]!;
    list[at] = this.podIp(cluster);
    return { service: s, slice: this.sliceObject(s, cluster), removed };
  }

  /** Pod addresses: cluster c owns 10.(64 + 4c).0.0/14, handed out in order. */
  private podIp(cluster: number): string {
    const k = this.nextIp[cluster]!++;
    return `10.${64 + 4 * cluster + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`;
  }
}

/** ClusterIPs from 10.96.0.1 on, as the default service CIDR hands them out. */
function serviceIp(i: number): string {
  const k = i + 1;
  return `10.${96 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`;
}

/** A spread of service indexes for a series of changes: a fixed stride visits services far apart. */
export function changeTarget(i: number, n: number): number {
  return (i * 7919) % n;
}
