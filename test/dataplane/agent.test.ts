import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { serviceChainName } from '../../src/iptables/names.js';
import { endpoint, importedSlice, service, slice } from '../support/fixtures.js';
import { KUBE_PROXY_NAT, USER_FILTER } from '../support/foreign-rules.js';
import { AGENT_WAIT_MS, Lab, type AgentProcess } from '../support/lab.js';

assert.equal(process.getuid?.(), 0, 'data-plane tests need root: run them as root (CI does)');

const URL = 'http://10.96.0.50/';
const CHAIN = serviceChainName('default', 'derived-serve', 'http', 'TCP');
const derivedServe = () => service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]);
const chileSlice = (...eps: ReturnType<typeof endpoint>[]) => importedSlice('default', 'chile01', 'serve-abc', 'derived-serve', eps);

/** Counters and timestamps change with traffic; everything else must stay byte for byte. */
function normalise(dump: string): string {
  return dump.replace(/\[\d+:\d+\]/g, '[0:0]');
}

function withoutOwned(dump: string): string {
  return dump.split('\n').filter((l) => !l.includes('MCS-')).join('\n');
}

for (const backend of ['nft', 'legacy'] as const) {
  describe(`agent on the ${backend} backend: a client on the node reaches the remote cluster's pods through a derived Service`, () => {
    const lab = new Lab(backend);
    let pristine = '';
    let agent: AgentProcess;
    let configPath = '';

    before(async () => {
      await lab.start();
      await lab.addPod({ ip: '10.2.0.10', body: 'chile01/serve-a' });
      await lab.addPod({ ip: '10.2.0.11', body: 'chile01/serve-b' });
      await lab.addPod({ ip: '10.244.1.5', body: 'brazil/client' });
      await lab.routeServiceRange('10.96.0.0/12');
      await lab.restore(KUBE_PROXY_NAT + USER_FILTER);
      pristine = normalise(await lab.saveAll());
      configPath = await lab.writeConfig({ clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16', minSyncInterval: '50ms' });
      lab.apply(derivedServe(), chileSlice(endpoint('10.2.0.10')));
    });
    after(() => lab.stop());

    it('programs the derived ClusterIP ahead of kube-proxy and answers from the remote pod', async () => {
      agent = await lab.startAgent(['--config', configPath]);
      const nat = await lab.waitForRules((t) => t.includes('--to-destination 10.2.0.10:8080'), 'the DNAT rule to 10.2.0.10');
      const prerouting = nat.split('\n').filter((l) => l.startsWith('-A PREROUTING'));
      assert.match(prerouting[0]!, /-j MCS-SERVICES$/);
      assert.match(prerouting[1]!, /-j KUBE-SERVICES$/);
      assert.match(nat, new RegExp(`-A MCS-DISPATCH-50 -d 10.96.0.50/32 -p tcp -m comment --comment "default/derived-serve:http cluster IP" -m tcp --dport 80 -j ${CHAIN}`));
      const r = await lab.requests(URL, 10);
      assert.deepEqual(r.bodies, { 'chile01/serve-a': 10 }, JSON.stringify(r));
    });

    it('a pod in the cluster CIDR reaches it too, through PREROUTING and forwarding', async () => {
      const r = await lab.requests(URL, 5, { fromNs: lab.podNamespace('10.244.1.5') });
      assert.deepEqual(r.bodies, { 'chile01/serve-a': 5 }, JSON.stringify(r));
    });

    it('ClientIP session affinity keeps a client on one endpoint', async () => {
      lab.apply(
        service('default', 'derived-sticky', '10.96.0.60', [{ name: 'http', port: 80 }], { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 300 } } }),
        importedSlice('default', 'chile01', 'sticky-1', 'derived-sticky', [endpoint('10.2.0.10'), endpoint('10.2.0.11')]),
      );
      await lab.waitForRules((t) => t.includes('default/derived-sticky:http -> chile01 10.2.0.11:8080'), 'the sticky service');
      const r = await lab.requests('http://10.96.0.60/', 30);
      assert.equal(Object.keys(r.bodies).length, 1, JSON.stringify(r));
      assert.equal(r.ok, 30);
      lab.api.delete({ apiVersion: 'v1', kind: 'Service' }, 'default', 'derived-sticky');
      lab.api.delete({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice' }, 'default', 'imported-chile01-sticky-1');
    });

    it('traffic follows endpoints as they are added, turn unready and are removed', async () => {
      lab.apply(chileSlice(endpoint('10.2.0.10'), endpoint('10.2.0.11')));
      await lab.waitForRules((t) => t.includes('--to-destination 10.2.0.11:8080'), 'the second endpoint');
      const both = await lab.requests(URL, 60);
      assert.equal(both.ok, 60, JSON.stringify(both));
      assert.ok((both.bodies['chile01/serve-a'] ?? 0) > 5 && (both.bodies['chile01/serve-b'] ?? 0) > 5, JSON.stringify(both));

      lab.apply(chileSlice(endpoint('10.2.0.10', { ready: false }), endpoint('10.2.0.11')));
      await lab.waitForRules((t) => !t.includes('--to-destination 10.2.0.10:8080'), 'the unready endpoint to leave');
      assert.deepEqual((await lab.requests(URL, 10)).bodies, { 'chile01/serve-b': 10 });
    });

    it('a service port without endpoints rejects connections at once instead of timing out', async () => {
      lab.apply(chileSlice());
      await lab.waitForRules((t) => t.includes('has no endpoints'), 'the no-endpoints rule');
      // Refused, not timed out: a connection left to time out ends in ETIMEDOUT.
      const r = await lab.requests(URL, 3);
      assert.deepEqual(r.errors, { ECONNREFUSED: 3 }, JSON.stringify(r));
    });

    it('rules stay and traffic flows while the agent is stopped; a restart adopts them without a restore', async () => {
      lab.apply(chileSlice(endpoint('10.2.0.11')));
      await lab.waitForRules((t) => t.includes('--to-destination 10.2.0.11:8080') && !t.includes('has no endpoints'), 'the endpoint back');
      assert.equal(await agent.stop('SIGTERM'), 0, await agent.logs());
      assert.deepEqual((await lab.requests(URL, 5)).bodies, { 'chile01/serve-b': 5 });
      const before = normalise(await lab.saveAll());
      agent = await lab.startAgent(['--config', configPath]);
      const logs = await waitForLog(agent, '"full sync done"');
      assert.match(logs, /"full":true,[^\n]*"restores":0/);
      assert.equal(normalise(await lab.saveAll()), before);
    });

    it('losing the API server keeps the data plane; changes made meanwhile apply once it is back', async () => {
      lab.api.pause('reset');
      lab.api.closeWatches('abort');
      await waitForLog(agent, 'retry');
      assert.deepEqual((await lab.requests(URL, 5)).bodies, { 'chile01/serve-b': 5 });
      lab.api.resume();
      lab.apply(chileSlice(endpoint('10.2.0.10')));
      await lab.waitForRules((t) => t.includes('--to-destination 10.2.0.10:8080') && !t.includes('10.2.0.11:8080'), 'the change made after the outage');
      assert.deepEqual((await lab.requests(URL, 5)).bodies, { 'chile01/serve-a': 5 });
    });

    it('malformed objects are skipped with a message naming each, and other services keep working', async () => {
      lab.apply(
        service('default', 'derived-noip', '', [{ name: 'http', port: 80 }]),
        importedSlice('default', 'chile01', 'bad-ip', 'derived-serve', [endpoint('10.2.0.300'), endpoint('10.2.0.10')]),
        importedSlice('default', 'chile01', 'no-ports', 'derived-serve', [endpoint('10.2.0.99')], null),
        importedSlice('default', 'peru', 'x', 'derived-serve', [endpoint('10.2.0.11')]),
        importedSlice('default', 'chile01', 'orphan', 'derived-ghost', [endpoint('10.2.0.98')]),
        slice('default', 'fqdn', 'derived-serve', [endpoint('example.com')], { addressType: 'FQDN' }),
      );
      const bad = ['imported-chile01-bad-ip', 'imported-chile01-no-ports', 'imported-peru-x', 'imported-chile01-orphan', 'fqdn'];
      try {
        await lab.waitForRules((t) => t.includes('-> unknown 10.2.0.11:8080'), 'the unknown-cluster endpoint');
        await waitForLog(agent, [
          'Service default/derived-noip has no ClusterIP',
          'EndpointSlice default/imported-chile01-bad-ip endpoint address \\"10.2.0.300\\" is not a valid IPv4 address',
          'EndpointSlice default/imported-chile01-no-ports has no ports',
          'EndpointSlice default/imported-peru-x name matches no configured cluster',
          'EndpointSlice default/imported-chile01-orphan references Service default/derived-ghost',
          'EndpointSlice default/fqdn addressType FQDN is not served',
        ]);
        const nat = await lab.save('nat');
        assert.ok(!nat.includes('10.2.0.99') && !nat.includes('10.2.0.98'), 'the slice without ports and the orphan contribute nothing');
        const r = await lab.requests(URL, 30);
        assert.equal(r.ok, 30, JSON.stringify(r));
      } finally {
        for (const name of bad) lab.api.delete({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice' }, 'default', name);
        lab.api.delete({ apiVersion: 'v1', kind: 'Service' }, 'default', 'derived-noip');
      }
    });

    it('a deleted service loses its chain; kube-proxy\'s and the user\'s rules are untouched by all of it', async () => {
      lab.api.delete({ apiVersion: 'v1', kind: 'Service' }, 'default', 'derived-serve');
      lab.api.delete({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice' }, 'default', 'imported-chile01-serve-abc');
      await lab.waitForRules((t) => !t.includes(CHAIN), 'the chain to go');
      assert.equal(withoutOwned(normalise(await lab.saveAll())), withoutOwned(pristine));
    });

    it('--cleanup leaves the tables exactly as they were before the agent started', async () => {
      lab.apply(derivedServe(), chileSlice(endpoint('10.2.0.10')), service('default', 'serve', '10.96.0.40', [{ name: 'http', port: 80 }]), slice('default', 'serve-x', 'serve', [endpoint('10.1.0.10', { ready: false })]));
      await lab.waitForRules((t) => t.includes(CHAIN), 'the service back');
      assert.equal(await agent.stop('SIGTERM'), 0, await agent.logs());
      const r = await lab.runAgent(['--config', configPath, '--cleanup']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(normalise(await lab.saveAll()), pristine);
      assert.deepEqual(await lab.ipsets(), [], 'the frontend sets are destroyed');
    });

    it('--dry-run prints the whole payload and changes nothing; a bad config fails naming key and value', async () => {
      const before = normalise(await lab.saveAll());
      const dry = await lab.runAgent(['--config', configPath, '--dry-run']);
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /^# ipset: create MCS-FRONTENDS hash:ip,port .*\n(# ipset: add .*\n)+\*nat\n:MCS-DISPATCH-00 - \[0:0\]/);
      assert.match(dry.stdout, new RegExp(`-A ${CHAIN} -p tcp -m comment --comment "default/derived-serve:http -> chile01 10.2.0.10:8080"`));
      assert.equal(normalise(await lab.saveAll()), before);
      const bad = await lab.writeConfig({ minSyncInterval: 'soon' });
      const r = await lab.runAgent(['--config', bad, '--once']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /config key "minSyncInterval": .* \(got "soon"\)/);
    });

    it('--once programs everything in one full sync and exits 0', async () => {
      const r = await lab.runAgent(['--config', configPath, '--once']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(await lab.save('nat'), new RegExp(`-A MCS-DISPATCH-50 -d 10.96.0.50/32 .* -j ${CHAIN}`));
      assert.deepEqual((await lab.requests(URL, 3)).bodies, { 'chile01/serve-a': 3 });
      assert.equal((await lab.runAgent(['--config', configPath, '--cleanup'])).code, 0);
    });
  });
}

/** Waits until the agent's log holds every needle; returns the log. */
async function waitForLog(agent: AgentProcess, needles: string | readonly string[], timeoutMs = AGENT_WAIT_MS): Promise<string> {
  const wanted = typeof needles === 'string' ? [needles] : needles;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const logs = await agent.logs();
    const missing = wanted.filter((n) => !logs.includes(n));
    if (missing.length === 0) return logs;
    if (Date.now() > deadline) throw new Error(`not in the agent's log: ${missing.join(' | ')}\n${logs}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
