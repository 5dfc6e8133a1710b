import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CONFIG, type Config } from '../../src/config/schema.js';
import { FakeIptables } from '../../src/iptables/fake-backend.js';
import { silentLogger } from '../../src/log.js';
import { explain, parseServiceArg, readKernelForExplain, renderExplain } from '../../src/ops/explain.js';
import type { FrontendSelection } from '../../src/selection/selection.js';
import { endpointCounts } from '../../src/ops/operations.js';
import { externalChainName, serviceChainName } from '../../src/iptables/names.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { endpoint, importedSlice, service, slice, withClustersetIPs } from '../support/fixtures.js';

const config: Config = { ...DEFAULT_CONFIG, clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16' };
const CHAIN = serviceChainName('default', 'derived-serve', 'http', 'TCP');
const health = (c: string) => (c === 'chile01' ? 'healthy since 2025-01-01T00:00:00.000Z' : 'not probed (counts as healthy)');

/** A known scenario: derived-serve with two chile01 endpoints (one not ready), no local Service. */
async function scenario(overrides: Partial<Config> = {}) {
  const fake = new FakeIptables('nft');
  const engine = new SyncEngine({ config: { ...config, ...overrides }, dataplane: new IptablesDataplane(fake), log: silentLogger() });
  engine.upsertService(service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]));
  engine.upsertSlice(importedSlice('default', 'chile01', 'serve-abc', 'derived-serve', [endpoint('10.2.0.10'), endpoint('10.2.0.11'), endpoint('10.2.0.12', { ready: false })]));
  await engine.syncFull();
  return { fake, engine };
}

test('explain: the group, its ClusterIP and port, each cluster with endpoints, health and verdict, the decision and the kernel rules', async () => {
  const { fake, engine } = await scenario();
  const report = explain(engine, { namespace: 'default', name: 'derived-serve' }, await readKernelForExplain(() => new IptablesDataplane(fake).readForExplain()), health);
  assert.equal(report.group, 'default/serve');
  assert.equal(report.source, 'service-import');
  assert.deepEqual(report.decision, { target: 'remote', clusters: ['chile01'], failOpen: false });
  const port = report.services[0]!.ports[0]!;
  assert.equal(port.chain, CHAIN);
  assert.deepEqual(port.clusters.map((c) => [c.name, c.health, c.verdict]), [['chile01', 'healthy since 2025-01-01T00:00:00.000Z', 'receives traffic']]);
  assert.deepEqual(port.clusters[0]!.endpoints, [
    { address: '10.2.0.10:8080', state: 'ready', share: 0.5 },
    { address: '10.2.0.11:8080', state: 'ready', share: 0.5 },
    { address: '10.2.0.12:8080', state: 'not_ready', share: 0 },
  ]);
  assert.equal(report.rules.inSync, true);
  assert.deepEqual(report.rules.kernel, report.rules.planned);
  const text = renderExplain(report);
  assert.equal(text, [
    'Service group default/serve (ServiceImport (derived Service)); this node\'s cluster: brazil',
    'Policy: local-first (unifiedName true)',
    'Decision: traffic goes remote (chile01)',
    '',
    'Service default/derived-serve: ClusterIP 10.96.0.50',
    `  port http 80/TCP -> ${CHAIN}`,
    '    cluster chile01: health healthy since 2025-01-01T00:00:00.000Z: receives traffic',
    '      10.2.0.10:8080        ready               50.0%',
    '      10.2.0.11:8080        ready               50.0%',
    '      10.2.0.12:8080        not_ready           -',
    '',
    'Rules in the kernel: the kernel holds exactly the planned rules',
    '  *nat',
    `  :${CHAIN} - [0:0]`,
    `  -A MCS-DISPATCH-50 -d 10.96.0.50/32 -p tcp -m comment --comment "default/derived-serve:http cluster IP" -m tcp --dport 80 -j ${CHAIN}`,
    `  -A ${CHAIN} ! -s 10.244.0.0/16 -m comment --comment "default/derived-serve:http masquerade traffic from outside the cluster" -j MCS-MARK-MASQ`,
    `  -A ${CHAIN} -p tcp -m comment --comment "default/derived-serve:http -> chile01 10.2.0.10:8080" -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.2.0.10:8080`,
    `  -A ${CHAIN} -p tcp -m comment --comment "default/derived-serve:http -> chile01 10.2.0.11:8080" -j DNAT --to-destination 10.2.0.11:8080`,
    '',
  ].join('\n'));
});

