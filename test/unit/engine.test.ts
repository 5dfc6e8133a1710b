import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CONFIG, type Config } from '../../src/config/schema.js';
import { FakeIptables } from '../../src/iptables/fake-backend.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { PassThrough } from 'node:stream';
import { serviceChainName } from '../../src/iptables/names.js';
import { SyncEngine, type SyncResult } from '../../src/sync/engine.js';
import type { StaleUdpFlow } from '../../src/conntrack/stale-flows.js';
import { endpoint, importedSlice, service, slice } from '../support/fixtures.js';
import { KUBE_PROXY_NAT, USER_FILTER } from '../support/foreign-rules.js';

const config: Config = { ...DEFAULT_CONFIG, clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16' };

function engineOn(fake: FakeIptables, overrides: Partial<Config> = {}): SyncEngine {
  return new SyncEngine({ config: { ...config, ...overrides }, dataplane: new IptablesDataplane(fake), log: silentLogger() });
}

function addDerived(engine: SyncEngine, i: number, ips: string[]): void {
  engine.upsertService(service('default', `derived-svc${i}`, `10.96.${i >> 8}.${i & 255}`, [{ name: 'http', port: 80 }]));
  engine.upsertSlice(importedSlice('default', 'chile01', `svc${i}-a`, `derived-svc${i}`, ips.map((ip) => endpoint(ip))));
}

async function nat(fake: FakeIptables): Promise<string> {
  return fake.save('nat');
}

function seededFake(): FakeIptables {
  const fake = new FakeIptables('nft');
  fake.load(KUBE_PROXY_NAT + USER_FILTER);
  return fake;
}

test('a cold start programs the skeleton and every service, jumping ahead of kube-proxy', async () => {
  const fake = seededFake();
  const engine = engineOn(fake);
  addDerived(engine, 1, ['10.2.0.10', '10.2.0.11']);
  const result = await engine.syncFull();
  assert.equal(result.restores, 1);
  const text = await nat(fake);
  const chain = serviceChainName('default', 'derived-svc1', 'http', 'TCP');
  // 10.96.0.1 is in bucket 1 (its low six bits).
  assert.match(text, new RegExp(`-A MCS-DISPATCH-01 -d 10.96.0.1/32 -p tcp .* -j ${chain}`));
  assert.match(text, /-A PREROUTING -m set --match-set MCS-FRONTENDS dst,dst -m comment --comment "clusterset-proxy service portals" -j MCS-SERVICES\n-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES/);
  assert.deepEqual([...(await fake.saveSet('MCS-FRONTENDS'))!.matchAll(/^add .*$/gm)].map((m) => m[0]), ['add MCS-FRONTENDS 10.96.0.1,tcp:80 comment "default/derived-svc1:http"']);
  assert.match(text, /-A MCS-SVC-\w+ -p tcp -m comment --comment "default\/derived-svc1:http -> chile01 10.2.0.11:8080" -j DNAT --to-destination 10.2.0.11:8080/);
});

test('one endpoint change rewrites only that service\'s chain, in one small restore', async () => {
  const fake = seededFake();
  const engine = engineOn(fake);
  for (let i = 1; i <= 300; i++) addDerived(engine, i, [`10.2.${i >> 8}.${i & 255}`]);
  await engine.syncFull();
  const before = fake.history.length;
  engine.upsertSlice(importedSlice('default', 'chile01', 'svc7-a', 'derived-svc7', [endpoint('10.2.0.7'), endpoint('10.2.9.9')]));
  const result = await engine.syncPartial();
  assert.equal(fake.history.length, before + 1);
  const payload = fake.history.at(-1)!.payload;
  const chain = serviceChainName('default', 'derived-svc7', 'http', 'TCP');
  assert.deepEqual(payload.split('\n').filter((l) => l.startsWith(':')), [`:${chain} - [0:0]`]);
  assert.ok(!payload.includes('MCS-SERVICES'), 'the dispatch chain is not rewritten');
  assert.ok(payload.length < 1500, `payload ${payload.length} bytes`);
  assert.equal(result.chainsWritten, 1);
});

test('a burst of changes to many services is one restore', async () => {
  const fake = seededFake();
  const engine = engineOn(fake);
  for (let i = 1; i <= 50; i++) addDerived(engine, i, ['10.2.0.1']);
  await engine.syncFull();
  const before = fake.history.length;
  for (let i = 1; i <= 50; i++) addDerived(engine, i, ['10.2.0.2']);
  const result = await engine.syncPartial();
  assert.equal(fake.history.length, before + 1);
  assert.equal(result.chainsWritten, 50);
});

test('a deleted service loses its dispatch rule and its chain; foreign rules stay byte for byte', async () => {
  const fake = seededFake();
  const engine = engineOn(fake);
  addDerived(engine, 1, ['10.2.0.10']);
  addDerived(engine, 2, ['10.2.0.20']);
  await engine.syncFull();
  engine.deleteService(service('default', 'derived-svc1', '10.96.0.1', []));
  await engine.syncPartial();
  const text = await nat(fake);
  assert.ok(!text.includes(serviceChainName('default', 'derived-svc1', 'http', 'TCP')));
  assert.ok(text.includes(serviceChainName('default', 'derived-svc2', 'http', 'TCP')));
  for (const line of KUBE_PROXY_NAT.split('\n').filter((l) => l.startsWith('-A'))) assert.ok(text.includes(line), line);
});

test('a restarted agent adopts the rules it finds without writing anything', async () => {
  const fake = seededFake();
  const first = engineOn(fake);
  for (let i = 1; i <= 20; i++) addDerived(first, i, ['10.2.0.1', '10.2.0.2']);
  await first.syncFull();
  const second = engineOn(fake);
  for (let i = 1; i <= 20; i++) addDerived(second, i, ['10.2.0.1', '10.2.0.2']);
  const before = fake.history.length;
  const result = await second.syncFull();
  assert.equal(result.restores, 0);
  assert.equal(fake.history.length, before);
});

test('the full sync repairs a flushed chain, a deleted jump and removes a stale chain', async () => {
  const fake = seededFake();
  const engine = engineOn(fake);
  addDerived(engine, 1, ['10.2.0.10']);
  await engine.syncFull();
  const good = await nat(fake);
  const chain = serviceChainName('default', 'derived-svc1', 'http', 'TCP');
  await fake.restore([
    '*nat',
    `:${chain} - [0:0]`,
    ':MCS-SVC-LEFTOVER - [0:0]',
    '-A MCS-SVC-LEFTOVER -j ACCEPT',
    '-D PREROUTING -m set --match-set MCS-FRONTENDS dst,dst -m comment --comment "clusterset-proxy service portals" -j MCS-SERVICES',
    'COMMIT', '',
  ].join('\n'));
  await engine.syncFull();
  assert.equal(await nat(fake), good);
});

test('a refused partial payload is handed to a full sync at once, which reads the kernel back and repairs it', async () => {
  const fake = seededFake();
  const engine = engineOn(fake);
  addDerived(engine, 1, ['10.2.0.10']);
  await engine.syncFull();
  const good = await nat(fake);
  // Someone deletes our dispatch chain's rule behind our back: the partial sync's -D fails.
  const dispatch = good.split('\n').find((l) => l.startsWith('-A MCS-DISPATCH-'))!;
  await fake.restore(`*nat\n-D ${dispatch.slice(3)}\nCOMMIT\n`);
  engine.deleteService(service('default', 'derived-svc1', '10.96.0.1', []));
  const refusedBefore = fake.history.filter((r) => r.error).length;
  const result: SyncResult = await engine.syncPartial();
  assert.equal(fake.history.filter((r) => r.error).length, refusedBefore + 1, 'the partial payload was refused');
  assert.equal(result.full, true);
  assert.equal(result.quarantined, 0, 'drift is repaired, nobody is blamed');
  assert.ok(!(await nat(fake)).includes('MCS-SVC-'));
});

test('cleanup leaves every table exactly as it was before the agent started', async () => {
  const fake = seededFake();
  const pristine = { nat: await fake.save('nat'), filter: await fake.save('filter') };
  const engine = engineOn(fake);
  for (let i = 1; i <= 5; i++) addDerived(engine, i, i === 3 ? [] : ['10.2.0.1']);
  await engine.syncFull();
  assert.notEqual(await fake.save('filter'), pristine.filter);
  await engineOn(fake).cleanup();
  assert.equal(await fake.save('nat'), pristine.nat);
  assert.equal(await fake.save('filter'), pristine.filter);
});

test('malformed objects are skipped by name and every other service keeps working', async () => {
  const fake = seededFake();
  const engine = engineOn(fake);
  addDerived(engine, 1, ['10.2.0.10']);
  engine.upsertService(service('default', 'derived-noip', '', [{ name: 'http', port: 80 }]));
  engine.upsertService(service('default', 'derived-bigport', '10.96.9.9', [{ name: 'http', port: 99999 }]));
  engine.upsertSlice(importedSlice('default', 'chile01', 'bad', 'derived-svc1', [endpoint('not-an-ip'), endpoint('10.2.0.11')]));
  engine.upsertSlice(importedSlice('default', 'chile01', 'noports', 'derived-svc1', [endpoint('10.2.0.12')], null));
  engine.upsertSlice(importedSlice('default', 'peru', 'x', 'derived-svc1', [endpoint('10.3.0.1')]));
  engine.upsertSlice(importedSlice('default', 'chile01', 'x', 'derived-ghost', [endpoint('10.2.0.99')]));
  engine.upsertSlice(slice('default', 'f', 'derived-svc1', [endpoint('example.com')], { addressType: 'FQDN' }));
  await engine.syncFull();
  const text = await nat(fake);
  for (const ip of ['10.2.0.10', '10.2.0.11', '10.3.0.1']) assert.match(text, new RegExp(`--to-destination ${ip}:8080`));
  for (const ip of ['10.2.0.12', '10.2.0.99']) assert.ok(!text.includes(ip), ip);
  const problems = engine.currentProblems().join('\n');
  for (const name of [
    'Service default/derived-noip has no ClusterIP',
    'Service default/derived-bigport port http: port 99999 is out of range',
    'EndpointSlice default/imported-chile01-bad endpoint address "not-an-ip"',
    'EndpointSlice default/imported-chile01-noports has no ports',
    'EndpointSlice default/imported-peru-x name matches no configured cluster',
    'EndpointSlice default/imported-chile01-x references Service default/derived-ghost',
    'EndpointSlice default/f addressType FQDN is not served',
  ]) assert.ok(problems.includes(name), `${name}\n---\n${problems}`);
});

test('on nft a cold start is split into restores of bounded chain count; on legacy it is one restore', async () => {
  // nft: the skeleton (68 chains with the 64 buckets) alone, then 100 service chains in fours of at most 30.
  for (const [mode, expected] of [['nft', 5], ['legacy', 1]] as const) {
    const fake = new FakeIptables(mode);
    const engine = engineOn(fake, { maxChainsPerRestore: 30 });
    for (let i = 1; i <= 100; i++) addDerived(engine, i, ['10.2.0.1']);
    const result = await engine.syncFull();
    assert.equal(result.restores, expected, mode);
    assert.equal((await fake.save('nat')).match(/^:MCS-SVC-/gm)!.length, 100);
  }
});

test('probe targets: every candidate endpoint per cluster, deduplicated in model order; verdicts mark exactly the groups using them', async () => {
  const engine = engineOn(new FakeIptables('nft'));
  addDerived(engine, 1, ['10.2.0.1', '10.2.0.2', '10.2.0.1']);
  addDerived(engine, 2, ['10.2.0.2', '110.2.0.1']);
  // The local Service of svc3 carries brazil's (local) endpoints.
  engine.upsertService(service('default', 'derived-svc3', '10.96.0.3', [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }]));
  engine.upsertService(service('default', 'svc3', '10.96.1.3', [{ name: 'http', port: 80 }]));
  engine.upsertSlice(importedSlice('default', 'chile01', 'svc3-a', 'derived-svc3', [endpoint('10.2.0.3')], [{ name: 'http', port: 8080 }, { name: 'dns', port: 53, protocol: 'UDP' }]));
  engine.upsertSlice(slice('default', 'svc3-local', 'svc3', [endpoint('10.1.0.3')], { ports: [{ name: 'http', port: 80 }] }));
  await engine.syncFull();
  assert.deepEqual(engine.probeTargets(), new Map([
    ['chile01', ['10.2.0.1:8080', '10.2.0.2:8080', '110.2.0.1:8080', '10.2.0.3:8080', '10.2.0.3:53']],
    ['brazil', ['10.1.0.3:80']],
  ]));
  const dirtyAfter = (kind: 'cluster' | 'endpoint', target: string): boolean => {
    const changed = engine.healthChanged(kind, target);
    return changed;
  };
  assert.equal(dirtyAfter('endpoint', '10.2.0.1:80'), false, 'a prefix of an endpoint is not that endpoint');
  assert.equal(dirtyAfter('endpoint', '0.2.0.1:8080'), false, 'nor is a suffix');
  assert.equal(dirtyAfter('cluster', 'chile'), false);
  assert.equal(dirtyAfter('endpoint', ''), false);
  assert.equal(engine.hasPendingChanges, false);
  assert.equal(dirtyAfter('endpoint', '110.2.0.1:8080'), true);
  assert.equal(dirtyAfter('endpoint', '10.1.0.3:80'), true);
  assert.equal(dirtyAfter('cluster', 'brazil'), true);
  // Which groups: partial syncs replan only those.
  const marked = (kind: 'cluster' | 'endpoint', target: string): string[] => {
    const e = engine as unknown as { dirty: Set<string> };
    e.dirty.clear();
    engine.healthChanged(kind, target);
    return [...e.dirty].sort();
  };
  assert.deepEqual(marked('endpoint', '10.2.0.2:8080'), ['default/svc1', 'default/svc2']);
  assert.deepEqual(marked('endpoint', '10.2.0.3:53'), ['default/svc3']);
  assert.deepEqual(marked('cluster', 'chile01'), ['default/svc1', 'default/svc2', 'default/svc3']);
  assert.deepEqual(marked('cluster', 'brazil'), ['default/svc3']);
  // A group that goes away leaves the targets.
  engine.deleteService(service('default', 'derived-svc2', '10.96.0.2', []));
  await engine.syncPartial();
  assert.deepEqual(engine.probeTargets().get('chile01'), ['10.2.0.1:8080', '10.2.0.2:8080', '10.2.0.3:8080', '10.2.0.3:53']);
});

