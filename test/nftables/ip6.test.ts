// nftables mode for IPv6 without root: table ip6 clusterset-proxy's
// skeleton and element bytes, and one engine driving the ip and ip6 tables
// (two fakes) as one data plane, each table holding only its family's
// frontends and endpoints.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CONFIG, type Config } from '../../src/config/schema.js';
import { silentLogger } from '../../src/log.js';
import { decode, encode } from '../../src/nftables/codec.js';
import { FakeNftables } from '../../src/nftables/fake.js';
import { nftablesDataplanes, planOnlyNftables } from '../../src/nftables/families.js';
import { NFT_IPV4, NFT_IPV6, planSkeleton, shardOf, shardSet } from '../../src/nftables/layout.js';
import { renderSkeletonScript } from '../../src/nftables/render.js';
import { explain } from '../../src/ops/explain.js';
import { SyncEngine } from '../../src/sync/engine.js';
import type { FamilyDataplanes } from '../../src/sync/family-dataplanes.js';
import { endpoint, importedSlice, service, withClustersetIPs } from '../support/fixtures.js';

const config: Config = {
  ...DEFAULT_CONFIG, clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }],
  clusterCIDR: '10.244.0.0/16', clusterCIDRs: ['10.244.0.0/16', 'fd00:10:244::/56'],
};

const dual = (name: string, ip4: string, ip6: string) =>
  service('default', name, ip4, [{ name: 'http', port: 80 }], { clusterIPs: [ip4, ip6], ipFamilies: ['IPv4', 'IPv6'] });
const v6slice = (sliceName: string, derived: string, ips: string[]) =>
  ({ ...importedSlice('default', 'chile01', sliceName, derived, ips.map((ip) => endpoint(ip))), addressType: 'IPv6' });

test('IPv6 element keys and values: 16 address bytes, RFC 5952 text back', () => {
  const slot = NFT_IPV6.setByName.get('slots-00')!;
  assert.deepEqual([slot.keyLen, slot.dataLen], [28, 20]);
  assert.deepEqual([NFT_IPV6.setByName.get('hairpin')!.keyLen, NFT_IPV4.setByName.get('hairpin')!.keyLen], [32, 8]);
  const key = encode(slot.key, 'FD00:96:0:0::10 . tcp . 80 . 63');
  assert.equal(key.subarray(0, 16).toString('hex'), 'fd000096000000000000000000000010');
  assert.equal(decode(slot.key, key), 'fd00:96::10 . tcp . 80 . 63');
  assert.equal(decode(slot.data, encode(slot.data, 'fd00:2::10 . 8080')), 'fd00:2::10 . 8080');
  assert.throws(() => encode(slot.data, '10.2.0.10 . 8080'), /not an IPv6 address/);
  assert.throws(() => encode(NFT_IPV4.setByName.get('slots-00')!.data, 'fd00:2::10 . 8080'), /not an IPv4 address/);
});

test('an IPv6 ClusterIP shards by its last group, as an IPv4 one by its last octet', () => {
  assert.equal(shardOf('10.96.0.75'), 75 & 63);
  assert.equal(shardOf('fd00:96::4b'), 0x4b & 63);
  assert.equal(shardOf('fd00:96::'), 0);
  assert.equal(shardSet(shardOf('fd00:96::7')), 'slots-07');
});

