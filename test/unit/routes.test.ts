import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Node } from '@kubernetes/client-node';
import { parseConfigText } from '../../src/config/load.js';
import { ConfigError, DEFAULT_CONFIG, GATEWAY_DEFAULTS, type Config } from '../../src/config/schema.js';
import { silentLogger } from '../../src/log.js';
import { ClusterResolver } from '../../src/model/clusters.js';
import { buildGroup } from '../../src/model/group.js';
import { convertService, convertSlice, problemText } from '../../src/model/records.js';
import { ModelStore } from '../../src/model/store.js';
import { diffRoutes, type ObservedState, type RouteOp } from '../../src/routes/diff.js';
import { chooseGateway, nodeRecord, PIN_ANNOTATION, type NodeRecord } from '../../src/routes/gateway.js';
import type { RouteExecutor } from '../../src/routes/netlink-executor.js';
import { analyseNetworks, withheldRange } from '../../src/network/overlap.js';
import { EMPTY_ROUTE_PLAN, planRoutes, routeMetric, vxlanLinkLocal, vxlanMac, VXLAN_LINK } from '../../src/routes/plan.js';
import { RouteReconciler } from '../../src/routes/reconciler.js';
import { endpoint, importedSlice, service } from '../support/fixtures.js';

function config(extra: Partial<Config> = {}): Config {
  return {
    ...DEFAULT_CONFIG,
    clusterName: 'brazil',
    clusters: [
      { name: 'brazil', podCIDRs: ['10.244.0.0/16'], serviceCIDRs: ['10.96.0.0/12'], nodeCIDRs: ['192.168.50.0/24'] },
      { name: 'chile01', podCIDRs: ['10.2.0.0/16'], serviceCIDRs: ['10.112.0.0/12'] },
    ],
    ...extra,
  };
}

function node(name: string, opts: { ip?: string | null; ip6?: string; ready?: boolean; labels?: Record<string, string>; pinned?: boolean; created?: string } = {}): V1Node {
  return {
    apiVersion: 'v1', kind: 'Node',
    metadata: {
      name,
      labels: opts.labels ?? { 'submariner.io/gateway': 'true' },
      ...(opts.pinned ? { annotations: { [PIN_ANNOTATION]: 'true' } } : {}),
      creationTimestamp: (opts.created ?? '2026-01-01T00:00:00Z') as unknown as Date,
    },
    status: {
      conditions: [{ type: 'Ready', status: opts.ready === false ? 'False' : 'True' }],
      addresses: [
        { type: 'Hostname', address: name },
        ...(opts.ip === null ? [] : [{ type: 'InternalIP', address: opts.ip ?? '192.168.50.11' }]),
        ...(opts.ip6 === undefined ? [] : [{ type: 'InternalIP', address: opts.ip6 }]),
      ],
    },
  };
}

const rec = (...args: Parameters<typeof node>): NodeRecord => nodeRecord(node(...args))!;

