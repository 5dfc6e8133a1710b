import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CONFIG, type Config } from '../../src/config/schema.js';
import { IpvsDataplane } from '../../src/ipvs/dataplane.js';
import { FakeIpvs } from '../../src/ipvs/fake.js';
import { silentLogger } from '../../src/log.js';
import { explain, readKernelForExplain, renderExplain } from '../../src/ops/explain.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { endpoint, importedSlice, service } from '../support/fixtures.js';

// explain in IPVS mode: the group's fwmark virtual services (scheduler, the
// Service port each serves), real servers with weights and clusters, planned
// and read back from the fake; drains in progress and kube-proxy's unused
// address service for the same ClusterIP:port.

const config: Config = { ...DEFAULT_CONFIG, clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16' };
const health = () => 'healthy';
const QUERY = { namespace: 'default', name: 'derived-serve' };
const NOW = Date.parse('2026-12-02T05:00:00Z');
const derived = () => service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }], {
  annotations: { 'clusterset-proxy.io/traffic-policy': 'active-active', 'clusterset-proxy.io/cluster-weights': 'brazil=3,chile01=1' },
});
const brazil = (...ips: string[]) => importedSlice('default', 'brazil', 'serve-b', 'derived-serve', ips.map((ip) => endpoint(ip)));
const chile = (...ips: string[]) => importedSlice('default', 'chile01', 'serve-c', 'derived-serve', ips.map((ip) => endpoint(ip)));

async function scenario() {
  const fake = new FakeIpvs();
  // kube-proxy in IPVS mode keeps its own address service for the ClusterIP:port.
  const kubeProxy = { kind: 'address', family: 4, protocol: 'tcp', address: '10.96.0.50', port: 80 } as const;
  await fake.addService({ key: kubeProxy, scheduler: 'rr', flags: 0, timeout: 0, netmask: 0xffffffff });
  await fake.addDest(kubeProxy, { address: '10.244.1.5', port: 8080, weight: 1, forward: 'masq', upperThreshold: 0, lowerThreshold: 0 });
  const dataplane = new IpvsDataplane(fake, { now: () => NOW, drainBoundMs: 60_000 });
  const engine = new SyncEngine({ config, dataplane, log: silentLogger() });
  engine.upsertService(derived());
  engine.upsertSlice(brazil('10.1.0.1', '10.1.0.2'));
  engine.upsertSlice(chile('10.2.0.10'));
  await engine.syncFull();
  return { fake, engine, dataplane, read: () => engine.plane.readForExplain!() };
}

test('explain in IPVS mode lists the fwmark service with its scheduler and Service port, real servers with weights and clusters, in sync', async () => {
  const { engine, dataplane, read } = await scenario();
  const report = explain(engine, QUERY, await read(), health);
  const mark = `0x${dataplane.markOf({ name: { namespace: 'default', service: 'derived-serve', port: 'http' }, protocol: 'TCP' }).toString(16)}`;
  assert.equal(report.rules.inSync, true, JSON.stringify(report.rules));
  assert.equal(report.rules.note, 'the kernel holds exactly the planned rules');
  assert.deepEqual(report.rules.planned, [
    `FWM ${mark} wrr serves default/derived-serve:http (10.96.0.50:80/tcp)`,
    '  -> 10.1.0.1:8080 masq weight 1081080 (brazil)',
    '  -> 10.1.0.2:8080 masq weight 1081080 (brazil)',
    '  -> 10.2.0.10:8080 masq weight 720720 (chile01)',
  ]);
  assert.deepEqual(report.rules.kernel, [
    `FWM ${mark} wrr serves default/derived-serve:http (10.96.0.50:80/tcp)`,
    '  -> 10.1.0.1:8080 masq weight 1081080 (brazil): 0 active, 0 inactive connections',
    '  -> 10.1.0.2:8080 masq weight 1081080 (brazil): 0 active, 0 inactive connections',
    '  -> 10.2.0.10:8080 masq weight 720720 (chile01): 0 active, 0 inactive connections',
    'TCP 10.96.0.50:80 rr: not the agent\'s; unused while the agent\'s fwmark service takes this ClusterIP\'s packets first',
  ]);
  assert.equal(report.services[0]!.ports[0]!.chain, `fwmark ${mark}`);
  assert.match(renderExplain(report), /Rules in the kernel: the kernel holds exactly the planned rules\n {2}FWM 0x4d[0-9a-f]+ wrr serves default\/derived-serve:http/);
});

test('explain in IPVS mode shows a drain in progress with its bound, stays in sync with it, and shows drift', async () => {
  const { fake, engine, read } = await scenario();
  // 10.1.0.2 leaves: weight 0 until idle or the bound, brazil's one server carries its 3 alone.
  engine.upsertSlice(brazil('10.1.0.1'));
  await engine.syncPartial();
  const report = explain(engine, QUERY, await read(), health);
  assert.equal(report.rules.inSync, true, JSON.stringify(report.rules, null, 1));
  const kernel = report.rules.kernel!;
  assert.ok(kernel.includes('  -> 10.1.0.2:8080 masq weight 0 draining: 0 active, 0 inactive connections; deleted once idle, at the latest 2026-12-02T05:01:00.000Z'), kernel.join('\n'));
  assert.ok(kernel.includes('  -> 10.1.0.1:8080 masq weight 2162160 (brazil): 0 active, 0 inactive connections'), kernel.join('\n'));
  assert.ok(!report.rules.planned.some((l) => l.includes('10.1.0.2')), 'the drained server is not planned');

  // Someone changes a weight behind the agent's back: out of sync, the plan shown.
  const mark = Number(/FWM (0x[0-9a-f]+)/.exec(kernel[0]!)![1]);
  await fake.updateDest({ kind: 'fwmark', family: 4, fwmark: mark }, { address: '10.2.0.10', port: 8080, weight: 7, forward: 'masq', upperThreshold: 0, lowerThreshold: 0 });
  const drift = explain(engine, QUERY, await read(), health);
  assert.equal(drift.rules.inSync, false);
  assert.match(renderExplain(drift), /the kernel differs from the plan[\s\S]*weight 7 \(chile01\)[\s\S]*Rules planned:\n {2}FWM /);

  await fake.deleteService({ kind: 'fwmark', family: 4, fwmark: mark });
  const gone = explain(engine, QUERY, await read(), health);
  assert.equal(gone.rules.inSync, false);
  assert.match(gone.rules.kernel![0]!, /^FWM 0x4d[0-9a-f]+ missing: the kernel has no virtual service for default\/derived-serve:http$/);
});

test('explain in IPVS mode: a frontend without endpoints is rejected, not a service; an unreadable table is said so', async () => {
  const { engine, read } = await scenario();
  engine.upsertSlice(brazil());
  engine.upsertSlice(chile());
  await engine.syncFull();
  const report = explain(engine, QUERY, await read(), health);
  assert.equal(report.rules.inSync, true, JSON.stringify(report.rules));
  assert.deepEqual(report.rules.planned, ['no virtual service for default/derived-serve:http (10.96.0.50:80/tcp): no usable endpoint, connections are rejected']);
  const unread = explain(engine, QUERY, await readKernelForExplain(() => Promise.reject(new Error('Operation not permitted'))), health);
  assert.equal(unread.rules.kernel, null);
  assert.equal(unread.rules.inSync, null);
  assert.equal(unread.rules.note, 'could not read the kernel\'s rules: Operation not permitted');
});
