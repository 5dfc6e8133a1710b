import { test } from 'node:test';
import assert from 'node:assert/strict';
import { staleUdpFlows } from '../../src/conntrack/stale-flows.js';
import { deleteArgs } from '../../src/conntrack/flush.js';
import { Hysteresis } from '../../src/health/hysteresis.js';
import type { ClusterEndpoint, Frontend, ServiceGroup } from '../../src/model/group.js';
import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import { FakeIptables } from '../../src/iptables/fake-backend.js';
import { endpointAddresses, familySelection, frontendAddresses, selectGroup, type FrontendSelection, type SelectionContext } from '../../src/selection/selection.js';
import { parseOrder, parseWeights, resolvePolicy, type PolicyConfig, type PolicySettings } from '../../src/policy/policy.js';
import { ALL_HEALTHY, selectByPolicy, type HealthView } from '../../src/policy/select.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';

const defaults: PolicySettings = { mode: 'local-first', clusterWeights: {}, failoverOrder: [], unifiedName: true };
const config: PolicyConfig = { defaults, services: {} };

function ep(ip: string, cluster: string, ready = true): ClusterEndpoint {
  return { ip, port: 8080, cluster, ready, serving: ready, terminating: false };
}

const LOCAL = [ep('10.1.0.1', 'brazil'), ep('10.1.0.2', 'brazil')];
const CHILE = [ep('10.2.0.1', 'chile01')];
const PERU = [ep('10.3.0.1', 'peru'), ep('10.3.0.2', 'peru'), ep('10.3.0.3', 'peru')];
const down = (...clusters: string[]): HealthView => ({ clusterHealthy: (c) => !clusters.includes(c), endpointHealthy: () => true });

function pick(candidates: ClusterEndpoint[], s: Partial<PolicySettings> = {}, health: HealthView = ALL_HEALTHY) {
  return selectByPolicy(candidates, { ...defaults, ...s }, 'brazil', health);
}

test('local-first uses only local endpoints while one is usable, else every healthy remote cluster', () => {
  assert.deepEqual(pick([...LOCAL, ...CHILE]).decision, { clusters: ['brazil'], target: 'local', failOpen: false });
  const remote = pick([ep('10.1.0.1', 'brazil', false), ...CHILE, ...PERU]);
  assert.deepEqual(remote.decision, { clusters: ['chile01', 'peru'], target: 'remote', failOpen: false });
  assert.deepEqual(remote.endpoints.map((e) => e.weight), [1, 1, 1, 1]);
  assert.deepEqual(pick([ep('10.1.0.1', 'brazil', false), ...CHILE, ...PERU], {}, down('peru')).decision.clusters, ['chile01']);
});

test('active-active spreads each cluster\'s weight evenly over its endpoints', () => {
  const s = pick([...LOCAL, ...PERU], { mode: 'active-active', clusterWeights: { brazil: 3, peru: 1 } });
  const share = (c: string) => s.endpoints.filter((e) => e.cluster === c).reduce((a, e) => a + e.weight, 0);
  assert.equal(share('brazil'), 3);
  assert.ok(Math.abs(share('peru') - 1) < 1e-12);
  assert.deepEqual(s.decision.target, 'mixed');
  assert.deepEqual(pick([...LOCAL, ...PERU], { mode: 'active-active', clusterWeights: { brazil: 0 } }).decision.clusters, ['peru']);
});

test('failover sends everything to the first listed cluster that has usable endpoints and is healthy', () => {
  const order = { mode: 'failover' as const, failoverOrder: ['peru', 'chile01'] };
  assert.deepEqual(pick([...LOCAL, ...CHILE, ...PERU], order).decision.clusters, ['peru']);
  assert.deepEqual(pick([...LOCAL, ...CHILE, ...PERU], order, down('peru')).decision.clusters, ['chile01']);
  // Unlisted clusters come after the listed ones, the local cluster first.
  assert.deepEqual(pick([...LOCAL, ...CHILE, ...PERU], order, down('peru', 'chile01')).decision.clusters, ['brazil']);
});