test('config: cluster CIDR lists and the gateway section parse, with defaults and key-naming errors', () => {
  const c = parseConfigText([
    'clusterName: brazil',
    'clusters: [{name: brazil, podCIDRs: [10.244.0.0/16], nodeCIDRs: [192.168.0.0/16]}, {name: chile01, podCIDRs: [10.2.0.0/16], serviceCIDRs: [10.112.0.0/12]}]',
    'gateway: {mode: direct, vxlan: {vni: 77}, node: gw-2}',
  ].join('\n'), 'x.yaml');
  assert.deepEqual(c.clusters[1], { name: 'chile01', podCIDRs: ['10.2.0.0/16'], serviceCIDRs: ['10.112.0.0/12'] });
  assert.deepEqual(c.gateway, { ...GATEWAY_DEFAULTS, mode: 'direct', node: 'gw-2', vxlan: { ...GATEWAY_DEFAULTS.vxlan, vni: 77 } });
  assert.deepEqual(parseConfigText('', 'x.yaml').gateway, GATEWAY_DEFAULTS);
  const cases: [string, RegExp][] = [
    ['clusters: [{name: a, podCIDRs: 10.0.0.0/8}]', /"clusters\[0\].podCIDRs": must be a list/],
    ['clusters: [{name: a, serviceCIDRs: [10.0.0.1/8]}]', /"clusters\[0\].serviceCIDRs\[0\]".*10.0.0.1\/8/],
    ['gateway: {mode: ipip}', /"gateway.mode": must be one of direct, vxlan/],
    ['gateway: {routeTable: 254}', /"gateway.routeTable": must not be a table of the kernel/],
    ['gateway: {rulePriority: 32766}', /"gateway.rulePriority": must be an integer from 1 to 32765/],
    ['gateway: {vxlan: {port: 0}}', /"gateway.vxlan.port"/],
    ['gateway: {vxlan: {id: 5}}', /"gateway.vxlan.id": is not a known key/],
    ['gateway: {nodeSelector: {}}', /"gateway.nodeSelector": must name at least one label/],
    ['gateway: {nodeSelector: {"a b": x}}', /"gateway.nodeSelector \(label\)"/],
  ];
  for (const [text, expected] of cases) {
    assert.throws(() => parseConfigText(text, 'x.yaml'), (err: unknown) => err instanceof ConfigError && expected.test(err.message), text);
  }
});

test('overlaps: a remote range overlapping a local one, or another remote one, is withheld and named with both clusters', () => {
  const n = analyseNetworks(config({
    clusterCIDR: '10.244.0.0/16',
    clusters: [
      { name: 'brazil', podCIDRs: ['10.244.0.0/16'], serviceCIDRs: ['10.96.0.0/12'], nodeCIDRs: ['192.168.50.0/24'] },
      { name: 'chile01', podCIDRs: ['10.2.0.0/16'], serviceCIDRs: ['10.96.128.0/20'] },
      { name: 'peru', podCIDRs: ['10.2.64.0/18', '10.3.0.0/16'] },
      { name: 'mexico', podCIDRs: ['10.4.0.0/16'], nodeCIDRs: ['192.168.50.0/24'] },
    ],
  }));
  assert.deepEqual(n.local.map((r) => `${r.kind} ${r.cidr}`), ['pod 10.244.0.0/16', 'service 10.96.0.0/12', 'node 192.168.50.0/24']);
  assert.deepEqual(n.routed.map((r) => `${r.cluster} ${r.cidr}`), ['peru 10.3.0.0/16', 'mexico 10.4.0.0/16'], 'remote node CIDRs are not routed nor checked');
  assert.deepEqual(n.withheld.map((r) => `${r.cluster} ${r.cidr}`), ['chile01 10.2.0.0/16', 'chile01 10.96.128.0/20', 'peru 10.2.64.0/18']);
  assert.deepEqual(n.overlaps.map((o) => o.message), [
    "cluster chile01's pod CIDR 10.2.0.0/16 overlaps cluster peru's pod CIDR 10.2.64.0/18: no route for either; endpoints in it are left out",
    "cluster chile01's service CIDR 10.96.128.0/20 overlaps the local cluster brazil's service CIDR 10.96.0.0/12: no route for 10.96.128.0/20; endpoints in it are left out",
  ]);
  assert.equal(new Set(n.overlaps.map((o) => o.key)).size, 2);
});

test('overlaps: clusterCIDR counts as a local pod range; a cluster never overlaps itself', () => {
  const n = analyseNetworks({ clusterName: 'brazil', clusterCIDR: '10.2.0.0/24', clusters: [{ name: 'chile01', podCIDRs: ['10.2.0.0/16', '10.2.0.0/17'] }] });
  assert.deepEqual(n.overlaps.map((o) => `${o.range.cidr}~${o.other.cluster}/${o.other.cidr}`), ['10.2.0.0/16~brazil/10.2.0.0/24', '10.2.0.0/17~brazil/10.2.0.0/24']);
});

