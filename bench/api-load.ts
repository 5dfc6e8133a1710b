import { KubeConfig, type KubernetesObject, type V1EndpointSlice, type V1Node, type V1Service } from '@kubernetes/client-node';
import { DEFAULT_CONFIG } from '../src/config/schema.js';
import { ResilientInformer, type Handlers, type ResourceSpec } from '../src/kube/informer.js';
import { ENDPOINT_SLICES, SERVICES, startClusterWatches, type ClusterWatches } from '../src/kube/watch.js';
import { silentLogger } from '../src/log.js';
import { LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_SERVICE_PROXY_NAME } from '../src/model/records.js';
import { gatewayNodes } from '../src/routes/controller.js';
import { kubeconfigYaml, TestApiServer, waitFor, type RequestRecord } from '../test/support/api-server.js';
import { changeTarget, Workload } from './workload.js';

// What the API server sends one node's watchers under a churn profile: the
// agent's own watches (src/kube/watch.ts and the route half's gateway Nodes),
// kube-proxy's (every Service and EndpointSlice without a service-proxy-name
// or headless label, and its own Node), and a watcher of every Service and
// EndpointSlice for reference. All three list and watch one test API server
// through client-node's informers; the server counts the bytes of JSON and the
// objects it writes to each, told apart by their bearer tokens.

export interface ClusterProfile {
  /** ServiceImports the agent serves: derived-<name>, one imported slice per cluster, and the local Service <name> with its own slice. */
  readonly groups: number;
  readonly endpoints: number;
  readonly clusters: number;
  /** Ordinary Services with one slice each, spread over `unrelatedNamespaces` namespaces; the first 16 are the groups' own. */
  readonly unrelated: number;
  readonly unrelatedNamespaces: number;
  /** Headless Services (StatefulSets), one slice each. */
  readonly headless: number;
  /** Services handed to another proxy (service-proxy-name set), one slice each. */
  readonly otherProxy: number;
  /** Nodes labelled as gateway candidates (the agent watches them). */
  readonly gateways: number;
  /** Churn per minute: one endpoint replaced in a slice, or a Node's status written. */
  readonly perMinute: {
    readonly imported: number;
    readonly local: number;
    readonly unrelated: number;
    readonly headless: number;
    readonly otherProxy: number;
    /** Status writes per Node per minute (kubelet's nodeStatusReportFrequency is 5 min). */
    readonly nodeStatus: number;
  };
  /** Profile minutes replayed (the churn is sent as fast as the server takes it, then divided back). */
  readonly minutes: number;
}

export const DEFAULT_PROFILE: ClusterProfile = {
  groups: 200,
  endpoints: 10,
  clusters: 3,
  unrelated: 2000,
  unrelatedNamespaces: 160,
  headless: 200,
  otherProxy: 50,
  gateways: 2,
  perMinute: { imported: 60, local: 60, unrelated: 1200, headless: 120, otherProxy: 30, nodeStatus: 0.2 },
  minutes: 5,
};

export interface Received {
  /** Objects and bytes of the first list (what a node's start or restart costs the server). */
  readonly list: { readonly objects: number; readonly bytes: number };
  /** Per minute of churn, by resource ('services', 'endpointslices.discovery.k8s.io', 'nodes'). */
  readonly perMinute: { readonly objects: number; readonly bytes: number };
  readonly byResource: Readonly<Record<string, { readonly objects: number; readonly bytes: number }>>;
  /** Watches open at once. */
  readonly watches: number;
}

export interface ApiLoadResult {
  readonly profile: ClusterProfile;
  readonly cluster: { readonly services: number; readonly slices: number; readonly nodes: number; readonly bytes: number };
  readonly agent: Received;
  readonly kubeProxy: Received;
  readonly everything: Received;
  /** The selectors each watcher's requests carried, as sent. */
  readonly selectors: Readonly<Record<Watcher, readonly string[]>>;
}

type Watcher = 'agent' | 'kubeProxy' | 'everything';

const NODE = 'node-1';
/** kube-proxy's informers: Services and EndpointSlices not handed to another proxy and not of headless Services. */
const KUBE_PROXY_SELECTOR = `!${LABEL_SERVICE_PROXY_NAME},!service.kubernetes.io/headless`;