test('when every cluster with endpoints is unhealthy, all are used rather than none (fail open)', () => {
  const s = pick([...CHILE, ...PERU], {}, down('chile01', 'peru'));
  assert.deepEqual(s.decision, { clusters: ['chile01', 'peru'], target: 'remote', failOpen: true });
  assert.deepEqual(pick([]).decision, { clusters: [], target: 'none', failOpen: false });
});

test('probed-dead local endpoints drop out, so local-first fails over before kubelet notices', () => {
  const health: HealthView = { clusterHealthy: () => true, endpointHealthy: (ip) => !ip.startsWith('10.1.') };
  assert.deepEqual(pick([...LOCAL, ...CHILE], {}, health).decision.clusters, ['chile01']);
});

test('annotations parse strictly; a malformed one is reported by name and value and ignored', () => {
  assert.deepEqual(parseWeights('brazil=3, chile01=1'), { brazil: 3, chile01: 1 });
  assert.deepEqual(parseOrder('chile01,brazil'), ['chile01', 'brazil']);
  for (const bad of ['brazil', 'brazil=x', 'Brazil=1', 'a=1,a=2', '']) assert.throws(() => parseWeights(bad), bad);
  const r = resolvePolicy('default/serve', { defaults, services: { 'default/serve': { mode: 'failover' } } }, [
    { name: 'derived-serve', annotations: { 'clusterset-proxy.io/traffic-policy': 'active-active', 'clusterset-proxy.io/failover-order': 'chile01' } },
    { name: 'serve', annotations: { 'clusterset-proxy.io/traffic-policy': 'fastest', 'clusterset-proxy.io/cluster-weights': 'brazil=2' } },
  ]);
  // derived-serve's valid annotation applies; the local Service's malformed one does not, its valid one does.
  assert.equal(r.settings.mode, 'active-active');
  assert.deepEqual(r.settings.failoverOrder, ['chile01']);
  assert.deepEqual(r.settings.clusterWeights, { brazil: 2 });
  assert.deepEqual(r.problems, [{ service: 'serve', message: 'annotation clusterset-proxy.io/traffic-policy: "fastest" must be one of local-first, active-active, failover, off; the configured policy applies' }]);
  const localWins = resolvePolicy('default/serve', config, [
    { name: 'derived-serve', annotations: { 'clusterset-proxy.io/traffic-policy': 'off' } },
    { name: 'serve', annotations: { 'clusterset-proxy.io/traffic-policy': 'failover' } },
  ]);
  assert.equal(localWins.settings.mode, 'failover');
});

function frontend(name: string, clusterIP: string, endpoints: ClusterEndpoint[], annotations: Record<string, string> = {}): Frontend {
  return { namespace: 'default', name, clusterIPs: [clusterIP], clustersetIPs: [], affinitySeconds: null, ports: [{ label: 'http', port: 80, protocol: 'TCP', endpoints }], annotations };
}

function importGroup(annotations: Record<string, string> = {}): ServiceGroup {
  return {
    key: 'default/serve', namespace: 'default', name: 'serve', source: 'service-import',
    frontends: [frontend('derived-serve', '10.96.0.50', CHILE)],
    local: frontend('serve', '10.96.0.40', LOCAL, annotations),
  };
}

const planCtx: SelectionContext = { localCluster: 'brazil', policy: DEFAULT_CONFIG.trafficPolicy, health: ALL_HEALTHY };

test('one name: the local Service\'s ClusterIP gets the same selection as derived-<name>', () => {
  const plan = selectGroup(importGroup(), planCtx);
  assert.deepEqual(plan.frontends.map((f) => [f.ip, endpointAddresses(f)]), [
    ['10.96.0.50', ['10.1.0.1:8080', '10.1.0.2:8080']],
    ['10.96.0.40', ['10.1.0.1:8080', '10.1.0.2:8080']],
  ]);
  const failedOver = selectGroup(importGroup(), { ...planCtx, health: { clusterHealthy: () => true, endpointHealthy: (ip) => !ip.startsWith('10.1.') } });
  assert.deepEqual(failedOver.frontends.map(endpointAddresses), [['10.2.0.1:8080'], ['10.2.0.1:8080']]);
  assert.deepEqual(failedOver.decision, { clusters: ['chile01'], target: 'remote', failOpen: false });
});

