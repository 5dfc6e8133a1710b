import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { isAddressOf, parseAddress, type IPFamily } from '../network/address.js';

// API objects are reduced on arrival to the few fields the data plane needs,
// validated once. This keeps memory small at 10k services and keeps every
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

/** A problem with one object: the object is skipped (or partly), never the agent. */
export interface Problem {
  /** e.g. "EndpointSlice default/imported-brazil-abc". */
  readonly object: string;
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
  /** IPv4 ClusterIP; null for a Service that has none (skipped with a problem). */
  readonly clusterIP: string | null;
  /** IPv6 ClusterIP (canonical text) of a dual-stack or IPv6 Service; null when it has none. Not served yet. */
  readonly clusterIPv6: string | null;
  readonly headless: boolean;
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

/**
 * A copy without spare capacity: an array grown by push from [] reserves 17
 * slots (152 bytes) for its first element, and records are kept for every
 * object of the cluster.
 */
export function exact<T>(items: T[]): T[] {
  return items.slice();
}

function validPort(port: unknown): port is number {
  return typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65535;
}

function protocolOf(value: unknown): Protocol | null {
  const protocol = value ?? 'TCP';
  return PROTOCOLS.includes(protocol as string) ? (protocol as Protocol) : null;
}

export function serviceRef(namespace: string, name: string): string {
  return `Service ${namespace}/${name}`;
}

export function sliceRef(namespace: string, name: string): string {
  return `EndpointSlice ${namespace}/${name}`;
}

export function convertService(svc: V1Service): Converted<ServiceRecord> {
  const namespace = svc.metadata?.namespace ?? '';
  const name = svc.metadata?.name ?? '';
  const object = serviceRef(namespace, name);
  const problems: Problem[] = [];
  const spec = svc.spec ?? {};
  const rawIP = spec.clusterIP ?? '';
  const headless = rawIP === 'None';
  let clusterIP: string | null = null;
  let clusterIPv6: string | null = null;
  if (!headless) {
    const candidates = [rawIP, ...(spec.clusterIPs ?? [])].filter((ip) => ip !== '');
    clusterIP = candidates.find((ip) => isAddressOf('IPv4', ip)) ?? null;
    clusterIPv6 = candidates.map((ip) => parseAddress(ip)).find((a) => a?.family === 'IPv6')?.text ?? null;
    if (clusterIP === null) {
      problems.push({ object, message: candidates.length === 0 ? 'has no ClusterIP' : `has no IPv4 ClusterIP (${candidates.join(', ')})` });
    }
  }
  const ports: ServicePortRecord[] = [];
  for (const p of spec.ports ?? []) {
    const label = p.name ? `port ${p.name}` : `port ${String(p.port)}`;
    const protocol = protocolOf(p.protocol);
    if (!validPort(p.port)) problems.push({ object, message: `${label}: port ${String(p.port)} is out of range 1-65535; port skipped` });
    else if (protocol === null) problems.push({ object, message: `${label}: unsupported protocol ${String(p.protocol)}; port skipped` });
    else ports.push({ name: p.name ?? '', port: p.port, protocol });
  }
  const affinity = spec.sessionAffinity === 'ClientIP'
    ? spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_SECONDS
    : null;
  return {
    record: {
      namespace, name, clusterIP, clusterIPv6, headless, ports: exact(ports), affinitySeconds: affinity,
      proxyName: svc.metadata?.labels?.[LABEL_SERVICE_PROXY_NAME] ?? null,
      annotations: Object.fromEntries(Object.entries(svc.metadata?.annotations ?? {}).filter(([k]) => k.startsWith(AGENT_ANNOTATION_PREFIX))),
    },
    problems,
  };
}

/** Returns null record for slices that belong to no Service (not ours to judge). */
export function convertSlice(slice: V1EndpointSlice): Converted<SliceRecord> {
  const namespace = slice.metadata?.namespace ?? '';
  const name = slice.metadata?.name ?? '';
  const serviceName = slice.metadata?.labels?.[LABEL_SERVICE_NAME];
  if (!serviceName) return { record: null, problems: [] };
  const object = sliceRef(namespace, name);
  const problems: Problem[] = [];
  const family = slice.addressType === 'IPv4' || slice.addressType === 'IPv6' ? slice.addressType : null;
  if (family === null) problems.push({ object, message: `addressType ${String(slice.addressType)} is not served (IPv4 only); slice ignored` });
  // Kept in the model with its endpoints; the data plane serves IPv4 slices only so far.
  if (family === 'IPv6') problems.push({ object, message: 'addressType IPv6 is not served by the data plane yet (IPv4 only); its endpoints are kept in the model' });
  const ports: SlicePortRecord[] = [];
  if (family !== null && (slice.ports ?? []).length === 0) problems.push({ object, message: 'has no ports; it contributes no endpoints' });
  for (const p of family !== null ? slice.ports ?? [] : []) {
    const label = p.name ? `port ${p.name}` : 'unnamed port';
    const protocol = protocolOf(p.protocol);
    if (!validPort(p.port)) problems.push({ object, message: `${label}: port ${String(p.port)} is out of range 1-65535; port skipped` });
    else if (protocol === null) problems.push({ object, message: `${label}: unsupported protocol ${String(p.protocol)}; port skipped` });
    else ports.push({ name: p.name ?? '', port: p.port, protocol });
  }
  const endpoints: EndpointRecord[] = [];
  for (const ep of family !== null ? slice.endpoints ?? [] : []) {
    const raw = ep.addresses?.[0];
    const address = raw === undefined ? null : parseAddress(raw);
    if (family === null || address?.family !== family) {
      problems.push({ object, message: `endpoint address ${JSON.stringify(raw ?? null)} is not a valid ${family} address; endpoint skipped` });
      continue;
    }
    const ip = address.text;
    // EndpointConditions: nil ready means ready; nil serving follows ready.
    const ready = ep.conditions?.ready ?? true;
    endpoints.push({
      ip,
      ready,
      serving: ep.conditions?.serving ?? ready,
      terminating: ep.conditions?.terminating ?? false,
    });
  }
  return {
    record: {
      namespace, name, serviceName,
      managedBy: slice.metadata?.labels?.[LABEL_MANAGED_BY] ?? '',
      provisionCluster: slice.metadata?.annotations?.[ANNOTATION_PROVISION_CLUSTER] ?? null,
      addressType: slice.addressType ?? '',
      family,
      ports: exact(ports), endpoints: exact(endpoints),
    },
    problems,
  };
}
