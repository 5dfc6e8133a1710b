import type { KubeConfig, V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import { ResilientInformer, type Handlers, type InformerOptions, type ResourceSpec } from './informer.js';
import { safely, trimEndpointSlice, trimService } from './projection.js';

export { loadKubeConfig } from './client.js';
export { ResilientInformer, type Handlers, type InformerOptions, type ResourceSpec } from './informer.js';

/*
 * Another collection is one more ResilientInformer, e.g. for Nodes:
 *   new ResilientInformer<V1Node>(kc, { resource: 'nodes', path: '/api/v1/nodes' }, handlers, log, opts)
 */
// The engine keeps its own records of both: the informers' caches need only each object's identity.
export const SERVICES: ResourceSpec = { resource: 'services', path: '/api/v1/services', trim: safely(trimService), cacheIdentityOnly: true };
export const ENDPOINT_SLICES: ResourceSpec = {
  resource: 'endpointslices.discovery.k8s.io',
  path: '/apis/discovery.k8s.io/v1/endpointslices',
  // Slices of headless Services carry this label (as kube-proxy, the agent serves no headless Service):
  // the API server does not send them, nor their churn, to any node.
  labelSelector: '!service.kubernetes.io/headless',
  trim: safely(trimEndpointSlice),
  cacheIdentityOnly: true,
};

export interface ClusterWatchHandlers {
  services: Handlers<V1Service>;
  endpointSlices: Handlers<V1EndpointSlice>;
}

export interface ClusterWatches {
  /** Resolves once both collections have been listed; rejects if stopped first. */
  whenSynced(): Promise<void>;
  stop(): Promise<void>;
}

/** Watches every Service and EndpointSlice of the cluster, across all namespaces. */
export function startClusterWatches(
  kc: KubeConfig,
  handlers: ClusterWatchHandlers,
  log: Logger,
  opts?: InformerOptions,
): ClusterWatches {
  const informers = [
    new ResilientInformer<V1Service>(kc, SERVICES, handlers.services, log, opts),
    new ResilientInformer<V1EndpointSlice>(kc, ENDPOINT_SLICES, handlers.endpointSlices, log, opts),
  ];
  for (const informer of informers) informer.start();
  return {
    whenSynced: async () => {
      await Promise.all(informers.map((informer) => informer.whenSynced()));
    },
    stop: async () => {
      await Promise.all(informers.map((informer) => informer.stop()));
    },
  };
}
