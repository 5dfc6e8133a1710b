import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { parseAddress, type IPFamily } from '../network/address.js';
import { parseIPv4 } from '../network/ipv4.js';
import {
  bare, booleanProblem, clusterNameProblem, clustersetIPProblem, dnsLabelProblem, dnsSubdomainProblem, endpointAddressProblem, endpointIPv6AddressProblem, integerProblem,
  portNameProblem, portNumberProblem, serviceNameProblem, shown, stringValueProblem, typeName,
} from './api-values.js';

// API objects are reduced on arrival to the few fields the data plane needs,
// validated once (each value for what it is: src/model/api-values.ts). This keeps memory small at 10k services and keeps every
// later step free of defensive checks.

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
const PROTOCOLS: readonly string[] = ['TCP', 'UDP', 'SCTP'];

export const LABEL_SERVICE_NAME = 'kubernetes.io/service-name';
export const LABEL_MANAGED_BY = 'endpointslice.kubernetes.io/managed-by';
export const LABEL_SERVICE_PROXY_NAME = 'service.kubernetes.io/service-proxy-name';
export const ANNOTATION_PROVISION_CLUSTER = 'endpointslice.karmada.io/provision-cluster';
export const KARMADA_IMPORT_CONTROLLER = 'endpointslice-controller.karmada.io';
export const KARMADA_DISPATCH_CONTROLLER = 'endpointslice-dispatch-controller.karmada.io';
export const PROXY_NAME = 'clusterset-proxy';
export const AGENT_ANNOTATION_PREFIX = 'clusterset-proxy.io/';

/**
 * The API object a problem is about. `namespace` and `name` are the object's
 * own when they are strings (valid names or not: reports escape them), else
 * the shown form of what it carried.
 */
export interface ObjectRef {
  readonly kind: 'Service' | 'EndpointSlice';
  readonly namespace: string;
  readonly name: string;
}

/** A problem with one object: the object is skipped (or partly), never the agent. */
export interface Problem {
  readonly object: ObjectRef;
  readonly message: string;
}

export interface ServicePortRecord {
  /** The port's name, '' when unnamed (matched against slice port names). */
  readonly name: string;
  readonly port: number;
  readonly protocol: Protocol;
}

export interface ServiceRecord {
  readonly namespace: string;
  readonly name: string;
  /** IPv4 ClusterIP; null for a Service that has none (IPv6-only, or none at all: then skipped with a problem). */
  readonly clusterIP: string | null;
  /** IPv6 ClusterIP (canonical text) of a dual-stack or IPv6 Service; null when it has none. */
  readonly clusterIPv6: string | null;
  readonly headless: boolean;
  /**
   * status.loadBalancer.ingress IPs of either family (canonical text, each
   * once): a derived Service's ClusterSet IPs. Hostname-only entries and
   * ipMode Proxy ones (the load balancer answers them itself) are left out,
   * as kube-proxy leaves them.
   */
  readonly ingressIPs: readonly string[];
  readonly ports: readonly ServicePortRecord[];
  /** ClientIP affinity timeout in seconds, null without affinity. */
  readonly affinitySeconds: number | null;
  readonly proxyName: string | null;
  /** Only the agent's own annotations (clusterset-proxy.io/...): the rest is not ours to keep. */
  readonly annotations: Readonly<Record<string, string>>;
}

export interface EndpointRecord {
  readonly ip: string;
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
}

export interface SlicePortRecord {
  readonly name: string;
  readonly port: number;
  readonly protocol: Protocol;
}

export interface SliceRecord {
  readonly namespace: string;
  readonly name: string;
  readonly serviceName: string;
  readonly managedBy: string;
  readonly provisionCluster: string | null;
  /** As the slice says; slices of neither IP family (FQDN) carry no endpoints here, kept to know the Service has them. */
  readonly addressType: string;
  /** The family of its endpoints: IPv4 or IPv6 slices keep them (IPv6 addresses in canonical text); null for any other addressType. */
  readonly family: IPFamily | null;
  readonly ports: readonly SlicePortRecord[];
  readonly endpoints: readonly EndpointRecord[];
}

