import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KubeApiError } from '../../src/kube/client.js';
import { silentLogger } from '../../src/log.js';
import { EventRecorder, type CoreEvent, type EventSink, type ObjectRef } from '../../src/ops/event-recorder.js';
import { AgentMetrics } from '../../src/ops/metrics.js';
import { eventRefOf, OpsReporter } from '../../src/ops/reporter.js';
import { serviceRef, sliceRef } from '../../src/model/records.js';

const SVC: ObjectRef = { apiVersion: 'v1', kind: 'Service', namespace: 'default', name: 'derived-serve' };
const NODE: ObjectRef = { apiVersion: 'v1', kind: 'Node', name: 'node-a' };

class FakeSink implements EventSink {
  readonly created: CoreEvent[] = [];
  readonly updated: CoreEvent[] = [];
  gone = false;
  create = async (e: CoreEvent) => {
    this.created.push(e);
  };
  update = async (e: CoreEvent) => {
    if (this.gone) throw new KubeApiError(404, 'NotFound', 'events not found');
    this.updated.push(e);
  };
  uidOf = async (ref: ObjectRef) => `uid-of-${ref.name}`;
}

function recorder(sink: EventSink, clock = { t: Date.parse('2025-01-01T00:00:00Z') }, burst = 25) {
  return new EventRecorder({ sink, component: 'clusterset-proxy', host: 'node-a', log: silentLogger(), now: () => clock.t, burst, refillMs: 300_000 });
}

test('an Event names the object with its uid, the source and the reason', async () => {
  const sink = new FakeSink();
  const r = recorder(sink);
  r.record(SVC, 'Warning', 'Malformed', 'has no ClusterIP');
  await r.flush();
  const [e] = sink.created;
  assert.deepEqual(e!.involvedObject, { apiVersion: 'v1', kind: 'Service', namespace: 'default', name: 'derived-serve', uid: 'uid-of-derived-serve' });
  assert.equal(e!.metadata.namespace, 'default');
  assert.match(e!.metadata.name, /^derived-serve\.[0-9a-f]+$/);
  assert.deepEqual([e!.type, e!.reason, e!.message, e!.count], ['Warning', 'Malformed', 'has no ClusterIP', 1]);
  assert.deepEqual(e!.source, { component: 'clusterset-proxy', host: 'node-a' });
  assert.equal(e!.firstTimestamp, '2025-01-01T00:00:00Z');
});

test('a repeated Event increments the count of the one written; an expired one is created anew', async () => {
  const sink = new FakeSink();
  const clock = { t: Date.parse('2025-01-01T00:00:00Z') };
  const r = recorder(sink, clock);
  r.record(SVC, 'Warning', 'Malformed', 'has no ClusterIP');
  clock.t += 60_000;
  r.record(SVC, 'Warning', 'Malformed', 'has no ClusterIP');
  r.record(SVC, 'Warning', 'Malformed', 'another message');
  await r.flush();
  assert.equal(sink.created.length, 2);
  assert.equal(sink.updated.length, 1);
  assert.equal(sink.updated[0]!.metadata.name, sink.created[0]!.metadata.name);
  assert.equal(sink.updated[0]!.count, 2);
  assert.equal(sink.updated[0]!.lastTimestamp, '2025-01-01T00:01:00Z');
  sink.gone = true;
  r.record(SVC, 'Warning', 'Malformed', 'has no ClusterIP');
  await r.flush();
  assert.equal(sink.created.length, 3);
  assert.equal(sink.created[2]!.count, 1);
});

test('each object has a token bucket: a burst passes, the rest is dropped until tokens come back', async () => {
  const sink = new FakeSink();
  const clock = { t: 0 };
  const r = recorder(sink, clock, 2);
  for (let i = 0; i < 5; i++) r.record(SVC, 'Warning', 'Flapping', `change ${i}`);
  r.record(NODE, 'Warning', 'ClusterUnhealthy', 'other object, own bucket');
  await r.flush();
  assert.deepEqual(sink.created.map((e) => e.message), ['change 0', 'change 1', 'other object, own bucket']);
  clock.t += 300_000;
  r.record(SVC, 'Warning', 'Flapping', 'change 5');
  r.record(SVC, 'Warning', 'Flapping', 'change 6');
  await r.flush();
  assert.deepEqual(sink.created.slice(3).map((e) => e.message), ['change 5']);
});

test('record never blocks the caller, even when the API hangs; failures are swallowed', async () => {
  let release!: () => void;
  const hanging = new Promise<void>((resolve) => (release = resolve));
  const sink: EventSink = { create: () => hanging, update: () => hanging, uidOf: async () => { throw new Error('down'); } };
  const r = recorder(sink);
  // record is synchronous and returns nothing to wait for, while every API call hangs.
  for (let i = 0; i < 100; i++) assert.equal(r.record(SVC, 'Normal', 'Test', `m${i}`), undefined);
  release();
  await r.flush();
  const failing = recorder({ create: async () => { throw new Error('403 forbidden'); }, update: async () => {}, uidOf: async () => undefined });
  failing.record(SVC, 'Normal', 'Test', 'x');
  await failing.flush();
});

function reporterWith(sink: FakeSink) {
  const metrics = new AgentMetrics({ endpointCounts: () => [], problemCount: () => 0, quarantinedCount: () => 0, drainingCount: () => 0 }, { processMetrics: false });
  const events = recorder(sink);
  return { events, reporter: new OpsReporter(metrics, events, NODE, () => Date.parse('2025-01-01T00:00:00Z')) };
}

