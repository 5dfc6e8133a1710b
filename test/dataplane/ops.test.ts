import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { KubernetesObject, V1ConfigMap } from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { METRIC_DEFS } from '../../src/ops/metrics.js';
import { serviceChainName } from '../../src/iptables/names.js';
import { waitFor } from '../support/api-server.js';
import { get, sample, waitForEvent, waitForLog } from '../support/agent-client.js';
import { endpoint, importedSlice, service, slice } from '../support/fixtures.js';
import { Lab, AGENT_BIN, AGENT_WAIT_MS, type AgentProcess } from '../support/lab.js';
import { netnsExec } from '../support/netns.js';

assert.equal(process.getuid?.(), 0, 'data-plane tests need root: run them as root (CI does)');

// The agent operated as a DaemonSet would run it: config from a ConfigMap
// changed live, metrics and health scraped over HTTP inside the node's
// namespace, Events read back from the API server, explain on the node.

const NS = 'ops';
const NODE = 'node-a';
const METRICS = 'http://127.0.0.1:10265';
const HEALTH = 'http://127.0.0.1:10266';
const URL = 'http://10.96.0.50/';
const CHAIN = serviceChainName('default', 'derived-serve', 'http', 'TCP');
const derivedServe = () => service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]);
const chileSlice = (...ips: string[]) => importedSlice('default', 'chile01', 'serve-abc', 'derived-serve', ips.map((ip) => endpoint(ip)));
const BASE = {
  iptablesBackend: 'nft', clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16',
  minSyncInterval: '50ms', healthzTimeout: '1s', healthProbe: { interval: '300ms', timeout: '200ms', unhealthyThreshold: 2, healthyThreshold: 1 },
};

function configMap(config: Record<string, unknown> | string): V1ConfigMap {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: NS, name: 'clusterset-proxy' }, data: { 'config.yaml': typeof config === 'string' ? config : toYaml(config) } };
}

async function metrics(lab: Lab): Promise<string> {
  const r = await get(lab, `${METRICS}/metrics`);
  assert.equal(r.status, 200);
  return r.body;
}

/**
 * When each sync logged after the line holding `after` started (its log time
 * less its duration), in ms; the first, possibly scheduled before that line,
 * is left out.
 */
function syncStarts(logs: string, after: string): number[] {
  const lines = logs.split('\n');
  const from = lines.findIndex((l) => l.includes(after));
  const since = Date.parse((JSON.parse(lines[from]!) as { time: string }).time);
  return lines.slice(from + 1)
    .filter((l) => /"msg":"(full|partial) sync done"/.test(l))
    .map((l) => JSON.parse(l) as { time: string; durationMs: number })
    .map((e) => Date.parse(e.time) - e.durationMs)
    .filter((start) => start > since);
}

function uidOf(lab: Lab, obj: KubernetesObject): string {
  return lab.api.get({ apiVersion: obj.apiVersion!, kind: obj.kind! }, obj.metadata?.namespace, obj.metadata!.name!)!.metadata!.uid!;
}

