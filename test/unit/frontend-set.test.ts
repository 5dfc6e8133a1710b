import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CONFIG, type Config } from '../../src/config/schema.js';
import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import { FakeIptables } from '../../src/iptables/fake-backend.js';
import {
  diffSet, dispatchMember, mergeSetChanges, parseSetSave, renderSetAfter, renderSetBefore,
} from '../../src/iptables/frontend-set.js';
import { bucketOf, FRONTEND_SET, FRONTEND_SET6, LAYOUTS } from '../../src/iptables/layout.js';
import { EMPTY_PLAN } from '../../src/iptables/planner.js';
import { RestoreError } from '../../src/iptables/backend.js';
import { silentLogger } from '../../src/log.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { endpoint, importedSlice, service } from '../support/fixtures.js';

const config: Config = { ...DEFAULT_CONFIG, clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16' };

function addDerived(engine: SyncEngine, i: number, ports: { name: string; port: number; protocol?: 'TCP' | 'UDP' }[] = [{ name: 'http', port: 80 }]): void {
  engine.upsertService(service('default', `derived-svc${i}`, `10.96.0.${i}`, ports));
  engine.upsertSlice(importedSlice('default', 'chile01', `svc${i}-a`, `derived-svc${i}`, [endpoint(`10.2.0.${i}`)], ports));
}

async function members(fake: FakeIptables, family: 'ipv4' | 'ipv6' = 'ipv4'): Promise<string[] | null> {
  const saved = await fake.saveSet(family === 'ipv6' ? FRONTEND_SET6 : FRONTEND_SET);
  return saved === null ? null : [...parseSetSave(saved, family).keys()].sort();
}

test('a ClusterIP falls in the bucket of its low six bits, in either family', () => {
  assert.deepEqual(['10.96.0.0', '10.96.0.63', '10.96.0.64', '10.96.1.200'].map(bucketOf), [0, 63, 0, 8]);
  assert.deepEqual(['fd00:96::', 'fd00:96::3f', 'fd00:96::40', 'fd00:96::1:c8', 'fd00:96::ffff', '::ffff:10.96.1.200'].map(bucketOf), [0, 63, 0, 8, 63, 8]);
});

test('each family\'s skeleton matches its own set, and its bucket rules its own address bits', () => {
  assert.match(LAYOUTS.ipv4.jumps[0]!.spec, /^-m set --match-set MCS-FRONTENDS dst,dst /);
  assert.match(LAYOUTS.ipv6.jumps[0]!.spec, /^-m set --match-set MCS-FRONTENDS6 dst,dst /);
  assert.equal(LAYOUTS.ipv4.bucketRules[10], '-d 0.0.0.10/0.0.0.63 -m comment --comment "ClusterIPs ending 10 mod 64" -j MCS-DISPATCH-10');
  // As ip6tables-save prints them: bucket 0's address is "::".
  assert.equal(LAYOUTS.ipv6.bucketRules[0], '-d ::/::3f -m comment --comment "ClusterIPs ending 0 mod 64" -j MCS-DISPATCH-00');
  assert.equal(LAYOUTS.ipv6.bucketRules[63], '-d ::3f/::3f -m comment --comment "ClusterIPs ending 63 mod 64" -j MCS-DISPATCH-63');
});

test('each nat dispatch rule names its member; no other rule does', () => {
  const spec = '-d 10.96.0.50/32 -p udp -m comment --comment "default/derived-dns:dns cluster IP" -m udp --dport 53 -j MCS-SVC-X';
  assert.deepEqual(dispatchMember({ table: 'nat', chain: 'MCS-DISPATCH-50', spec }), ['10.96.0.50,udp:53', 'default/derived-dns:dns']);
  assert.equal(dispatchMember({ table: 'filter', chain: 'MCS-SERVICES', spec }), null);
  assert.equal(dispatchMember({ table: 'nat', chain: 'MCS-SVC-X', spec: '-j ACCEPT' }), null);
  const spec6 = '-d fd00:96::32/128 -p tcp -m comment --comment "default/derived-web:http clusterset IP" -m tcp --dport 80 -j MCS-EXT-X';
  assert.deepEqual(dispatchMember({ table: 'nat', chain: 'MCS-DISPATCH-50', spec: spec6 }), ['fd00:96::32,tcp:80', 'default/derived-web:http']);
});

test('members are added before and deleted after the restores; a merged change never deletes what it adds', () => {
  const change = mergeSetChanges([
    { create: false, add: new Map([['10.96.0.1,tcp:80', 'a/b:http']]), del: ['10.96.0.2,tcp:80'], destroy: false },
    { create: false, add: new Map([['10.96.0.2,tcp:80', 'a/c:http']]), del: ['10.96.0.1,tcp:80', '10.96.0.3,udp:53'], destroy: false },
  ]);
  assert.deepEqual(change.del, ['10.96.0.3,udp:53']);
  assert.match(renderSetBefore(change, 'ipv4'), /^create MCS-FRONTENDS hash:ip,port family inet .*\nadd MCS-FRONTENDS 10\.96\.0\.1,tcp:80 comment "a\/b:http"\nadd MCS-FRONTENDS 10\.96\.0\.2,tcp:80 comment "a\/c:http"\n$/);
  assert.equal(renderSetAfter(change, 'ipv4'), 'del MCS-FRONTENDS 10.96.0.3,udp:53\n');
  assert.equal(renderSetAfter(diffSet(new Map([['10.96.0.1,tcp:80', 'x']]), EMPTY_PLAN), 'ipv4'), 'destroy MCS-FRONTENDS\n');
  assert.throws(() => renderSetBefore({ create: false, add: new Map([['10.96.0.1,tcp:80 comment "x"\ndestroy X', 'x']]), del: [], destroy: false }, 'ipv4'), /refusing ipv4 ipset member/);
});

test('IPv6 members go to MCS-FRONTENDS6, a set of family inet6; an address of the other family is refused', () => {
  const change = { create: true, add: new Map([['fd00:96::a,tcp:80', 'a/b:http']]), del: ['fd00:96::b,udp:53'], destroy: false };
  assert.match(renderSetBefore(change, 'ipv6'), /^create MCS-FRONTENDS6 hash:ip,port family inet6 .*\nadd MCS-FRONTENDS6 fd00:96::a,tcp:80 comment "a\/b:http"\n$/);
  assert.equal(renderSetAfter(change, 'ipv6'), 'del MCS-FRONTENDS6 fd00:96::b,udp:53\n');
  assert.throws(() => renderSetBefore(change, 'ipv4'), /refusing ipv4 ipset member "fd00:96::a,tcp:80"/);
  assert.throws(() => renderSetAfter({ ...change, del: ['10.96.0.1,tcp:80'] }, 'ipv6'), /refusing ipv6 ipset member/);
  const saved = 'create MCS-FRONTENDS6 hash:ip,port family inet6 hashsize 1024 maxelem 1048576 comment bucketsize 12 initval 0x1\nadd MCS-FRONTENDS6 fd00:96::a,tcp:80 comment "a/b:http"\n';
  assert.deepEqual([...parseSetSave(saved, 'ipv6')], [['fd00:96::a,tcp:80', 'a/b:http']]);
  assert.deepEqual([...parseSetSave(saved, 'ipv4')], [], 'the IPv4 set\'s members only');
});

test('the set follows the dispatch rules through start, change, deletion, drift and cleanup', async () => {
  const fake = new FakeIptables('nft');
  const engine = new SyncEngine({ config, dataplane: new IptablesDataplane(fake), log: silentLogger() });
  addDerived(engine, 1);
  addDerived(engine, 2, [{ name: 'dns', port: 53, protocol: 'UDP' }]);
  await engine.syncFull();
  assert.deepEqual(await members(fake), ['10.96.0.1,tcp:80', '10.96.0.2,udp:53']);

  addDerived(engine, 3);
  engine.deleteService(service('default', 'derived-svc1', '10.96.0.1', []));
  await engine.syncPartial();
  assert.deepEqual(await members(fake), ['10.96.0.2,udp:53', '10.96.0.3,tcp:80']);

  // Someone deletes a member and adds one of theirs: the full sync puts back exactly ours.
  await fake.restoreSets(`del ${FRONTEND_SET} 10.96.0.2,udp:53\nadd ${FRONTEND_SET} 10.96.9.9,tcp:1 comment "x"\n`);
  await engine.syncFull();
  assert.deepEqual(await members(fake), ['10.96.0.2,udp:53', '10.96.0.3,tcp:80']);

  await engine.cleanup();
  assert.equal(await members(fake), null);
  assert.doesNotMatch(await fake.save('nat'), /MCS-/);
});

test('a refused restore leaves the set a superset of the rules: new members stay, old ones are not deleted', async () => {
  const fake = new FakeIptables('nft');
  let refuse = false;
  const backend = {
    get mode() { return fake.mode; },
    save: (t: 'nat' | 'filter') => fake.save(t),
    saveSet: (name: string) => fake.saveSet(name),
    restoreSets: (p: string) => fake.restoreSets(p),
    restore: async (p: string) => {
      if (refuse) throw new RestoreError('refused', 'iptables-restore: line 2 failed\n', 2);
      await fake.restore(p);
    },
  };
  const engine = new SyncEngine({ config, dataplane: new IptablesDataplane(backend), log: silentLogger() });
  addDerived(engine, 1);
  await engine.syncFull();
  refuse = true;
  addDerived(engine, 2);
  engine.deleteService(service('default', 'derived-svc1', '10.96.0.1', []));
  await engine.syncPartial().catch(() => undefined);
  // svc1's rule is still in the kernel, so its member is too; svc2's member went in ahead of its rule.
  assert.match(await fake.save('nat'), /-A MCS-DISPATCH-01 -d 10\.96\.0\.1\/32/);
  assert.deepEqual(await members(fake), ['10.96.0.1,tcp:80', '10.96.0.2,tcp:80']);
  refuse = false;
  await engine.syncFull();
  assert.deepEqual(await members(fake), ['10.96.0.2,tcp:80']);
});

test('the fake refuses a rule matching a missing set and the destruction of a set a rule matches', async () => {
  const fake = new FakeIptables('legacy');
  const jump = '-A PREROUTING -m set --match-set MCS-FRONTENDS dst,dst -j ACCEPT';
  await assert.rejects(fake.restore(`*nat\n${jump}\nCOMMIT\n`), /line 2 failed: Set MCS-FRONTENDS doesn't exist/);
  await fake.restoreSets(renderSetBefore({ create: true, add: new Map(), del: [], destroy: false }, 'ipv4'));
  await fake.restore(`*nat\n${jump}\nCOMMIT\n`);
  await assert.rejects(fake.restoreSets('destroy MCS-FRONTENDS\n'), /in use by a kernel component/);
});

test('the fake refuses an ip6tables rule matching a set of family inet, as ip6tables does', async () => {
  const fake = new FakeIptables('nft', 'ipv6');
  await fake.restoreSets(renderSetBefore({ create: true, add: new Map(), del: [], destroy: false }, 'ipv4'));
  await fake.restoreSets(renderSetBefore({ create: true, add: new Map(), del: [], destroy: false }, 'ipv6'));
  await assert.rejects(fake.restore('*nat\n-A PREROUTING -m set --match-set MCS-FRONTENDS dst,dst -j ACCEPT\nCOMMIT\n'), /The protocol family of set MCS-FRONTENDS is IPv4, which is not applicable/);
  await fake.restore('*nat\n-A PREROUTING -m set --match-set MCS-FRONTENDS6 dst,dst -j ACCEPT\nCOMMIT\n');
});