test('one Event per kind: malformed, inconsistent, cluster health, failover, gateway, overlap, quarantine', async () => {
  const sink = new FakeSink();
  const { events, reporter } = reporterWith(sink);
  reporter.problem({ object: { kind: 'Service', namespace: 'default', name: 'derived-noip' }, message: 'has no ClusterIP' }, 'object');
  reporter.problem({ object: { kind: 'EndpointSlice', namespace: 'default', name: 'imported-peru-x' }, message: 'name matches no configured cluster' }, 'group');
  reporter.clusterHealth('chile01', true); // first verdict, healthy: no news
  reporter.clusterHealth('chile01', false, '3 probes failed');
  reporter.clusterHealth('chile01', false);
  reporter.clusterHealth('chile01', true);
  reporter.decisionChanged(SVC, { target: 'local', clusters: ['brazil'] }, { target: 'remote', clusters: ['chile01'] });
  reporter.decisionChanged(SVC, { target: 'remote', clusters: ['chile01'] }, { target: 'local', clusters: ['brazil'] });
  reporter.decisionChanged(SVC, null, { target: 'local', clusters: ['brazil'] }); // a new group: no change
  reporter.gatewayChanged('brazil', 'node-b', { apiVersion: 'v1', kind: 'Node', name: 'node-b' });
  reporter.gatewayChanged('brazil', 'node-b');
  const cm: ObjectRef = { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'kube-system', name: 'clusterset-proxy' };
  reporter.overlaps([{ object: cm, message: 'chile01 podCIDRs 10.2.0.0/16 overlaps peru podCIDRs 10.2.0.0/20' }]);
  reporter.overlaps([{ object: cm, message: 'chile01 podCIDRs 10.2.0.0/16 overlaps peru podCIDRs 10.2.0.0/20' }]);
  reporter.quarantine(SVC, 'the kernel refused its rules ("-A MCS-SVC-X ..."): Invalid argument', null);
  reporter.quarantine(SVC, null, 'the kernel refused its rules ("-A MCS-SVC-X ..."): Invalid argument');
  await events.flush();
  assert.deepEqual(sink.created.map((e) => `${e.type} ${e.reason} ${e.involvedObject.kind}/${e.involvedObject.name}`), [
    'Warning Malformed Service/derived-noip',
    'Warning Inconsistent EndpointSlice/imported-peru-x',
    'Warning ClusterUnhealthy Node/node-a',
    'Normal ClusterHealthy Node/node-a',
    'Warning FailedOver Service/derived-serve',
    'Normal FailedBack Service/derived-serve',
    'Normal GatewayChanged Node/node-b',
    'Warning CIDROverlap ConfigMap/clusterset-proxy',
    'Warning Quarantined Service/derived-serve',
    'Normal QuarantineLifted Service/derived-serve',
  ]);
  assert.match(sink.created[8]!.message, /not applied: the kernel refused its rules .*Invalid argument; it keeps its last applied rules/);
  assert.match(sink.created[2]!.message, /cluster chile01 is unreachable from node node-a.*: 3 probes failed/);
  assert.match(sink.created[4]!.message, /moved from local \(brazil\) to remote \(chile01\)/);
  assert.equal(reporter.clusterHealthOf('chile01')?.healthy, true);
});

test('a problem names its object by reference: an Event can name it when its namespace and name are Kubernetes names', () => {
  assert.deepEqual(eventRefOf(sliceRef('default', 'imported-chile01-x')), { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', namespace: 'default', name: 'imported-chile01-x' });
  assert.deepEqual(eventRefOf(serviceRef('default', 'derived-web')), { apiVersion: 'v1', kind: 'Service', namespace: 'default', name: 'derived-web' });
  assert.equal(eventRefOf(serviceRef('a.b', 'web')), null);
  assert.equal(eventRefOf(serviceRef('default', 'web "x"')), null);
  assert.equal(eventRefOf(serviceRef(undefined, 'web')), null);
});

test('route status from the route controller: the gateway and the overlaps become metrics and Events', async () => {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const { DEFAULT_CONFIG } = await import('../../src/config/schema.js');
  const { FakeIptables } = await import('../../src/iptables/fake-backend.js');
  const { SyncEngine } = await import('../../src/sync/engine.js');
  const { Operations } = await import('../../src/ops/operations.js');
  const config = { ...DEFAULT_CONFIG, clusterName: 'brazil' };
  const fake = new FakeIptables('nft');
  const engine = new SyncEngine({ config, dataplane: new IptablesDataplane(fake), log: silentLogger() });
  const sink = new FakeSink();
  const ops = new Operations({ config, kubeConfig: new KubeConfig(), nodeName: 'node-a', log: silentLogger(), engine, eventSink: sink });
  const overlap = { key: 'k', message: 'chile01 pod 10.2.0.0/16 overlaps peru pod 10.2.0.0/20; neither is routed' } as never;
  ops.routeStatus({ gateway: { node: 'gw-1', ip: '10.0.0.1', reason: 'oldest Ready candidate' }, overlaps: [overlap] });
  ops.routeStatus({ gateway: { node: 'gw-1', ip: '10.0.0.1', reason: 'oldest Ready candidate' }, overlaps: [overlap] });
  await ops.events.flush();
  assert.deepEqual(sink.created.map((e) => `${e.reason} ${e.involvedObject.kind}/${e.involvedObject.name}`), ['GatewayChanged Node/gw-1', 'CIDROverlap Node/node-a']);
  const text = (await ops.metrics.exposition()).body;
  assert.match(text, /^clusterset_proxy_gateway_active\{cluster="brazil",gateway="gw-1"\} 1$/m);
  assert.match(text, /^clusterset_proxy_cidr_overlaps 1$/m);
});
