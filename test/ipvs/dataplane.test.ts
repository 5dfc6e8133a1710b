// IpvsDataplane against the fake IPVS table: plan, diff and apply give the
// table the selection asks for, with exact weights, the fewest requests, a
// drain before a TCP real server goes, and nothing but the agent's own
// services touched.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClusterEndpoint } from '../../src/model/group.js';
import type { Protocol } from '../../src/model/records.js';
import type { PolicySettings } from '../../src/policy/policy.js';
import { selectByPolicy, type HealthView } from '../../src/policy/select.js';
import type { FrontendSelection, GroupSelection } from '../../src/selection/selection.js';
import { IpvsDataplane, type IpvsGroup, type IpvsTransaction } from '../../src/ipvs/dataplane.js';
import { FakeIpvs } from '../../src/ipvs/fake.js';
import { isAgentMark, MARK_TAG } from '../../src/ipvs/marks.js';
import { renderIpvsadmSave } from '../../src/ipvs/save-format.js';
import type { DestSpec, IpvsClient, ObservedDest, ServiceKey, ServiceSpec } from '../../src/ipvs/types.js';
import { integerWeights, WEIGHT_SCALE } from '../../src/ipvs/weights.js';

const LOCAL = 'brazil';
const ALL: HealthView = { clusterHealthy: () => true, endpointHealthy: () => true };
const down = (cluster: string): HealthView => ({ clusterHealthy: (c) => c !== cluster, endpointHealthy: () => true });

const ep = (cluster: string, ip: string, port = 8080): ClusterEndpoint => ({ ip, port, cluster, ready: true, serving: true, terminating: false });
const BRAZIL = [ep('brazil', '10.1.0.1'), ep('brazil', '10.1.0.2')];
const CHILE = [ep('chile01', '10.2.0.1')];

const activeActive: PolicySettings = { mode: 'active-active', clusterWeights: { brazil: 3, chile01: 1 }, failoverOrder: [], unifiedName: false };
const failover: PolicySettings = { mode: 'failover', clusterWeights: {}, failoverOrder: ['brazil', 'chile01'], unifiedName: false };

interface FeSpec {
  readonly service: string;
  readonly ip: string;
  readonly port?: number;
  readonly protocol?: Protocol;
  readonly endpoints: readonly ClusterEndpoint[];
  readonly clustersetIPs?: readonly string[];
}

function selection(key: string, settings: PolicySettings, fes: readonly FeSpec[], health: HealthView = ALL): GroupSelection {
  const frontends = fes.flatMap((f): FrontendSelection[] => {
    const chosen = selectByPolicy(f.endpoints, settings, LOCAL, health);
    const at = (kind: FrontendSelection['kind'], ip: string): FrontendSelection => ({
      kind, family: 'ipv4', ip, port: f.port ?? 80, protocol: f.protocol ?? 'TCP',
      name: { namespace: 'shop', service: f.service, port: 'http' },
      affinity: null, endpoints: chosen.endpoints, decision: chosen.decision,
    });
    return [at('cluster-ip', f.ip), ...(f.clustersetIPs ?? []).map((ip) => at('clusterset-ip', ip))];
  });
  return { key, settings, decision: frontends[0]?.decision ?? null, frontends, problems: [] };
}

async function table(ipvs: IpvsClient): Promise<Map<string, { service: ServiceSpec; dests: ObservedDest[] }>> {
  const out = new Map<string, { service: ServiceSpec; dests: ObservedDest[] }>();
  for (const service of await ipvs.services()) {
    const id = service.key.kind === 'fwmark' ? `fwmark ${service.key.fwmark}` : `${service.key.protocol} ${service.key.address}:${service.key.port}`;
    out.set(id, { service, dests: await ipvs.dests(service.key) });
  }
  return out;
}

const weightsOf = async (ipvs: IpvsClient, mark: number) =>
  Object.fromEntries((await ipvs.dests({ kind: 'fwmark', family: 4, fwmark: mark })).map((d) => [`${d.address}:${d.port}`, d.weight]));

const ops = (t: IpvsTransaction) => t.parts.flatMap((p) => p.ops.map((o) => o.op + ('drain' in o && o.drain ? '(drain)' : '')));

