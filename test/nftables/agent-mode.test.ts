// The agent binary in nftables mode, against the lab's API server and pods:
// --proxy-mode nftables programs table ip clusterset-proxy and answers
// through it; auto picks nftables beside kube-proxy's nftables table; ipvs on
// a kernel without IP_VS fails at start naming the cause; --cleanup deletes the table and leaves iptables alone.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { endpoint, importedSlice, service } from '../support/fixtures.js';
import { AGENT_BIN, Lab } from '../support/lab.js';
import { netnsExec } from '../support/netns.js';
import type { ExplainReport } from '../../src/ops/explain.js';

const URL = 'http://10.96.0.50/';
const derivedServe = () => service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]);
const chileSlice = (...eps: ReturnType<typeof endpoint>[]) => importedSlice('default', 'chile01', 'serve-abc', 'derived-serve', eps);

describe('agent in nftables mode: a client on the node reaches the remote cluster\'s pods through table ip clusterset-proxy', () => {
  const lab = new Lab('nft');
  let configPath = '';

  before(async () => {
    await lab.start();
    await lab.addPod({ ip: '10.2.0.10', body: 'chile01/serve-a' });
    await lab.addPod({ ip: '10.2.0.11', body: 'chile01/serve-b' });
    await lab.routeServiceRange('10.96.0.0/12');
    configPath = await lab.writeConfig({ clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16', minSyncInterval: '50ms' });
    lab.apply(derivedServe(), chileSlice(endpoint('10.2.0.10')));
  });
  after(() => lab.stop());

  const table = async () => (await netnsExec(lab.nodeNs, 'nft', ['list', 'table', 'ip', 'clusterset-proxy'], { reject: false })).stdout;
  const waitForTable = async (predicate: (text: string) => boolean, what: string) => {
    for (let i = 0; i < 200; i++) {
      const text = await table();
      if (predicate(text)) return text;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`table ip clusterset-proxy never showed ${what}:\n${await table()}`);
  };

  it('--proxy-mode ipvs on this kernel (no IP_VS) exits non-zero with one line naming the cause, changing nothing', async () => {
    const before = await lab.saveAll();
    const r = await lab.runAgent(['--config', configPath, '--proxy-mode', 'ipvs', '--once']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /^clusterset-proxy: proxy mode ipvs cannot start: this kernel has no IPVS generic netlink family \(is the ip_vs module loaded\?\)/m);
    // One message, no stack trace (log lines are JSON).
    assert.equal(r.stderr.split('\n').filter((l) => l.startsWith('clusterset-proxy:')).length, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /^\s+at /m);
    assert.equal(await lab.saveAll(), before);
  });

  it('--proxy-mode nftables: the table serves the endpoint and an endpoint change follows, no iptables rule written', async () => {
    const natBefore = await lab.save('nat');
    const agent = await lab.startAgent(['--config', configPath, '--proxy-mode', 'nftables']);
    try {
      await waitForTable((t) => t.includes(': 10.2.0.10 . 8080'), 'the slots of 10.2.0.10');
      assert.deepEqual((await lab.requests(URL, 10)).bodies, { 'chile01/serve-a': 10 });
      lab.apply(chileSlice(endpoint('10.2.0.11')));
      await waitForTable((t) => t.includes(': 10.2.0.11 . 8080') && !t.includes(': 10.2.0.10 . 8080'), 'the slots moved to 10.2.0.11');
      assert.deepEqual((await lab.requests(URL, 10)).bodies, { 'chile01/serve-b': 10 });
      // explain on the node asks the agent, which reads its nftables table: the group's elements, named after the Service port.
      let report: ExplainReport | null = null;
      for (let i = 0; i < 100 && !(report?.rules.inSync && report.rules.kernel?.some((l) => l.includes(': 10.2.0.11 . 8080 (64 of 64 slots)'))); i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 200));
        const r = await netnsExec(lab.nodeNs, process.execPath, [AGENT_BIN, 'explain', 'default/serve', '--json'], { reject: false });
        report = r.exitCode === 0 ? (JSON.parse(r.stdout) as ExplainReport) : null;
      }
      assert.ok(report, 'explain answered');
      assert.equal(report.rules.note, 'the kernel holds exactly the planned rules', JSON.stringify(report.rules));
      assert.ok(report.rules.kernel!.includes('service_ports 10.96.0.50 . tcp . 80 comment "default/derived-serve:http"'), report.rules.kernel!.join('\n'));
      assert.ok(report.rules.kernel!.includes('slots-50 10.96.0.50 . tcp . 80 . 0-63 : 10.2.0.11 . 8080 (64 of 64 slots)'), report.rules.kernel!.join('\n'));
      assert.ok(!report.rules.kernel!.some((l) => l.startsWith('-A ')), 'no iptables rules');
      assert.equal(report.services[0]!.ports[0]!.chain, 'slots-50 10.96.0.50 . tcp . 80');
      assert.doesNotMatch(await lab.save('nat'), /MCS-/);
      const strip = (dump: string) => dump.replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, '');
      assert.equal(strip(await lab.save('nat')), strip(natBefore));
    } finally {
      await agent.stop();
    }
    // Stopped, the table stays and keeps serving.
    assert.deepEqual((await lab.requests(URL, 3)).bodies, { 'chile01/serve-b': 3 });
  });

  it('auto picks nftables beside kube-proxy\'s nftables table and logs why; --cleanup deletes only the agent\'s table', async () => {
    await netnsExec(lab.nodeNs, 'nft', ['add', 'table', 'ip', 'kube-proxy']);
    const r = await lab.runAgent(['--config', configPath, '--proxy-mode', 'auto', '--once']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /kube-proxy's nftables table \\?"ip kube-proxy\\?" or \\?"ip6 kube-proxy\\?" is present/);
    const cleaned = await lab.runAgent(['--config', configPath, '--proxy-mode', 'nftables', '--cleanup']);
    assert.equal(cleaned.code, 0, cleaned.stderr);
    assert.equal(await table(), '');
    assert.equal((await netnsExec(lab.nodeNs, 'nft', ['list', 'table', 'ip', 'kube-proxy'], { reject: false })).exitCode, 0);
  });
});
