import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CONFIG, type Config } from '../../src/config/schema.js';
import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import { FakeIptables } from '../../src/iptables/fake-backend.js';
import {
  diffSet, dispatchMember, mergeSetChanges, parseSetSave, renderSetAfter, renderSetBefore,
} from '../../src/iptables/frontend-set.js';
import { bucketOf, FRONTEND_SET } from '../../src/iptables/layout.js';
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

async function members(fake: FakeIptables): Promise<string[] | null> {
  const saved = await fake.saveSet(FRONTEND_SET);
  return saved === null ? null : [...parseSetSave(saved).keys()].sort();
}

test('a ClusterIP falls in the bucket of its low six bits', () => {
  assert.deepEqual(['10.96.0.0', '10.96.0.63', '10.96.0.64', '10.96.1.200'].map(bucketOf), [0, 63, 0, 8]);
});

test('each nat dispatch rule names its member; no other rule does', () => {
  const spec = '-d 10.96.0.50/32 -p udp -m comment --comment "default/derived-dns:dns cluster IP" -m udp --dport 53 -j MCS-SVC-X';
  assert.deepEqual(dispatchMember({ table: 'nat', chain: 'MCS-DISPATCH-50', spec }), ['10.96.0.50,udp:53', 'default/derived-dns:dns']);
  assert.equal(dispatchMember({ table: 'filter', chain: 'MCS-SERVICES', spec }), null);
  assert.equal(dispatchMember({ table: 'nat', chain: 'MCS-SVC-X', spec: '-j ACCEPT' }), null);
});

test('members are added before and deleted after the restores; a merged change never deletes what it adds', () => {
  const change = mergeSetChanges([
    { create: false, add: new Map([['10.96.0.1,tcp:80', 'a/b:http']]), del: ['10.96.0.2,tcp:80'], destroy: false },
    { create: false, add: new Map([['10.96.0.2,tcp:80', 'a/c:http']]), del: ['10.96.0.1,tcp:80', '10.96.0.3,udp:53'], destroy: false },
  ]);
  assert.deepEqual(change.del, ['10.96.0.3,udp:53']);
  assert.match(renderSetBefore(change), /^create MCS-FRONTENDS hash:ip,port family inet .*\nadd MCS-FRONTENDS 10\.96\.0\.1,tcp:80 comment "a\/b:http"\nadd MCS-FRONTENDS 10\.96\.0\.2,tcp:80 comment "a\/c:http"\n$/);
  assert.equal(renderSetAfter(change), 'del MCS-FRONTENDS 10.96.0.3,udp:53\n');
  assert.equal(renderSetAfter(diffSet(new Map([['10.96.0.1,tcp:80', 'x']]), EMPTY_PLAN)), 'destroy MCS-FRONTENDS\n');
  assert.throws(() => renderSetBefore({ create: false, add: new Map([['10.96.0.1,tcp:80 comment "x"\ndestroy X', 'x']]), del: [], destroy: false }), /refusing ipset member/);
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
  await fake.restoreSets(renderSetBefore({ create: true, add: new Map(), del: [], destroy: false }));
  await fake.restore(`*nat\n${jump}\nCOMMIT\n`);
  await assert.rejects(fake.restoreSets('destroy MCS-FRONTENDS\n'), /in use by a kernel component/);
});
