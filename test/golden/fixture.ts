// One varied set of objects, synced through the real engine, whose resulting
// tables are stored as golden iptables-save text. Every policy, session
// affinity, named and unnamed ports, TCP and UDP, a port without endpoints,
// several clusters, ServiceImport (derived-) and MultiClusterService groups,
// endpoint conditions, a probed-dead endpoint, and a group the kernel refuses
// that keeps the rules it had.

import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import { DEFAULT_CONFIG, type Config } from '../../src/config/schema.js';
import { RestoreError, type IptablesBackend } from '../../src/iptables/backend.js';
import { silentLogger } from '../../src/log.js';
import type { HealthView } from '../../src/policy/select.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { dispatchedSlice, endpoint, importedSlice, service, slice } from '../support/fixtures.js';

export const GOLDEN_CONFIG: Config = {
  ...DEFAULT_CONFIG,
  clusterName: 'brazil',
  clusters: [{ name: 'brazil' }, { name: 'chile01' }, { name: 'peru' }],
  clusterCIDR: '10.244.0.0/16',
};

/** Every payload naming this endpoint is refused, line-numbered, as iptables-restore refuses a bad rule. */
export const POISON = '10.4.0.66';
/** The prober says this endpoint is dead. */
export const DEAD = '10.3.0.99';

const HEALTH: HealthView = {
  clusterHealthy: () => true,
  endpointHealthy: (ip) => ip !== DEAD,
};

/** Passes every restore to `inner` except those naming POISON, which it refuses like the tool does. */
export class PoisonRefusing implements IptablesBackend {
  refusals = 0;
  constructor(private readonly inner: IptablesBackend) {}
  get mode() {
    return this.inner.mode;
  }
  save(table: 'nat' | 'filter') {
    return this.inner.save(table);
  }
  restoreSets(payload: string) {
    return this.inner.restoreSets(payload);
  }
  saveSet(name: string) {
    return this.inner.saveSet(name);
  }
  async restore(payload: string): Promise<void> {
    const index = payload.split('\n').findIndex((l) => l.includes(`${POISON}:`));
    if (index !== -1) {
      this.refusals++;
      const text = `iptables-restore: line ${index + 1} failed: Invalid argument`;
      throw new RestoreError(text, `${text}\n`, index + 1);
    }
    await this.inner.restore(payload);
  }
}

const ns = 'shop';
const tcp = (name: string | undefined, port: number) => ({ ...(name ? { name } : {}), port, protocol: 'TCP' as const });