test('the ip6 skeleton: ipv6_addr sets, ip6 matches and dnat ip6, reject and masquerade with the IPv6 pod CIDR, same chains and priorities', () => {
  const v4 = planSkeleton({ clusterCIDR: '10.244.0.0/16' });
  const v6 = planSkeleton({ clusterCIDR: 'fd00:10:244::/56', family: NFT_IPV6 });
  assert.deepEqual(v6.chains.map((c) => [c.name, c.type, c.hook, c.priority, c.rules.length]), v4.chains.map((c) => [c.name, c.type, c.hook, c.priority, c.rules.length]));
  const script = renderSkeletonScript(v6);
  assert.match(script, /^table ip6 clusterset-proxy \{/);
  assert.match(script, /set service_ips \{\n\t\ttype ipv6_addr\n/);
  assert.match(script, /typeof ip6 daddr \. meta l4proto \. th dport \. numgen random mod 64 : ip6 daddr \. tcp dport/);
  assert.match(script, /ip6 daddr & ::3f vmap \{ ::0 : goto dispatch-00, ::1 : goto dispatch-01,/);
  assert.match(script, /dnat ip6 to ip6 daddr \. meta l4proto \. th dport \. jhash ip6 saddr mod 64 map @slots-/);
  assert.match(script, /ct state new ip6 daddr \. meta l4proto \. th dport @no_endpoints reject/);
  assert.match(script, /ct original ip6 daddr @service_ips ip6 saddr != fd00:10:244::\/56 masquerade/);
  assert.ok(!/\bip (daddr|saddr|to)\b|ipv4_addr/.test(script), 'no IPv4 expression in the ip6 table');
});

test('dual stack in nftables mode: table ip holds the IPv4 frontends and endpoints, table ip6 the IPv6 ones, ClusterSet IPs included', async () => {
  const v4 = new FakeNftables(NFT_IPV4);
  const v6 = new FakeNftables(NFT_IPV6);
  const dataplane = nftablesDataplanes([v4, v6]);
  assert.equal(dataplane.name, 'nftables + nftables');
  const engine = new SyncEngine({ config, dataplane, log: silentLogger() });
  engine.upsertService(withClustersetIPs(dual('derived-web', '10.96.0.5', 'fd00:96::5'), ['242.1.0.5', 'fd00:242::5']));
  engine.upsertService(service('default', 'derived-only6', 'fd00:96::6', [{ name: 'http', port: 80 }], { clusterIPs: ['fd00:96::6'], ipFamilies: ['IPv6'] }));
  engine.upsertSlice(importedSlice('default', 'chile01', 'v4', 'derived-web', [endpoint('10.2.0.10')]));
  engine.upsertSlice(v6slice('v6', 'derived-web', ['fd00:2::10']));
  await engine.syncFull();
  const text = async (fake: FakeNftables) => JSON.stringify((await fake.read())!.sets.map((s) => [s.name, s.elements]));
  const t4 = await text(v4);
  const t6 = await text(v6);
  for (const want of ['10.96.0.5 . tcp . 80', '242.1.0.5', '10.2.0.10 . 8080']) assert.ok(t4.includes(want), want);
  for (const want of ['fd00:96::5 . tcp . 80', 'fd00:242::5', 'fd00:2::10 . 8080']) assert.ok(t6.includes(want), want);
  assert.ok(!t4.includes('fd00'), 'no IPv6 address in table ip');
  assert.ok(!/\b(10|242)\.\d+\.\d+\.\d+/.test(t6), 'no IPv4 address in table ip6');
  // The IPv6-only Service has no IPv6 endpoint: rejected in table ip6, absent from table ip.
  const noEndpoints = (await v6.read())!.sets.find((s) => s.name === 'no_endpoints')!.elements.map((e) => e.key);
  assert.deepEqual(noEndpoints, ['fd00:96::6 . tcp . 80']);
  // A restarted pair adopts both tables: nothing to write.
  const again = nftablesDataplanes([v4, v6]);
  again.configure({ clusterCIDR: config.clusterCIDR, clusterCIDRs: config.clusterCIDRs, localCluster: 'brazil', masqueradeBit: 14, maxChainsPerRestore: Infinity });
  const desired = new Map<string, unknown>();
  for (const name of ['derived-web', 'derived-only6']) {
    const { selection } = engine.inspectGroup(engine.groupKeyOf('default', name));
    desired.set(selection!.key, again.plan(selection!));
  }
  assert.deepEqual(again.diff(await again.observe(desired as never), desired as never).keys, []);
  const report = explain(engine, { namespace: 'default', name: 'derived-web' }, await (engine.plane as FamilyDataplanes & { readForExplain(): Promise<unknown> }).readForExplain(), () => 'healthy');
  assert.equal(report.rules.inSync, true, report.rules.note);
  assert.ok(report.rules.planned.some((l) => l.startsWith('service_ports fd00:96::5 . tcp . 80')), report.rules.planned.join('\n'));
  assert.ok(report.rules.planned.some((l) => l.startsWith('service_ports 10.96.0.5 . tcp . 80')), report.rules.planned.join('\n'));
});

test('--dry-run in nftables mode prints table ip, then table ip6 under a comment line; cleanup deletes both tables', async () => {
  const engine = new SyncEngine({ config, dataplane: planOnlyNftables(), log: silentLogger() });
  engine.upsertService(dual('derived-web', '10.96.0.5', 'fd00:96::5'));
  engine.upsertSlice(v6slice('v6', 'derived-web', ['fd00:2::10']));
  const payload = engine.fullPayload();
  const at = payload.indexOf('# nftables (ipv6)\ntable ip6 clusterset-proxy {');
  assert.ok(payload.startsWith('table ip clusterset-proxy {') && at > 0, payload.slice(0, 200));
  assert.match(payload.slice(at), /add element ip6 clusterset-proxy service_ports \{ fd00:96::5 \. tcp \. 80 comment "default\/derived-web:http" \}/);
  assert.ok(!payload.slice(0, at).includes('fd00'), 'no IPv6 in the ip part');

  const v4 = new FakeNftables(NFT_IPV4);
  const v6 = new FakeNftables(NFT_IPV6);
  const live = new SyncEngine({ config, dataplane: nftablesDataplanes([v4, v6]), log: silentLogger() });
  live.upsertService(dual('derived-web', '10.96.0.5', 'fd00:96::5'));
  await live.syncFull();
  assert.ok((await v4.read()) && (await v6.read()));
  await live.cleanup();
  assert.deepEqual([await v4.read(), await v6.read()], [null, null]);
});