export async function measureApiLoad(profile: ClusterProfile = DEFAULT_PROFILE): Promise<ApiLoadResult> {
  const api = new TestApiServer({ bookmarkIntervalMs: 0, historyLimit: 1_000_000 });
  const stops: (() => Promise<void>)[] = [];
  try {
    await api.start();
    const cluster = new ClusterObjects(profile);
    let bytes = 0;
    let services = 0;
    let slices = 0;
    for (const o of cluster.objects()) {
      api.apply(o);
      bytes += JSON.stringify(o).length;
      if (o.kind === 'Service') services++;
      if (o.kind === 'EndpointSlice') slices++;
    }

    const seen: Record<Watcher, number> = { agent: 0, kubeProxy: 0, everything: 0 };
    const count = <T extends KubernetesObject>(who: Watcher): Handlers<T> => ({
      onUpsert: (o) => (seen[who] = Math.max(seen[who], Number(o.metadata?.resourceVersion ?? 0))),
      onDelete: (o) => (seen[who] = Math.max(seen[who], Number(o.metadata?.resourceVersion ?? 0))),
    });
    const log = silentLogger();

    // The agent: its Service and EndpointSlice watches and the route half's gateway Nodes.
    const agentKc = kubeConfigAs(api.url, 'agent');
    const agentWatches: ClusterWatches = startClusterWatches(agentKc, { services: count('agent'), endpointSlices: count('agent') }, log, { servicePrefix: DEFAULT_CONFIG.servicePrefix });
    stops.push(() => agentWatches.stop());
    const gateways = informer(agentKc, gatewayNodes(DEFAULT_CONFIG), count('agent'));
    stops.push(() => gateways.stop());

    const kpKc = kubeConfigAs(api.url, 'kube-proxy');
    const kubeProxy = [
      informer(kpKc, { resource: 'services', path: '/api/v1/services', labelSelector: KUBE_PROXY_SELECTOR }, count('kubeProxy')),
      informer(kpKc, { resource: 'endpointslices.discovery.k8s.io', path: ENDPOINT_SLICES.path, labelSelector: KUBE_PROXY_SELECTOR }, count('kubeProxy')),
      informer(kpKc, { resource: 'nodes', path: '/api/v1/nodes', fieldSelector: `metadata.name=${NODE}` }, count('kubeProxy')),
    ];
    for (const i of kubeProxy) stops.push(() => i.stop());

    const allKc = kubeConfigAs(api.url, 'everything');
    const everything = [informer(allKc, { resource: 'services', path: SERVICES.path }, count('everything')), informer(allKc, { resource: 'endpointslices.discovery.k8s.io', path: ENDPOINT_SLICES.path }, count('everything'))];
    for (const i of everything) stops.push(() => i.stop());

    await Promise.all([agentWatches.whenSynced(), gateways.whenSynced(), ...kubeProxy.map((i) => i.whenSynced()), ...everything.map((i) => i.whenSynced())]);
    // An informer is synced as it asks for its watch: the churn starts once each collection listed is watched.
    await waitFor(() => {
      const key = (r: RequestRecord) => `${r.authorization} ${r.path}${selectorText(r)}`;
      const listed = new Set(api.requests.filter((r) => r.verb === 'list').map(key));
      const watched = new Set(api.requests.filter((r) => r.verb === 'watch').map(key));
      return [...listed].every((k) => watched.has(k)) && api.openWatches === watched.size;
    }, 'every watch to open', { timeoutMs: 120_000, intervalMs: 20 });
    const before = tally(api.requests);

    for (const change of cluster.churn()) api.apply(change);
    // The server counts as it writes: the churn's share is complete once the last change is applied.
    const after = tally(api.requests);
    // One more change every watcher sees (an imported slice is neither headless nor handed over): once it is
    // in, every watch was still open and its informer took all before it.
    const marker = api.apply(cluster.importedChange());
    const markerRv = Number(marker.metadata?.resourceVersion);
    await waitFor(() => seen.agent >= markerRv && seen.kubeProxy >= markerRv && seen.everything >= markerRv, 'every watcher to receive the churn', { timeoutMs: 600_000, intervalMs: 20 });

    const received = (who: Watcher): Received => {
      const b = before[who];
      const a = after[who];
      const byResource: Record<string, { objects: number; bytes: number }> = {};
      for (const [resource, v] of Object.entries(a.watch)) {
        const w = b.watch[resource] ?? { objects: 0, bytes: 0 };
        byResource[resource] = { objects: (v.objects - w.objects) / profile.minutes, bytes: (v.bytes - w.bytes) / profile.minutes };
      }
      const sum = (f: 'objects' | 'bytes') => Object.values(byResource).reduce((n, v) => n + v[f], 0);
      return { list: b.list, perMinute: { objects: sum('objects'), bytes: sum('bytes') }, byResource, watches: a.watches };
    };
    const selectors = {} as Record<Watcher, string[]>;
    for (const who of ['agent', 'kubeProxy', 'everything'] as const) {
      selectors[who] = [...new Set(api.requests.filter((r) => watcherOf(r) === who && r.verb === 'watch').map((r) => `${r.path}${selectorText(r)}`))].sort();
    }
    return {
      profile,
      cluster: { services, slices, nodes: cluster.nodeCount, bytes },
      agent: received('agent'), kubeProxy: received('kubeProxy'), everything: received('everything'),
      selectors,
    };
  } finally {
    for (const stop of stops.reverse()) await stop();
    await api.stop();
  }
}

