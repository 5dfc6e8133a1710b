import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1ConfigMap } from '@kubernetes/client-node';
import { parseExplainFlags, parseFlags, UsageError } from '../../src/cli/flags.js';
import { ConfigError, DEFAULT_CONFIG } from '../../src/config/schema.js';
import { configFromConfigMap, planConfigChange } from '../../src/ops/config-watch.js';
import { parseConfigText } from '../../src/config/load.js';
import { configMapRefOf } from '../../src/ops/start-config.js';

const cm = (data: Record<string, string>): V1ConfigMap => ({ metadata: { namespace: 'kube-system', name: 'clusterset-proxy' }, data });

test('a ConfigMap is read with the --config schema; flags win over it', () => {
  const c = configFromConfigMap(cm({ 'config.yaml': 'clusterName: brazil\nminSyncInterval: 1s\nlogLevel: warn\n' }), { logLevel: 'debug' });
  assert.equal(c.clusterName, 'brazil');
  assert.equal(c.minSyncInterval, 1000);
  assert.equal(c.logLevel, 'debug');
});

test('an invalid ConfigMap fails naming the key and the value', () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ 'config.yaml': 'minSyncInterval: fast' }, /config key "minSyncInterval".*"fast"/],
    [{ 'config.yaml': 'metricsBindAddress: localhost' }, /config key "metricsBindAddress".*host:port.*"localhost"/],
    [{ 'config.yaml': 'healthzBindAddress: 0.0.0.0:70000' }, /config key "healthzBindAddress"/],
    [{ 'config.yaml': 'a: [' }, /not valid YAML/],
    [{ other: 'x' }, /config key "config.yaml": is missing from ConfigMap kube-system\/clusterset-proxy/],
  ];
  for (const [data, expected] of cases) {
    assert.throws(() => configFromConfigMap(cm(data), {}), (err: unknown) => err instanceof ConfigError && expected.test(err.message), JSON.stringify(data));
  }
});

test('a change applies its live keys at once and holds back those that need a restart', () => {
  const running = DEFAULT_CONFIG;
  const desired = { ...DEFAULT_CONFIG, minSyncInterval: 2000, clusters: [{ name: 'brazil' }], iptablesBackend: 'legacy' as const, metricsBindAddress: '127.0.0.1:9999' };
  const change = planConfigChange(running, desired);
  assert.deepEqual(change.live, ['clusters', 'minSyncInterval']);
  assert.deepEqual(change.restart, ['iptablesBackend', 'metricsBindAddress']);
  assert.equal(change.next.minSyncInterval, 2000);
  assert.equal(change.next.iptablesBackend, 'auto', 'a restart key keeps its running value');
  assert.deepEqual(planConfigChange(running, DEFAULT_CONFIG), { next: DEFAULT_CONFIG, live: [], restart: [] });
});

test('the ConfigMap to watch: --configmap, else $POD_NAMESPACE/clusterset-proxy, else none', () => {
  assert.deepEqual(configMapRefOf('ops/my-config', {}), { namespace: 'ops', name: 'my-config' });
  assert.deepEqual(configMapRefOf(undefined, { POD_NAMESPACE: 'kube-system' }), { namespace: 'kube-system', name: 'clusterset-proxy' });
  assert.equal(configMapRefOf('', { POD_NAMESPACE: 'kube-system' }), null);
  assert.equal(configMapRefOf(undefined, {}), null);
});

test('flags: --configmap is checked; explain takes one NAMESPACE/NAME and its own flags', () => {
  assert.equal(parseFlags(['--configmap', 'ops/cfg']).configMap, 'ops/cfg');
  assert.equal(parseFlags(['--configmap', '']).configMap, '');
  assert.throws(() => parseFlags(['--configmap', 'nope']), UsageError);
  assert.throws(() => parseFlags(['explain']), UsageError, 'positionals stay refused by the agent flags');
  const e = parseExplainFlags(['default/serve', '--json']);
  assert.deepEqual([e.service, e.json, e.agent, e.kubeconfig], ['default/serve', true, 'http://127.0.0.1:10265', undefined]);
  assert.equal(parseExplainFlags(['default/serve', '--kubeconfig', 'k']).kubeconfig, 'k');
  assert.throws(() => parseExplainFlags([]), UsageError);
  assert.throws(() => parseExplainFlags(['a/b', 'c/d']), UsageError);
  assert.throws(() => parseExplainFlags(['a/b', '--agent', 'x', '--kubeconfig', 'k']), UsageError);
  assert.equal(parseExplainFlags(['--help']).help, true);
});

test('a live change of clusterCIDR is reported under its file key and carries the derived IPv4 entry along', () => {
  const running = parseConfigText('clusterCIDR: 10.244.0.0/16', 'running');
  const desired = parseConfigText('clusterCIDR: [10.245.0.0/16, "fd00:10:244::/56"]', 'desired');
  const change = planConfigChange(running, desired);
  assert.deepEqual(change.live, ['clusterCIDR']);
  assert.deepEqual(change.next.clusterCIDRs, ['10.245.0.0/16', 'fd00:10:244::/56']);
  assert.equal(change.next.clusterCIDR, '10.245.0.0/16');
});