export interface Converted<T> {
  readonly record: T | null;
  readonly problems: readonly Problem[];
}

const DEFAULT_AFFINITY_SECONDS = 10_800;
/** Kubernetes' bound on ClientIP affinity timeouts (one day). */
const MAX_AFFINITY_SECONDS = 86_400;

/**
 * A copy without spare capacity: an array grown by push from [] reserves 17
 * slots (152 bytes) for its first element, and records are kept for every
 * object of the cluster.
 */
function exact<T>(items: T[]): T[] {
  return items.slice();
}

/**
 * Values most records share (namespaces, a slice's controller and cluster,
 * its Service's name, port names) as one string each: JSON decoding gives
 * every object its own copy, and records are kept for every object of the
 * cluster (at 10,000 Services, 30,000 copies of the controller's name alone).
 * Bounded, so names that come and go cannot grow it without end: past the
 * bound a value is kept as it came.
 */
class Interner {
  private readonly values = new Map<string, string>();

  constructor(private readonly limit: number) {}

  intern(value: string): string {
    const known = this.values.get(value);
    if (known !== undefined) return known;
    if (this.values.size < this.limit) this.values.set(value, value);
    return value;
  }
}

const shared = new Interner(50_000);

function protocolOf(value: unknown): Protocol | null {
  const protocol = value ?? 'TCP';
  return PROTOCOLS.includes(protocol as string) ? (protocol as Protocol) : null;
}

function refOf(kind: ObjectRef['kind'], namespace: unknown, name: unknown): ObjectRef {
  const text = (v: unknown) => (typeof v === 'string' ? v : v === undefined || v === null ? '' : shown(v));
  return { kind, namespace: text(namespace), name: text(name) };
}

/** What a name may be and still be shown as it is (the check of its kind comes first). */
const PLAIN_NAME = /^[a-z0-9][-a-z0-9.]{0,252}$/;

/** An object's identity as reports show it: `Kind ns/name`, each part escaped unless it is a plain name. */
export function objectText(ref: ObjectRef): string {
  const part = (v: string) => (PLAIN_NAME.test(v) ? v : shown(v));
  return `${ref.kind} ${part(ref.namespace)}/${part(ref.name)}`;
}

/** A problem as reports, logs and explain show it: the object, then what is wrong with it. */
export function problemText(p: Problem): string {
  return `${objectText(p.object)} ${p.message}`;
}

export function serviceRef(namespace: unknown, name: unknown): ObjectRef {
  return refOf('Service', namespace, name);
}

