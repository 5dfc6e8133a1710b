// The IPVS data plane's cost in a real kernel beside the iptables one's, run
// inside UML:
//   npm run test:uml -- --exec node dist/test/ipvs/dataplane-bench.js [services] [endpoints per service] [changes] [failover|active-active] [iptables changes]
// For each data plane, one after the other in the same kernel and the same
// workload: cold start (plan, diff from an empty kernel, apply), a full
// read-back (observe and diff: nothing to do), then single endpoint changes
// one at a time through plan, diffGroup and apply, each timed to applied with
// its kernel calls counted (IPVS: netlink requests; iptables: iptables-legacy-restore
// runs). `iptables changes` 0 skips the iptables side.

import { performance } from 'node:perf_hooks';
import type { ClusterEndpoint } from '../../src/model/group.js';
import type { PolicySettings } from '../../src/policy/policy.js';
import { selectByPolicy, ALL_HEALTHY } from '../../src/policy/select.js';
import type { GroupSelection } from '../../src/selection/selection.js';
import { IpvsDataplane } from '../../src/ipvs/dataplane.js';
import { NetlinkIpvs } from '../../src/ipvs/netlink-client.js';
import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import { ExecIptablesBackend } from '../../src/iptables/exec-backend.js';
import { silentLogger } from '../../src/log.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';
import type { Dataplane, KernelState, Transaction } from '../../src/sync/dataplane.js';

const services = Number(process.argv[2] ?? 10_000);
const perService = Number(process.argv[3] ?? 10);
const changes = Number(process.argv[4] ?? 500);
// active-active keeps each cluster's share fixed, so a cluster's endpoint count changing rescales the weights of
// every endpoint; failover (one cluster, equal weights) changes only the endpoint that changed.
const mode = process.argv[5] === 'active-active' ? 'active-active' : 'failover';
const iptablesChanges = Number(process.argv[6] ?? 50);
const settings: PolicySettings = { mode, clusterWeights: { brazil: 3, chile01: 1 }, failoverOrder: ['brazil', 'chile01'], unifiedName: false };

function endpoints(i: number, extra: number): ClusterEndpoint[] {
  return Array.from({ length: perService + extra }, (_, j) => ({
    ip: `10.${100 + (j >> 8)}.${(i >> 8) & 255}.${i & 255}`, port: 8080 + (j & 255), cluster: j % 2 === 0 ? 'brazil' : 'chile01', ready: true, serving: true, terminating: false,
  }));
}

function selection(i: number, extra = 0): GroupSelection {
  const chosen = selectByPolicy(endpoints(i, extra), settings, 'brazil', ALL_HEALTHY);
  return {
    key: `bench/s${i}`, settings, decision: chosen.decision, problems: [],
    frontends: [{ kind: 'cluster-ip', family: 'ipv4', ip: `10.96.${(i >> 8) & 255}.${i & 255}`, port: 80, protocol: 'TCP', name: { namespace: 'bench', service: `s${i}`, port: 'http' }, affinity: null, endpoints: chosen.endpoints, decision: chosen.decision }],
  };
}

function quantiles(ms: number[]): string {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(3);
  return `p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${sorted.at(-1)!.toFixed(3)} ms (n=${sorted.length})`;
}

type AnyDataplane = Dataplane<unknown, KernelState<unknown>, Transaction>;

async function measure(label: string, dp: AnyDataplane, changeCount: number, size: (key: string, state: unknown) => number): Promise<void> {
  const desired = new Map<string, unknown>();
  let t0 = performance.now();
  for (let i = 0; i < services; i++) desired.set(`bench/s${i}`, dp.plan(selection(i))!);
  const tx = dp.diff(null, desired);
  const planned = performance.now() - t0;
  const cold = await dp.apply(tx);
  if (cold.refused) throw new Error(`${label}: cold start refused: ${JSON.stringify(cold.refused)}`);
  console.log(`${label}: cold start ${services} services x ${perService} endpoints: plan+diff ${planned.toFixed(0)} ms, apply ${(performance.now() - t0 - planned).toFixed(0)} ms, ${cold.stats.restores} kernel calls, ${cold.stats.payloadBytes} bytes`);

  t0 = performance.now();
  const kernel = await dp.observe(desired);
  const again = dp.diff(kernel, desired);
  console.log(`${label}: full read-back and diff: ${(performance.now() - t0).toFixed(0)} ms, ${again.keys.length} units to change`);

  const times: number[] = [];
  const calls = new Map<number, number>();
  let bytes = 0;
  for (let n = 0; n < changeCount; n++) {
    const i = (n * 7919) % services;
    const key = `bench/s${i}`;
    const last = desired.get(key)!;
    // Alternately one endpoint more and back: an add, then a removal (IPVS: a drain at weight 0).
    const extra = size(key, last) > perService ? 0 : 1;
    const start = performance.now();
    const next = dp.plan(selection(i, extra))!;
    const outcome = await dp.apply(dp.diffGroup(key, last, next));
    times.push(performance.now() - start);
    if (outcome.refused) throw new Error(`${label}: change refused: ${JSON.stringify(outcome.refused)}`);
    calls.set(outcome.stats.restores, (calls.get(outcome.stats.restores) ?? 0) + 1);
    bytes += outcome.stats.payloadBytes;
    desired.set(key, next);
  }
  console.log(`${label}: one endpoint change (${mode}; plan, diffGroup, apply) at ${services} services: ${quantiles(times)}`);
  console.log(`${label}: kernel calls per change: ${JSON.stringify(Object.fromEntries(calls))}${bytes > 0 ? `, ${Math.round(bytes / changeCount)} bytes per change` : ''}`);
}

const client = new NetlinkIpvs();
await client.flush();
await measure('ipvs', new IpvsDataplane(client) as unknown as AnyDataplane, changes, (_key, state) => (state as { frontends: { dests: unknown[] }[] }).frontends[0]!.dests.length);
await client.flush();
client.close();

if (iptablesChanges > 0) {
  const backend = new ExecIptablesBackend('legacy', { lockWaitSeconds: 60, log: silentLogger() });
  const iptables = new IptablesDataplane(backend, { clusterCIDR: '10.244.0.0/16', localCluster: 'brazil', masqueradeBit: 14, maxChainsPerRestore: DEFAULT_CONFIG.maxChainsPerRestore });
  // The iptables side's state names no endpoint count: track it alongside.
  const planned = new Map<string, number>();
  await measure('iptables-legacy', iptables as unknown as AnyDataplane, iptablesChanges, (key) => {
    const n = planned.get(key) ?? perService;
    planned.set(key, n > perService ? perService : perService + 1);
    return n;
  });
  await iptables.cleanup();
}
