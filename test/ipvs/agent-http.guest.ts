// The whole agent in IPVS mode in a real kernel, inside UML (run by
// test/uml/ipvs-agent-http.test.ts): bin/clusterset-proxy --proxy-mode ipvs in
// the lab's node namespace, against the test API server, beside
// kube-proxy-style state (an IPVS address service and a nat KUBE-SERVICES
// DNAT for the same ClusterIP:port). A client pod's HTTP requests to the
// ClusterIP are answered by pods in other namespaces as endpoints are added,
// removed, weighted and failed over to the other cluster; explain and the
// drain metric answer from the running agent; kube-proxy's state stays byte
// for byte, and --cleanup leaves the node as it was before the agent.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { execa } from 'execa';
import type { ExplainReport } from '../../src/ops/explain.js';
import { waitFor } from '../support/api-server.js';
import { get, sample } from '../support/agent-client.js';
import { endpoint, importedSlice, service } from '../support/fixtures.js';
import { AGENT_BIN, AGENT_WAIT_MS, Lab, type AgentProcess } from '../support/lab.js';

/**
 * How long a step waits for the agent here: UML runs every system call of the
 * agent, its tools and the clients through a tracing host process, so on a
 * loaded machine the agent's start and first sync alone can take minutes.
 */
const WAIT_MS = 5 * AGENT_WAIT_MS;
import { netnsExec } from '../support/netns.js';

const CLUSTER_IP = '10.96.0.50';
const URL = `http://${CLUSTER_IP}/`;
const lab = new Lab('legacy');
let client = '';
let agent: AgentProcess | null = null;
let configPath = '';
let pristine = { ipvs: '', iptables: '', rules: '' };

const derived = (annotations: Record<string, string> = {}) => service('default', 'derived-serve', CLUSTER_IP, [{ name: 'http', port: 80 }], { annotations });
const brazil = (...eps: ReturnType<typeof endpoint>[]) => importedSlice('default', 'brazil', 'serve-b', 'derived-serve', eps);
const chile = (...eps: ReturnType<typeof endpoint>[]) => importedSlice('default', 'chile01', 'serve-c', 'derived-serve', eps);

const node = async (cmd: string, args: string[]) => (await netnsExec(lab.nodeNs, cmd, args)).stdout;
const ipvsadm = () => node('ipvsadm', ['-Sn']);
/** The table without the agent's fwmark services: kube-proxy's part. */
const foreignIpvs = async () => (await ipvsadm()).split('\n').filter((l) => !/^-[Aa] -f \d+/.test(l)).join('\n');
/** iptables-save of every table without counters: kube-proxy's chains and rules are compared by removing the agent's. */
const iptables = async () => (await lab.saveAll()).replace(/\[\d+:\d+\]/g, '');
const foreignIptables = async () => (await iptables()).split('\n').filter((l) => !/MCS-|0x4d000000/.test(l)).join('\n');
const ipRules = () => node('ip', ['rule', 'show']);

async function spread(count: number): Promise<Record<string, number>> {
  const r = await lab.requests(URL, count, { fromNs: client });
  assert.equal(r.failed, 0, JSON.stringify(r.errors));
  return r.bodies;
}

/** Waits until `count` requests are all answered by bodies `accept` allows (the agent applies changes asynchronously). */
async function until(what: string, accept: (bodies: Record<string, number>) => boolean, count = 6): Promise<Record<string, number>> {
  let last: Record<string, number> = {};
  try {
    return await waitFor(async () => {
      lab.throwIfAgentExited();
      const r = await lab.requests(URL, count, { fromNs: client, timeoutMs: 5000 });
      last = r.bodies;
      return r.failed === 0 && accept(r.bodies) ? r.bodies : null;
    }, what, { timeoutMs: WAIT_MS, intervalMs: 100 });
  } catch (err) {
    throw new Error(`${(err as Error).message}; last answers ${JSON.stringify(last)}\n${await ipvsadm()}${await lab.agentLogTails()}`);
  }
}

const only = (...bodies: string[]) => (b: Record<string, number>) => Object.keys(b).length > 0 && Object.keys(b).every((k) => bodies.includes(k));