async function applied(dp: IpvsDataplane, t: IpvsTransaction): Promise<void> {
  const outcome = await dp.apply(t);
  assert.equal(outcome.refused, null, JSON.stringify(outcome.refused));
}

/** A kube-proxy-style address service and someone else's fwmark service, present before the agent starts. */
const KUBE_SERVICE: ServiceSpec = { key: { kind: 'address', family: 4, protocol: 'tcp', address: '10.96.0.10', port: 80 }, scheduler: 'rr', flags: 0, timeout: 0, netmask: 0xffffffff };
const FOREIGN_MARK: ServiceSpec = { key: { kind: 'fwmark', family: 4, fwmark: 0x4000 }, scheduler: 'rr', flags: 0, timeout: 0, netmask: 0xffffffff };
const KUBE_DEST: DestSpec = { address: '10.1.0.9', port: 8080, weight: 1, forward: 'masq', upperThreshold: 0, lowerThreshold: 0 };

async function withForeign(): Promise<FakeIpvs> {
  const ipvs = new FakeIpvs();
  await ipvs.addService(KUBE_SERVICE);
  await ipvs.addDest(KUBE_SERVICE.key, KUBE_DEST);
  await ipvs.addService(FOREIGN_MARK);
  await ipvs.addDest(FOREIGN_MARK.key, KUBE_DEST);
  return ipvs;
}

async function foreign(ipvs: IpvsClient): Promise<string> {
  const t = await table(ipvs);
  const entries = [...t.values()].filter((e) => !(e.service.key.kind === 'fwmark' && isAgentMark(e.service.key.fwmark)));
  return renderIpvsadmSave(entries);
}
const FOREIGN_TEXT = renderIpvsadmSave([{ service: KUBE_SERVICE, dests: [KUBE_DEST] }, { service: FOREIGN_MARK, dests: [KUBE_DEST] }]);

test('integer weights keep the shares exact: equal shares are 1, others on the fixed scale, else their least common denominator', () => {
  assert.deepEqual(integerWeights([1, 1]), [1, 1]);
  assert.deepEqual(integerWeights([0.5, 0.5, 0]), [1, 1, 0]);
  assert.deepEqual(integerWeights([]), []);
  // 3/2, 3/2, 1 are 3:3:2 on the fixed scale; a share depends on its own cluster alone.
  assert.deepEqual(integerWeights([1.5, 1.5, 1]), [1.5 * WEIGHT_SCALE, 1.5 * WEIGHT_SCALE, WEIGHT_SCALE]);
  assert.deepEqual(integerWeights([1 / 3, 1 / 3, 1 / 3, 1]), [240240, 240240, 240240, 720720]);
  // 3/17 has no exact integer on the fixed scale: the least common denominator, 17.
  assert.deepEqual(integerWeights([3 / 17, 1]), [3, 17]);
});

test('active-active brazil=3,chile01=1 programs one fwmark wrr service whose weights give exactly 3:1 per cluster', async () => {
  const ipvs = await withForeign();
  const dp = new IpvsDataplane(ipvs);
  const g = dp.plan(selection('shop/web', activeActive, [{ service: 'web', ip: '10.96.0.10', endpoints: [...BRAZIL, ...CHILE] }]))!;
  const mark = g.frontends[0]!.mark;
  assert.ok(isAgentMark(mark) && (mark & 0xc000) === 0, `mark 0x${mark.toString(16)} carries the tag and not kube-proxy's bits`);
  await applied(dp, dp.diff(null, new Map([[g.key, g]])));
  // 3 : 3 : 2 on the fixed scale.
  assert.deepEqual(await weightsOf(ipvs, mark), { '10.1.0.1:8080': 1081080, '10.1.0.2:8080': 1081080, '10.2.0.1:8080': 720720 });
  const service = (await ipvs.services()).find((s) => s.key.kind === 'fwmark' && s.key.fwmark === mark)!;
  assert.equal(service.scheduler, 'wrr');
  assert.equal(await foreign(ipvs), FOREIGN_TEXT);
  const shares = dp.describe(selection('shop/web', activeActive, [{ service: 'web', ip: '10.96.0.10', endpoints: [...BRAZIL, ...CHILE] }]).frontends[0]!).shares;
  assert.deepEqual(Object.fromEntries(shares), { 'brazil 10.1.0.1:8080': 3 / 8, 'brazil 10.1.0.2:8080': 3 / 8, 'chile01 10.2.0.1:8080': 2 / 8 });
});

