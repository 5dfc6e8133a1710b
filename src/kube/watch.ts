import type { KubeConfig, V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import { dnsLabelProblem } from '../model/api-values.js';
import { KARMADA_DISPATCH_CONTROLLER, KARMADA_IMPORT_CONTROLLER, LABEL_MANAGED_BY, LABEL_SERVICE_PROXY_NAME, PROXY_NAME } from '../model/records.js';
import { ResilientInformer, type Handlers, type InformerOptions, type ResourceSpec } from './informer.js';
import { safely, trimEndpointSlice, trimService } from './projection.js';

export { loadKubeConfig } from './client.js';
export { ResilientInformer, type Handlers, type InformerOptions, type ResourceSpec } from './informer.js';

/*
 * Another collection is one more ResilientInformer, e.g. for Nodes:
 *   new ResilientInformer<V1Node>(kc, { resource: 'nodes', path: '/api/v1/nodes' }, handlers, log, opts)
 */
// The engine keeps its own records of these: the informers' caches need only each object's identity.
export const SERVICES: ResourceSpec = { resource: 'services', path: '/api/v1/services', trim: safely(trimService), cacheIdentityOnly: true };
export const ENDPOINT_SLICES: ResourceSpec = {
  resource: 'endpointslices.discovery.k8s.io',
  path: '/apis/discovery.k8s.io/v1/endpointslices',
  trim: safely(trimEndpointSlice),
  cacheIdentityOnly: true,
};

const KARMADA_CONTROLLERS = `${KARMADA_IMPORT_CONTROLLER},${KARMADA_DISPATCH_CONTROLLER}`;
/**
 * Slices of headless Services carry this label (as kube-proxy, the agent
 * serves no headless Service): the API server sends neither them nor their
 * churn to any node.
 */
const NOT_HEADLESS = '!service.kubernetes.io/headless';

/** Slices written by Karmada (imported and dispatched: the remote endpoints), in every namespace. */
export const KARMADA_SLICES: ResourceSpec = { ...ENDPOINT_SLICES, labelSelector: `${LABEL_MANAGED_BY} in (${KARMADA_CONTROLLERS}),${NOT_HEADLESS}` };

/** Every other slice of one namespace: the local endpoints of the groups that live there. */
export function localSlices(namespace: string): ResourceSpec {
  return {
    ...ENDPOINT_SLICES,
    path: `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/endpointslices`,
    labelSelector: `${LABEL_MANAGED_BY} notin (${KARMADA_CONTROLLERS}),${NOT_HEADLESS}`,
  };
}

export interface ClusterWatchHandlers {
  services: Handlers<V1Service>;
  endpointSlices: Handlers<V1EndpointSlice>;
}

export interface ClusterWatchOptions extends InformerOptions {
  /** Name prefix of derived Services (config servicePrefix). */
  servicePrefix: string;
}

export interface ClusterWatches {
  /** Resolves once every collection has been listed; rejects if stopped first. */
  whenSynced(): Promise<void>;
  /** A live servicePrefix change: the namespaces watched are chosen again from the Services seen. */
  setServicePrefix(prefix: string): void;
  stop(): Promise<void>;
}

/**
 * Watches what the model can use, and no more: every Service (any of them
 * may be the local half of a derived one); Karmada's slices in every
 * namespace; and the other slices (the local cluster's endpoints) only of
 * namespaces that hold a group, which is to say a Karmada slice, a derived
 * Service or a Service handed over to this proxy. Every node runs the agent,
 * so each slice update of any other namespace would be sent once per node
 * for nothing. A namespace's watch starts when its first such object is
 * seen and stops, reporting its slices deleted, when its last one goes.
 */
export function startClusterWatches(kc: KubeConfig, handlers: ClusterWatchHandlers, log: Logger, opts: ClusterWatchOptions): ClusterWatches {
  const set = new ClusterWatchSet(kc, handlers, log, opts);
  return { whenSynced: () => set.whenSynced(), setServicePrefix: (p) => set.setServicePrefix(p), stop: () => set.stop() };
}

class ClusterWatchSet {
  private readonly services: ResilientInformer<V1Service>;
  private readonly karmada: ResilientInformer<V1EndpointSlice>;
  private readonly local = new Map<string, ResilientInformer<V1EndpointSlice>>();
  /** Namespace → why its local slices are wanted: `s/<name>` a derived or handed-over Service, `k/<name>` a Karmada slice. */
  private readonly reasons = new Map<string, Set<string>>();
  /** ns/name of the Services handed over to this proxy (their label is not in the informer's identity cache). */
  private readonly handedOver = new Set<string>();
  private servicePrefix: string;
  private stopped = false;

  constructor(
    private readonly kc: KubeConfig,
    private readonly handlers: ClusterWatchHandlers,
    private readonly log: Logger,
    private readonly opts: ClusterWatchOptions,
  ) {
    this.servicePrefix = opts.servicePrefix;
    const h = handlers;
    this.services = new ResilientInformer<V1Service>(kc, SERVICES, {
      onUpsert: (o) => {
        h.services.onUpsert(o);
        this.serviceSeen(o, true);
      },
      onDelete: (o) => {
        h.services.onDelete(o);
        this.serviceSeen(o, false);
      },
    }, log, opts);
    this.karmada = new ResilientInformer<V1EndpointSlice>(kc, KARMADA_SLICES, {
      onUpsert: (o) => {
        h.endpointSlices.onUpsert(o);
        this.reason(o.metadata?.namespace, `k/${o.metadata?.name}`, true);
      },
      onDelete: (o) => {
        const ns = o.metadata?.namespace ?? '';
        const name = o.metadata?.name ?? '';
        // Relabelled out of Karmada's hands: the namespace's watch has it now, and may have delivered it first.
        if (!this.local.get(ns)?.holds(ns, name)) h.endpointSlices.onDelete(o);
        this.reason(ns, `k/${name}`, false);
      },
    }, log, opts);
    this.services.start();
    this.karmada.start();
  }

  async whenSynced(): Promise<void> {
    await Promise.all([this.services.whenSynced(), this.karmada.whenSynced()]);
    // Both lists are in, so every namespace with a group has its watch; one may start meanwhile (a watch event).
    for (;;) {
      if (this.stopped) throw new Error('cluster watches stopped before their first lists completed');
      const pending = [...this.local.values()].filter((i) => !i.synced);
      if (pending.length === 0) return;
      // A namespace's watch stopped before its list (its last group went) rejects: nothing to wait for then.
      await Promise.all(pending.map((i) => i.whenSynced().catch(() => undefined)));
    }
  }

  setServicePrefix(prefix: string): void {
    if (prefix === this.servicePrefix) return;
    this.servicePrefix = prefix;
    for (const [ns, why] of this.reasons) {
      for (const r of why) if (r.startsWith('s/')) why.delete(r);
      if (why.size === 0) this.reasons.delete(ns);
    }
    for (const svc of this.services.cached()) this.serviceSeen(svc, true, false);
    this.reconcile();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const all = [this.services, this.karmada, ...this.local.values()];
    this.local.clear();
    await Promise.all(all.map((i) => i.stop()));
  }

  /** Identity-only objects (a prefix change) keep the handed-over mark they had. */
  private serviceSeen(svc: V1Service, present: boolean, fromEvent = true): void {
    const ns = svc.metadata?.namespace ?? '';
    const name = svc.metadata?.name ?? '';
    const key = `${ns}/${name}`;
    if (fromEvent) {
      if (present && svc.metadata?.labels?.[LABEL_SERVICE_PROXY_NAME] === PROXY_NAME) this.handedOver.add(key);
      else this.handedOver.delete(key);
    }
    this.reason(ns, `s/${name}`, present && (name.startsWith(this.servicePrefix) || this.handedOver.has(key)), fromEvent);
  }

  private reason(namespace: string | undefined, why: string, present: boolean, reconcile = true): void {
    // A namespace that is not a Kubernetes name has no objects the model keeps (they are reported and skipped).
    if (namespace === undefined || dnsLabelProblem(namespace)) return;
    let set = this.reasons.get(namespace);
    if (present) {
      if (!set) this.reasons.set(namespace, (set = new Set()));
      set.add(why);
    } else if (set?.delete(why) && set.size === 0) {
      this.reasons.delete(namespace);
    }
    if (reconcile) this.reconcile();
  }

  /** Starts the watches of namespaces that gained a group and stops those of namespaces that lost their last. */
  private reconcile(): void {
    if (this.stopped) return;
    for (const ns of this.reasons.keys()) {
      if (this.local.has(ns)) continue;
      const informer = new ResilientInformer<V1EndpointSlice>(this.kc, localSlices(ns), {
        onUpsert: (o) => this.handlers.endpointSlices.onUpsert(o),
        onDelete: (o) => {
          if (!this.karmada.holds(o.metadata?.namespace ?? '', o.metadata?.name ?? '')) this.handlers.endpointSlices.onDelete(o);
        },
      }, this.log, this.opts);
      this.local.set(ns, informer);
      informer.start();
      this.log.debug({ namespace: ns }, 'watching the namespace\'s local EndpointSlices');
    }
    for (const [ns, informer] of this.local) {
      if (this.reasons.has(ns)) continue;
      this.local.delete(ns);
      // What it held leaves the model as a relist that no longer finds it would: as deletes of their identity.
      for (const slice of informer.cached()) {
        if (!this.karmada.holds(ns, slice.metadata?.name ?? '')) this.handlers.endpointSlices.onDelete(slice);
      }
      void informer.stop();
      this.log.debug({ namespace: ns }, 'no group left in the namespace; its local EndpointSlices are no longer watched');
    }
  }
}
