// IpvsDataplane in a real kernel, inside UML (run by
// test/uml/ipvs-dataplane.test.ts). The guest's root namespace is the node,
// with kube-proxy-style state already present: an IPVS address service for the
// same ClusterIP:port and a nat KUBE-SERVICES DNAT that would send the
// ClusterIP's packets nowhere. Each transaction goes to the kernel over netlink
// and to the fake alike, and the kernel reads back exactly as the fake holds
// it; real HTTP from a client namespace follows the weights, fails over, and
// `cleanup` leaves kube-proxy's IPVS and iptables state byte for byte as it was.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { execa } from 'execa';
import type { ClusterEndpoint } from '../../src/model/group.js';
import type { PolicySettings } from '../../src/policy/policy.js';
import { selectByPolicy, type HealthView } from '../../src/policy/select.js';
import type { FrontendSelection, GroupSelection } from '../../src/selection/selection.js';
import { applyAux, removeAux, type AuxState, type AuxTools } from '../../src/ipvs/aux.js';
import { IpvsDataplane, type IpvsGroup, type IpvsTransaction } from '../../src/ipvs/dataplane.js';
import { FakeIpvs } from '../../src/ipvs/fake.js';
import { NetlinkIpvs } from '../../src/ipvs/netlink-client.js';
import { renderIpvsadmSave } from '../../src/ipvs/save-format.js';
import type { DestSpec, IpvsClient, ServiceSpec } from '../../src/ipvs/types.js';
import { httpRequests, startHttpServer, Topology, type HttpServer } from '../support/netns.js';

const CLUSTER_IP = '10.96.0.10';
const LOCAL = 'brazil';
const EPS: ClusterEndpoint[] = [
  { ip: '10.0.2.2', port: 8080, cluster: 'brazil', ready: true, serving: true, terminating: false },
  { ip: '10.0.3.2', port: 8080, cluster: 'brazil', ready: true, serving: true, terminating: false },
  // Another cluster's endpoint: it has no route back to the client, only to the node.
  { ip: '10.0.4.2', port: 8080, cluster: 'chile01', ready: true, serving: true, terminating: false },
];
const ALL: HealthView = { clusterHealthy: () => true, endpointHealthy: () => true };
const BRAZIL_DOWN: HealthView = { clusterHealthy: (c) => c !== 'brazil', endpointHealthy: () => true };
const activeActive: PolicySettings = { mode: 'active-active', clusterWeights: { brazil: 3, chile01: 1 }, failoverOrder: [], unifiedName: false };
const failover: PolicySettings = { mode: 'failover', clusterWeights: {}, failoverOrder: ['brazil', 'chile01'], unifiedName: false };

const KUBE_SERVICE: ServiceSpec = { key: { kind: 'address', family: 4, protocol: 'tcp', address: CLUSTER_IP, port: 80 }, scheduler: 'rr', flags: 0, timeout: 0, netmask: 0xffffffff };
const KUBE_DEST: DestSpec = { address: '10.0.2.2', port: 8080, weight: 1, forward: 'masq', upperThreshold: 0, lowerThreshold: 0 };

const tools: AuxTools = {
  iptables: 'iptables-legacy',
  exec: async (argv, input) => (await execa(argv[0]!, argv.slice(1), input === undefined ? {} : { input })).stdout,
};

const topology = new Topology();
const servers: HttpServer[] = [];
const kernel = new NetlinkIpvs();
const fake = new FakeIpvs();
let now = 0;
const clock = () => now;
const dp = new IpvsDataplane(kernel, { now: clock, drainBoundMs: 60_000 });
const twin = new IpvsDataplane(fake, { now: clock, drainBoundMs: 60_000 });
let client = '';
let aux: AuxState | null = null;
let pristineIpvs = '';
let pristineIptables = '';