function informer<T extends KubernetesObject>(kc: KubeConfig, spec: ResourceSpec, handlers: Handlers<T>): ResilientInformer<T> {
  const i = new ResilientInformer<T>(kc, spec, handlers, silentLogger());
  i.start();
  return i;
}

/** A kubeconfig whose bearer token names the watcher, so the server's request log tells them apart. */
function kubeConfigAs(server: string, token: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfigYaml(server).replace('"test-token"', JSON.stringify(token)));
  return kc;
}

function watcherOf(r: RequestRecord): Watcher | undefined {
  switch (r.authorization) {
    case 'Bearer agent':
      return 'agent';
    case 'Bearer kube-proxy':
      return 'kubeProxy';
    case 'Bearer everything':
      return 'everything';
    default:
      return undefined;
  }
}

function selectorText(r: RequestRecord): string {
  const parts = [r.query.labelSelector && `labelSelector=${r.query.labelSelector}`, r.query.fieldSelector && `fieldSelector=${r.query.fieldSelector}`].filter(Boolean);
  return parts.length > 0 ? `?${parts.join('&')}` : '';
}

interface Tally {
  list: { objects: number; bytes: number };
  watch: Record<string, { objects: number; bytes: number }>;
  watches: number;
}

function tally(requests: readonly RequestRecord[]): Record<Watcher, Tally> {
  const out = {} as Record<Watcher, Tally>;
  for (const who of ['agent', 'kubeProxy', 'everything'] as const) out[who] = { list: { objects: 0, bytes: 0 }, watch: {}, watches: 0 };
  for (const r of requests) {
    const who = watcherOf(r);
    if (!who) continue;
    const t = out[who];
    if (r.verb === 'list') {
      t.list.objects += r.objects;
      t.list.bytes += r.bytes;
    } else if (r.verb === 'watch' && r.resource) {
      const w = (t.watch[r.resource] ??= { objects: 0, bytes: 0 });
      w.objects += r.objects;
      w.bytes += r.bytes;
      t.watches++;
    }
  }
  return out;
}

// ---- the cluster ----

const ORDINARY_CONTROLLER = 'endpointslice-controller.k8s.io';
const TIME = '2026-11-30T12:00:00Z';

interface OrdinaryService {
  readonly namespace: string;
  readonly name: string;
  readonly clusterIP: string;
  readonly labels: Record<string, string>;
  readonly headless: boolean;
  readonly ips: string[];
}

/**
 * The cluster of a profile: the groups as bench/workload.ts writes them (with
 * Karmada's labels, annotations and managedFields) plus, as the controllers
 * of a real cluster write them, the groups' local Services and slices,
 * ordinary, headless and handed-over Services with their slices, and Nodes.
 */
class ClusterObjects {
  private readonly workload: Workload;
  private readonly locals: OrdinaryService[] = [];
  private readonly unrelated: OrdinaryService[] = [];
  private readonly headless: OrdinaryService[] = [];
  private readonly otherProxy: OrdinaryService[] = [];
  private readonly nodes: string[];
  private nextIp = 0;
  private nextService = 0;
  private importedChanges = 0;
  private nodeWrites = 0;