test('gateway: the oldest Ready labelled node with an InternalIP, every node choosing alike', () => {
  const gw = GATEWAY_DEFAULTS;
  const nodes = [
    rec('gw-b', { created: '2026-01-01T00:00:00Z' }),
    rec('gw-a', { created: '2026-01-01T00:00:00Z' }),
    rec('gw-old', { created: '2025-06-01T00:00:00Z', ready: false }),
    rec('worker', { created: '2020-01-01T00:00:00Z', labels: {} }),
    rec('gw-noip', { created: '2020-01-01T00:00:00Z', ip: null }),
  ];
  const choice = chooseGateway(nodes, gw);
  assert.equal(choice.node?.name, 'gw-a', 'equal ages: the name decides');
  assert.deepEqual(choice.candidates, ['gw-a', 'gw-b']);
  assert.equal(chooseGateway([...nodes].reverse(), gw).node?.name, 'gw-a', 'order of arrival does not matter');
  assert.equal(chooseGateway([rec('gw-new', { created: '2026-02-01T00:00:00Z' }), ...nodes], gw).node?.name, 'gw-a', 'a new candidate does not take over');
  assert.equal(chooseGateway(nodes, { ...gw, nodeSelector: { role: 'edge' } }).node, null);
});

test('gateway: gateway.node pins a candidate, then the pin annotation; a pin that is not a candidate falls back', () => {
  const gw = GATEWAY_DEFAULTS;
  const nodes = [rec('gw-a'), rec('gw-b'), rec('gw-c', { pinned: true }), rec('gw-d', { ready: false, pinned: true })];
  assert.equal(chooseGateway(nodes, gw).node?.name, 'gw-c');
  assert.equal(chooseGateway(nodes, { ...gw, node: 'gw-b' }).node?.name, 'gw-b');
  const fallback = chooseGateway(nodes, { ...gw, node: 'gw-d' });
  assert.equal(fallback.node?.name, 'gw-c');
  assert.match(fallback.reason, /gateway.node gw-d is not a Ready labelled node/);
});

test('plan: a member routes every non-overlapping remote CIDR to the gateway in both modes', () => {
  const nodes = [rec('gw-1', { ip: '192.168.50.11' }), rec('node-1', { labels: {} })];
  const vx = planRoutes(config(), 'node-1', nodes);
  assert.equal(vx.role, 'member');
  assert.deepEqual(vx.plan.rules, ['10.112.0.0/12', '10.2.0.0/16']);
  assert.deepEqual(vx.plan.routes, [{ dst: '10.112.0.0/12', via: '192.168.50.11', overVxlan: true }, { dst: '10.2.0.0/16', via: '192.168.50.11', overVxlan: true }]);
  assert.deepEqual(vx.plan.link, { name: VXLAN_LINK, vni: 4097, port: 4801, mtu: 1450, mac: vxlanMac('node-1'), address: '127.77.67.1', underlay: 'IPv4' });
  assert.deepEqual(vx.plan.peer, { ip: '192.168.50.11', mac: vxlanMac('gw-1') });
  const direct = planRoutes(config({ gateway: { ...GATEWAY_DEFAULTS, mode: 'direct' } }), 'node-1', nodes);
  assert.equal(direct.plan.link, null);
  assert.equal(direct.plan.peer, null);
  assert.deepEqual(direct.plan.routes.map((r) => r.overVxlan), [false, false]);
});

test('plan: the gateway gets the receiving end and forwarding, no route through itself; no gateway makes routes unreachable', () => {
  const nodes = [rec('gw-1')];
  const gw = planRoutes(config(), 'gw-1', nodes);
  assert.equal(gw.role, 'gateway');
  assert.deepEqual(gw.plan.routes, []);
  assert.deepEqual(gw.plan.rules, []);
  assert.equal(gw.plan.link?.mac, vxlanMac('gw-1'));
  assert.deepEqual(gw.plan.sysctls.map((s) => `${s.path}=${s.value}`), ['net/ipv4/ip_forward=1', 'net/ipv4/conf/mcs-vx0/forwarding=1', 'net/ipv4/conf/mcs-vx0/rp_filter=2']);
  const none = planRoutes(config(), 'node-1', []);
  assert.deepEqual(none.plan.routes.map((r) => r.via), [null, null]);
  assert.equal(none.plan.peer, null);
  assert.deepEqual(planRoutes(config({ clusters: [{ name: 'chile01' }] }), 'node-1', nodes).plan, EMPTY_ROUTE_PLAN, 'nothing configured, nothing planned');
  assert.deepEqual(planRoutes(config({ clusterName: '' }), 'node-1', nodes).plan, EMPTY_ROUTE_PLAN, 'without clusterName no remote can be told apart');
});

