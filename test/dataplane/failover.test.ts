import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { httpRequestStream, udpExchange, udpExchangeStream, type HttpSummary } from '../support/netns.js';
import { endpoint, importedSlice, service, slice } from '../support/fixtures.js';
import { Lab, type AgentProcess } from '../support/lab.js';

assert.equal(process.getuid?.(), 0, 'data-plane tests need root: run them as root (CI does)');

const SERVE = 'http://10.96.0.40/';
const DERIVED = 'http://10.96.0.50/';

// kube-proxy's rule for the local `serve`, as it would be on a node: the only rule left for it under policy `off`.
const KUBE_PROXY_SERVE = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-SERVE - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.40/32 -p tcp -m comment --comment "default/serve:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-SERVE
-A KUBE-SVC-SERVE -p tcp -m comment --comment "default/serve:http -> 10.1.0.10:8080" -m tcp -j DNAT --to-destination 10.1.0.10:8080
COMMIT
`;

const serve = (annotations?: Record<string, string>) => service('default', 'serve', '10.96.0.40', [{ name: 'http', port: 80 }], annotations ? { annotations } : {});
const localSlice = (ready = true) => slice('default', 'serve-local', 'serve', [endpoint('10.1.0.10', { ready })]);

describe('locality and failover: local first, remote when local fails, under the service\'s own name', () => {
  const lab = new Lab('nft');
  let agent: AgentProcess;

  before(async () => {
    await lab.start();
    await lab.addPod({ ip: '10.1.0.10', body: 'brazil' });
    await lab.addPod({ ip: '10.2.0.10', body: 'chile01' });
    await lab.addPod({ ip: '10.3.0.10', body: 'peru' });
    await lab.addUdpServer('10.1.0.10', 5353, 'brazil-udp');
    await lab.addUdpServer('10.2.0.10', 5353, 'chile01-udp');
    await lab.routeServiceRange('10.96.0.0/12');
    await lab.restore(KUBE_PROXY_SERVE);
    lab.apply(
      serve(), localSlice(),
      service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]),
      importedSlice('default', 'chile01', 'serve-1', 'derived-serve', [endpoint('10.2.0.10')]),
      importedSlice('default', 'peru', 'serve-1', 'derived-serve', [endpoint('10.3.0.10')]),
      service('default', 'dns', '10.96.0.30', [{ name: 'dns', port: 53, protocol: 'UDP' }]),
      slice('default', 'dns-local', 'dns', [endpoint('10.1.0.10')], { ports: [{ name: 'dns', port: 5353, protocol: 'UDP' }] }),
      service('default', 'derived-dns', '10.96.0.31', [{ name: 'dns', port: 53, protocol: 'UDP' }]),
      importedSlice('default', 'chile01', 'dns-1', 'derived-dns', [endpoint('10.2.0.10')], [{ name: 'dns', port: 5353, protocol: 'UDP' }]),
    );
    const config = await lab.writeConfig({
      clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }, { name: 'peru' }], minSyncInterval: '50ms',
      healthProbe: { interval: '300ms', timeout: '150ms', unhealthyThreshold: 2, healthyThreshold: 2 },
    });
    agent = await lab.startAgent(['--config', config]);
    await lab.waitForRules((t) => t.includes('10.96.0.40/32') && t.includes('10.96.0.31/32'), 'both groups programmed');
  });
  after(() => lab.stop());

  it('serve and derived-serve both answer from the local cluster while it has ready endpoints', async () => {
    assert.deepEqual((await lab.requests(SERVE, 10)).bodies, { brazil: 10 });
    assert.deepEqual((await lab.requests(DERIVED, 10)).bodies, { brazil: 10 });
  });

  for (const [name, url] of [['serve', SERVE], ['derived-serve', DERIVED]] as const) {
    it(`under a steady stream to ${name}, local unready moves answers to the remote clusters and back, with no failed request`, async () => {
      // The stream runs until every step has been seen in its answers, however slowly this machine goes.
      const stream = httpRequestStream(lab.nodeNs, url, { intervalMs: 10 });
      const remote = (s: HttpSummary) => (s.bodies.chile01 ?? 0) + (s.bodies.peru ?? 0);
      let r: HttpSummary;
      try {
        await stream.until((s) => (s.bodies.brazil ?? 0) > 0, 'answers from the local cluster');
        lab.apply(localSlice(false));
        await lab.waitForRules((t) => !t.includes('-> brazil 10.1.0.10:8080'), 'local endpoints to leave');
        await stream.until((s) => remote(s) > 0, 'answers from the remote clusters');
        lab.apply(localSlice(true));
        await lab.waitForRules((t) => t.includes('-> brazil 10.1.0.10:8080'), 'local endpoints back');
        const local = stream.progress.bodies.brazil ?? 0;
        await stream.until((s) => (s.bodies.brazil ?? 0) > local, 'answers from the local cluster again');
      } finally {
        r = await stream.stop();
      }
      assert.equal(r.failed, 0, JSON.stringify(r));
      assert.ok(r.bodies.brazil! > 0 && (r.bodies.chile01 ?? 0) + (r.bodies.peru ?? 0) > 0, JSON.stringify(r));
      assert.deepEqual((await lab.requests(url, 10)).bodies, { brazil: 10 });
    });
  }

  it('a remote cluster that stops answering leaves the selection after the threshold and rejoins when back', async () => {
    lab.apply(localSlice(false));
    await lab.waitForRules((t) => t.includes('10.3.0.10:8080') && t.includes('10.2.0.10:8080') && !t.includes('-> brazil 10.1.0.10:8080'), 'both remote clusters');
    await lab.setPodLink('10.3.0.10', false);
    await lab.waitForRules((t) => !t.includes('10.3.0.10:8080'), 'peru to leave');
    assert.deepEqual((await lab.requests(SERVE, 20)).bodies, { chile01: 20 });
    assert.match(await agent.logs(), /cluster peru is unreachable/);
    await lab.setPodLink('10.3.0.10', true);
    await lab.waitForRules((t) => t.includes('10.3.0.10:8080'), 'peru to rejoin');
    const r = await lab.requests(SERVE, 40);
    assert.ok(r.bodies.peru! > 0 && r.bodies.chile01! > 0, JSON.stringify(r));
    lab.apply(localSlice(true));
  });

  it('active-active weights hold within statistical tolerance over many connections', async () => {
    lab.apply(serve({ 'clusterset-proxy.io/traffic-policy': 'active-active', 'clusterset-proxy.io/cluster-weights': 'brazil=3,chile01=1,peru=0' }));
    await lab.waitForRules((t) => t.includes('-> brazil 10.1.0.10:8080') && t.includes('-> chile01 10.2.0.10:8080') && !t.includes('10.3.0.10'), 'weighted rules');
    const r = await lab.requests(SERVE, 400);
    assert.equal(r.ok, 400, JSON.stringify(r));
    // Binomial(400, 0.75): mean 300, sd 8.7; five sd either side.
    assert.ok(r.bodies.brazil! >= 257 && r.bodies.brazil! <= 343, JSON.stringify(r));
    assert.equal(r.bodies.peru, undefined);
  });

  it('failover sends everything to the first cluster of the order that has endpoints', async () => {
    lab.apply(serve({ 'clusterset-proxy.io/traffic-policy': 'failover', 'clusterset-proxy.io/failover-order': 'peru,chile01' }));
    await lab.waitForRules((t) => !t.includes('-> brazil 10.1.0.10:8080'), 'peru only');
    assert.deepEqual((await lab.requests(SERVE, 10)).bodies, { peru: 10 });
  });

  it('policy off leaves kube-proxy\'s rules as the only ones for the ClusterIP', async () => {
    lab.apply(serve({ 'clusterset-proxy.io/traffic-policy': 'off' }));
    const nat = await lab.waitForRules((t) => !t.includes('-A MCS-DISPATCH-40 -d 10.96.0.40/32'), 'the group to leave');
    assert.ok(!nat.includes('10.96.0.50/32'), 'derived-serve is left alone too');
    assert.deepEqual(nat.split('\n').filter((l) => l.includes('10.96.0.40')), [
      '-A KUBE-SERVICES -d 10.96.0.40/32 -p tcp -m comment --comment "default/serve:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-SERVE',
    ]);
    assert.deepEqual((await lab.requests(SERVE, 5)).bodies, { brazil: 5 });
  });

  it('a malformed annotation is reported by name and value, the default policy applies, nothing else is affected', async () => {
    lab.apply(serve({ 'clusterset-proxy.io/traffic-policy': 'fastest' }));
    await lab.waitForRules((t) => t.includes('-A MCS-DISPATCH-40 -d 10.96.0.40/32'), 'the group back under the default policy');
    assert.deepEqual((await lab.requests(SERVE, 10)).bodies, { brazil: 10 });
    assert.match(await agent.logs(), /Service default\/serve annotation clusterset-proxy.io\/traffic-policy: \\"fastest\\" must be one of/);
    assert.deepEqual(await udpExchange(lab.nodeNs, '10.96.0.30', 53, 2, 200), ['brazil-udp', 'brazil-udp']);
  });

  it('UDP: a client that keeps sending follows the selection at once when its endpoint is removed', async () => {
    // One flow, a datagram every 100 ms, until it has seen the switch and ten answers after it.
    const flow = udpExchangeStream(lab.nodeNs, '10.96.0.30', 53, 100);
    let answers: string[];
    try {
      await flow.until((a) => a.length > 0, 'the first answer');
      lab.apply(slice('default', 'dns-local', 'dns', [endpoint('10.1.0.10', { ready: false })], { ports: [{ name: 'dns', port: 5353, protocol: 'UDP' }] }));
      await flow.until((a) => a.includes('chile01-udp') && a.length - a.indexOf('chile01-udp') >= 10, 'ten answers after the first from chile01');
    } finally {
      answers = await flow.stop();
    }
    const first = answers.indexOf('chile01-udp');
    assert.ok(answers[0] === 'brazil-udp' && first > 0, answers.join(','));
    // Without the conntrack flush the old flow would keep reaching brazil's live pod.
    assert.ok(answers.slice(first).every((a) => a === 'chile01-udp'), answers.join(','));
  });
});
