import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import {
  ANNOTATION_PROVISION_CLUSTER, KARMADA_DISPATCH_CONTROLLER, KARMADA_IMPORT_CONTROLLER,
  LABEL_MANAGED_BY, LABEL_SERVICE_NAME,
} from '../../src/model/records.js';

// Objects shaped as Karmada and Kubernetes write them, for tests, benchmarks and the demo.

export interface PortSpec {
  name?: string;
  port: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
}

export function service(
  namespace: string, name: string, clusterIP: string, ports: PortSpec[],
  extra: Partial<V1Service['spec']> & { labels?: Record<string, string>; annotations?: Record<string, string> } = {},
): V1Service {
  const { labels, annotations, ...spec } = extra;
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace, name, ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) },
    spec: {
      type: 'ClusterIP',
      clusterIP,
      clusterIPs: clusterIP === '' ? [] : [clusterIP],
      ports: ports.map((p) => ({ ...(p.name ? { name: p.name } : {}), port: p.port, protocol: p.protocol ?? 'TCP', targetPort: p.port as unknown as never })),
      ...spec,
    },
  };
}

/** The Service with status.loadBalancer.ingress as Karmada writes a derived Service's ClusterSet IPs (`ips`: one entry each). */
export function withClustersetIPs(svc: V1Service, ips: readonly string[], extra: NonNullable<NonNullable<V1Service['status']>['loadBalancer']>['ingress'] = []): V1Service {
  return { ...svc, status: { loadBalancer: { ingress: [...ips.map((ip) => ({ ip })), ...(extra ?? [])] } } };
}

export interface EndpointSpec {
  ip: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

export function endpoint(ip: string, conditions: Omit<EndpointSpec, 'ip'> = {}): EndpointSpec {
  return { ip, ...conditions };
}

export interface SliceOptions {
  managedBy?: string;
  annotations?: Record<string, string>;
  addressType?: string;
  ports?: PortSpec[] | null;
}

export function slice(namespace: string, name: string, serviceName: string, endpoints: EndpointSpec[], opts: SliceOptions = {}): V1EndpointSlice {
  const ports = opts.ports === undefined ? [{ name: 'http', port: 8080 }] : opts.ports;
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      namespace,
      name,
      labels: { [LABEL_SERVICE_NAME]: serviceName, [LABEL_MANAGED_BY]: opts.managedBy ?? 'endpointslice-controller.k8s.io' },
      ...(opts.annotations ? { annotations: opts.annotations } : {}),
    },
    addressType: opts.addressType ?? 'IPv4',
    endpoints: endpoints.map((ep) => ({
      addresses: [ep.ip],
      conditions: {
        ...(ep.ready !== undefined ? { ready: ep.ready } : {}),
        ...(ep.serving !== undefined ? { serving: ep.serving } : {}),
        ...(ep.terminating !== undefined ? { terminating: ep.terminating } : {}),
      },
    })),
    ...(ports === null ? {} : { ports: ports.map((p) => ({ ...(p.name !== undefined ? { name: p.name } : {}), port: p.port, protocol: p.protocol ?? 'TCP' })) }),
  };
}

/** `imported-<cluster>-<slice>` for `derived-<name>`, as Karmada's ServiceImport controller writes it. */
export function importedSlice(namespace: string, cluster: string, sliceName: string, derivedName: string, endpoints: EndpointSpec[], ports?: PortSpec[] | null): V1EndpointSlice {
  return slice(namespace, `imported-${cluster}-${sliceName}`, derivedName, endpoints, { managedBy: KARMADA_IMPORT_CONTROLLER, ports });
}

/** `<cluster>-<slice>` dispatched by Karmada's MultiClusterService controller. */
export function dispatchedSlice(namespace: string, cluster: string, sliceName: string, serviceName: string, endpoints: EndpointSpec[], ports?: PortSpec[]): V1EndpointSlice {
  return slice(namespace, `${cluster}-${sliceName}`, serviceName, endpoints, {
    managedBy: KARMADA_DISPATCH_CONTROLLER,
    annotations: { [ANNOTATION_PROVISION_CLUSTER]: cluster },
    ports,
  });
}