test('at debug level each chain a partial sync rewrites is logged with its service and chain', async () => {
  const out = new PassThrough();
  const lines: string[] = [];
  out.on('data', (chunk: Buffer) => lines.push(...chunk.toString().split('\n').filter(Boolean)));
  const fake = seededFake();
  const engine = new SyncEngine({ config, dataplane: new IptablesDataplane(fake), log: createLogger('debug', out) });
  addDerived(engine, 1, ['10.2.0.1']);
  await engine.syncFull();
  addDerived(engine, 1, ['10.2.0.2']);
  await engine.syncPartial();
  await new Promise((r) => setImmediate(r));
  const rewritten = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'chain rewritten');
  assert.deepEqual(rewritten.map((l) => [l.service, l.chain]), [['default/svc1', serviceChainName('default', 'derived-svc1', 'http', 'TCP')]]);
});

test('UDP conntrack entries are flushed for endpoints a sync drops, for a deleted group, and never for TCP or kept endpoints', async () => {
  const flushed: StaleUdpFlow[][] = [];
  const engine = new SyncEngine({ config, dataplane: new IptablesDataplane(seededFake()), log: silentLogger(), flushUdp: async (flows) => void flushed.push([...flows]) });
  const dns = (ips: string[]) => importedSlice('default', 'chile01', 'dns-a', 'derived-dns', ips.map((ip) => endpoint(ip)), [{ name: 'dns', port: 5353, protocol: 'UDP' }]);
  engine.upsertService(service('default', 'derived-dns', '10.96.0.53', [{ name: 'dns', port: 53, protocol: 'UDP' }]));
  engine.upsertSlice(dns(['10.2.0.1', '10.2.0.2']));
  addDerived(engine, 1, ['10.2.0.10', '10.2.0.11']);
  await engine.syncFull();
  assert.deepEqual(flushed, [], 'a first sync drops nothing');

  engine.upsertSlice(dns(['10.2.0.2']));
  addDerived(engine, 1, ['10.2.0.10']);
  await engine.syncPartial();
  assert.deepEqual(flushed, [[{ clusterIP: '10.96.0.53', port: 53, endpoint: '10.2.0.1:5353' }]]);

  engine.deleteService(service('default', 'derived-dns', '10.96.0.53', []));
  await engine.syncFull();
  assert.deepEqual(flushed.at(-1), [{ clusterIP: '10.96.0.53', port: 53, endpoint: '10.2.0.2:5353' }]);
  assert.equal(flushed.length, 2);
});