describe('operating the agent: ConfigMap, metrics, health, Events, explain', () => {
  const lab = new Lab('nft');
  let agent: AgentProcess;

  before(async () => {
    await lab.start();
    await lab.addPod({ ip: '10.2.0.10', body: 'chile01/serve-a' });
    await lab.addPod({ ip: '10.2.0.11', body: 'chile01/serve-b' });
    await lab.addPod({ ip: '10.1.0.10', body: 'brazil/serve' });
    await lab.routeServiceRange('10.96.0.0/12');
    lab.apply(derivedServe(), chileSlice('10.2.0.10'));
  });
  after(() => lab.stop());

  it('/readyz fails until the first full sync and /healthz holds meanwhile; then ready, with sync metrics', async () => {
    lab.api.pause('unavailable');
    agent = await lab.startAgent(['--config', await lab.writeConfig(BASE)]);
    await waitFor(async () => (await get(lab, `${HEALTH}/readyz`)).status === 503, '/readyz to answer 503', { timeoutMs: AGENT_WAIT_MS, intervalMs: 100 });
    const healthz = await get(lab, `${HEALTH}/healthz`);
    assert.equal(healthz.status, 200, healthz.body);
    assert.equal(JSON.parse(healthz.body).lastUpdated, null);
    lab.api.resume();
    await waitFor(async () => (await get(lab, `${HEALTH}/readyz`)).status === 200, '/readyz to turn 200', { timeoutMs: AGENT_WAIT_MS, intervalMs: 100 });
    await lab.waitForRules((t) => t.includes('--to-destination 10.2.0.10:8080'), 'the DNAT rule');
    const m = await metrics(lab);
    assert.ok(sample(m, 'clusterset_proxy_sync_duration_seconds_count{kind="full"}') >= 1, m);
    assert.ok(sample(m, 'clusterset_proxy_owned_chains') >= 4, 'owned chains counted');
    assert.ok(sample(m, 'clusterset_proxy_owned_rules') > sample(m, 'clusterset_proxy_owned_chains'));
    assert.ok(sample(m, 'clusterset_proxy_last_sync_timestamp_seconds') > Date.now() / 1000 - 60);
    assert.ok(sample(m, 'clusterset_proxy_last_queued_timestamp_seconds') > 0);
  });

  it('SIGTERM stops the agent and leaves every rule in place; traffic keeps flowing', async () => {
    const before = await lab.saveAll();
    assert.equal(await agent.stop('SIGTERM'), 0, await agent.logs());
    assert.equal((await lab.saveAll()).replace(/\[\d+:\d+\]/g, ''), before.replace(/\[\d+:\d+\]/g, ''));
    assert.deepEqual((await lab.requests(URL, 5)).bodies, { 'chile01/serve-a': 5 });
  });

  it('starts from the ConfigMap and exports every metric; endpoints, programming latency and partial syncs move', async () => {
    lab.apply(configMap(BASE));
    agent = await lab.startAgent(['--configmap', `${NS}/clusterset-proxy`, '--hostname-override', NODE]);
    await waitForLog(agent, 'config read from the ConfigMap');
    await waitFor(async () => (await get(lab, `${HEALTH}/readyz`)).status === 200, 'ready', { timeoutMs: AGENT_WAIT_MS, intervalMs: 100 });
    let m = await metrics(lab);
    for (const d of Object.values(METRIC_DEFS)) assert.ok(m.includes(`# HELP ${d.name} `), `${d.name} is exported`);
    assert.equal(sample(m, 'clusterset_proxy_endpoints{cluster="chile01",state="ready"}'), 1);
    assert.equal(sample(m, 'clusterset_proxy_config_last_reload_successful'), 1);
    // No series until fed by the route controller; the prober gives every probed cluster one after its first round.
    assert.ok(!m.includes('clusterset_proxy_gateway_active{'));
    await waitFor(async () => sample(await metrics(lab), 'clusterset_proxy_cluster_healthy{cluster="chile01"}') === 1, 'chile01 judged healthy', { timeoutMs: AGENT_WAIT_MS, intervalMs: 100 });
    const partial = sample(m, 'clusterset_proxy_sync_duration_seconds_count{kind="partial"}') || 0;
    const programmed = sample(m, 'clusterset_proxy_network_programming_duration_seconds_count');

    lab.apply(chileSlice('10.2.0.10', '10.2.0.11'));
    await lab.waitForRules((t) => t.includes('--to-destination 10.2.0.11:8080'), 'the second endpoint');
    m = await waitFor(async () => {
      const text = await metrics(lab);
      return sample(text, 'clusterset_proxy_endpoints{cluster="chile01",state="ready"}') === 2 ? text : null;
    }, 'two ready endpoints counted');
    assert.ok(sample(m, 'clusterset_proxy_sync_duration_seconds_count{kind="partial"}') > partial, 'a partial sync counted');
    assert.ok(sample(m, 'clusterset_proxy_network_programming_duration_seconds_count') > programmed, 'event-to-programmed latency observed');
  });

  it('a valid ConfigMap change applies live (clusters, sync interval, log level); a restart-only key is reported', async () => {
    lab.apply(configMap({ ...BASE, clusters: [{ name: 'brazil' }], minSyncInterval: '2s', logLevel: 'debug', iptablesLockWait: 9 }));
    const logs = await waitForLog(agent, '"msg":"config reloaded"');
    assert.match(logs, /"changed":\["clusters","minSyncInterval","logLevel"\]/);
    assert.match(logs, /"keys":\["iptablesLockWait"\][^\n]*need a restart/);
    // clusters: chile01 is no longer configured, so its slice counts as cluster "unknown".
    await lab.waitForRules((t) => t.includes('-> unknown 10.2.0.10:8080'), 'the endpoints re-attributed');
    await waitForLog(agent, '"msg":"full sync done"');
    // logLevel debug: partial syncs are logged now. minSyncInterval 2s: two changes in a row are 2s apart.
    lab.apply(chileSlice('10.2.0.10'));
    await lab.waitForRules((t) => !t.includes('10.2.0.11:8080'), 'the first change');
    lab.apply(chileSlice('10.2.0.10', '10.2.0.11'));
    await lab.waitForRules((t) => t.includes('10.2.0.11:8080'), 'the second change');
    await waitForLog(agent, '"msg":"partial sync done"');
    // The agent's own clock, not the test's (which polls, late by however long this machine takes): every
    // sync that started after the reload started at least minSyncInterval after the one before it.
    const syncs = syncStarts(await agent.logs(), '"msg":"config reloaded"');
    assert.ok(syncs.length >= 3, `the reload's full sync and one sync per change: ${syncs.length}`);
    for (let i = 1; i < syncs.length; i++) assert.ok(syncs[i]! - syncs[i - 1]! >= 1900, `sync ${i} started ${syncs[i]! - syncs[i - 1]!} ms after the one before`);
    const m = await metrics(lab);
    assert.equal(sample(m, 'clusterset_proxy_config_reloads_total{result="success"}'), 1);
    assert.equal(sample(m, 'clusterset_proxy_config_restart_required'), 1);
    const reloaded = await waitForEvent(lab, 'ConfigReloaded', 'ConfigMap', 'clusterset-proxy');
    assert.match(reloaded.message, /clusters, minSyncInterval, logLevel/);
    await waitForEvent(lab, 'RestartRequired', 'ConfigMap', 'clusterset-proxy');
    // The unknown cluster prefix is reported on the slice itself.
    const slice = await waitForEvent(lab, 'Inconsistent', 'EndpointSlice', 'imported-chile01-serve-abc');
    assert.match(slice.message, /matches no configured cluster/);
  });

  it('an invalid ConfigMap change is refused: error naming key and value, metric, Event; the agent runs on', async () => {
    lab.apply(configMap({ ...BASE, clusters: [{ name: 'brazil' }], minSyncInterval: 'fast' }));
    const logs = await waitForLog(agent, 'ConfigMap change refused');
    assert.match(logs, /"level":"error"[^\n]*"key":"minSyncInterval","value":"fast"/);
    const m = await metrics(lab);
    assert.equal(sample(m, 'clusterset_proxy_config_reloads_total{result="failure"}'), 1);
    assert.equal(sample(m, 'clusterset_proxy_config_last_reload_successful'), 0);
    const event = await waitForEvent(lab, 'InvalidConfig', 'ConfigMap', 'clusterset-proxy');
    assert.equal(event.type, 'Warning');
    assert.match(event.message, /config key "minSyncInterval".*"fast"/);
    assert.equal(event.involvedObject.uid, uidOf(lab, configMap({})));
    assert.equal(event.source.component, 'clusterset-proxy');
    // Still working, on the last good config.
    lab.apply(configMap({ ...BASE, clusters: [{ name: 'brazil' }, { name: 'chile01' }] }));
    await lab.waitForRules((t) => t.includes('-> chile01 10.2.0.10:8080'), 'the next valid change applied');
    assert.deepEqual(Object.keys((await lab.requests(URL, 20)).bodies).sort(), ['chile01/serve-a', 'chile01/serve-b']);
  });

  it('a malformed object gets one Warning Event on itself, with its uid', async () => {
    const bad = service('default', 'derived-noip', '', [{ name: 'http', port: 80 }]);
    lab.apply(bad);
    const event = await waitForEvent(lab, 'Malformed', 'Service', 'derived-noip');
    assert.equal(event.type, 'Warning');
    assert.match(event.message, /has no ClusterIP/);
    assert.equal(event.involvedObject.uid, uidOf(lab, bad));
    assert.equal(event.count, 1);
    lab.api.delete({ apiVersion: 'v1', kind: 'Service' }, 'default', 'derived-noip');
  });

  it('the service group switching between local and remote, and a cluster turning unhealthy and healthy, are Events and metrics', async () => {
    const localSlice = (ready: boolean) => slice('default', 'serve-local', 'serve', [endpoint('10.1.0.10', { ready })]);
    lab.apply(service('default', 'serve', '10.96.0.40', [{ name: 'http', port: 80 }]), localSlice(true));
    await lab.waitForRules((t) => t.includes('-> brazil 10.1.0.10:8080'), 'local-first: the local endpoint');
    const count = (text: string, from: string, to: string) => sample(text, `clusterset_proxy_failovers_total{from="${from}",to="${to}"}`) || 0;
    const before = await metrics(lab);
    lab.apply(localSlice(false));
    const over = await waitForEvent(lab, 'FailedOver', 'Service', 'derived-serve');
    assert.match(over.message, /traffic of default\/derived-serve moved from local \(brazil\) to remote \(chile01\)/);
    lab.apply(localSlice(true));
    await waitForEvent(lab, 'FailedBack', 'Service', 'derived-serve');
    const m = await metrics(lab);
    assert.equal(count(m, 'local', 'remote') - count(before, 'local', 'remote'), 1);
    assert.equal(count(m, 'remote', 'local') - count(before, 'remote', 'local'), 1);

    for (const ip of ['10.2.0.10', '10.2.0.11']) await lab.setPodLink(ip, false);
    const down = await waitForEvent(lab, 'ClusterUnhealthy', 'Node', NODE);
    assert.match(down.message, /cluster chile01 is unreachable from node node-a/);
    assert.equal(sample(await metrics(lab), 'clusterset_proxy_cluster_healthy{cluster="chile01"}'), 0);
    for (const ip of ['10.2.0.10', '10.2.0.11']) await lab.setPodLink(ip, true);
    await waitForEvent(lab, 'ClusterHealthy', 'Node', NODE);
    assert.equal(sample(await metrics(lab), 'clusterset_proxy_cluster_healthy{cluster="chile01"}'), 1);
  });

  it('explain answers from the running agent and offline from a kubeconfig, with the exact kernel rules', async () => {
    const online = await netnsExec(lab.nodeNs, process.execPath, [AGENT_BIN, 'explain', 'default/serve'], { reject: false });
    assert.equal(online.exitCode, 0, online.stderr);
    const text = online.stdout;
    for (const expected of [
      'Service group default/serve (ServiceImport (derived Service)); this node\'s cluster: brazil',
      'Policy: local-first',
      'Decision: traffic goes local (brazil)',
      'Service default/derived-serve: ClusterIP 10.96.0.50',
      'Local Service default/serve: ClusterIP 10.96.0.40',
      `port http 80/TCP -> ${CHAIN}`,
      'cluster brazil (local): health not probed (counts as healthy): receives traffic',
      '10.1.0.10:8080        ready               100.0%',
      'cluster chile01: health healthy since',
      'no traffic: local-first keeps traffic in the local cluster while it has usable endpoints',
      '10.2.0.11:8080        ready               -',
      'Rules in the kernel: the kernel holds exactly the planned rules',
      `-A MCS-DISPATCH-50 -d 10.96.0.50/32 -p tcp -m comment --comment "default/derived-serve:http cluster IP" -m tcp --dport 80 -j ${CHAIN}`,
      `-A ${CHAIN} -p tcp -m comment --comment "default/derived-serve:http -> brazil 10.1.0.10:8080" -j DNAT --to-destination 10.1.0.10:8080`,
    ]) assert.ok(text.includes(expected), `${expected}\nnot in:\n${text}`);

    const offline = await netnsExec(lab.nodeNs, process.execPath, [AGENT_BIN, 'explain', 'default/derived-serve', '--kubeconfig', lab.kubeconfig, '--configmap', `${NS}/clusterset-proxy`, '--json'], { reject: false });
    assert.equal(offline.exitCode, 0, offline.stderr);
    const report = JSON.parse(offline.stdout);
    assert.equal(report.group, 'default/serve');
    assert.equal(report.rules.inSync, true);
    assert.deepEqual(report.rules.kernel, JSON.parse(await get(lab, `${METRICS}/explain?service=default/serve`).then((r) => r.body)).rules.kernel);

    const none = await netnsExec(lab.nodeNs, process.execPath, [AGENT_BIN, 'explain', 'default/nothing'], { reject: false });
    assert.equal(none.exitCode, 1);
    assert.match(none.stdout, /no service group/);
  });

  it('/healthz fails while a queued change cannot be applied, and recovers; restore failures are counted', async () => {
    // A foreign chain jumping to the service's chain: deleting the Service then fails in the kernel (chain in use).
    await lab.restore(`*nat\n:USER-HOLD - [0:0]\n-A USER-HOLD -j ${CHAIN}\nCOMMIT\n`);
    const failuresBefore = sample(await metrics(lab), 'clusterset_proxy_restore_failures_total');
    lab.api.delete({ apiVersion: 'v1', kind: 'Service' }, 'default', 'derived-serve');
    const sick = await waitFor(async () => {
      const r = await get(lab, `${HEALTH}/healthz`);
      return r.status === 503 ? r : null;
    }, '/healthz to fail', { timeoutMs: AGENT_WAIT_MS, intervalMs: 100 });
    assert.match(JSON.parse(sick.body).reason, /a change queued .* ago is not applied yet/);
    assert.ok(sample(await metrics(lab), 'clusterset_proxy_restore_failures_total') > failuresBefore);
    assert.equal((await get(lab, `${HEALTH}/readyz`)).status, 200, 'still ready: the rules stay');
    await lab.restore('*nat\n-F USER-HOLD\n-X USER-HOLD\nCOMMIT\n');
    await lab.waitForRules((t) => !t.includes(CHAIN), 'the chain removed at the retry');
    await waitFor(async () => (await get(lab, `${HEALTH}/healthz`)).status === 200, '/healthz to recover', { timeoutMs: AGENT_WAIT_MS, intervalMs: 100 });
  });

  it('no credential ever reaches the log', async () => {
    const logs = await agent.logs();
    assert.ok(!logs.includes('test-token'), 'the kubeconfig token is not logged');
    assert.equal(await agent.stop('SIGTERM'), 0, await agent.logs());
  });
});