test('vxlanMac is stable, locally administered and unicast', () => {
  assert.equal(vxlanMac('gw-1'), vxlanMac('gw-1'));
  assert.notEqual(vxlanMac('gw-1'), vxlanMac('gw-2'));
  const first = parseInt(vxlanMac('gw-1').slice(0, 2), 16);
  assert.equal(first & 0x03, 0x02);
});

const NOTHING: ObservedState = { link: null, fdb: [], neighbors: [], routes: [], rules: [], sysctls: {} };
const kinds = (ops: RouteOp[]) => ops.map((o) => o.kind);

test('diff: from nothing, the interface and peer come before the routes, the routes before their rules', () => {
  const { plan } = planRoutes(config(), 'node-1', [rec('gw-1')]);
  assert.deepEqual(kinds(diffRoutes(plan, NOTHING)), ['link-add', 'addr-add', 'fdb-add', 'neigh-set', 'route-set', 'route-set', 'rule-add', 'rule-add']);
});

/** What the kernel reports once a plan is applied, with the interface at index 7. */
function applied(plan: ReturnType<typeof planRoutes>['plan']): ObservedState {
  return {
    link: plan.link ? { index: 7, name: plan.link.name, kind: 'vxlan', vni: plan.link.vni, port: plan.link.port, learning: false, mtu: plan.link.mtu, mac: plan.link.mac, up: true, addresses: [plan.link.address], underlay: plan.link.underlay ?? 'IPv4' } : null,
    fdb: plan.peer ? [plan.peer] : [],
    neighbors: [...plan.neighbors],
    routes: plan.routes.map((r) => ({ dst: r.dst, type: r.via === null ? 'unreachable' : 'unicast', gateway: r.via, oif: r.overVxlan ? 7 : 3, metric: routeMetric(r.dst), tos: 0 })),
    rules: [...plan.rules],
    sysctls: Object.fromEntries(plan.sysctls.map((s) => [s.path, s.value])),
  };
}

test('diff: an applied plan needs nothing; a gateway move re-points routes in place and drops the old peer last', () => {
  const nodes1 = [rec('gw-1', { ip: '192.168.50.11' }), rec('gw-2', { ip: '192.168.50.12', created: '2026-03-01T00:00:00Z' })];
  const before = planRoutes(config(), 'node-1', nodes1).plan;
  assert.deepEqual(diffRoutes(before, applied(before)), []);
  const after = planRoutes(config(), 'node-1', [rec('gw-2', { ip: '192.168.50.12' })]).plan;
  const ops = diffRoutes(after, applied(before));
  assert.deepEqual(kinds(ops), ['fdb-add', 'neigh-set', 'route-set', 'route-set', 'neigh-del', 'fdb-del']);
  assert.deepEqual(ops.slice(-2).map((o) => 'peer' in o && o.peer.ip), ['192.168.50.11', '192.168.50.11']);
  // Direct mode: only the next hops change.
  const directCfg = config({ gateway: { ...GATEWAY_DEFAULTS, mode: 'direct' } });
  const d1 = planRoutes(directCfg, 'node-1', nodes1).plan;
  assert.deepEqual(kinds(diffRoutes(planRoutes(directCfg, 'node-1', [rec('gw-2', { ip: '192.168.50.12' })]).plan, applied(d1))), ['route-set', 'route-set']);
});