  constructor(private readonly profile: ClusterProfile) {
    this.workload = new Workload({ n: profile.groups, e: profile.endpoints, c: profile.clusters });
    const ns = (i: number) => (i < 16 ? `ns${i}` : `app${i - 16}`);
    for (const s of this.workload.services) this.locals.push(this.ordinary(s.namespace, s.name, {}));
    for (let i = 0; i < profile.unrelated; i++) this.unrelated.push(this.ordinary(ns(i % profile.unrelatedNamespaces), `web${i}`, {}));
    for (let i = 0; i < profile.headless; i++) this.headless.push(this.ordinary(ns(i % profile.unrelatedNamespaces), `db${i}`, {}, true));
    for (let i = 0; i < profile.otherProxy; i++) this.otherProxy.push(this.ordinary(ns(i % profile.unrelatedNamespaces), `mesh${i}`, { [LABEL_SERVICE_PROXY_NAME]: 'other-proxy' }));
    this.nodes = [NODE, ...Array.from({ length: profile.gateways }, (_, i) => `gateway-${i}`)];
  }

  get nodeCount(): number {
    return this.nodes.length;
  }

  *objects(): Generator<KubernetesObject> {
    yield* this.workload.objects();
    for (const s of [...this.locals, ...this.unrelated, ...this.headless, ...this.otherProxy]) {
      yield serviceObject(s);
      yield sliceObject(s);
    }
    for (const name of this.nodes) yield this.node(name);
  }

  /** The profile's minutes of churn, interleaved as they would arrive. */
  *churn(): Generator<KubernetesObject> {
    const { perMinute, minutes } = this.profile;
    const streams: [number, () => KubernetesObject][] = [
      [perMinute.imported * minutes, () => this.importedChange()],
      [perMinute.local * minutes, () => this.endpointChange(this.locals)],
      [perMinute.unrelated * minutes, () => this.endpointChange(this.unrelated)],
      [perMinute.headless * minutes, () => this.endpointChange(this.headless)],
      [perMinute.otherProxy * minutes, () => this.endpointChange(this.otherProxy)],
      [Math.round(perMinute.nodeStatus * minutes * this.nodes.length), () => this.nodeChange()],
    ];
    const total = streams.reduce((n, [count]) => n + Math.round(count), 0);
    const sent = streams.map(() => 0);
    for (let k = 0; k < total; k++) {
      // Each stream sends when it falls behind its share of the run so far.
      const i = streams.findIndex(([count], j) => sent[j]! < Math.round(count) && sent[j]! <= (k * Math.round(count)) / total);
      const at = i === -1 ? streams.findIndex(([count], j) => sent[j]! < Math.round(count)) : i;
      sent[at]!++;
      yield streams[at]![1]();
    }
  }

  importedChange(): V1EndpointSlice {
    return this.workload.change(changeTarget(this.importedChanges++, this.workload.services.length)).slice;
  }

  private endpointChange(list: OrdinaryService[]): V1EndpointSlice {
    const s = list[(this.nextService++ * 7919) % list.length]!;
    s.ips[this.nextService % s.ips.length] = this.ip();
    return sliceObject(s);
  }

  private nodeChange(): V1Node {
    const name = this.nodes[this.nodeWrites % this.nodes.length]!;
    this.nodeWrites++;
    return this.node(name);
  }

  private ordinary(namespace: string, name: string, labels: Record<string, string>, headless = false): OrdinaryService {
    const k = this.locals.length + this.unrelated.length + this.headless.length + this.otherProxy.length;
    const clusterIP = headless ? 'None' : `10.100.${(k >> 8) & 255}.${k & 255}`;
    return { namespace, name, clusterIP, labels: { app: name, ...labels }, headless, ips: Array.from({ length: this.profile.endpoints }, () => this.ip()) };
  }

  /** Local pod addresses: 10.0.0.0/10, in order. */
  private ip(): string {
    const k = this.nextIp++;
    return `10.${(k >> 16) & 63}.${(k >> 8) & 255}.${k & 255}`;
  }

