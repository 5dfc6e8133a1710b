// Dual stack in iptables mode, over two fakes: one engine drives an iptables
// and an ip6tables data plane; each family's tables get that family's
// frontends and endpoints only.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CONFIG, type Config } from '../../src/config/schema.js';
import { FakeIptables } from '../../src/iptables/fake-backend.js';
import { iptablesDataplanes } from '../../src/iptables/families.js';
import { silentLogger } from '../../src/log.js';
import { SyncEngine } from '../../src/sync/engine.js';
import type { StaleUdpFlow } from '../../src/conntrack/stale-flows.js';
import { FamilyDataplanes } from '../../src/sync/family-dataplanes.js';
import { explain } from '../../src/ops/explain.js';
import { endpoint, importedSlice, service, withClustersetIPs } from '../support/fixtures.js';
import { NftablesDataplane } from '../../src/nftables/nftables-dataplane.js';
import { FakeNftables } from '../../src/nftables/fake.js';
import { IpvsDataplane } from '../../src/ipvs/dataplane.js';
import { FakeIpvs } from '../../src/ipvs/fake.js';
import type { Dataplane } from '../../src/sync/dataplane.js';
import { KUBE_PROXY_NAT, USER_FILTER } from '../support/foreign-rules.js';

const config: Config = {
  ...DEFAULT_CONFIG, clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }],
  clusterCIDR: '10.244.0.0/16', clusterCIDRs: ['10.244.0.0/16', 'fd00:10:244::/56'],
};

function setup(flushed: StaleUdpFlow[] = []) {
  const v4 = new FakeIptables('nft', 'ipv4');
  const v6 = new FakeIptables('nft', 'ipv6');
  v4.load(KUBE_PROXY_NAT + USER_FILTER);
  v6.load(USER_FILTER);
  const dataplane = iptablesDataplanes(v4, v6);
  const engine = new SyncEngine({ config, dataplane, log: silentLogger(), flushUdp: async (f) => void flushed.push(...f) });
  return { v4, v6, engine, dataplane };
}

/** The members of a fake's set, as `ipset save` lists them. */
async function setMembers(fake: FakeIptables, name: string): Promise<string[]> {
  return ((await fake.saveSet(name)) ?? '').split('\n').filter((l) => l.startsWith('add ')).sort();
}

const dual = (name: string, ip4: string, ip6: string, ports = [{ name: 'http', port: 80 }]) =>
  service('default', name, ip4, ports, { clusterIPs: [ip4, ip6], ipFamilies: ['IPv4', 'IPv6'] });
const v6slice = (sliceName: string, derived: string, ips: string[], ports?: { name: string; port: number; protocol?: string }[]) =>
  ({ ...importedSlice('default', 'chile01', sliceName, derived, ips.map((ip) => endpoint(ip)), ports as never), addressType: 'IPv6' });

test('dual stack: each family\'s tables get its ClusterIP and endpoints; masquerade compares with its own pod CIDR', async () => {
  const { v4, v6, engine, dataplane } = setup();
  assert.equal(dataplane.name, 'iptables-nft + ip6tables-nft');
  engine.upsertService(dual('derived-web', '10.96.0.5', 'fd00:96::5'));
  engine.upsertSlice(importedSlice('default', 'chile01', 'v4', 'derived-web', [endpoint('10.2.0.10')]));
  engine.upsertSlice(v6slice('v6', 'derived-web', ['fd00:2::10']));
  await engine.syncFull();
  const nat4 = await v4.save('nat');
  const nat6 = await v6.save('nat');
  assert.match(nat4, /-A MCS-DISPATCH-05 -d 10\.96\.0\.5\/32 -p tcp .*--dport 80 -j MCS-SVC-/);
  assert.match(nat4, /! -s 10\.244\.0\.0\/16 .* -j MCS-MARK-MASQ/);
  assert.match(nat4, /-j DNAT --to-destination 10\.2\.0\.10:8080/);
  assert.ok(!nat4.includes('fd00'), 'no IPv6 address in iptables');
  assert.match(nat6, /-A MCS-DISPATCH-05 -d fd00:96::5\/128 -p tcp .*--dport 80 -j MCS-SVC-/);
  assert.match(nat6, /! -s fd00:10:244::\/56 .* -j MCS-MARK-MASQ/);
  assert.match(nat6, /-A MCS-SVC-\w+ -p tcp -m comment --comment "default\/derived-web:http -> chile01 fd00:2::10:8080" -j DNAT --to-destination \[fd00:2::10\]:8080/);
  assert.match(nat6, /-A PREROUTING -m set --match-set MCS-FRONTENDS6 dst,dst -m comment --comment "clusterset-proxy service portals" -j MCS-SERVICES/);
  assert.match(nat6, /-A MCS-SERVICES -d ::5\/::3f -m comment --comment "ClusterIPs ending 5 mod 64" -j MCS-DISPATCH-05/);
  assert.ok(!/10\.\d+\.\d+\.\d+/.test(nat6), 'no IPv4 address in ip6tables');
  // Each family's set holds its own frontends (the fakes hold a set per tool; the kernel one per namespace, hence two names).
  assert.deepEqual(await setMembers(v4, 'MCS-FRONTENDS'), ['add MCS-FRONTENDS 10.96.0.5,tcp:80 comment "default/derived-web:http"']);
  assert.deepEqual(await setMembers(v6, 'MCS-FRONTENDS6'), ['add MCS-FRONTENDS6 fd00:96::5,tcp:80 comment "default/derived-web:http"']);
});

