// The IPVS data plane's cost in a real kernel, run inside UML:
//   npm run test:uml -- --exec node dist/test/ipvs/dataplane-bench.js [services] [endpoints per service] [changes] [failover|active-active]
// Cold start (plan, diff from an empty kernel, apply), a full read-back
// (observe and diff: nothing to do), then single endpoint changes one at a
// time through plan, diffGroup and apply, each timed to applied with its
// netlink requests counted.

import { performance } from 'node:perf_hooks';
import type { ClusterEndpoint } from '../../src/model/group.js';
import type { PolicySettings } from '../../src/policy/policy.js';
import { selectByPolicy, ALL_HEALTHY } from '../../src/policy/select.js';
import type { GroupSelection } from '../../src/selection/selection.js';
import { IpvsDataplane, type IpvsGroup } from '../../src/ipvs/dataplane.js';
import { NetlinkIpvs } from '../../src/ipvs/netlink-client.js';

const services = Number(process.argv[2] ?? 10_000);
const perService = Number(process.argv[3] ?? 10);
const changes = Number(process.argv[4] ?? 500);
// active-active keeps each cluster's share fixed, so a cluster's endpoint count changing rescales the weights of
// every endpoint; failover (one cluster, equal weights) changes only the endpoint that changed.
const mode = process.argv[5] === 'active-active' ? 'active-active' : 'failover';
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

const client = new NetlinkIpvs();
await client.flush();
const dp = new IpvsDataplane(client);
const desired = new Map<string, IpvsGroup>();
let t0 = performance.now();
for (let i = 0; i < services; i++) {
  const g = dp.plan(selection(i))!;
  desired.set(g.key, g);
}
const tx = dp.diff(null, desired);
const planned = performance.now() - t0;
let r0 = client.requests;
const cold = await dp.apply(tx);
if (cold.refused) throw new Error(`cold start refused: ${JSON.stringify(cold.refused)}`);
console.log(`cold start ${services} services x ${perService} endpoints: plan+diff ${planned.toFixed(0)} ms, apply ${(performance.now() - t0 - planned).toFixed(0)} ms, ${client.requests - r0} netlink requests`);

t0 = performance.now();
r0 = client.requests;
const kernel = await dp.observe(desired);
const again = dp.diff(kernel, desired);
console.log(`full read-back and diff: ${(performance.now() - t0).toFixed(0)} ms, ${client.requests - r0} netlink requests, ${again.parts.length} groups to change`);

const times: number[] = [];
const messages = new Map<number, number>();
for (let n = 0; n < changes; n++) {
  const i = (n * 7919) % services;
  const key = `bench/s${i}`;
  const last = desired.get(key)!;
  // Alternately one endpoint more and back: an add, then a drain (weight 0).
  const extra = last.frontends[0]!.dests.length > perService ? 0 : 1;
  const start = performance.now();
  r0 = client.requests;
  const next = dp.plan(selection(i, extra))!;
  const outcome = await dp.apply(dp.diffGroup(key, last, next));
  times.push(performance.now() - start);
  if (outcome.refused) throw new Error(`change refused: ${JSON.stringify(outcome.refused)}`);
  const m = client.requests - r0;
  messages.set(m, (messages.get(m) ?? 0) + 1);
  desired.set(key, next);
}
console.log(`one endpoint change (${mode}; plan, diffGroup, apply) at ${services} services: ${quantiles(times)}`);
console.log(`netlink requests per change: ${JSON.stringify(Object.fromEntries(messages))}`);
await client.flush();
client.close();