test('unified-name "false" leaves the local ClusterIP to kube-proxy; policy off leaves the whole group', () => {
  const separate = selectGroup(importGroup({ 'clusterset-proxy.io/unified-name': 'false' }), planCtx);
  assert.deepEqual(separate.frontends.map((f) => f.ip), ['10.96.0.50']);
  const off = selectGroup(importGroup({ 'clusterset-proxy.io/traffic-policy': 'off' }), planCtx);
  assert.deepEqual([off.frontends, off.decision], [[], null]);
  assert.equal(new IptablesDataplane(new FakeIptables('nft')).plan(off), undefined, 'a group with policy off owns no rules');
});

test('each ClusterSet IP is a frontend of the derived Service with its ports and the ClusterIP\'s selection, failing over alike', () => {
  const group = importGroup();
  const derived = { ...group.frontends[0]!, clustersetIPs: ['242.1.0.50', '10.96.0.50', '242.1.0.50', 'fd00:242::50', '242.1.0.51'] };
  const csGroup: ServiceGroup = { ...group, frontends: [derived] };
  const row = (f: FrontendSelection) => [f.kind, f.family, f.ip, f.port, f.name.service, endpointAddresses(f)];
  const local = ['10.1.0.1:8080', '10.1.0.2:8080'];
  // The ClusterIP given again and a repeat are served once; an IPv6 address needs an IPv6 ClusterIP (the model reports it).
  assert.deepEqual(selectGroup(csGroup, planCtx).frontends.map(row), [
    ['cluster-ip', 'ipv4', '10.96.0.50', 80, 'derived-serve', local],
    ['clusterset-ip', 'ipv4', '242.1.0.50', 80, 'derived-serve', local],
    ['clusterset-ip', 'ipv4', '242.1.0.51', 80, 'derived-serve', local],
    ['cluster-ip', 'ipv4', '10.96.0.40', 80, 'serve', local],
  ]);
  const failedOver = selectGroup(csGroup, { ...planCtx, health: { clusterHealthy: () => true, endpointHealthy: (ip) => !ip.startsWith('10.1.') } });
  assert.deepEqual(failedOver.frontends.map(endpointAddresses), [['10.2.0.1:8080'], ['10.2.0.1:8080'], ['10.2.0.1:8080'], ['10.2.0.1:8080']]);
  assert.deepEqual(failedOver.decision, { clusters: ['chile01'], target: 'remote', failOpen: false });
  assert.deepEqual(frontendAddresses({ clusterIPs: ['fd00:96::50'], clustersetIPs: ['242.1.0.50', 'fd00:242::50'] }), [
    { kind: 'cluster-ip', family: 'ipv6', ip: 'fd00:96::50' },
    { kind: 'clusterset-ip', family: 'ipv6', ip: 'fd00:242::50' },
  ]);
  assert.deepEqual(frontendAddresses({ clusterIPs: ['10.96.0.50', 'fd00:96::50'], clustersetIPs: ['fd00:242::50', '242.1.0.50'] }).map((a) => [a.kind, a.family, a.ip]), [
    ['cluster-ip', 'ipv4', '10.96.0.50'], ['cluster-ip', 'ipv6', 'fd00:96::50'],
    ['clusterset-ip', 'ipv6', 'fd00:242::50'], ['clusterset-ip', 'ipv4', '242.1.0.50'],
  ], 'a dual-stack Service serves a ClusterSet IP of each family');
  const off = selectGroup({ ...csGroup, frontends: [{ ...derived, annotations: { 'clusterset-proxy.io/traffic-policy': 'off' } }] }, planCtx);
  assert.deepEqual(off.frontends, [], 'policy off leaves the ClusterSet IPs to kube-proxy too');
});

const LOCAL6 = [ep('fd00:1::1', 'brazil')];
const CHILE6 = [ep('fd00:2::1', 'chile01')];