/** Loads the fixture into `engine`: the objects as first seen. */
function loadObjects(engine: SyncEngine): void {
  // local-first with both a local Service (unified) and a derived one; named ports, affinity on the derived one.
  engine.upsertService(service(ns, 'web', '10.96.1.1', [tcp('http', 80), tcp('metrics', 9090)], {
    annotations: { 'clusterset-proxy.io/unified-name': 'true' },
  }));
  engine.upsertService(service(ns, 'derived-web', '10.96.1.2', [tcp('http', 80), tcp('metrics', 9090)], {
    sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
  }));
  engine.upsertSlice(slice(ns, 'web-abc', 'web', [endpoint('10.244.1.10'), endpoint('10.244.1.11'), endpoint('10.244.1.12', { ready: false })],
    { ports: [tcp('http', 8080), tcp('metrics', 9100)] }));
  engine.upsertSlice(importedSlice(ns, 'chile01', 'web-1', 'derived-web', [endpoint('10.2.1.10'), endpoint('10.2.1.11')], [tcp('http', 8080), tcp('metrics', 9100)]));
  engine.upsertSlice(importedSlice(ns, 'peru', 'web-1', 'derived-web', [endpoint('10.3.1.10')], [tcp('http', 8080), tcp('metrics', 9100)]));

  // active-active with weights; terminating-but-serving endpoints stand in where none is ready; a dead endpoint drops out.
  engine.upsertService(service(ns, 'derived-api', '10.96.2.1', [tcp('grpc', 50051)], {
    annotations: { 'clusterset-proxy.io/traffic-policy': 'active-active', 'clusterset-proxy.io/cluster-weights': 'chile01=3,peru=1,brazil=0' },
  }));
  engine.upsertSlice(importedSlice(ns, 'chile01', 'api-1', 'derived-api', [endpoint('10.2.2.10'), endpoint('10.2.2.11'), endpoint('10.2.2.12')], [tcp('grpc', 5000)]));
  engine.upsertSlice(importedSlice(ns, 'peru', 'api-1', 'derived-api',
    [endpoint('10.3.2.10', { ready: false, serving: true, terminating: true }), endpoint('10.3.2.11', { ready: false, serving: false, terminating: true })], [tcp('grpc', 5000)]));
  engine.upsertSlice(importedSlice(ns, 'brazil', 'api-1', 'derived-api', [endpoint('10.244.2.10')], [tcp('grpc', 5000)]));

  // failover in a configured order, an unnamed UDP port and a probed-dead endpoint.
  engine.upsertService(service(ns, 'derived-dns', '10.96.3.1', [{ port: 53, protocol: 'UDP' }], {
    annotations: { 'clusterset-proxy.io/traffic-policy': 'failover', 'clusterset-proxy.io/failover-order': 'peru,chile01' },
  }));
  engine.upsertSlice(importedSlice(ns, 'peru', 'dns-1', 'derived-dns', [endpoint(DEAD), endpoint('10.3.3.10')], [{ port: 5353, protocol: 'UDP' }]));
  engine.upsertSlice(importedSlice(ns, 'chile01', 'dns-1', 'derived-dns', [endpoint('10.2.3.10')], [{ port: 5353, protocol: 'UDP' }]));

  // off: the group is left to kube-proxy.
  engine.upsertService(service(ns, 'derived-legacy', '10.96.4.1', [tcp('http', 80)], {
    annotations: { 'clusterset-proxy.io/traffic-policy': 'off' },
  }));
  engine.upsertSlice(importedSlice(ns, 'chile01', 'legacy-1', 'derived-legacy', [endpoint('10.2.4.10')], [tcp('http', 8080)]));

  // No endpoints anywhere: rejected at once.
  engine.upsertService(service(ns, 'derived-empty', '10.96.5.1', [tcp('http', 80), tcp(undefined, 8443)]));

  // A MultiClusterService: one Service, slices dispatched from two clusters.
  engine.upsertService(service(ns, 'cart', '10.96.6.1', [tcp('http', 80)]));
  engine.upsertSlice(dispatchedSlice(ns, 'chile01', 'cart-1', 'cart', [endpoint('10.2.6.10')], [tcp('http', 8080)]));
  engine.upsertSlice(dispatchedSlice(ns, 'peru', 'cart-1', 'cart', [endpoint('10.3.6.10'), endpoint('10.3.6.11')], [tcp('http', 8080)]));

  // An invalid annotation is ignored: the configured policy applies.
  engine.upsertService(service('other', 'derived-search', '10.96.7.1', [tcp('http', 80)], {
    annotations: { 'clusterset-proxy.io/traffic-policy': 'round-robin' },
  }));
  engine.upsertSlice(importedSlice('other', 'peru', 'search-1', 'derived-search', [endpoint('10.3.7.10')], [tcp('http', 8080)]));

  // Programmed now; its next change is refused by the kernel.
  engine.upsertService(service(ns, 'derived-pay', '10.96.8.1', [tcp('http', 80)]));
  engine.upsertSlice(importedSlice(ns, 'chile01', 'pay-1', 'derived-pay', [endpoint('10.4.0.10')], [tcp('http', 8080)]));
}

/**
 * Syncs the fixture into `backend` (which holds only foreign rules): a full
 * sync, then a partial sync that changes two groups, one of which the kernel
 * refuses, so it is quarantined with its old rules while the other applies.
 * Returns the engine and how many groups ended quarantined.
 */
export async function syncFixture(inner: IptablesBackend): Promise<{ engine: SyncEngine; quarantined: number; refusals: number }> {
  const backend = new PoisonRefusing(inner);
  const engine = new SyncEngine({ config: GOLDEN_CONFIG, dataplane: new IptablesDataplane(backend), log: silentLogger(), health: HEALTH, now: () => 0 });
  loadObjects(engine);
  await engine.syncFull();
  engine.upsertSlice(importedSlice(ns, 'chile01', 'pay-1', 'derived-pay', [endpoint('10.4.0.10'), endpoint(POISON)], [tcp('http', 8080)]));
  engine.upsertSlice(importedSlice(ns, 'chile01', 'cart-1', 'cart', [endpoint('10.2.6.10'), endpoint('10.2.6.11')], [tcp('http', 8080)]));
  const result = await engine.syncPartial();
  return { engine, quarantined: result.quarantined, refusals: backend.refusals };
}