test('diff: becoming the gateway removes rules before routes; stale, drifted and foreign-looking objects are repaired', () => {
  const member = planRoutes(config(), 'gw-2', [rec('gw-1')]).plan;
  const gateway = planRoutes(config(), 'gw-2', [rec('gw-2')]).plan;
  assert.deepEqual(kinds(diffRoutes(gateway, applied(member))), ['sysctl', 'sysctl', 'sysctl', 'rule-del', 'rule-del', 'route-del', 'route-del', 'neigh-del', 'fdb-del']);

  const drifted: ObservedState = {
    ...applied(member),
    link: { ...applied(member).link!, mtu: 1500, up: false, addresses: [] },
    routes: [...applied(member).routes, { dst: '10.9.0.0/16', type: 'unicast', gateway: '1.2.3.4', oif: 7, metric: 0, tos: 0 }, { dst: '10.2.0.0/16', type: 'unicast', gateway: '192.168.50.11', oif: 7, metric: 100, tos: 0 }],
    rules: [...applied(member).rules, '10.2.0.0/16', '0.0.0.0/0'],
  };
  const ops = diffRoutes(member, drifted);
  assert.deepEqual(kinds(ops), ['link-set', 'addr-add', 'rule-del', 'rule-del', 'route-del', 'route-del']);
  assert.deepEqual(ops.filter((o) => o.kind === 'route-del').map((o) => o.kind === 'route-del' && `${o.route.dst} metric ${o.route.metric}`), ['10.9.0.0/16 metric 0', '10.2.0.0/16 metric 100']);

  const wrongVni: ObservedState = { ...applied(member), link: { ...applied(member).link!, vni: 100 } };
  assert.deepEqual(kinds(diffRoutes(member, wrongVni)), ['link-del', 'link-add', 'addr-add', 'fdb-add', 'neigh-set', 'route-set', 'route-set']);
});

test('diff: switching to direct mode re-points routes off the interface, then deletes it; the empty plan removes everything', () => {
  const vx = planRoutes(config(), 'node-1', [rec('gw-1')]).plan;
  const direct = planRoutes(config({ gateway: { ...GATEWAY_DEFAULTS, mode: 'direct' } }), 'node-1', [rec('gw-1')]).plan;
  assert.deepEqual(kinds(diffRoutes(direct, applied(vx))), ['route-set', 'route-set', 'link-del']);
  assert.deepEqual(kinds(diffRoutes(EMPTY_ROUTE_PLAN, applied(vx))), ['rule-del', 'rule-del', 'route-del', 'route-del', 'link-del']);
  assert.deepEqual(diffRoutes(EMPTY_ROUTE_PLAN, NOTHING), []);
});

class FakeExecutor implements RouteExecutor {
  state: ObservedState = NOTHING;
  applied: RouteOp[][] = [];
  fail = false;
  async read(): Promise<ObservedState> {
    return this.state;
  }
  async apply(ops: readonly RouteOp[]): Promise<void> {
    if (this.fail) throw new Error('route 10.2.0.0/16 via 192.168.50.11: Request rejected: ENETUNREACH');
    this.applied.push([...ops]);
  }
  close(): void {}
}

test('reconciler: Node heartbeats cause no sync; a label move is one sync that re-points and records the failover', async () => {
  const executor = new FakeExecutor();
  const statuses: string[] = [];
  const r = new RouteReconciler({ config: config(), nodeName: 'node-1', executor, log: silentLogger(), onStatus: (s) => statuses.push(`${s.role}:${s.gateway?.node}`) });
  assert.equal(r.upsertNode(node('gw-1', { ip: '192.168.50.11' })), true);
  assert.equal(r.upsertNode(node('gw-1', { ip: '192.168.50.11' })), false, 'same record');
  await r.sync();
  assert.equal(r.status().lastFailover, null, 'the first gateway is no failover');
  executor.state = applied(planRoutes(config(), 'node-1', [rec('gw-1', { ip: '192.168.50.11' })]).plan);
  assert.equal(r.upsertNode(node('gw-1', { ip: '192.168.50.11', labels: {} })), true);
  assert.equal(r.upsertNode(node('gw-2', { ip: '192.168.50.12' })), true);
  await r.sync();
  const s = r.status();
  assert.equal(s.gateway?.node, 'gw-2');
  assert.equal(s.lastFailover?.from, 'gw-1');
  assert.equal(s.lastFailover?.to, 'gw-2');
  assert.ok((s.lastFailover?.eventToAppliedMs ?? -1) >= 0);
  assert.deepEqual(s.routed, ['10.112.0.0/12', '10.2.0.0/16']);
  assert.deepEqual(kinds(executor.applied.at(-1)!), ['fdb-add', 'neigh-set', 'route-set', 'route-set', 'neigh-del', 'fdb-del']);
  assert.deepEqual(statuses, ['member:gw-1', 'member:gw-2']);
  assert.equal(r.deleteNode(node('gw-2')), true);
  assert.equal(r.status().gateway, null);
});

