import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { ConfigError, DEFAULT_CONFIG, validateConfig, type Config } from '../../src/config/schema.js';
import { FakeIptables } from '../../src/iptables/fake-backend.js';
import { silentLogger } from '../../src/log.js';
import { ExplainEndpoint, MAX_EXPLAIN_IN_FLIGHT } from '../../src/ops/explain-endpoint.js';
import { OpsServers, type OpsHandlers } from '../../src/ops/http-server.js';
import { SharedKernelRead } from '../../src/ops/kernel-read.js';
import { Operations } from '../../src/ops/operations.js';
import { TABLES, type Table } from '../../src/iptables/plan-types.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { endpoint, importedSlice, service } from '../support/fixtures.js';
import { freePort } from '../support/free-port.js';

const config: Config = { ...DEFAULT_CONFIG, clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }] };

/** The fake kernel behind a gate: saves wait until released, and their concurrency is recorded. */
class GatedSaves {
  readonly fake = new FakeIptables('nft');
  calls = 0;
  inFlight = 0;
  maxInFlight = 0;
  private waiting: (() => void)[] = [];
  private open = false;

  save = async (table: Table): Promise<string> => {
    this.calls++;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    if (!this.open) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.inFlight--;
    return this.fake.save(table);
  };

  release(): void {
    this.open = true;
    for (const resolve of this.waiting.splice(0)) resolve();
  }
}

async function syncedEngine(gate: GatedSaves): Promise<SyncEngine> {
  const engine = new SyncEngine({ config, dataplane: new IptablesDataplane(gate.fake), log: silentLogger() });
  engine.upsertService(service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]));
  engine.upsertSlice(importedSlice('default', 'chile01', 'serve-abc', 'derived-serve', [endpoint('10.2.0.10')]));
  await engine.syncFull();
  return engine;
}

test('many concurrent explain requests share one kernel read; those beyond the bound are told to retry', async () => {
  const gate = new GatedSaves();
  const endpointUnderTest = new ExplainEndpoint(await syncedEngine(gate), () => new IptablesDataplane({ mode: 'nft', save: gate.save, restore: (p) => gate.fake.restore(p), restoreSets: (p) => gate.fake.restoreSets(p), saveSet: (n) => gate.fake.saveSet(n) }).readForExplain(), () => 'not probed');
  const answers = Array.from({ length: 200 }, () => endpointUnderTest.answer('default/serve'));
  // Let every request reach the gate before opening it.
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(gate.inFlight, 1, 'one save waits at the gate');
  gate.release();
  const results = await Promise.all(answers);
  assert.equal(gate.maxInFlight, 1, 'never more than one kernel read in flight');
  assert.equal(gate.calls, TABLES.length, 'one read: one save per table, for all requests');
  assert.equal(results.filter((r) => r.status === 200).length, MAX_EXPLAIN_IN_FLIGHT);
  const busy = results.filter((r) => r.status === 503);
  assert.equal(busy.length, 200 - MAX_EXPLAIN_IN_FLIGHT);
  assert.match(JSON.stringify(busy[0]!.body), /busy: .*retry/);
  const ok = results.find((r) => r.status === 200)!.body as { rules: { inSync: boolean } };
  assert.equal(ok.rules.inSync, true, 'answered from the plan and the kernel read');

  // Cached until a sync changes the kernel.
  await Promise.all(Array.from({ length: 10 }, () => endpointUnderTest.answer('default/serve')));
  assert.equal(gate.calls, TABLES.length, 'a fresh read is reused');
  endpointUnderTest.synced();
  await endpointUnderTest.answer('default/serve');
  assert.equal(gate.calls, 2 * TABLES.length, 'a sync makes the next request read again');
});

