import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CONFIG, type Config } from '../../src/config/schema.js';
import { FakeNftables } from '../../src/nftables/fake.js';
import { NftablesDataplane } from '../../src/nftables/nftables-dataplane.js';
import { silentLogger } from '../../src/log.js';
import { explain, readKernelForExplain, renderExplain } from '../../src/ops/explain.js';
import { ExplainEndpoint } from '../../src/ops/explain-endpoint.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { endpoint, importedSlice, service } from '../support/fixtures.js';

// explain in nftables mode: the group's elements of table ip clusterset-proxy,
// planned and read back from the fake, with the comments naming the Service port.

const config: Config = { ...DEFAULT_CONFIG, clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16' };
const health = () => 'healthy';
const QUERY = { namespace: 'default', name: 'derived-serve' };

async function scenario() {
  const fake = new FakeNftables();
  const engine = new SyncEngine({ config, dataplane: new NftablesDataplane(fake), log: silentLogger() });
  engine.upsertService(service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]));
  engine.upsertSlice(importedSlice('default', 'chile01', 'serve-abc', 'derived-serve', [endpoint('10.2.0.10'), endpoint('10.2.0.11'), endpoint('10.2.0.12', { ready: false })]));
  await engine.syncFull();
  return { fake, engine, read: () => engine.plane.readForExplain!() };
}

test('explain in nftables mode lists the group\'s elements with namespace/name:port comments, slots folded per endpoint, in sync', async () => {
  const { engine, read } = await scenario();
  const report = explain(engine, QUERY, await read(), health);
  assert.equal(report.rules.inSync, true);
  assert.equal(report.rules.note, 'the kernel holds exactly the planned rules');
  assert.deepEqual(report.rules.kernel, report.rules.planned);
  const kernel = report.rules.kernel!;
  assert.ok(kernel.includes('service_ports 10.96.0.50 . tcp . 80 comment "default/derived-serve:http"'), kernel.join('\n'));
  assert.ok(kernel.includes('service_ips 10.96.0.50 comment "default/derived-serve"'), kernel.join('\n'));
  assert.ok(!kernel.some((l) => l.startsWith('-A ') || l.startsWith('*')), 'no iptables rule text in nftables mode');
  // Two ready endpoints share the port's 64 slots of map slots-50 (10.96.0.50: 50 mod 64), one line each.
  const slots = kernel.filter((l) => l.startsWith('slots-50 10.96.0.50 . tcp . 80 . '));
  assert.equal(slots.length, 2, kernel.join('\n'));
  assert.match(slots.join('\n'), /: 10\.2\.0\.10 \. \d+ \(32 of 64 slots\)/);
  assert.match(slots.join('\n'), /: 10\.2\.0\.11 \. \d+ \(32 of 64 slots\)/);
  assert.equal(report.services[0]!.ports[0]!.chain, 'slots-50 10.96.0.50 . tcp . 80');
  const text = renderExplain(report);
  assert.match(text, /Rules in the kernel: the kernel holds exactly the planned rules\n {2}service_ports 10\.96\.0\.50 \. tcp \. 80 comment "default\/derived-serve:http"/);
  assert.doesNotMatch(text, /Rules planned:/);
});

test('explain in nftables mode shows drift: a missing slot, a stale element named after the Service, and no table at all', async () => {
  const { fake, engine, read } = await scenario();
  await fake.commit([{ op: 'deleteElements', set: 'slots-50', elements: [{ set: 'slots-50', key: '10.96.0.50 . tcp . 80 . 0' }] }]);
  await fake.commit([{ op: 'addElements', set: 'service_ports', elements: [{ set: 'service_ports', key: '10.96.0.99 . tcp . 80', comment: 'default/derived-serve:http' }] }]);
  const drift = explain(engine, QUERY, await read(), health);
  assert.equal(drift.rules.inSync, false);
  assert.ok(drift.rules.kernel!.includes('service_ports 10.96.0.99 . tcp . 80 comment "default/derived-serve:http"'), 'an element named after the Service with another ClusterIP is shown');
  assert.ok(drift.rules.kernel!.some((l) => / \(31 of 64 slots\)$/.test(l)), 'the slot map misses one slot');
  assert.match(renderExplain(drift), /the kernel differs from the plan[\s\S]*Rules planned:\n {2}service_ports 10\.96\.0\.50/);

  fake.dropTable();
  const gone = explain(engine, QUERY, await read(), health);
  assert.deepEqual(gone.rules.kernel, []);
  assert.equal(gone.rules.inSync, false);
  assert.ok(gone.rules.planned.length > 0);
});

test('explain in nftables mode says when the table cannot be read; /explain reads it through the data plane', async () => {
  const { engine, read } = await scenario();
  const unread = explain(engine, QUERY, await readKernelForExplain(() => Promise.reject(new Error('Operation not permitted\nmore'))), health);
  assert.equal(unread.rules.kernel, null);
  assert.equal(unread.rules.inSync, null);
  assert.equal(unread.rules.note, 'could not read the kernel\'s rules: Operation not permitted');
  assert.ok(unread.rules.planned.some((l) => l.startsWith('service_ports 10.96.0.50 . tcp . 80 ')));

  let reads = 0;
  const endpointUnderTest = new ExplainEndpoint(engine, () => (reads++, read()), health);
  const answers = await Promise.all(Array.from({ length: 5 }, () => endpointUnderTest.answer('default/serve')));
  assert.equal(reads, 1, 'concurrent requests share one read of the table');
  for (const a of answers) {
    assert.equal(a.status, 200);
    const body = a.body as ReturnType<typeof explain>;
    assert.equal(body.rules.inSync, true);
    assert.ok(body.rules.kernel!.some((l) => l.includes('comment "default/derived-serve:http"')));
  }
});
