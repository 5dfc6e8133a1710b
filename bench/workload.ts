import type { V1EndpointSlice, V1ManagedFieldsEntry, V1Service } from '@kubernetes/client-node';
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
    return asWritten(service(s.namespace, `derived-${s.name}`, s.clusterIP, [{ name: 'http', port: SERVICE_PORT }]), s);
  }

  sliceObject(s: BenchService, cluster: number): V1EndpointSlice {
    const slice = importedSlice(s.namespace, this.clusters[cluster]!, s.name, `derived-${s.name}`, s.endpoints[cluster]!.map((ip) => endpoint(ip)), [{ name: 'http', port: TARGET_PORT }]);
    return asImported(slice, s, this.clusters[cluster]!);
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

// What Karmada's controllers and the API server add to the objects: the
// labels and annotations that trace an object to its template and Work,
// kubectl's last-applied configuration, the endpoints' pod references and
// one managedFields entry per writer. The agent reads none of it, but it
// lists, decodes and (unless it trims) caches every byte.

const KARMADA_LABELS = (s: BenchService) => ({
  'app.kubernetes.io/name': s.name,
  'app.kubernetes.io/part-of': s.namespace,
  'karmada.io/managed': 'true',
  'multicluster.x-k8s.io/service-name': s.name,
  'resourcebinding.karmada.io/permanent-id': uid(`rb/${s.namespace}/${s.name}`),
});

function asWritten(svc: V1Service, s: BenchService): V1Service {
  const { metadata, spec } = svc;
  const applied = { apiVersion: 'v1', kind: 'Service', metadata: { name: metadata!.name, namespace: s.namespace, labels: { 'app.kubernetes.io/name': s.name } }, spec: { ports: spec!.ports, type: 'ClusterIP' } };
  return {
    ...svc,
    metadata: {
      ...metadata,
      labels: { ...metadata!.labels, ...KARMADA_LABELS(s) },
      annotations: {
        ...metadata!.annotations,
        'kubectl.kubernetes.io/last-applied-configuration': `${JSON.stringify(applied)}\n`,
        'propagationpolicy.karmada.io/name': `${s.name}-import`,
        'propagationpolicy.karmada.io/namespace': s.namespace,
        'resourcetemplate.karmada.io/uid': uid(`svc/${s.namespace}/${s.name}`),
        'work.karmada.io/name': `derived-${s.name}-${uid(s.name).slice(0, 10)}`,
      },
      managedFields: [
        managed('karmada-controller-manager', 'Update', { 'f:metadata': { 'f:annotations': fieldSet(['propagationpolicy.karmada.io/name', 'resourcetemplate.karmada.io/uid', 'work.karmada.io/name']), 'f:labels': fieldSet(['karmada.io/managed', 'resourcebinding.karmada.io/permanent-id']) } }),
        managed('kubectl-client-side-apply', 'Update', { 'f:metadata': { 'f:annotations': fieldSet(['kubectl.kubernetes.io/last-applied-configuration']) }, 'f:spec': { 'f:internalTrafficPolicy': {}, 'f:ports': { '.': {}, 'k:{"port":80,"protocol":"TCP"}': { '.': {}, 'f:name': {}, 'f:port': {}, 'f:protocol': {}, 'f:targetPort': {} } }, 'f:sessionAffinity': {}, 'f:type': {} } }),
      ],
    },
    spec: { ...spec, internalTrafficPolicy: 'Cluster', ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', sessionAffinity: 'None' },
    status: { loadBalancer: {} },
  };
}

function asImported(slice: V1EndpointSlice, s: BenchService, cluster: string): V1EndpointSlice {
  const { metadata } = slice;
  return {
    ...slice,
    metadata: {
      ...metadata,
      labels: { ...metadata!.labels, ...KARMADA_LABELS(s), 'endpointslice.karmada.io/namespace': s.namespace, 'endpointslice.karmada.io/name': metadata!.name! },
      annotations: {
        ...metadata!.annotations,
        'endpointslice.karmada.io/work-name': `imported-${cluster}-${s.name}`,
        'endpointslice.kubernetes.io/last-change-trigger-time': '2026-11-30T12:00:00Z',
        'work.karmada.io/name': `imported-${cluster}-${s.name}-${uid(cluster + s.name).slice(0, 10)}`,
        'work.karmada.io/namespace': `karmada-es-${cluster}`,
      },
      managedFields: [
        managed('karmada-controller-manager', 'Update', {
          'f:addressType': {}, 'f:endpoints': {}, 'f:ports': {},
          'f:metadata': { 'f:annotations': fieldSet(['endpointslice.karmada.io/work-name', 'work.karmada.io/name', 'work.karmada.io/namespace']), 'f:labels': fieldSet(['endpointslice.kubernetes.io/managed-by', 'kubernetes.io/service-name', 'karmada.io/managed']) },
        }),
      ],
    },
    endpoints: slice.endpoints.map((ep, i) => ({
      ...ep,
      nodeName: `${cluster}-worker-${i % 50}`,
      targetRef: { kind: 'Pod', name: `${s.name}-7d9f8c6b5-${uid(ep.addresses[0]!).slice(0, 5)}`, namespace: s.namespace, uid: uid(`pod/${ep.addresses[0]}`) },
      zone: `${cluster}-zone-${i % 3}`,
    })),
  };
}

/** The wire shape: client-node types `time` as a Date, the JSON carries a string. */
function managed(manager: string, operation: string, fields: object): V1ManagedFieldsEntry {
  return { apiVersion: 'v1', fieldsType: 'FieldsV1', fieldsV1: fields, manager, operation, time: '2026-11-30T12:00:00Z' as unknown as Date };
}

function fieldSet(keys: readonly string[]): Record<string, object> {
  return Object.fromEntries([['.', {}], ...keys.map((k) => [`f:${k}`, {}])]);
}

/** A deterministic UUID-shaped string for a name. */
function uid(name: string): string {
  let h = 2166136261;
  const hex: string[] = [];
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619) >>> 0;
    h = Math.imul(h ^ round, 16777619) >>> 0;
    hex.push(h.toString(16).padStart(8, '0'));
  }
  const x = hex.join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}