test('a read started before a sync is neither cached nor joined: later callers wait for it, then share one fresh read', async () => {
  let reads = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const releases: (() => void)[] = [];
  const shared = new SharedKernelRead(async () => {
    const n = ++reads;
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await new Promise<void>((resolve) => releases.push(resolve));
    inFlight--;
    return n;
  }, 60_000);
  const before = [shared.get(), shared.get()];
  shared.invalidate();
  const after = [shared.get(), shared.get()];
  releases.shift()!();
  assert.deepEqual(await Promise.all(before), [1, 1]);
  await new Promise((resolve) => setImmediate(resolve));
  releases.shift()!();
  assert.deepEqual(await Promise.all(after), [2, 2]);
  assert.equal(maxInFlight, 1);
  assert.equal(await shared.get(), 2, 'the fresh read is cached');
  assert.equal(reads, 2);
});

test('a read is reused only for its maximum age', async () => {
  let now = 0;
  let reads = 0;
  const shared = new SharedKernelRead(async () => ++reads, 1000, () => now);
  assert.equal(await shared.get(), 1);
  now = 999;
  assert.equal(await shared.get(), 1);
  now = 1000;
  assert.equal(await shared.get(), 2);
});

test('/explain over HTTP answers from the agent\'s state', async (t) => {
  const fake = new FakeIptables('nft');
  const engine = new SyncEngine({ config, dataplane: new IptablesDataplane(fake), log: silentLogger() });
  engine.upsertService(service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]));
  await engine.syncFull();
  const port = await freePort();
  const ops = new Operations({ config: { ...config, metricsBindAddress: `127.0.0.1:${port}`, healthzBindAddress: '' }, kubeConfig: new KubeConfig(), nodeName: 'n', log: silentLogger(), engine, eventSink: { create: async () => {}, update: async () => {}, uidOf: async () => undefined } });
  await ops.start();
  t.after(() => ops.stop());
  const res = await fetch(`http://127.0.0.1:${port}/explain?service=default/serve`);
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as { group: string }).group, 'default/serve');
});

test('a listener whose port is taken fails naming the config key, the address and the port', async (t) => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => taken.close(() => resolve())));
  const { port } = taken.address() as AddressInfo;
  const handlers = {} as OpsHandlers;
  const servers = new OpsServers(handlers, silentLogger());
  await assert.rejects(servers.start({ metrics: '', healthz: `127.0.0.1:${port}` }), new RegExp(`^Error: cannot serve /healthz, /readyz on 127\\.0\\.0\\.1:${port} \\(healthzBindAddress\\): port ${port} is already in use on 127\\.0\\.0\\.1$`));
  const free = await freePort();
  const both = new OpsServers(handlers, silentLogger());
  await assert.rejects(both.start({ metrics: `127.0.0.1:${free}`, healthz: `127.0.0.1:${port}` }), /healthzBindAddress/);
  // The listener that did start was closed again.
  const again = new OpsServers(handlers, silentLogger());
  await again.start({ metrics: `127.0.0.1:${free}`, healthz: '' });
  await again.stop();
});

test('the two listeners on one port of overlapping addresses are refused by the schema, naming both', () => {
  for (const [metrics, healthz] of [['127.0.0.1:10266', '0.0.0.0:10266'], ['0.0.0.0:9000', '10.0.0.1:9000'], ['[::]:9000', '127.0.0.1:9000']]) {
    assert.throws(() => validateConfig({ metricsBindAddress: metrics, healthzBindAddress: healthz }), (err: unknown) => err instanceof ConfigError && err.key === 'healthzBindAddress' && err.message.includes(`port ${healthz!.split(':').at(-1)} clashes with metricsBindAddress ${metrics}`), `${metrics} ${healthz}`);
  }
  for (const [metrics, healthz] of [['127.0.0.1:10266', '127.0.0.1:10266'], ['127.0.0.1:9000', '10.0.0.1:9000'], ['127.0.0.1:10265', '0.0.0.0:10266'], ['', '0.0.0.0:10266']]) {
    assert.equal(validateConfig({ metricsBindAddress: metrics, healthzBindAddress: healthz }).healthzBindAddress, healthz);
  }
});