before(async () => {
  await lab.start();
  await lab.addPod({ ip: '10.1.0.10', body: 'brazil/a' });
  await lab.addPod({ ip: '10.1.0.11', body: 'brazil/b' });
  await lab.addPod({ ip: '10.2.0.10', body: 'chile01/a' });
  client = await lab.addPod({ ip: '10.244.0.5', body: 'client' });
  // kube-proxy in IPVS mode: its own address service for the ClusterIP:port, and a nat DNAT that would send the packets nowhere.
  await node('ipvsadm', ['-A', '-t', `${CLUSTER_IP}:80`, '-s', 'rr']);
  await node('ipvsadm', ['-a', '-t', `${CLUSTER_IP}:80`, '-r', '10.9.9.9:8080', '-m', '-w', '1']);
  await lab.restore([
    '*nat', ':KUBE-SERVICES - [0:0]', '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    `-A KUBE-SERVICES -d ${CLUSTER_IP}/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.9.9.9:8080`, 'COMMIT', '',
  ].join('\n'));
  pristine = { ipvs: await ipvsadm(), iptables: await iptables(), rules: await ipRules() };
  configPath = await lab.writeConfig({ clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16', minSyncInterval: '50ms' });
  lab.apply(derived(), brazil(endpoint('10.1.0.10')), chile(endpoint('10.2.0.10')));
  agent = await lab.startAgent(['--config', configPath, '--proxy-mode', 'ipvs']);
});

after(async () => {
  await agent?.stop();
  await lab.stop();
});

test('the agent serves the ClusterIP through its fwmark service past kube-proxy\'s, and follows endpoints added and removed', async () => {
  // local-first: the local cluster's endpoint only.
  await until('brazil/a answers', only('brazil/a'));
  assert.match(await ipvsadm(), /^-A -f \d+ -s wrr$/m);
  assert.equal(await foreignIpvs(), pristine.ipvs, 'kube-proxy\'s IPVS service untouched');
  assert.equal(await foreignIptables(), pristine.iptables, 'kube-proxy\'s iptables rules untouched');

  lab.apply(brazil(endpoint('10.1.0.10'), endpoint('10.1.0.11')));
  await until('brazil/b joins', (b) => only('brazil/a', 'brazil/b')(b) && (b['brazil/b'] ?? 0) > 0);

  lab.apply(brazil(endpoint('10.1.0.11')));
  await until('brazil/a leaves', only('brazil/b'));
  // The removed server drains at weight 0 (its connections linger in IPVS's table as TIME_WAIT).
  const drained = /^-a -f \d+ -r 10\.1\.0\.10:8080 -m -w 0$/m;
  const table = await ipvsadm();
  if (drained.test(table)) {
    const metrics = await get(lab, 'http://127.0.0.1:10265/metrics');
    assert.ok(sample(metrics.body, 'clusterset_proxy_ipvs_draining_real_servers') >= 1, metrics.body);
  } else {
    // Already swept: the sweep found it idle.
    assert.doesNotMatch(table, /10\.1\.0\.10:8080/);
  }
  assert.deepEqual(await spread(6), { 'brazil/b': 6 });
});

test('active-active brazil=3,chile01=1 sends 3:1 by wrr weights, and explain shows the service, weights and clusters', async () => {
  lab.apply(derived({ 'clusterset-proxy.io/traffic-policy': 'active-active', 'clusterset-proxy.io/cluster-weights': 'brazil=3,chile01=1' }));
  await until('chile01 joins', (b) => (b['chile01/a'] ?? 0) > 0, 8);
  // wrr over weights 3 : 1 picks brazil 3 times in every 4 new connections.
  const bodies = await spread(40);
  assert.equal((bodies['brazil/b'] ?? 0) + (bodies['chile01/a'] ?? 0), 40);
  assert.ok(Math.abs((bodies['brazil/b'] ?? 0) - 30) <= 3, JSON.stringify(bodies));

  let report: ExplainReport | null = null;
  await waitFor(async () => {
    const r = await netnsExec(lab.nodeNs, process.execPath, [AGENT_BIN, 'explain', 'default/derived-serve', '--json'], { reject: false });
    report = r.exitCode === 0 ? (JSON.parse(r.stdout) as ExplainReport) : null;
    return report?.rules.inSync ? report : null;
  }, 'explain in sync', { timeoutMs: WAIT_MS, intervalMs: 200 });
  const kernel = report!.rules.kernel!;
  assert.match(kernel[0]!, /^FWM 0x4d[0-9a-f]+ wrr serves default\/derived-serve:http \(10\.96\.0\.50:80\/tcp\)$/);
  assert.ok(kernel.some((l) => /^ {2}-> 10\.1\.0\.11:8080 masq weight 2162160 \(brazil\): \d+ active, \d+ inactive connections$/.test(l)), kernel.join('\n'));
  assert.ok(kernel.some((l) => /^ {2}-> 10\.2\.0\.10:8080 masq weight 720720 \(chile01\): /.test(l)), kernel.join('\n'));
  assert.ok(kernel.some((l) => l.startsWith('TCP 10.96.0.50:80 rr: not the agent\'s')), kernel.join('\n'));
});

test('the local cluster\'s endpoints going unready fail over to chile01; kube-proxy\'s state is still byte for byte', async () => {
  lab.apply(derived(), brazil(endpoint('10.1.0.11', { ready: false })));
  await until('all traffic on chile01', only('chile01/a'));
  assert.deepEqual(await spread(8), { 'chile01/a': 8 });
  assert.equal(await foreignIpvs(), pristine.ipvs);
  assert.equal(await foreignIptables(), pristine.iptables);
});

test('--cleanup after the agent stops leaves IPVS, iptables and the routing rules exactly as before the agent', async () => {
  await agent!.stop();
  agent = null;
  const r = await lab.runAgent(['--config', configPath, '--proxy-mode', 'ipvs', '--cleanup']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await ipvsadm(), pristine.ipvs);
  assert.equal(await iptables(), pristine.iptables);
  assert.equal(await ipRules(), pristine.rules);
  assert.equal((await execa('ip', ['-n', lab.nodeNs, 'route', 'show', 'table', 'all'])).stdout.includes('table 77'), false);
});
