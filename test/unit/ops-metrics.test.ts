import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RestoreError } from '../../src/iptables/backend.js';
import { AgentMetrics, METRIC_DEFS, type EndpointCount } from '../../src/ops/metrics.js';
import type { SyncResult } from '../../src/sync/engine.js';

function result(over: Partial<SyncResult> = {}): SyncResult {
  return { full: false, oldestChangeAt: null, owned: null, restores: 1, payloadBytes: 400, chainsWritten: 1, units: 1, durationMs: 12, quarantined: 0, retryInMs: null, ...over };
}

function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
}

function metricsWith(endpoints: EndpointCount[] = [], problems = 0, quarantined = 0): AgentMetrics {
  return new AgentMetrics({ endpointCounts: () => endpoints, problemCount: () => problems, quarantinedCount: () => quarantined, drainingCount: () => 0 }, { processMetrics: false });
}

test('metric names follow Prometheus conventions and are all registered', async () => {
  const m = metricsWith();
  const registered = new Set((await m.registry.getMetricsAsJSON()).map((x) => x.name));
  for (const d of Object.values(METRIC_DEFS)) {
    assert.match(d.name, /^clusterset_proxy_[a-z_]+$/, d.name);
    assert.equal(d.kind === 'counter', d.name.endsWith('_total'), `${d.name}: counters and only counters end in _total`);
    if (d.kind === 'histogram') assert.ok(d.name.endsWith('_seconds'), `${d.name}: durations in seconds`);
    assert.ok(registered.has(d.name), `${d.name} registered`);
  }
});

test('metrics fed by other parts have no series until fed', async () => {
  const m = metricsWith();
  const text = (await m.exposition()).body;
  for (const name of ['cluster_healthy', 'failovers_total', 'gateway_active']) {
    assert.ok(text.includes(`# TYPE clusterset_proxy_${name} `), name);
    assert.ok(!text.includes(`clusterset_proxy_${name}{`), `${name} has no series`);
  }
  m.clusterHealth('chile01', false);
  m.failover('local', 'remote');
  m.gateway('brazil', 'node-a', null);
  m.gateway('brazil', 'node-b', 'node-a');
  m.overlaps(2);
  const fed = (await m.exposition()).body;
  assert.equal(sample(fed, 'clusterset_proxy_cluster_healthy{cluster="chile01"}'), 0);
  assert.equal(sample(fed, 'clusterset_proxy_failovers_total{from="local",to="remote"}'), 1);
  assert.ok(Number.isNaN(sample(fed, 'clusterset_proxy_gateway_active{cluster="brazil",gateway="node-a"}')), 'the old gateway leaves');
  assert.equal(sample(fed, 'clusterset_proxy_gateway_active{cluster="brazil",gateway="node-b"}'), 1);
  assert.equal(sample(fed, 'clusterset_proxy_cidr_overlaps'), 2);
});

test('syncs move the duration histograms, the latency, the timestamps and the owned counts', async () => {
  const m = metricsWith();
  m.queued();
  m.synced(result({ full: true, owned: { chains: 7, rules: 20 }, durationMs: 30 }), 1000);
  m.synced(result({ oldestChangeAt: 500, durationMs: 4 }), 1500);
  const text = (await m.exposition()).body;
  assert.equal(sample(text, 'clusterset_proxy_sync_duration_seconds_count{kind="full"}'), 1);
  assert.equal(sample(text, 'clusterset_proxy_sync_duration_seconds_count{kind="partial"}'), 1);
  assert.equal(sample(text, 'clusterset_proxy_network_programming_duration_seconds_sum'), 1);
  assert.equal(sample(text, 'clusterset_proxy_network_programming_duration_seconds_bucket{le="1"}'), 1);
  assert.equal(sample(text, 'clusterset_proxy_owned_chains'), 7);
  assert.equal(sample(text, 'clusterset_proxy_owned_rules'), 20);
  const now = Date.now() / 1000;
  assert.ok(Math.abs(sample(text, 'clusterset_proxy_last_sync_timestamp_seconds') - now) < 5);
  assert.ok(Math.abs(sample(text, 'clusterset_proxy_last_queued_timestamp_seconds') - now) < 5);
});

test('failures count; restores refused by the kernel count apart', async () => {
  const m = metricsWith();
  m.syncFailed(new Error('iptables-save: exec failed'));
  m.syncFailed(new RestoreError('iptables-nft-restore failed at line 3', 'line 3 failed', 3));
  const text = (await m.exposition()).body;
  assert.equal(sample(text, 'clusterset_proxy_sync_failures_total'), 2);
  assert.equal(sample(text, 'clusterset_proxy_restore_failures_total'), 1);
});

test('config reloads count by result; endpoints and problems are read at scrape time', async () => {
  const endpoints: EndpointCount[] = [{ cluster: 'chile01', state: 'ready', count: 3 }];
  const m = metricsWith(endpoints, 2, 1);
  let text = (await m.exposition()).body;
  assert.equal(sample(text, 'clusterset_proxy_quarantined_groups'), 1);
  assert.equal(sample(text, 'clusterset_proxy_config_reloads_total{result="failure"}'), 0);
  assert.equal(sample(text, 'clusterset_proxy_config_last_reload_successful'), 1);
  assert.equal(sample(text, 'clusterset_proxy_endpoints{cluster="chile01",state="ready"}'), 3);
  assert.equal(sample(text, 'clusterset_proxy_object_problems'), 2);
  m.configReloaded(false, 0);
  endpoints.splice(0, 1, { cluster: 'chile01', state: 'not_ready', count: 3 });
  text = (await m.exposition()).body;
  assert.equal(sample(text, 'clusterset_proxy_config_reloads_total{result="failure"}'), 1);
  assert.equal(sample(text, 'clusterset_proxy_config_last_reload_successful'), 0);
  assert.ok(Number.isNaN(sample(text, 'clusterset_proxy_endpoints{cluster="chile01",state="ready"}')), 'stale series go');
  assert.equal(sample(text, 'clusterset_proxy_endpoints{cluster="chile01",state="not_ready"}'), 3);
  m.configReloaded(true, 2);
  text = (await m.exposition()).body;
  assert.equal(sample(text, 'clusterset_proxy_config_reloads_total{result="success"}'), 1);
  assert.equal(sample(text, 'clusterset_proxy_config_restart_required'), 2);
});