export function sliceRef(namespace: unknown, name: unknown): ObjectRef {
  return refOf('EndpointSlice', namespace, name);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A list field: absent is empty; anything but an array is reported and read as empty. */
function listOf(value: unknown, field: string, object: ObjectRef, problems: Problem[]): unknown[] {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value;
  problems.push({ object, message: `${field} ${shown(value)} has the wrong type: expected a list, got ${typeName(value)}; ignored` });
  return [];
}

/** A map of labels or annotations: absent is empty; anything but an object is reported and read as empty. */
function mapOf(value: unknown, field: string, object: ObjectRef, problems: Problem[]): Record<string, unknown> {
  if (value === undefined || value === null) return {};
  if (isObject(value)) return value;
  problems.push({ object, message: `${field} ${shown(value)} has the wrong type: expected a map, got ${typeName(value)}; ignored` });
  return {};
}

/** A label or annotation the agent reads: its string value, or null when absent or (reported) not a string. */
function stringEntry(map: Record<string, unknown>, field: string, key: string, object: ObjectRef, problems: Problem[], consequence: string): string | null {
  const value = map[key];
  if (value === undefined || value === null) return null;
  const wrong = stringValueProblem(value);
  if (wrong) {
    problems.push({ object, message: `${field}[${key}] ${shown(value)} ${wrong}; ${consequence}` });
    return null;
  }
  return value as string;
}

/** Checks an object's namespace and name; a problem for each bad one. */
function identityProblems(kind: string, meta: Record<string, unknown>, nameCheck: (v: unknown) => string | null, object: ObjectRef): Problem[] {
  const problems: Problem[] = [];
  const ns = dnsLabelProblem(meta.namespace);
  if (ns) problems.push({ object, message: `metadata.namespace ${shown(meta.namespace)} ${ns}; ${kind} skipped` });
  const name = nameCheck(meta.name);
  if (name) problems.push({ object, message: `metadata.name ${shown(meta.name)} ${name}; ${kind} skipped` });
  return problems;
}

interface PortSource {
  readonly label: string;
  readonly field: string;
}

/** A port of a Service or a slice, or null (reported) when any of its fields is bad. */
function convertPort(raw: unknown, at: PortSource, object: ObjectRef, problems: Problem[]): SlicePortRecord | null {
  if (!isObject(raw)) {
    problems.push({ object, message: `${at.field} ${shown(raw)} has the wrong type: expected a port, got ${typeName(raw)}; port skipped` });
    return null;
  }
  const rawName = raw.name ?? '';
  const nameWrong = portNameProblem(rawName);
  if (nameWrong) {
    problems.push({ object, message: `${at.field}.name ${shown(rawName)} ${nameWrong}; port skipped` });
    return null;
  }
  const label = `port ${rawName === '' ? at.label : (rawName as string)}`;
  const portWrong = portNumberProblem(raw.port);
  if (portWrong) {
    problems.push({ object, message: `${label}: port ${shown(raw.port)} ${portWrong}; port skipped` });
    return null;
  }
  const protocol = protocolOf(raw.protocol);
  if (protocol === null) {
    problems.push({ object, message: `${label}: unsupported protocol ${bare(raw.protocol)}; port skipped` });
    return null;
  }
  return { name: shared.intern(rawName as string), port: raw.port as number, protocol };
}

/**
 * A Service as the model keeps it, every value checked (src/model/api-values.ts).
 * A Service whose namespace or name is not a Kubernetes name gives no record;
 * a bad port, ClusterIP, affinity timeout or annotation is left out alone.
 */
export function convertService(svc: V1Service): Converted<ServiceRecord> {
  const meta: Record<string, unknown> = isObject(svc.metadata) ? svc.metadata : {};
  const object = serviceRef(meta.namespace, meta.name);
  const identity = identityProblems('Service', meta, serviceNameProblem, object);
  if (identity.length > 0) return { record: null, problems: identity };
  const namespace = shared.intern(meta.namespace as string);
  const name = meta.name as string;
  const problems: Problem[] = [];
  const spec: Record<string, unknown> = isObject(svc.spec) ? svc.spec : {};
  const rawIP = spec.clusterIP ?? '';
  const headless = rawIP === 'None';
  let clusterIP: string | null = null;
  let clusterIPv6: string | null = null;
  if (!headless) {
    const candidates = [rawIP, ...listOf(spec.clusterIPs, 'spec.clusterIPs', object, problems)].filter((ip) => ip !== '');
    clusterIP = (candidates.find((ip) => typeof ip === 'string' && parseIPv4(ip) !== null) as string | undefined) ?? null;
    clusterIPv6 = candidates.map((ip) => (typeof ip === 'string' ? parseAddress(ip) : null)).find((a) => a?.family === 'IPv6')?.text ?? null;
    if (clusterIP === null && clusterIPv6 === null) {
      problems.push({ object, message: candidates.length === 0 ? 'has no ClusterIP' : `has no IPv4 or IPv6 ClusterIP (${candidates.map(bare).join(', ')})` });
    }
  }
  const ingressIPs = convertIngress(svc.status, object, problems);
  const ports: ServicePortRecord[] = [];
  listOf(spec.ports, 'spec.ports', object, problems).forEach((raw, i) => {
    const port = convertPort(raw, { label: isObject(raw) ? String(shown(raw.port)) : String(i), field: `spec.ports[${i}]` }, object, problems);
    if (port) ports.push(port);
  });
  let affinity: number | null = null;
  if (spec.sessionAffinity === 'ClientIP') {
    const config = isObject(spec.sessionAffinityConfig) ? spec.sessionAffinityConfig : {};
    const timeout = isObject(config.clientIP) ? config.clientIP.timeoutSeconds : undefined;
    const wrong = timeout === undefined || timeout === null ? null : integerProblem(timeout, 1, MAX_AFFINITY_SECONDS);
    if (wrong) problems.push({ object, message: `spec.sessionAffinityConfig.clientIP.timeoutSeconds ${shown(timeout)} ${wrong}; the default of ${DEFAULT_AFFINITY_SECONDS} s applies` });
    affinity = timeout === undefined || timeout === null || wrong ? DEFAULT_AFFINITY_SECONDS : (timeout as number);
  } else if (spec.sessionAffinity !== undefined && spec.sessionAffinity !== null && spec.sessionAffinity !== 'None') {
    problems.push({ object, message: `spec.sessionAffinity ${shown(spec.sessionAffinity)} is neither ClientIP nor None; no session affinity` });
  }
  const labels = mapOf(meta.labels, 'metadata.labels', object, problems);
  const proxyName = stringEntry(labels, 'metadata.labels', LABEL_SERVICE_PROXY_NAME, object, problems, 'label ignored');
  const annotations: Record<string, string> = {};
  for (const [key, value] of Object.entries(mapOf(meta.annotations, 'metadata.annotations', object, problems))) {
    if (!key.startsWith(AGENT_ANNOTATION_PREFIX)) continue;
    const kept = stringEntry({ [key]: value }, 'metadata.annotations', key, object, problems, 'annotation ignored');
    if (kept !== null) annotations[key] = kept;
  }
  return {
    record: { namespace, name, clusterIP, clusterIPv6, headless, ingressIPs, ports: exact(ports), affinitySeconds: affinity, proxyName, annotations },
    problems,
  };
}

/** Shared by every Service without ingress IPs (nearly all of them). */
const NO_IPS: readonly string[] = Object.freeze([]);

/** status.loadBalancer.ingress[].ip, each checked (clustersetIPProblem); a bad one is reported and left out. */
function convertIngress(rawStatus: unknown, object: ObjectRef, problems: Problem[]): readonly string[] {
  const status = isObject(rawStatus) ? rawStatus : {};
  const lb = isObject(status.loadBalancer) ? status.loadBalancer : {};
  const ips: string[] = [];
  listOf(lb.ingress, 'status.loadBalancer.ingress', object, problems).forEach((entry, i) => {
    const at = `status.loadBalancer.ingress[${i}]`;
    if (!isObject(entry)) {
      problems.push({ object, message: `${at} ${shown(entry)} has the wrong type: expected an ingress point, got ${typeName(entry)}; ignored` });
      return;
    }
    if (entry.ip === undefined || entry.ip === null || entry.ip === '' || entry.ipMode === 'Proxy') return;
    const wrong = clustersetIPProblem(entry.ip);
    if (wrong) {
      problems.push({ object, message: `${at}.ip ${shown(entry.ip)} ${wrong}; not served` });
      return;
    }
    const ip = parseAddress(entry.ip as string)!.text;
    if (!ips.includes(ip)) ips.push(ip);
  });
  return ips.length === 0 ? NO_IPS : ips;
}

/** What a wrong-typed condition reads as: the direction that never sends traffic to an endpoint it should not. */
const SAFE_CONDITION = { ready: false, serving: false, terminating: true } as const;

function condition(conditions: Record<string, unknown>, key: keyof typeof SAFE_CONDITION, at: string, object: ObjectRef, problems: Problem[]): boolean | undefined {
  const value = conditions[key];
  if (value === undefined || value === null) return undefined;
  const wrong = booleanProblem(value);
  if (!wrong) return value as boolean;
  problems.push({ object, message: `${at}.conditions.${key} ${shown(value)} ${wrong}; read as ${String(SAFE_CONDITION[key])}` });
  return SAFE_CONDITION[key];
}

/**
 * A slice as the model keeps it, every value checked (src/model/api-values.ts).
 * Returns a null record for slices that belong to no Service (not ours to
 * judge), and for a slice whose identity, Service label or provision-cluster
 * annotation is bad (reported); a bad port or endpoint is left out alone.
 */
export function convertSlice(slice: V1EndpointSlice): Converted<SliceRecord> {
  const meta: Record<string, unknown> = isObject(slice.metadata) ? slice.metadata : {};
  const object = sliceRef(meta.namespace, meta.name);
  const problems: Problem[] = [];
  const labels = mapOf(meta.labels, 'metadata.labels', object, problems);
  const serviceName = labels[LABEL_SERVICE_NAME];
  if (serviceName === undefined || serviceName === null || serviceName === '') return { record: null, problems };
  problems.push(...identityProblems('slice', meta, dnsSubdomainProblem, object));
  const serviceWrong = serviceNameProblem(serviceName);
  if (serviceWrong) problems.push({ object, message: `metadata.labels[${LABEL_SERVICE_NAME}] ${shown(serviceName)} ${serviceWrong}; slice skipped` });
  const annotations = mapOf(meta.annotations, 'metadata.annotations', object, problems);
  // Empty reads as absent, as it always has: the slice's name or controller says where it comes from.
  const provision = annotations[ANNOTATION_PROVISION_CLUSTER] === '' ? undefined : annotations[ANNOTATION_PROVISION_CLUSTER];
  const provisionWrong = provision === undefined || provision === null ? null : clusterNameProblem(provision);
  if (provisionWrong) problems.push({ object, message: `metadata.annotations[${ANNOTATION_PROVISION_CLUSTER}] ${shown(provision)} ${provisionWrong}; slice skipped` });
  if (problems.length > 0) return { record: null, problems };
  const namespace = shared.intern(meta.namespace as string);
  const name = meta.name as string;

  const family = slice.addressType === 'IPv4' || slice.addressType === 'IPv6' ? slice.addressType : null;
  if (family === null) problems.push({ object, message: `addressType ${bare(slice.addressType)} is not served (IPv4 and IPv6 only); slice ignored` });
  const ports: SlicePortRecord[] = [];
  const rawPorts = family !== null ? listOf(slice.ports, 'ports', object, problems) : [];
  if (family !== null && rawPorts.length === 0) problems.push({ object, message: 'has no ports; it contributes no endpoints' });
  rawPorts.forEach((raw, i) => {
    const port = convertPort(raw, { label: '(unnamed)', field: `ports[${i}]` }, object, problems);
    if (port) ports.push(port);
  });
  const endpoints: EndpointRecord[] = [];
  (family !== null ? listOf(slice.endpoints, 'endpoints', object, problems) : []).forEach((ep, i) => {
    const at = `endpoints[${i}]`;
    if (!isObject(ep)) {
      problems.push({ object, message: `${at} ${shown(ep)} has the wrong type: expected an endpoint, got ${typeName(ep)}; endpoint skipped` });
      return;
    }
    const addresses = Array.isArray(ep.addresses) ? ep.addresses : [];
    const raw: unknown = addresses[0];
    const wrong = family === 'IPv6' ? endpointIPv6AddressProblem(raw) : endpointAddressProblem(raw);
    if (wrong) {
      problems.push({ object, message: `endpoint address ${shown(raw ?? null)} ${wrong}; endpoint skipped` });
      return;
    }
    const ip = family === 'IPv6' ? parseAddress(raw as string)!.text : raw;
    // EndpointConditions: nil ready means ready; nil serving follows ready.
    const conditions = isObject(ep.conditions) ? ep.conditions : {};
    const ready = condition(conditions, 'ready', at, object, problems) ?? true;
    endpoints.push({
      ip: ip as string,
      ready,
      serving: condition(conditions, 'serving', at, object, problems) ?? ready,
      terminating: condition(conditions, 'terminating', at, object, problems) ?? false,
    });
  });
  const managedBy = labels[LABEL_MANAGED_BY];
  return {
    record: {
      namespace, name, serviceName: shared.intern(serviceName as string),
      managedBy: typeof managedBy === 'string' ? shared.intern(managedBy) : '',
      provisionCluster: typeof provision === 'string' ? shared.intern(provision) : null,
      addressType: typeof slice.addressType === 'string' ? shared.intern(slice.addressType) : '',
      family,
      ports: exact(ports), endpoints: exact(endpoints),
    },
    problems,
  };
}