function selection(settings: PolicySettings, health: HealthView): GroupSelection {
  const chosen = selectByPolicy(EPS, settings, LOCAL, health);
  const fe: FrontendSelection = {
    kind: 'cluster-ip', family: 'ipv4', ip: CLUSTER_IP, port: 80, protocol: 'TCP', name: { namespace: 'shop', service: 'web', port: 'http' },
    affinity: null, endpoints: chosen.endpoints, decision: chosen.decision,
  };
  return { key: 'shop/web', settings, decision: chosen.decision, frontends: [fe], problems: [] };
}

async function saveTable(ipvs: IpvsClient): Promise<string> {
  return renderIpvsadmSave(await Promise.all((await ipvs.services()).map(async (service) => ({ service, dests: await ipvs.dests(service.key) }))));
}

async function ipvsadm(): Promise<string> {
  return (await execa('ipvsadm', ['-Sn'], { stripFinalNewline: false })).stdout;
}

/** Applies a transaction to the kernel and to the fake; both must take it and read back the same. */
async function applyBoth(tk: IpvsTransaction, tf: IpvsTransaction): Promise<void> {
  assert.deepEqual(tk.parts, tf.parts, 'both data planes planned the same requests');
  const [a, b] = await Promise.all([dp.apply(tk), twin.apply(tf)]);
  assert.equal(a.refused, null, String((a.refused as { error?: unknown } | null)?.error));
  assert.equal(b.refused, null);
  const text = await ipvsadm();
  assert.equal(text, await saveTable(fake));
  assert.equal(text, await saveTable(kernel));
}

async function spread(count: number): Promise<Record<string, number>> {
  const summary = await httpRequests(client, `http://${CLUSTER_IP}/`, count, { timeoutMs: 10_000 });
  assert.deepEqual(summary.errors, {});
  return summary.bodies;
}