function dualGroup(remote: ClusterEndpoint[], local: ClusterEndpoint[]): ServiceGroup {
  const dual = (name: string, ips: string[], endpoints: ClusterEndpoint[]): Frontend => ({ ...frontend(name, ips[0]!, endpoints), clusterIPs: ips });
  return {
    key: 'default/serve', namespace: 'default', name: 'serve', source: 'service-import',
    frontends: [dual('derived-serve', ['10.96.0.50', 'fd00:96::50'], remote)],
    local: dual('serve', ['10.96.0.40', 'fd00:96::40'], local),
  };
}

test('dual stack: each ClusterIP selects from the endpoints of its own family, with the same policy', () => {
  const plan = selectGroup(dualGroup([...CHILE, ...CHILE6], [...LOCAL, ...LOCAL6]), planCtx);
  assert.deepEqual(plan.frontends.map((f) => [f.family, f.ip, endpointAddresses(f).join(' ')]), [
    ['ipv4', '10.96.0.50', '10.1.0.1:8080 10.1.0.2:8080'],
    ['ipv6', 'fd00:96::50', 'fd00:1::1:8080'],
    ['ipv4', '10.96.0.40', '10.1.0.1:8080 10.1.0.2:8080'],
    ['ipv6', 'fd00:96::40', 'fd00:1::1:8080'],
  ]);
  const localDown = selectGroup(dualGroup([...CHILE, ...CHILE6], [...LOCAL, ...LOCAL6]), { ...planCtx, health: down('brazil') });
  assert.deepEqual(localDown.frontends.map((f) => endpointAddresses(f).join(' ')), ['10.2.0.1:8080', 'fd00:2::1:8080', '10.2.0.1:8080', 'fd00:2::1:8080']);
});

test('dual stack: a family without endpoints rejects on its ClusterIPs only; each family\'s selection has its verdict', () => {
  const plan = selectGroup(dualGroup(CHILE, LOCAL), planCtx);
  assert.deepEqual(plan.frontends.map((f) => [f.ip, f.decision.target, f.endpoints.length]), [
    ['10.96.0.50', 'local', 2], ['fd00:96::50', 'none', 0], ['10.96.0.40', 'local', 2], ['fd00:96::40', 'none', 0],
  ]);
  assert.equal(plan.decision!.target, 'mixed');
  const v4 = familySelection(plan, 'ipv4');
  const v6 = familySelection(plan, 'ipv6');
  assert.deepEqual(v4.frontends.map((f) => f.ip), ['10.96.0.50', '10.96.0.40']);
  assert.deepEqual([v4.decision!.target, v6.decision!.target], ['local', 'none']);
  assert.deepEqual(v6.frontends.map((f) => f.ip), ['fd00:96::50', 'fd00:96::40']);
  const single = selectGroup(importGroup(), planCtx);
  assert.equal(familySelection(single, 'ipv4'), single, 'a single-stack selection is its family\'s selection as it is');
  assert.deepEqual(familySelection(single, 'ipv6').frontends, []);
});

test('dual stack: each ClusterSet IP selects from the endpoints of its own family, as its family\'s ClusterIP does', () => {
  const group = dualGroup([...CHILE, ...CHILE6], [...LOCAL, ...LOCAL6]);
  const derived = { ...group.frontends[0]!, clustersetIPs: ['242.1.0.50', 'fd00:242::50'] };
  const row = (f: FrontendSelection) => [f.kind, f.ip, endpointAddresses(f).join(' ')];
  const plan = selectGroup({ ...group, frontends: [derived] }, planCtx);
  assert.deepEqual(plan.frontends.filter((f) => f.name.service === 'derived-serve').map(row), [
    ['cluster-ip', '10.96.0.50', '10.1.0.1:8080 10.1.0.2:8080'],
    ['cluster-ip', 'fd00:96::50', 'fd00:1::1:8080'],
    ['clusterset-ip', '242.1.0.50', '10.1.0.1:8080 10.1.0.2:8080'],
    ['clusterset-ip', 'fd00:242::50', 'fd00:1::1:8080'],
  ]);
  const localDown = selectGroup({ ...group, frontends: [derived] }, { ...planCtx, health: down('brazil') });
  assert.deepEqual(familySelection(localDown, 'ipv6').frontends.filter((f) => f.kind === 'clusterset-ip').map(row), [['clusterset-ip', 'fd00:242::50', 'fd00:2::1:8080']]);
  assert.deepEqual(familySelection(plan, 'ipv4').frontends.map((f) => f.ip), ['10.96.0.50', '242.1.0.50', '10.96.0.40'], 'an IPv4 data plane is handed the IPv4 addresses only');
});

