import type { KubernetesObject, V1ConfigMap, V1EndpointSlice, V1Node, V1ObjectMeta, V1Service } from '@kubernetes/client-node';
import {
  AGENT_ANNOTATION_PREFIX, ANNOTATION_PROVISION_CLUSTER, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_SERVICE_PROXY_NAME,
} from '../model/records.js';

// Projections: each object is reduced to the fields the agent reads before
// client-node's ListWatch caches it (it keeps every listed and watched object
// until deleted). Applied to list items and to watch events alike, so the
// cache, the handlers and delete notifications all see the same shape.
//
// What survives, by reader:
// - ListWatch: metadata.namespace, .name, .resourceVersion (cache key, change
//   detection); uid is kept too (Events name their object by it).
// - Service (convertService): labels[service-proxy-name], annotations
//   clusterset-proxy.io/*, spec.clusterIP, .clusterIPs, .ports[].name/.port/
//   .protocol, .sessionAffinity, .sessionAffinityConfig, and
//   status.loadBalancer.ingress[].ip/.ipMode (a derived Service's ClusterSet
//   IPs, which Karmada writes as status: a status change is a watch event).
// - EndpointSlice (convertSlice): labels[service-name, managed-by],
//   annotations[provision-cluster] and clusterset-proxy.io/*, addressType,
//   ports[].name/.port/.protocol, endpoints[].addresses and .conditions.
// - Node (nodeRecord) and ConfigMap: everything but managedFields (and a
//   Node's status.images); there are few of them.
// Labels and annotations under clusterset-proxy.io/ are always kept. A value
// of an unexpected shape is kept as is, so validation reports what the API
// sent; a projection that throws falls back to the whole object.

/** Labels and annotations the agent reads on Services and EndpointSlices. */
const KEPT_LABELS: ReadonlySet<string> = new Set([LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_SERVICE_PROXY_NAME]);
const KEPT_ANNOTATIONS: ReadonlySet<string> = new Set([ANNOTATION_PROVISION_CLUSTER]);

type Meta = V1ObjectMeta;

function pick(map: unknown, kept: ReadonlySet<string>): Record<string, string> | undefined {
  if (typeof map !== 'object' || map === null) return map as undefined;
  let out: Record<string, string> | undefined;
  for (const [k, v] of Object.entries(map as Record<string, string>)) {
    if (kept.has(k) || k.startsWith(AGENT_ANNOTATION_PREFIX)) (out ??= {})[k] = v;
  }
  return out;
}

/** Identity and the selected labels and annotations; unset fields stay unset. */
function meta(m: Meta | undefined): Meta | undefined {
  if (typeof m !== 'object' || m === null) return m;
  const out: Meta = {};
  if (m.namespace !== undefined) out.namespace = m.namespace;
  if (m.name !== undefined) out.name = m.name;
  if (m.uid !== undefined) out.uid = m.uid;
  if (m.resourceVersion !== undefined) out.resourceVersion = m.resourceVersion;
  const labels = pick(m.labels, KEPT_LABELS);
  if (labels !== undefined) out.labels = labels;
  const annotations = pick(m.annotations, KEPT_ANNOTATIONS);
  if (annotations !== undefined) out.annotations = annotations;
  return out;
}

interface PortLike { name?: string; port?: number; protocol?: string }

function ports<P extends PortLike>(list: P[] | undefined): P[] | undefined {
  if (!Array.isArray(list)) return list;
  return list.map((p) => {
    if (typeof p !== 'object' || p === null) return p;
    const out: PortLike = {};
    if (p.name !== undefined) out.name = p.name;
    if (p.port !== undefined) out.port = p.port;
    if (p.protocol !== undefined) out.protocol = p.protocol;
    return out as P;
  });
}

function assign<T extends object>(out: T, key: keyof T, value: unknown): void {
  if (value !== undefined) (out as Record<keyof T, unknown>)[key] = value;
}

export function trimService(svc: V1Service): V1Service {
  const out: V1Service = {};
  assign(out, 'metadata', meta(svc.metadata));
  const spec = svc.spec;
  if (typeof spec === 'object' && spec !== null) {
    const s: NonNullable<V1Service['spec']> = {};
    assign(s, 'clusterIP', spec.clusterIP);
    assign(s, 'clusterIPs', spec.clusterIPs);
    assign(s, 'ports', ports(spec.ports));
    assign(s, 'sessionAffinity', spec.sessionAffinity);
    assign(s, 'sessionAffinityConfig', spec.sessionAffinityConfig);
    out.spec = s;
  } else {
    assign(out, 'spec', spec);
  }
  const ingress = svc.status?.loadBalancer?.ingress;
  if (ingress !== undefined) out.status = { loadBalancer: { ingress: Array.isArray(ingress) ? ingress.map(ingressPoint) : ingress } };
  return out;
}

type Ingress = NonNullable<NonNullable<NonNullable<V1Service['status']>['loadBalancer']>['ingress']>[number];

function ingressPoint(entry: Ingress): Ingress {
  if (typeof entry !== 'object' || entry === null) return entry;
  const out: Ingress = {};
  assign(out, 'ip', entry.ip);
  assign(out, 'ipMode', entry.ipMode);
  return out;
}

type Endpoint = V1EndpointSlice['endpoints'][number];

function endpoint(ep: Endpoint): Endpoint {
  if (typeof ep !== 'object' || ep === null) return ep;
  const out = {} as Endpoint;
  assign(out, 'addresses', ep.addresses);
  const c = ep.conditions;
  if (typeof c === 'object' && c !== null) {
    const conditions: NonNullable<Endpoint['conditions']> = {};
    assign(conditions, 'ready', c.ready);
    assign(conditions, 'serving', c.serving);
    assign(conditions, 'terminating', c.terminating);
    // Unset conditions read as {} does: ready, serving follows ready, not terminating.
    if (Object.keys(conditions).length > 0) out.conditions = conditions;
  } else {
    assign(out, 'conditions', c);
  }
  return out;
}

export function trimEndpointSlice(slice: V1EndpointSlice): V1EndpointSlice {
  const out = {} as V1EndpointSlice;
  assign(out, 'metadata', meta(slice.metadata));
  assign(out, 'addressType', slice.addressType);
  assign(out, 'ports', ports(slice.ports));
  assign(out, 'endpoints', Array.isArray(slice.endpoints) ? slice.endpoints.map(endpoint) : slice.endpoints);
  return out;
}

function withoutManagedFields(m: Meta | undefined): Meta | undefined {
  if (typeof m !== 'object' || m === null || m.managedFields === undefined) return m;
  const { managedFields: _dropped, ...rest } = m;
  return rest;
}

export function trimNode(node: V1Node): V1Node {
  const out: V1Node = { ...node };
  assign(out, 'metadata', withoutManagedFields(node.metadata));
  if (typeof node.status === 'object' && node.status !== null && node.status.images !== undefined) {
    const { images: _dropped, ...status } = node.status;
    out.status = status;
  }
  return out;
}

export function trimConfigMap(cm: V1ConfigMap): V1ConfigMap {
  const out: V1ConfigMap = { ...cm };
  assign(out, 'metadata', withoutManagedFields(cm.metadata));
  return out;
}

/** Wraps a projection so that an object of unexpected shape passes whole rather than failing a list. */
export function safely<T extends KubernetesObject>(trim: (obj: T) => T): (obj: T) => T {
  return (obj) => {
    try {
      return trim(obj);
    } catch {
      return obj;
    }
  };
}