async function linkToNode(ns: string, ifname: string, node: string, peer: string, routeBack = true): Promise<void> {
  await execa('ip', ['link', 'add', ifname, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  await execa('ip', ['addr', 'add', `${node}/24`, 'dev', ifname]);
  await execa('ip', ['link', 'set', ifname, 'up']);
  await execa('ip', ['-n', ns, 'addr', 'add', `${peer}/24`, 'dev', 'eth0']);
  await execa('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  if (routeBack) await execa('ip', ['-n', ns, 'route', 'add', 'default', 'via', node]);
}

async function iptablesSave(): Promise<string> {
  // Counters and the header's timestamps change between reads; the rules must not.
  const { stdout } = await execa('iptables-legacy-save', []);
  return stdout.split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/, '[0:0]')).join('\n');
}

let lastK: IpvsGroup | undefined;
let lastF: IpvsGroup | undefined;

async function move(settings: PolicySettings, health: HealthView): Promise<IpvsTransaction> {
  const nextK = dp.plan(selection(settings, health))!;
  const nextF = twin.plan(selection(settings, health))!;
  const tk = dp.diffGroup('shop/web', lastK, nextK);
  await applyBoth(tk, twin.diffGroup('shop/web', lastF, nextF));
  [lastK, lastF] = [nextK, nextF];
  return tk;
}

before(async () => {
  client = await topology.namespace('client');
  const names = ['s1', 's2', 's3'];
  for (const [i, ep] of EPS.entries()) {
    const ns = await topology.namespace(names[i]!);
    await linkToNode(ns, `v${names[i]}`, `10.0.${i + 2}.1`, ep.ip, ep.cluster === LOCAL);
    servers.push(await startHttpServer(ns, ep.ip, ep.port, names[i]!));
  }
  await linkToNode(client, 'vcli', '10.0.1.1', '10.0.1.2');
  await execa('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  // kube-proxy's state: its own IPVS service for the ClusterIP:port, and a nat DNAT to nowhere.
  await kernel.flush();
  await kernel.addService(KUBE_SERVICE);
  await kernel.addDest(KUBE_SERVICE.key, KUBE_DEST);
  await fake.addService(KUBE_SERVICE);
  await fake.addDest(KUBE_SERVICE.key, KUBE_DEST);
  await execa('iptables-legacy', ['-t', 'nat', '-N', 'KUBE-SERVICES']);
  await execa('iptables-legacy', ['-t', 'nat', '-A', 'PREROUTING', '-j', 'KUBE-SERVICES']);
  await execa('iptables-legacy', ['-t', 'nat', '-A', 'KUBE-SERVICES', '-d', `${CLUSTER_IP}/32`, '-p', 'tcp', '--dport', '80', '-j', 'DNAT', '--to-destination', '10.0.9.9:8080']);
  // Tables kube-proxy's node has loaded anyway: listing them loads them, so they print before and after alike.
  for (const table of ['mangle', 'filter']) await execa('iptables-legacy', ['-t', table, '-S']);
  pristineIpvs = await ipvsadm();
  pristineIptables = await iptablesSave();
});

after(async () => {
  for (const s of servers) await s.stop();
  await kernel.flush();
  kernel.close();
  await topology.teardown();
});

test('active-active brazil=3,chile01=1: the kernel holds what the fake holds, and HTTP follows 3:1 exactly, past kube-proxy', async () => {
  const tk = await move(activeActive, ALL);
  aux = dp.diff(null, new Map([[lastK!.key, lastK!]])).aux;
  await applyAux(aux!, tools);
  assert.match(dp.render(tk), /^-A -f \d+ -s wrr\n/);
  // Weights 3, 3, 2: every 8 new connections are 3 + 3 + 2, so brazil:chile01 is 3:1.
  assert.deepEqual(await spread(80), { s1: 30, s2: 30, s3: 20 });
});

test('failover away from the local cluster drains its servers at weight 0; all new connections go to chile01', async () => {
  const tk = await move(failover, BRAZIL_DOWN);
  assert.deepEqual(tk.parts[0]!.ops.map((o) => o.op), ['updateDest', 'updateDest', 'updateDest']);
  assert.match(await ipvsadm(), /-r 10\.0\.2\.2:8080 -m -w 0\n/);
  assert.deepEqual(await spread(12), { s3: 12 });
});

test('a restarted agent reads the kernel back and only takes over the drains; the drained servers go past their bound', async () => {
  const restarted = new IpvsDataplane(new NetlinkIpvs(), { now: clock, drainBoundMs: 60_000 });
  const desired = new Map([[lastK!.key, restarted.plan(selection(failover, BRAZIL_DOWN))!]]);
  const seen = await restarted.observe(desired);
  // The draining servers are new to this instance: it only takes over their drain (weight 0 again), nothing else.
  assert.deepEqual(restarted.diff(seen, desired).parts.flatMap((p) => p.ops.map((o) => o.op)), ['updateDest', 'updateDest']);

  // The requests above left connections in IPVS's table: nothing goes before the bound.
  await dp.sweep();
  assert.match(await ipvsadm(), /-r 10\.0\.2\.2:8080 -m -w 0\n/);
  now += 60_000;
  const swept = await dp.sweep();
  await twin.sweep();
  assert.equal(swept.outcome.refused, null);
  assert.equal(swept.outcome.stats.restores, 2, 'one delete per drained server');
  assert.deepEqual([swept.idle, swept.bound], [0, 2], 'both went past their bound with connections left');
  assert.equal(await ipvsadm(), await saveTable(fake));
  assert.doesNotMatch(await ipvsadm(), /10\.0\.2\.2:8080 -m -w 0/);
  assert.deepEqual(await spread(4), { s3: 4 });
});

test('cleanup leaves kube-proxy\'s IPVS and iptables state byte for byte as it was', async () => {
  await dp.cleanup();
  await removeAux(aux!, tools);
  assert.equal(await ipvsadm(), pristineIpvs);
  assert.equal(await iptablesSave(), pristineIptables);
  const rules = (await execa('ip', ['rule', 'show'])).stdout;
  assert.doesNotMatch(rules, /0x4d000000/);
});