test('reconciler: a failed sync is reported in the status and thrown; overlaps are in the status with their message', async () => {
  const executor = new FakeExecutor();
  executor.fail = true;
  const cfg = config({ clusters: [...config().clusters, { name: 'peru', podCIDRs: ['10.2.0.0/24'] }] });
  const r = new RouteReconciler({ config: cfg, nodeName: 'node-1', executor, log: silentLogger() });
  r.upsertNode(node('gw-1'));
  await assert.rejects(r.sync(), /ENETUNREACH/);
  const s = r.status();
  assert.equal(s.lastSync?.ok, false);
  assert.match(s.lastSync?.error ?? '', /ENETUNREACH/);
  assert.equal(s.overlaps.length, 1);
  assert.match(s.overlaps[0]!.message, /chile01's pod CIDR 10.2.0.0\/16 overlaps cluster peru's pod CIDR 10.2.0.0\/24/);
  assert.deepEqual(s.routed, ['10.112.0.0/12']);
});

test('endpoints of remote clusters inside a withheld range are left out and reported; local ones stay', () => {
  const cfg = config({ clusters: [...config().clusters, { name: 'peru', podCIDRs: ['10.2.0.0/24'] }] });
  const store = new ModelStore('derived-');
  store.upsertService(convertService(service('default', 'derived-web', '10.96.0.50', [{ name: 'http', port: 80 }])).record!);
  for (const s of [
    importedSlice('default', 'chile01', 'a', 'derived-web', [endpoint('10.2.0.10'), endpoint('10.2.200.1')]),
    importedSlice('default', 'chile01', 'b', 'derived-web', [endpoint('10.112.0.5')]),
  ]) store.upsertSlice(convertSlice(s).record!);
  const ctx = { servicePrefix: 'derived-', clusters: new ClusterResolver('brazil', ['brazil', 'chile01', 'peru']), withheld: analyseNetworks(cfg).withheld };
  const { group, problems } = buildGroup('default/web', store, ctx);
  assert.deepEqual(group!.frontends[0]!.ports[0]!.endpoints.map((e) => e.ip), ['10.112.0.5']);
  assert.deepEqual(problems.map(problemText), [
    "EndpointSlice default/imported-chile01-a endpoint 10.2.0.10 of cluster chile01 is in chile01's pod CIDR 10.2.0.0/16, which overlaps another cluster's network; left out",
    "EndpointSlice default/imported-chile01-a endpoint 10.2.200.1 of cluster chile01 is in chile01's pod CIDR 10.2.0.0/16, which overlaps another cluster's network; left out",
  ]);
});

const DUAL_CLUSTERS: Config['clusters'] = [
  { name: 'brazil', podCIDRs: ['10.244.0.0/16', 'fd00:10:244::/56'], serviceCIDRs: ['10.96.0.0/12', 'fd00:10:96::/112'], nodeCIDRs: ['192.168.50.0/24', 'fd00:50::/64'] },
  { name: 'chile01', podCIDRs: ['10.2.0.0/16', 'fd00:2::/56'], serviceCIDRs: ['fd00:2:96::/112'] },
];