test('a dry run prints the table as ipvsadm -Sn prints what the kernel then holds, and the rules beside it', async () => {
  const ipvs = new FakeIpvs();
  const dp = new IpvsDataplane(ipvs);
  const a = dp.plan(selection('shop/web', activeActive, [{ service: 'web', ip: '10.96.0.10', endpoints: [...BRAZIL, ...CHILE] }]))!;
  const b = dp.plan(selection('shop/empty', activeActive, [{ service: 'empty', ip: '10.96.0.11', endpoints: [] }]))!;
  const desired = new Map([[a.key, a], [b.key, b]]);
  const t = dp.diff(null, desired);
  await applied(dp, t);
  const text = dp.render(t);
  const saved = renderIpvsadmSave([...(await table(ipvs)).values()]);
  assert.ok(text.startsWith(saved), `${text}\n---\n${saved}`);
  const markA = a.frontends[0]!.mark.toString(16);
  const markB = b.frontends[0]!.mark.toString(16);
  assert.match(text, new RegExp(`-A MCS-IPVS-MARK -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "shop/web:http" -j MARK --set-xmark 0x${markA}/0xffffffff`));
  assert.match(text, /-I PREROUTING 1 -m mark --mark 0x4d000000\/0xff000000 .* -j ACCEPT/);
  assert.match(text, /-A POSTROUTING -m mark --mark 0x4d000000\/0xff000000 .* -j MASQUERADE/);
  assert.match(text, new RegExp(`-A MCS-IPVS-REJECT -d 10.96.0.11/32 -p tcp -m tcp --dport 80 .* -j REJECT`));
  assert.doesNotMatch(text, /-A MCS-IPVS-REJECT -d 10.96.0.10\//);
  assert.match(text, /# ip rule add pref \d+ iif lo fwmark 0x4d000000\/0xff000000 lookup main/);
  assert.match(text, /# sysctl -w net.ipv4.vs.conntrack=1/);
  // The frontend without endpoints has no virtual service, only its mark and reject.
  assert.equal((await ipvs.services()).some((s) => s.key.kind === 'fwmark' && s.key.fwmark.toString(16) === markB), false);
});

test('a ClusterSet IP is marked for its port\'s one virtual service, fails over with it, and is rejected with it; kube-proxy\'s service for it stays unused', async () => {
  const ipvs = new FakeIpvs();
  const kubeLB: ServiceSpec = { ...KUBE_SERVICE, key: { kind: 'address', family: 4, protocol: 'tcp', address: '242.1.0.10', port: 80 } };
  await ipvs.addService(kubeLB);
  await ipvs.addDest(kubeLB.key, KUBE_DEST);
  const dp = new IpvsDataplane(ipvs);
  const spec = { service: 'web', ip: '10.96.0.10', endpoints: [...BRAZIL, ...CHILE], clustersetIPs: ['242.1.0.10'] };
  const g = dp.plan(selection('shop/web', failover, [spec]))!;
  assert.equal(g.frontends.length, 1);
  const fe = g.frontends[0]!;
  assert.deepEqual([fe.ip, fe.clustersetIPs], ['10.96.0.10', ['242.1.0.10']]);
  const t = dp.diff(null, new Map([[g.key, g]]));
  await applied(dp, t);
  assert.deepEqual(await weightsOf(ipvs, fe.mark), { '10.1.0.1:8080': 1, '10.1.0.2:8080': 1 });
  const mark = `0x${fe.mark.toString(16)}/0xffffffff`;
  const text = dp.render(t);
  assert.match(text, new RegExp(`-A MCS-IPVS-MARK -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "shop/web:http" -j MARK --set-xmark ${mark}`));
  assert.match(text, new RegExp(`-A MCS-IPVS-MARK -d 242.1.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "shop/web:http clusterset IP" -j MARK --set-xmark ${mark}`));

  const moved = dp.plan(selection('shop/web', failover, [spec], down('brazil')))!;
  const change = dp.diffGroup(g.key, g, moved);
  assert.deepEqual(ops(change), ['updateDest(drain)', 'updateDest(drain)', 'addDest'], 'one service: the ClusterIP and ClusterSet IP fail over together');
  await applied(dp, change);
  assert.equal((await weightsOf(ipvs, fe.mark))['10.2.0.1:8080'], 1);

  const empty = dp.plan(selection('shop/web', failover, [{ ...spec, endpoints: [] }]))!;
  const rejected = dp.diff(null, new Map([[empty.key, empty]])).aux!.tables.get('filter')!.filter((l) => l.includes('-j REJECT'));
  assert.deepEqual(rejected.map((l) => l.split(' ')[3]), ['10.96.0.10/32', '242.1.0.10/32']);
  assert.deepEqual((await ipvs.dests(kubeLB.key)).map((d) => d.address), ['10.1.0.9'], 'kube-proxy\'s service for the address is left as it was');
});

test('one endpoint change among 1000 services is one request', async () => {
  const ipvs = new FakeIpvs();
  const dp = new IpvsDataplane(ipvs);
  const desired = new Map<string, IpvsGroup>();
  const eps = (n: number) => Array.from({ length: 10 }, (_, i) => ep('brazil', `10.${1 + (n >> 8)}.${n & 255}.${i + 1}`));
  for (let n = 0; n < 1000; n++) {
    const g = dp.plan(selection(`shop/s${n}`, failover, [{ service: `s${n}`, ip: `10.96.${n >> 8}.${n & 255}`, endpoints: eps(n) }]))!;
    desired.set(g.key, g);
  }
  await applied(dp, dp.diff(null, desired));
  assert.equal((await ipvs.services()).length, 1000);
  const before = desired.get('shop/s500')!;
  const after = dp.plan(selection('shop/s500', failover, [{ service: 's500', ip: '10.96.1.244', endpoints: [...eps(500), ep('brazil', '10.9.9.9')] }]))!;
  const t = dp.diffGroup('shop/s500', before, after);
  assert.deepEqual(ops(t), ['addDest']);
  const requests = ipvs.requests;
  const outcome = await dp.apply(t);
  assert.equal(outcome.refused, null);
  assert.equal(ipvs.requests - requests, 1);
  assert.equal(outcome.stats.restores, 1);
});

test('active-active: a cluster\'s endpoint count changing rewrites that cluster\'s real servers and no other\'s', async () => {
  const ipvs = new FakeIpvs();
  const dp = new IpvsDataplane(ipvs);
  const brazil = (n: number) => Array.from({ length: n }, (_, i) => ep('brazil', `10.1.0.${i + 1}`));
  const chile = Array.from({ length: 5 }, (_, i) => ep('chile01', `10.2.0.${i + 1}`));
  const plan = (n: number) => dp.plan(selection('shop/web', activeActive, [{ service: 'web', ip: '10.96.0.10', endpoints: [...brazil(n), ...chile] }]))!;
  const five = plan(5);
  await applied(dp, dp.diff(null, new Map([[five.key, five]])));
  const six = plan(6);
  const grow = dp.diffGroup(five.key, five, six);
  // One add and brazil's five weights (3/5 to 3/6 of the scale); chile01's five stay.
  assert.deepEqual(ops(grow), ['updateDest', 'updateDest', 'updateDest', 'updateDest', 'updateDest', 'addDest']);
  let requests = ipvs.requests;
  await applied(dp, grow);
  assert.equal(ipvs.requests - requests, 6);
  const mark = six.frontends[0]!.mark;
  const weights = await weightsOf(ipvs, mark);
  assert.equal(weights['10.1.0.6:8080'], WEIGHT_SCALE / 2);
  assert.equal(weights['10.2.0.1:8080'], WEIGHT_SCALE / 5);
  // Back to five: the sixth drains at weight 0, brazil's five go back to 3/5; still nothing of chile01.
  const shrink = dp.diffGroup(six.key, six, plan(5));
  requests = ipvs.requests;
  await applied(dp, shrink);
  assert.equal(ipvs.requests - requests, 6);
  assert.equal((await weightsOf(ipvs, mark))['10.1.0.6:8080'], 0);
});

/** A fake whose real servers listed in `busy` report an active connection. */
class BusyFake extends FakeIpvs {
  readonly busy = new Set<string>();
  override async dests(service: ServiceKey): Promise<ObservedDest[]> {
    return (await super.dests(service)).map((d) => (this.busy.has(d.address) ? { ...d, activeConns: 1 } : d));
  }
}

test('failover: the local cluster going down drains its real servers at weight 0, then deletes them once idle or past the bound', async () => {
  const ipvs = new BusyFake();
  let now = 1000;
  const dp = new IpvsDataplane(ipvs, { drainBoundMs: 60_000, now: () => now });
  const fes = [{ service: 'web', ip: '10.96.0.10', endpoints: [...BRAZIL, ...CHILE] }];
  const healthy = dp.plan(selection('shop/web', failover, fes))!;
  const mark = healthy.frontends[0]!.mark;
  await applied(dp, dp.diff(null, new Map([[healthy.key, healthy]])));
  assert.deepEqual(await weightsOf(ipvs, mark), { '10.1.0.1:8080': 1, '10.1.0.2:8080': 1 });

  const failed = dp.plan(selection('shop/web', failover, fes, down('brazil')))!;
  const t = dp.diffGroup('shop/web', healthy, failed);
  assert.deepEqual(ops(t), ['updateDest(drain)', 'updateDest(drain)', 'addDest']);
  await applied(dp, t);
  assert.deepEqual(await weightsOf(ipvs, mark), { '10.1.0.1:8080': 0, '10.1.0.2:8080': 0, '10.2.0.1:8080': 1 });

  // A full reconcile meanwhile leaves the draining servers alone.
  const kernel = await dp.observe(new Map([[failed.key, failed]]));
  assert.deepEqual(dp.diff(kernel, new Map([[failed.key, failed]])).parts, []);

  ipvs.busy.add('10.1.0.1');
  assert.equal(dp.draining(), 2);
  const first = await dp.sweep();
  assert.equal(first.outcome.refused, null);
  assert.deepEqual([first.idle, first.bound], [1, 0]);
  assert.deepEqual(await weightsOf(ipvs, mark), { '10.1.0.1:8080': 0, '10.2.0.1:8080': 1 }, 'the idle one goes, the busy one stays');
  assert.equal(dp.draining(), 1);
  now += 60_000;
  const second = await dp.sweep();
  assert.deepEqual([second.idle, second.bound], [0, 1]);
  assert.deepEqual(await weightsOf(ipvs, mark), { '10.2.0.1:8080': 1 }, 'past the bound the busy one goes too');
  assert.deepEqual(dp.drainingDests(), []);
  assert.equal(dp.draining(), 0);
});

test('a real server coming back while it drains gets its weight again (no duplicate add)', async () => {
  const ipvs = new BusyFake();
  const dp = new IpvsDataplane(ipvs);
  const fes = [{ service: 'web', ip: '10.96.0.10', endpoints: [...BRAZIL, ...CHILE] }];
  const healthy = dp.plan(selection('shop/web', failover, fes))!;
  const failed = dp.plan(selection('shop/web', failover, fes, down('brazil')))!;
  await applied(dp, dp.diff(null, new Map([[healthy.key, healthy]])));
  await applied(dp, dp.diffGroup('shop/web', healthy, failed));
  const back = dp.diffGroup('shop/web', failed, healthy);
  assert.deepEqual(ops(back), ['updateDest(drain)', 'updateDest', 'updateDest']);
  await applied(dp, back);
  assert.deepEqual(await weightsOf(ipvs, healthy.frontends[0]!.mark), { '10.1.0.1:8080': 1, '10.1.0.2:8080': 1, '10.2.0.1:8080': 0 });
  assert.deepEqual(dp.drainingDests().map((d) => d.split(' ').pop()), ['10.2.0.1:8080']);
});

test('a UDP real server leaving is deleted at once', async () => {
  const ipvs = new FakeIpvs();
  const dp = new IpvsDataplane(ipvs);
  const fes = (endpoints: ClusterEndpoint[]) => [{ service: 'dns', ip: '10.96.0.53', port: 53, protocol: 'UDP' as Protocol, endpoints }];
  const a = dp.plan(selection('shop/dns', failover, fes([...BRAZIL])))!;
  const b = dp.plan(selection('shop/dns', failover, fes([BRAZIL[0]!])))!;
  await applied(dp, dp.diff(null, new Map([[a.key, a]])));
  const t = dp.diffGroup('shop/dns', a, b);
  assert.deepEqual(ops(t), ['deleteDest']);
  await applied(dp, t);
  assert.deepEqual(await weightsOf(ipvs, a.frontends[0]!.mark), { '10.1.0.1:8080': 1 });
});

test('after a restart the kernel is adopted: nothing to do for held groups, stale owned services go, foreign ones stay byte for byte', async () => {
  const ipvs = await withForeign();
  const first = new IpvsDataplane(ipvs);
  const web = first.plan(selection('shop/web', activeActive, [{ service: 'web', ip: '10.96.0.10', endpoints: [...BRAZIL, ...CHILE] }]))!;
  const gone = first.plan(selection('shop/gone', activeActive, [{ service: 'gone', ip: '10.96.0.12', endpoints: [...CHILE] }]))!;
  const held = first.plan(selection('shop/held', activeActive, [{ service: 'held', ip: '10.96.0.13', endpoints: [...BRAZIL] }]))!;
  await applied(first, first.diff(null, new Map([[web.key, web], [gone.key, gone], [held.key, held]])));
  const ownedBefore = (await table(ipvs)).get(`fwmark ${held.frontends[0]!.mark}`);

  const restarted = new IpvsDataplane(ipvs);
  const web2 = restarted.plan(selection('shop/web', activeActive, [{ service: 'web', ip: '10.96.0.10', endpoints: [...BRAZIL, ...CHILE] }]))!;
  assert.equal(web2.frontends[0]!.mark, web.frontends[0]!.mark, 'a frontend keeps its mark across restarts');
  const kernel = await restarted.observe(new Map([[web2.key, web2]]));
  assert.deepEqual(kernel.group('shop/web')!.frontends[0]!.dests, web2.frontends[0]!.dests);
  const adopted = restarted.adopt('shop/held', [{ name: { namespace: 'shop', service: 'held', port: 'http' }, protocol: 'TCP' }], kernel)!;
  assert.equal(adopted.frontends[0]!.mark, held.frontends[0]!.mark);
  // As the reconciler does: the kernel is read again against the desired state holding the adopted group.
  const desired = new Map([[web2.key, web2], [adopted.key, adopted]]);
  const t = restarted.diff(await restarted.observe(desired), desired);
  assert.deepEqual(t.keys, [`~0x${gone.frontends[0]!.mark.toString(16)}`]);
  assert.deepEqual(ops(t), ['deleteService']);
  await applied(restarted, t);
  const after = await table(ipvs);
  assert.deepEqual(after.get(`fwmark ${held.frontends[0]!.mark}`), ownedBefore);
  assert.equal(after.has(`fwmark ${gone.frontends[0]!.mark}`), false);
  assert.equal(await foreign(ipvs), FOREIGN_TEXT);

  const stats = await restarted.cleanup();
  assert.equal(stats.chainsWritten, 2);
  assert.equal(await foreign(ipvs), FOREIGN_TEXT);
  assert.equal((await ipvs.services()).length, 2, 'only the foreign services are left');
});

test('a service the kernel refuses is reported against its group, and the parts before it applied', async () => {
  const ipvs = new FakeIpvs();
  const good = new IpvsDataplane(ipvs);
  const bad = new IpvsDataplane(ipvs, { scheduler: 'no-such' });
  const a = good.plan(selection('shop/a', failover, [{ service: 'a', ip: '10.96.0.20', endpoints: [...BRAZIL] }]))!;
  const b = bad.plan(selection('shop/b', failover, [{ service: 'b', ip: '10.96.0.21', endpoints: [...BRAZIL] }]))!;
  const outcome = await good.apply(good.merge([good.diffGroup('shop/a', undefined, a), good.diffGroup('shop/b', undefined, b)]));
  assert.equal(outcome.refused?.kind, 'refused');
  if (outcome.refused?.kind !== 'refused') return;
  assert.deepEqual([outcome.refused.groups, outcome.refused.blamed], [['shop/b'], 'shop/b']);
  assert.match(outcome.refused.reason, /ENOENT/);
  assert.equal((await ipvs.services()).length, 1);
  assert.equal(MARK_TAG >>> 24, 0x4d);
});