  /** A Node as kubelet keeps it: conditions, addresses, capacity, images; each write bumps its heartbeat times. */
  private node(name: string): V1Node {
    const beat = new Date(Date.parse(TIME) + this.nodeWrites * 300_000).toISOString().replace(/\.\d+Z$/, 'Z');
    const gateway = name.startsWith('gateway-');
    const condition = (type: string, status: string, reason: string) => ({ type, status, reason, message: `kubelet reports ${reason}`, lastHeartbeatTime: beat, lastTransitionTime: TIME });
    return {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name,
        labels: {
          'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', 'node.kubernetes.io/instance-type': 'm5.2xlarge',
          'topology.kubernetes.io/region': 'eu-west-1', 'topology.kubernetes.io/zone': 'eu-west-1a', ...(gateway ? { 'submariner.io/gateway': 'true' } : {}),
        },
        annotations: { 'node.alpha.kubernetes.io/ttl': '0', 'volumes.kubernetes.io/controller-managed-attach-detach': 'true' },
      },
      spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'], providerID: `aws:///eu-west-1a/i-${name}` },
      status: {
        addresses: [{ type: 'InternalIP', address: '192.168.1.10' }, { type: 'Hostname', address: name }],
        allocatable: { cpu: '7910m', memory: '31Gi', pods: '110', 'ephemeral-storage': '95Gi' },
        capacity: { cpu: '8', memory: '32Gi', pods: '110', 'ephemeral-storage': '100Gi' },
        conditions: [
          condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory'), condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure'),
          condition('PIDPressure', 'False', 'KubeletHasSufficientPID'), condition('Ready', 'True', 'KubeletReady'),
        ],
        daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
        images: Array.from({ length: 30 }, (_, i) => ({ names: [`registry.example/team/image-${i}@sha256:${'a'.repeat(64)}`, `registry.example/team/image-${i}:v1.${i}`], sizeBytes: 10_000_000 + i })),
        nodeInfo: {
          architecture: 'amd64', bootID: 'b', containerRuntimeVersion: 'containerd://1.7.0', kernelVersion: '6.1.0', kubeProxyVersion: 'v1.31.0',
          kubeletVersion: 'v1.31.0', machineID: 'm', operatingSystem: 'linux', osImage: 'Debian GNU/Linux 12', systemUUID: 's',
        },
      },
    } as unknown as V1Node;
  }
}

/** An ordinary Service as kubectl apply leaves it. */
function serviceObject(s: OrdinaryService): V1Service {
  const spec = { ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }], selector: { app: s.name }, type: 'ClusterIP' };
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      namespace: s.namespace,
      name: s.name,
      labels: s.labels,
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': `${JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: s.name, namespace: s.namespace, labels: s.labels }, spec })}\n` },
      managedFields: [{ apiVersion: 'v1', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:labels': {} }, 'f:spec': { 'f:ports': {}, 'f:selector': {}, 'f:type': {} } }, manager: 'kubectl-client-side-apply', operation: 'Update', time: TIME as unknown as Date }],
    },
    spec: {
      ...spec,
      clusterIP: s.clusterIP,
      clusterIPs: [s.clusterIP],
      internalTrafficPolicy: 'Cluster',
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      sessionAffinity: 'None',
    } as V1Service['spec'],
    status: { loadBalancer: {} },
  };
}

/** The Service's one slice as the EndpointSlice controller writes it: the Service's labels copied, headless marked. */
function sliceObject(s: OrdinaryService): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      namespace: s.namespace,
      name: `${s.name}-x7k2p`,
      generateName: `${s.name}-`,
      labels: { ...s.labels, [LABEL_SERVICE_NAME]: s.name, [LABEL_MANAGED_BY]: ORDINARY_CONTROLLER, ...(s.headless ? { 'service.kubernetes.io/headless': '' } : {}) },
      annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': TIME },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: s.name, uid: `uid-${s.namespace}-${s.name}`, controller: true, blockOwnerDeletion: true }],
      managedFields: [{ apiVersion: 'discovery.k8s.io/v1', fieldsType: 'FieldsV1', fieldsV1: { 'f:addressType': {}, 'f:endpoints': {}, 'f:metadata': { 'f:labels': {}, 'f:ownerReferences': {} }, 'f:ports': {} }, manager: 'kube-controller-manager', operation: 'Update', time: TIME as unknown as Date }],
    },
    addressType: 'IPv4',
    endpoints: s.ips.map((ip, i) => ({
      addresses: [ip],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: `worker-${i % 50}`,
      targetRef: { kind: 'Pod', name: `${s.name}-6f8d7c9b4-${ip.replace(/\./g, '')}`, namespace: s.namespace, uid: `pod-${ip}` },
      zone: `eu-west-1${'abc'[i % 3]}`,
    })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}
