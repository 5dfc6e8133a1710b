import { familyOf } from '../network/address.js';
import { withheldRange, type ClusterRange } from '../network/overlap.js';
import { ClusterResolver } from './clusters.js';
import type { ModelStore } from './store.js';
import {
  KARMADA_DISPATCH_CONTROLLER, KARMADA_IMPORT_CONTROLLER, PROXY_NAME, serviceRef, sliceRef,
  type Problem, type Protocol, type ServiceRecord, type SliceRecord,
} from './records.js';

/** One endpoint of one service port, attributed to its cluster. */
export interface ClusterEndpoint {
  readonly ip: string;
  readonly port: number;
  readonly cluster: string;
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
}

export interface FrontendPort {
  /** Port name, or the port number when unnamed: used in chain names and comments. */
  readonly label: string;
  readonly port: number;
  readonly protocol: Protocol;
  readonly endpoints: readonly ClusterEndpoint[];
}

/** A Service whose ClusterIPs (and ClusterSet IPs) carry the group's traffic. */
export interface Frontend {
  readonly namespace: string;
  readonly name: string;
  /** One ClusterIP per family the Service has: IPv4 first, then IPv6 (canonical text). Never empty. */
  readonly clusterIPs: readonly string[];
  /** The clusterset's addresses for this Service (a derived Service's load-balancer ingress IPs); empty for others. */
  readonly clustersetIPs: readonly string[];
  readonly affinitySeconds: number | null;
  readonly ports: readonly FrontendPort[];
  readonly annotations: Readonly<Record<string, string>>;
}

export type GroupSource = 'service-import' | 'multi-cluster-service' | 'service-proxy-name';

/** A logical multi-cluster service: `derived-<name>` and `<name>`, or one MCS Service. */
export interface ServiceGroup {
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  readonly source: GroupSource;
  /** The Service carrying the group's remote endpoints: derived-<name>, or the MCS / handed-over Service. */
  readonly frontends: readonly Frontend[];
  /** ServiceImport path: the local Service `<name>` and its own endpoints, when it exists. */
  readonly local: Frontend | null;
}

export interface GroupBuild {
  readonly group: ServiceGroup | null;
  readonly problems: readonly Problem[];
}

export interface GroupContext {
  readonly servicePrefix: string;
  readonly clusters: ClusterResolver;
  /** Remote ranges withheld for overlapping another network: remote endpoints inside them are left out. */
  readonly withheld?: readonly ClusterRange[];
}

const NONE: GroupBuild = { group: null, problems: [] };

function isKarmadaSlice(slice: SliceRecord): boolean {
  return slice.managedBy === KARMADA_IMPORT_CONTROLLER || slice.managedBy === KARMADA_DISPATCH_CONTROLLER;
}

/** Builds the group with key `ns/name` from the store; pure given the store. */
export function buildGroup(key: string, store: ModelStore, ctx: GroupContext): GroupBuild {
  const slash = key.indexOf('/');
  const namespace = key.slice(0, slash);
  const name = key.slice(slash + 1);
  const derivedName = ctx.servicePrefix + name;
  const derived = name === '' ? undefined : store.service(namespace, derivedName);
  const plain = store.service(namespace, name);
  const problems: Problem[] = [];

  if (!derived && !plain) {
    for (const slice of store.slicesOf(namespace, derivedName)) {
      problems.push({ object: sliceRef(namespace, slice.name), message: `references Service ${namespace}/${derivedName}, which does not exist; ignored until it appears` });
    }
    return { group: null, problems };
  }

  let source: GroupSource;
  let primary: ServiceRecord;
  let local: ServiceRecord | undefined;
  if (derived) {
    source = 'service-import';
    primary = derived;
    local = plain;
  } else if (plain!.proxyName === PROXY_NAME) {
    source = 'service-proxy-name';
    primary = plain!;
  } else if ([...store.slicesOf(namespace, name)].some((s) => s.managedBy === KARMADA_DISPATCH_CONTROLLER)) {
    source = 'multi-cluster-service';
    primary = plain!;
  } else {
    return NONE; // an ordinary Service: kube-proxy's
  }

  if (primary.headless) return NONE;
  const frontend = toFrontend(primary, store, ctx, problems, source === 'service-import');
  if (!frontend) return { group: null, problems };
  const localFrontend = local && !local.headless ? toFrontend(local, store, ctx, problems) : null;
  return {
    group: { key, namespace, name, source, frontends: [frontend], local: localFrontend },
    problems,
  };
}

/** `withClustersetIPs`: the Service is a derived one, whose ingress IPs are its ClusterSet IPs. */
function toFrontend(svc: ServiceRecord, store: ModelStore, ctx: GroupContext, problems: Problem[], withClustersetIPs = false): Frontend | null {
  const clusterIPs = [svc.clusterIP, svc.clusterIPv6].filter((ip): ip is string => ip !== null);
  if (clusterIPs.length === 0) return null; // reported when the Service was converted
  const clustersetIPs = withClustersetIPs ? svc.ingressIPs : [];
  for (const ip of clustersetIPs) {
    if (!clusterIPs.some((c) => familyOf(c) === familyOf(ip))) {
      problems.push({ object: serviceRef(svc.namespace, svc.name), message: `ClusterSet IP ${ip} (status.loadBalancer.ingress) is of a family the Service has no ClusterIP of (ClusterIPs ${clusterIPs.join(', ')}); not served` });
    }
  }
  // Endpoints of both families: selection gives each address those of its own.
  const slices = [...store.slicesOf(svc.namespace, svc.name)].filter((s) => s.family !== null);
  const origins = slices.map((slice) => {
    const origin = ctx.clusters.originOf(slice);
    if (origin.unknownPrefix && isKarmadaSlice(slice)) {
      problems.push({
        object: sliceRef(slice.namespace, slice.name),
        message: `name matches no configured cluster; its endpoints count as cluster "${origin.cluster}"`,
      });
    }
    return origin.cluster;
  });
  const ports = svc.ports.map((sp): FrontendPort => {
    const label = sp.name || String(sp.port);
    const endpoints: ClusterEndpoint[] = [];
    slices.forEach((slice, i) => {
      const match = slice.ports.find((p) => p.name === sp.name && p.protocol === sp.protocol);
      if (!match) {
        if (slice.ports.length > 0) {
          problems.push({
            object: serviceRef(svc.namespace, svc.name),
            message: `port ${label}/${sp.protocol}: EndpointSlice ${slice.name} has no such port; it contributes no endpoints to it`,
          });
        }
        return;
      }
      const cluster = origins[i]!;
      const withheld = ctx.withheld?.length && cluster !== (ctx.clusters.localCluster || 'local') ? ctx.withheld : null;
      // Spelled out: an object spread per endpoint was a tenth of a 10k-service full sync.
      for (const ep of slice.endpoints) {
        const range = withheld ? withheldRange(ep.ip, withheld) : undefined;
        if (range) {
          problems.push({ object: sliceRef(slice.namespace, slice.name), message: `endpoint ${ep.ip} of cluster ${cluster} is in ${range.cluster}'s ${range.kind} CIDR ${range.cidr}, which overlaps another cluster's network; left out` });
          continue;
        }
        endpoints.push({ ip: ep.ip, ready: ep.ready, serving: ep.serving, terminating: ep.terminating, port: match.port, cluster });
      }
    });
    return { label, port: sp.port, protocol: sp.protocol, endpoints };
  });
  return { namespace: svc.namespace, name: svc.name, clusterIPs, clustersetIPs, affinitySeconds: svc.affinitySeconds, ports, annotations: svc.annotations };
}