test('hysteresis: unhealthy after N failures in a row, healthy after M successes in a row, no flapping', () => {
  const h = new Hysteresis({ unhealthy: 3, healthy: 2 });
  assert.deepEqual(['x', 'x'].map(() => h.record('c', false)), [null, null]);
  assert.equal(h.record('c', true), null); // a success resets the streak
  assert.deepEqual([false, false, false].map((ok) => h.record('c', ok)), [null, null, false]);
  assert.equal(h.isHealthy('c'), false);
  assert.deepEqual([true, false, true, true].map((ok) => h.record('c', ok)), [null, null, null, true]);
  h.retain(new Set());
  assert.equal(h.isHealthy('c'), true);
});

test('UDP flows are flushed for endpoints that left a selection; TCP and kept endpoints are not', () => {
  const portal = (protocol: 'TCP' | 'UDP', endpoints: string[]): FrontendSelection => ({
    kind: 'cluster-ip', family: 'ipv4', ip: '10.96.0.53', port: 53, protocol, name: { namespace: 'ns', service: 's', port: '53' }, affinity: null,
    endpoints: endpoints.map((e) => ({ ip: e.split(':')[0]!, port: Number(e.split(':')[1]), cluster: 'c', weight: 1 })),
    decision: { clusters: ['c'], target: 'remote', failOpen: false },
  });
  const frag = (frontends: FrontendSelection[]) => ({ frontends });
  assert.deepEqual(staleUdpFlows(frag([portal('UDP', ['10.1.0.1:53', '10.2.0.1:53'])]), frag([portal('UDP', ['10.2.0.1:53'])])), [
    { clusterIP: '10.96.0.53', port: 53, endpoint: '10.1.0.1:53' },
  ]);
  assert.deepEqual(staleUdpFlows(frag([portal('TCP', ['10.1.0.1:53'])]), undefined), []);
  assert.equal(staleUdpFlows(frag([portal('UDP', ['10.1.0.1:53'])]), undefined).length, 1);
  const clusterset = (endpoints: string[]): FrontendSelection => ({ ...portal('UDP', endpoints), kind: 'clusterset-ip', ip: '242.1.0.53' });
  assert.deepEqual(staleUdpFlows(frag([portal('UDP', ['10.1.0.1:53', '10.2.0.1:53']), clusterset(['10.1.0.1:53', '10.2.0.1:53'])]), frag([portal('UDP', ['10.2.0.1:53']), clusterset(['10.2.0.1:53'])])), [
    { clusterIP: '10.96.0.53', port: 53, endpoint: '10.1.0.1:53' },
    { clusterIP: '242.1.0.53', port: 53, endpoint: '10.1.0.1:53' },
  ], 'flows to a ClusterSet IP are flushed as flows to the ClusterIP are');
});

test('conntrack cleanup names the family of an IPv6 flow, and splits the endpoint at its last colon', () => {
  assert.deepEqual(deleteArgs({ clusterIP: '10.96.0.53', port: 53, endpoint: '10.1.0.1:5353' }),
    ['-D', '-p', 'udp', '--orig-dst', '10.96.0.53', '--orig-port-dst', '53', '--dst-nat', '10.1.0.1']);
  assert.deepEqual(deleteArgs({ clusterIP: 'fd00:96::53', port: 53, endpoint: 'fd00:1::1:5353' }),
    ['-D', '-f', 'ipv6', '-p', 'udp', '--orig-dst', 'fd00:96::53', '--orig-port-dst', '53', '--dst-nat', 'fd00:1::1']);
});