test('overlaps per family: an IPv6 range is checked only against IPv6 ranges, and named in canonical text', () => {
  const n = analyseNetworks({
    clusterName: 'brazil', clusterCIDR: '', clusterCIDRs: ['10.244.0.0/16', 'fd00:10:244::/56'],
    clusters: [
      ...DUAL_CLUSTERS,
      // ::/0 would swallow every IPv6 range, and no IPv4 one.
      { name: 'peru', podCIDRs: ['fd00:10:244:ff::/64', '10.3.0.0/16'] },
    ],
  });
  assert.deepEqual(n.routed.map((r) => `${r.cluster} ${r.family} ${r.cidr}`), [
    'chile01 IPv4 10.2.0.0/16', 'chile01 IPv6 fd00:2::/56', 'chile01 IPv6 fd00:2:96::/112', 'peru IPv4 10.3.0.0/16',
  ]);
  assert.deepEqual(n.overlaps.map((o) => o.message), [
    "cluster peru's pod CIDR fd00:10:244:ff::/64 overlaps the local cluster brazil's pod CIDR fd00:10:244::/56: no route for fd00:10:244:ff::/64; endpoints in it are left out",
  ]);
  const everything = analyseNetworks({ clusterName: 'brazil', clusterCIDR: '', clusters: [DUAL_CLUSTERS[0]!, { name: 'mexico', podCIDRs: ['::/0'] }] });
  assert.equal(everything.overlaps.length, 3, 'the IPv6 pod, service and node ranges of brazil; none of its IPv4 ones');
  assert.ok(everything.overlaps.every((o) => o.other.family === 'IPv6'));
});

test('withheldRange: an endpoint address of either family is matched only against ranges of its family', () => {
  const n = analyseNetworks({ clusterName: 'brazil', clusterCIDR: 'fd00:2:0:1::/64', clusters: [{ name: 'chile01', podCIDRs: ['fd00:2::/56', '10.2.0.0/16'] }] });
  assert.equal(withheldRange('fd00:2::10', n.withheld)?.cidr, 'fd00:2::/56');
  assert.equal(withheldRange('FD00:2:0:0::10', n.withheld)?.cidr, 'fd00:2::/56', 'non-canonical text of the same address');
  assert.equal(withheldRange('fd00:3::10', n.withheld), undefined);
  assert.equal(withheldRange('10.2.0.10', n.withheld), undefined, 'the IPv4 range overlaps nothing');
});

test('gateway: a Node record keeps the first InternalIP of each family; an IPv6-only node is a candidate', () => {
  const dual = rec('gw-1', { ip: '192.168.50.11', ip6: 'FD00:50:0::11' });
  assert.deepEqual(dual.internalIPs, { IPv4: '192.168.50.11', IPv6: 'fd00:50::11' });
  assert.equal(dual.internalIP, '192.168.50.11');
  const v6 = rec('gw-6', { ip: null, ip6: 'fd00:50::12' });
  assert.equal(v6.internalIP, 'fd00:50::12');
  assert.equal(chooseGateway([v6], GATEWAY_DEFAULTS).node?.name, 'gw-6');
});

test('vxlanLinkLocal is the EUI-64 link-local address the kernel gives an interface with that MAC', () => {
  assert.equal(vxlanLinkLocal('36:10:bb:2f:77:15'), 'fe80::3410:bbff:fe2f:7715');
  assert.equal(vxlanLinkLocal('02:00:00:00:00:01'), 'fe80::ff:fe00:1');
  assert.match(vxlanLinkLocal(vxlanMac('gw-1')), /^fe80::[0-9a-f]{1,4}:[0-9a-f]{1,2}ff:fe[0-9a-f]{2}:[0-9a-f]{1,4}$/);
});