test('dual stack: a family without endpoints rejects with its own ICMP while the other family serves', async () => {
  const { v4, v6, engine } = setup();
  engine.upsertService(dual('derived-web', '10.96.0.5', 'fd00:96::5'));
  engine.upsertSlice(importedSlice('default', 'chile01', 'v4', 'derived-web', [endpoint('10.2.0.10')]));
  await engine.syncFull();
  assert.ok(!(await v4.save('filter')).includes('REJECT --reject-with icmp'), 'IPv4 has endpoints');
  assert.match(await v6.save('filter'), /-A MCS-SERVICES -d fd00:96::5\/128 -p tcp -m comment --comment "default\/derived-web:http has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp6-port-unreachable/);
  // The IPv6 endpoints arrive: a partial sync touches ip6tables only.
  const before4 = v4.history.length;
  engine.upsertSlice(v6slice('v6', 'derived-web', ['fd00:2::10']));
  await engine.syncPartial();
  assert.equal(v4.history.length, before4, 'iptables is not touched');
  assert.deepEqual(await setMembers(v6, 'MCS-FRONTENDS6'), ['add MCS-FRONTENDS6 fd00:96::5,tcp:80 comment "default/derived-web:http"'], 'a reject\'s frontend is a member too');
  assert.ok(!(await v6.save('filter')).includes('derived-web'), 'the reject is gone');
  assert.match(await v6.save('nat'), /--to-destination \[fd00:2::10\]:8080/);
});

test('an IPv6-only Service is programmed in ip6tables alone; cleanup restores both families\' foreign rules exactly', async () => {
  const { v4, v6, engine } = setup();
  const pristine4 = { nat: await v4.save('nat'), filter: await v4.save('filter') };
  const pristine6 = { nat: await v6.save('nat'), filter: await v6.save('filter') };
  engine.upsertService(service('default', 'derived-api', 'fd00:96::7', [{ name: 'grpc', port: 9000 }], { clusterIPs: ['fd00:96::7'], ipFamilies: ['IPv6'] }));
  engine.upsertSlice(v6slice('api', 'derived-api', ['fd00:2::20'], [{ name: 'grpc', port: 9000 }]));
  await engine.syncFull();
  assert.ok(!(await v4.save('nat')).includes('derived-api'));
  assert.match(await v6.save('nat'), /-d fd00:96::7\/128 .*-j MCS-SVC-/);
  assert.deepEqual(await setMembers(v4, 'MCS-FRONTENDS'), [], 'the IPv4 set exists, for its jumps, and is empty');
  assert.deepEqual(await setMembers(v6, 'MCS-FRONTENDS6'), ['add MCS-FRONTENDS6 fd00:96::7,tcp:9000 comment "default/derived-api:grpc"']);
  await engine.cleanup();
  assert.deepEqual({ nat: await v4.save('nat'), filter: await v4.save('filter') }, pristine4);
  assert.deepEqual({ nat: await v6.save('nat'), filter: await v6.save('filter') }, pristine6);
  assert.equal(await v4.saveSet('MCS-FRONTENDS'), null, 'cleanup destroys each family\'s set');
  assert.equal(await v6.saveSet('MCS-FRONTENDS6'), null);
});

test('dual stack: stale UDP flows of each family are flushed; explain shows a Service once per ClusterIP with its family\'s rules', async () => {
  const flushed: StaleUdpFlow[] = [];
  const { engine } = setup(flushed);
  const dns = [{ name: 'dns', port: 53, protocol: 'UDP' as const }];
  engine.upsertService(service('default', 'derived-dns', '10.96.0.53', dns, { clusterIPs: ['10.96.0.53', 'fd00:96::53'] }));
  engine.upsertSlice(importedSlice('default', 'chile01', 'v4', 'derived-dns', [endpoint('10.2.0.53')], dns));
  engine.upsertSlice(v6slice('v6', 'derived-dns', ['fd00:2::53', 'fd00:2::54'], dns));
  await engine.syncFull();
  engine.upsertSlice(v6slice('v6', 'derived-dns', ['fd00:2::54'], dns));
  await engine.syncPartial();
  assert.deepEqual(flushed, [{ clusterIP: 'fd00:96::53', port: 53, endpoint: 'fd00:2::53:53' }]);

  const kernel = await (engine.plane as FamilyDataplanes & { readForExplain(): Promise<unknown> }).readForExplain();
  const report = explain(engine, { namespace: 'default', name: 'derived-dns' }, kernel, () => 'healthy');
  assert.deepEqual(report.services.map((s) => [s.clusterIP, s.ports[0]!.clusters.flatMap((c) => c.endpoints.map((e) => e.address))]), [
    ['10.96.0.53', ['10.2.0.53:53']],
    ['fd00:96::53', ['fd00:2::54:53']],
  ]);
  assert.equal(report.rules.inSync, true, report.rules.note);
  assert.ok(report.rules.kernel!.some((l) => l.includes('-d fd00:96::53/128')), report.rules.kernel!.join('\n'));
  assert.ok(report.rules.kernel!.some((l) => l.includes('-d 10.96.0.53/32')));
});

test('a dry run renders iptables first, then ip6tables after a comment line', () => {
  const { engine } = setup();
  engine.upsertService(dual('derived-web', '10.96.0.5', 'fd00:96::5'));
  const text = engine.fullPayload();
  assert.match(text, /^# ipset: create MCS-FRONTENDS hash:ip,port family inet .*\n# ipset: add MCS-FRONTENDS 10\.96\.0\.5,tcp:80 .*\n\*nat\n/);
  const at = text.indexOf('# ip6tables-nft (ipv6)\n# ipset: create MCS-FRONTENDS6 hash:ip,port family inet6 ');
  assert.ok(at > 0, text);
  assert.ok(text.slice(0, at).includes('-d 10.96.0.5/32') && !text.slice(0, at).includes('fd00'));
  assert.ok(text.slice(at).includes('-d fd00:96::5/128') && !text.slice(at).includes('10.96.0.5'));
});

/** A dual-stack derived Service with a ClusterSet IP of each family, and endpoints of each family. */
function dualClusterset(engine: SyncEngine): void {
  engine.upsertService(withClustersetIPs(dual('derived-web', '10.96.0.5', 'fd00:96::5'), ['242.1.0.5', 'fd00:242::5']));
  engine.upsertSlice(importedSlice('default', 'chile01', 'v4', 'derived-web', [endpoint('10.2.0.10')]));
  engine.upsertSlice(v6slice('v6', 'derived-web', ['fd00:2::10']));
}

test('dual stack: a ClusterSet IP of each family is served in its family\'s tables, through MCS-EXT- to that family\'s endpoints', async () => {
  const { v4, v6, engine } = setup();
  dualClusterset(engine);
  await engine.syncFull();
  const nat4 = await v4.save('nat');
  const nat6 = await v6.save('nat');
  assert.match(nat4, /-A MCS-DISPATCH-05 -d 242\.1\.0\.5\/32 -p tcp -m comment --comment "default\/derived-web:http clusterset IP" -m tcp --dport 80 -j MCS-EXT-/);
  assert.match(nat6, /-A MCS-DISPATCH-05 -d fd00:242::5\/128 -p tcp -m comment --comment "default\/derived-web:http clusterset IP" -m tcp --dport 80 -j MCS-EXT-/);
  assert.match(nat6, /-A MCS-EXT-\w+ -m comment --comment "default\/derived-web:http masquerade traffic to the clusterset IP" -j MCS-MARK-MASQ/);
  assert.ok(!nat4.includes('fd00'), 'no IPv6 address in iptables');
  assert.ok(!/\b(10|242)\.\d+\.\d+\.\d+/.test(nat6), 'no IPv4 address in ip6tables');
  const report = explain(engine, { namespace: 'default', name: 'derived-web' }, await (engine.plane as FamilyDataplanes & { readForExplain(): Promise<unknown> }).readForExplain(), () => 'healthy');
  assert.deepEqual(report.services.map((s) => [s.clusterIP, s.clustersetIPs, s.ports[0]!.clusterset?.map((c) => c.ip)]), [
    ['10.96.0.5', ['242.1.0.5'], ['242.1.0.5']],
    ['fd00:96::5', ['fd00:242::5'], ['fd00:242::5']],
  ]);
  assert.equal(report.rules.inSync, true, report.rules.note);
});

for (const [name, make] of [
  ['nftables', () => new NftablesDataplane(new FakeNftables())],
  ['ipvs', () => new IpvsDataplane(new FakeIpvs())],
] as const) {
  test(`${name}: a dual-stack Service's IPv6 ClusterIP and ClusterSet IP are never handed to the (IPv4) data plane`, () => {
    const dataplane: Dataplane = make();
    const engine = new SyncEngine({ config, dataplane, log: silentLogger() });
    dualClusterset(engine);
    const { selection } = engine.inspectGroup(engine.groupKeyOf('default', 'derived-web'));
    assert.deepEqual(selection!.frontends.map((f) => f.ip), ['10.96.0.5', 'fd00:96::5', '242.1.0.5', 'fd00:242::5'], 'the selection has every address');
    const planned = JSON.stringify(dataplane.plan(selection!));
    assert.ok(planned.includes('10.96.0.5') && planned.includes('242.1.0.5') && planned.includes('10.2.0.10'), planned);
    assert.ok(!planned.includes('fd00'), planned);
  });
}