test('explain names the ClusterSet IP, the MCS-EXT- chain serving it with the ClusterIP\'s selection, and its rules in the kernel', async () => {
  const { fake, engine } = await scenario();
  engine.upsertService(withClustersetIPs(service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]), ['242.1.0.50']));
  await engine.syncPartial();
  const report = explain(engine, { namespace: 'default', name: 'serve' }, await readKernelForExplain(() => new IptablesDataplane(fake).readForExplain()), health);
  const ext = externalChainName('default', 'derived-serve', 'http', 'TCP');
  assert.deepEqual(report.services[0]!.clustersetIPs, ['242.1.0.50']);
  assert.deepEqual(report.services[0]!.ports[0]!.clusterset, [{ ip: '242.1.0.50', handle: ext }]);
  assert.equal(report.rules.inSync, true);
  const text = renderExplain(report);
  assert.match(text, /\nService default\/derived-serve: ClusterIP 10\.96\.0\.50, clusterset IP 242\.1\.0\.50\n/);
  assert.ok(text.includes(`  port http 80/TCP -> ${CHAIN}\n    at clusterset IP 242.1.0.50:80 -> ${ext} (the same selection)\n`), text);
  assert.ok(text.includes(`  -A MCS-DISPATCH-50 -d 242.1.0.50/32 -p tcp -m comment --comment "default/derived-serve:http clusterset IP" -m tcp --dport 80 -j ${ext}\n`), text);
  assert.ok(text.includes(`  -A ${ext} -j ${CHAIN}\n`), text);
});

test('explain shows drift between the plan and the kernel, and says when the kernel cannot be read', async () => {
  const { fake, engine } = await scenario();
  engine.upsertSlice(importedSlice('default', 'chile01', 'serve-abc', 'derived-serve', [endpoint('10.2.0.10')]));
  const drift = explain(engine, { namespace: 'default', name: 'serve' }, await readKernelForExplain(() => new IptablesDataplane(fake).readForExplain()), health);
  assert.equal(drift.rules.inSync, false);
  assert.match(renderExplain(drift), /the kernel differs from the plan[\s\S]*Rules planned:/);
  const unread = explain(engine, { namespace: 'default', name: 'serve' }, 'could not read the kernel\'s rules: permission denied', health);
  assert.equal(unread.rules.kernel, null);
  assert.match(renderExplain(unread), /Rules in the kernel: could not read the kernel's rules: permission denied/);
});

test('explain of a Service in no group says kube-proxy serves it', async () => {
  const { fake, engine } = await scenario();
  engine.upsertService(service('default', 'plain', '10.96.0.60', [{ name: 'http', port: 80 }]));
  engine.upsertSlice(slice('default', 'plain-x', 'plain', [endpoint('10.1.0.5')]));
  const report = explain(engine, { namespace: 'default', name: 'plain' }, await readKernelForExplain(() => new IptablesDataplane(fake).readForExplain()), health);
  assert.equal(report.found, false);
  assert.match(renderExplain(report), /default\/plain: no service group.*kube-proxy alone serves it/);
});

test('shares follow the statistic cascade of the rounded probabilities; affinity adds no choices', () => {
  const fe = (affinity: number | null): FrontendSelection => ({
    kind: 'cluster-ip', family: 'ipv4', ip: '10.96.0.9', port: 80, protocol: 'TCP', name: { namespace: 'ns', service: 's', port: 'http' }, affinity,
    endpoints: [{ cluster: 'a', ip: '10.0.0.1', port: 80, weight: 1 }, { cluster: 'b', ip: '10.0.0.2', port: 80, weight: 1 }, { cluster: 'b', ip: '10.0.0.3', port: 80, weight: 1 }],
    decision: { clusters: ['a', 'b'], target: 'remote', failOpen: false },
  });
  const plane = new IptablesDataplane(new FakeIptables('nft'));
  for (const affinity of [null, 10]) {
    const { shares, handle } = plane.describe(fe(affinity));
    assert.match(handle, /^MCS-SVC-[A-Z2-7]{16}$/);
    assert.deepEqual([...shares.keys()], ['a 10.0.0.1:80', 'b 10.0.0.2:80', 'b 10.0.0.3:80']);
    for (const v of shares.values()) assert.ok(Math.abs(v - 1 / 3) < 1e-6);
    // The first rule's probability as the kernel stores it: 0.33333333349, not 1/3.
    assert.equal(shares.get('a 10.0.0.1:80'), 0.33333333349);
  }
});

test('service arguments and endpoint counts for the metrics', async () => {
  assert.deepEqual(parseServiceArg('default/derived-serve'), { namespace: 'default', name: 'derived-serve' });
  for (const bad of ['serve', 'a/b/c', 'Default/x', '/x']) assert.equal(parseServiceArg(bad), null, bad);
  const { engine } = await scenario();
  assert.deepEqual(endpointCounts(engine).sort((a, b) => a.state.localeCompare(b.state)), [
    { cluster: 'chile01', state: 'not_ready', count: 1 },
    { cluster: 'chile01', state: 'ready', count: 2 },
  ]);
});