test('plan, dual-stack: each remote CIDR is routed to the gateway address of its family; the tunnel runs over the IPv4 underlay', () => {
  const cfg = config({ clusters: DUAL_CLUSTERS, clusterCIDRs: ['10.244.0.0/16', 'fd00:10:244::/56'] });
  const nodes = [rec('gw-1', { ip: '192.168.50.11', ip6: 'fd00:50::11' })];
  const { plan } = planRoutes(cfg, 'node-1', nodes);
  const tunnel6 = vxlanLinkLocal(vxlanMac('gw-1'));
  assert.deepEqual(plan.routes, [
    { dst: '10.2.0.0/16', via: '192.168.50.11', overVxlan: true },
    { dst: 'fd00:2:96::/112', via: tunnel6, overVxlan: true },
    { dst: 'fd00:2::/56', via: tunnel6, overVxlan: true },
  ], 'over the tunnel IPv6 goes to the link-local address of the gateway\'s interface');
  assert.equal(plan.link?.underlay, 'IPv4');
  assert.deepEqual(plan.peer, { ip: '192.168.50.11', mac: vxlanMac('gw-1') }, 'FDB: the MAC behind the IPv4 underlay address');
  assert.deepEqual(plan.neighbors, [{ ip: '192.168.50.11', mac: vxlanMac('gw-1') }, { ip: tunnel6, mac: vxlanMac('gw-1') }], 'one next hop per family');
  assert.deepEqual(kinds(diffRoutes(plan, NOTHING)), ['link-add', 'addr-add', 'fdb-add', 'neigh-set', 'neigh-set', 'route-set', 'route-set', 'route-set', 'rule-add', 'rule-add', 'rule-add']);
  assert.deepEqual(diffRoutes(plan, applied(plan)), [], 'IPv6 routes read back at metric 1024 match');

  const gw = planRoutes(cfg, 'gw-1', nodes).plan;
  assert.deepEqual(gw.sysctls.map((s) => `${s.path}=${s.value}`).slice(-1), ['net/ipv6/conf/all/forwarding=1']);

  const direct = planRoutes({ ...cfg, gateway: { ...GATEWAY_DEFAULTS, mode: 'direct' } }, 'node-1', nodes).plan;
  assert.deepEqual(direct.routes.map((r) => `${r.dst} ${r.via}`), ['10.2.0.0/16 192.168.50.11', 'fd00:2:96::/112 fd00:50::11', 'fd00:2::/56 fd00:50::11'], 'direct: the gateway\'s InternalIP of each family');

  const v4only = [rec('gw-1', { ip: '192.168.50.11' })];
  assert.deepEqual(planRoutes({ ...cfg, gateway: { ...GATEWAY_DEFAULTS, mode: 'direct' } }, 'node-1', v4only).plan.routes.map((r) => `${r.dst} ${r.via ?? 'unreachable'}`),
    ['10.2.0.0/16 192.168.50.11', 'fd00:2:96::/112 unreachable', 'fd00:2::/56 unreachable'],
    'direct, a gateway without an IPv6 address: IPv6 traffic fails at once instead of leaking to the default route');
  assert.deepEqual(planRoutes(cfg, 'node-1', v4only).plan.routes.map((r) => r.via), ['192.168.50.11', tunnel6, tunnel6], 'the tunnel carries IPv6 whatever addresses the gateway has');
});

test('plan, IPv6-only: the tunnel runs over the IPv6 underlay; a change of underlay recreates the interface', () => {
  const cfg = config({ clusters: [{ name: 'brazil', podCIDRs: ['fd00:10:244::/56'] }, { name: 'chile01', podCIDRs: ['fd00:2::/56'] }], clusterCIDRs: ['fd00:10:244::/56'] });
  const v6 = planRoutes(cfg, 'node-1', [rec('gw-1', { ip: null, ip6: 'fd00:50::11' })]).plan;
  assert.equal(v6.link?.underlay, 'IPv6');
  assert.deepEqual(v6.peer, { ip: 'fd00:50::11', mac: vxlanMac('gw-1') });
  assert.deepEqual(v6.routes, [{ dst: 'fd00:2::/56', via: vxlanLinkLocal(vxlanMac('gw-1')), overVxlan: true }]);
  assert.deepEqual(v6.rules, ['fd00:2::/56']);
  const v4 = planRoutes(cfg, 'node-1', [rec('gw-1', { ip: '192.168.50.11', ip6: 'fd00:50::11' })]).plan;
  assert.deepEqual(kinds(diffRoutes(v6, applied(v4))), ['link-del', 'link-add', 'addr-add', 'fdb-add', 'neigh-set', 'route-set']);
  const none = planRoutes(cfg, 'node-1', []).plan;
  assert.equal(none.link?.underlay, null, 'no gateway: the interface is kept as it is');
  assert.deepEqual(kinds(diffRoutes(none, applied(v6))), ['route-set', 'neigh-del', 'fdb-del']);
});
