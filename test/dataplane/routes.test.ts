import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { endpoint, importedSlice, service } from '../support/fixtures.js';
import { waitFor } from '../support/api-server.js';
import { AGENT_WAIT_MS } from '../support/lab.js';
import { BASE_CLUSTERS, GATEWAY_IP, RouteLab, ROUTE_TABLE, summariseStream, type RunningAgent } from '../support/route-lab.js';

assert.equal(process.getuid?.(), 0, 'data-plane tests need root: run them as root (CI does)');

const CHILE_URL = 'http://10.96.0.50/';
const PERU_URL = 'http://10.96.0.60/';
const REMOTE = ['10.2.0.0/16', '10.3.0.0/16'];

async function waitForLog(agent: RunningAgent, needle: string | RegExp, timeoutMs = AGENT_WAIT_MS): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const logs = await agent.logs();
    if (typeof needle === 'string' ? logs.includes(needle) : needle.test(logs)) return logs;
    if (Date.now() > deadline) throw new Error(`no ${needle} in the agent's log:\n${logs}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const mode of ['vxlan', 'direct'] as const) {
  describe(`cross-cluster routes, ${mode} mode: the node reaches remote pods through the active gateway`, () => {
    const lab = new RouteLab(mode);
    const agents = new Map<string, RunningAgent>();
    let pristine = '';
    let configPath = '';

    before(async () => {
      await lab.start();
      lab.api.apply(service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]));
      lab.api.apply(importedSlice('default', 'chile01', 'serve-abc', 'derived-serve', [endpoint('10.2.0.10')]));
      lab.api.apply(service('default', 'derived-api', '10.96.0.60', [{ name: 'http', port: 80 }]));
      lab.api.apply(importedSlice('default', 'peru', 'api-abc', 'derived-api', [endpoint('10.3.0.10')]));
      pristine = await lab.routingState('node-1');
      configPath = await lab.writeConfig();
      for (const member of ['gw-1', 'gw-2', 'node-1'] as const) agents.set(member, lab.startAgent(member, configPath));
    });
    after(() => lab.stop());

    it('routes every remote CIDR to the active gateway; the answer comes back through it', async (t) => {
      const table = await lab.waitForRoutes('node-1', REMOTE, GATEWAY_IP['gw-1']);
      if (mode === 'vxlan') {
        assert.match(table, /10\.2\.0\.0\/16 via 192\.168\.50\.11 dev mcs-vx0 proto static onlink/);
        const { stdout } = await import('execa').then(({ execa }) => execa('ip', ['-n', lab.ns.node, '-d', 'link', 'show', 'mcs-vx0']));
        assert.match(stdout, /mtu 1450 .*\n.*\n\s+vxlan id 4097 .*dstport 4801 nolearning/);
      } else {
        assert.match(table, /10\.2\.0\.0\/16 via 192\.168\.50\.11 dev eth0 proto static/);
      }
      const rules = [`${ROUTE_TABLE}:\tfrom all to 10.2.0.0/16 lookup ${ROUTE_TABLE}`, `${ROUTE_TABLE}:\tfrom all to 10.3.0.0/16 lookup ${ROUTE_TABLE}`];
      // Rules are added right after their routes, in the same sync.
      await waitFor(async () => JSON.stringify((await lab.routingState('node-1')).split('\n').filter((l) => l.startsWith(`${ROUTE_TABLE}:`))) === JSON.stringify(rules), 'the rules');
      assert.equal(await lab.tableRoutes('gw-1'), '', 'no route through itself on the gateway');
      await lab.waitForRoutes('gw-2', REMOTE, GATEWAY_IP['gw-1']);
      await waitForLog(agents.get('gw-1')!, /"role":"gateway"[^\n]*"msg":"active gateway"/);
      const tunnel = await lab.tunnelPackets('gw-1');
      await waitForLog(agents.get('node-1')!, '"full sync done"');
      const chile = await lab.stream(CHILE_URL, 300, 10);
      const peru = await lab.stream(PERU_URL, 300, 10);
      assert.ok(chile.length > 5 && chile.every((r) => r.ok && r.outcome === 'chile01/serve-a'), JSON.stringify(summariseStream(chile)));
      assert.ok(peru.length > 5 && peru.every((r) => r.ok && r.outcome === 'peru/serve-a'), JSON.stringify(summariseStream(peru)));
      assert.ok((await lab.tunnelPackets('gw-1')) - tunnel >= chile.length + peru.length, 'the requests went through gw-1');
      t.diagnostic(`${mode}: ${chile.length + peru.length} requests through gw-1, all answered`);
    });

    it('the gateway label moves under a steady stream: routes re-point to the new gateway and traffic continues through it', async (t) => {
      // The stream only measures the outage (a figure, not a bound: this machine is shared).
      const streaming = lab.stream(CHILE_URL, 3000, 20, 1000);
      await new Promise((r) => setTimeout(r, 1000));
      const moved = Date.now();
      lab.setNode('gw-1', { gateway: false });
      lab.setNode('gw-2', { gateway: true });
      await lab.moveTunnel('gw-2', 'gw-1');
      await lab.waitForRoutes('node-1', REMOTE, GATEWAY_IP['gw-2']);
      const repointedMs = Date.now() - moved;
      const results = await streaming;
      const logs = await waitForLog(agents.get('node-1')!, 'active gateway changed');
      const line = JSON.parse(logs.split('\n').find((l) => l.includes('active gateway changed'))!) as { eventToAppliedMs: number; previous: string; gateway: string };
      const s = summariseStream(results);
      const figures = `${mode}: label moved → node routes re-pointed in ${repointedMs} ms (agent: Node event → applied ${line.eventToAppliedMs} ms); ${s.failed}/${s.sent} requests failed, outage ${s.outageMs} ms ${JSON.stringify(s.errors)}`;
      t.diagnostic(figures);
      console.log(`# gateway failover figures: ${figures}`);
      assert.equal(line.previous, 'gw-1');
      assert.equal(line.gateway, 'gw-2');
      // Traffic continues once the routes point at gw-2: every request of a new stream is answered.
      const resumed = await lab.stream(CHILE_URL, 300, 10);
      assert.ok(resumed.length > 5 && resumed.every((r) => r.ok && r.outcome === 'chile01/serve-a'), `${figures}; after the move: ${JSON.stringify(summariseStream(resumed))}`);
      assert.equal(await lab.tableRoutes('gw-2'), '', 'the new gateway routes nothing through itself');
      await lab.waitForRoutes('gw-1', REMOTE, GATEWAY_IP['gw-2']);

      // The old gateway goes away entirely: traffic does not depend on it.
      await lab.ip(lab.ns['gw-1'], 'link', 'set', 'eth0', 'down');
      const tunnel = await lab.tunnelPackets('gw-2');
      const after = await lab.stream(CHILE_URL, 300, 10);
      assert.ok(after.every((r) => r.ok), JSON.stringify(summariseStream(after)));
      assert.ok((await lab.tunnelPackets('gw-2')) - tunnel >= after.length, 'the requests went through gw-2');
      await lab.ip(lab.ns['gw-1'], 'link', 'set', 'eth0', 'up');
    });

    it('a gateway turning NotReady hands over to the next candidate; with none, remote CIDRs become unreachable', async () => {
      lab.setNode('gw-1', { gateway: true });
      lab.setNode('gw-2', { ready: false });
      await lab.moveTunnel('gw-1', 'gw-2');
      await lab.waitForRoutes('node-1', REMOTE, GATEWAY_IP['gw-1']);
      assert.ok((await lab.stream(CHILE_URL, 200, 10)).every((r) => r.ok));
      lab.setNode('gw-1', { ready: false });
      await lab.waitForRoutes('node-1', REMOTE, null);
      assert.match(await lab.tableRoutes('node-1'), /unreachable 10\.2\.0\.0\/16/);
      // From the node itself the re-routed SYN is dropped (a pod would get host-unreachable at once): nothing leaks elsewhere.
      const failing = await lab.stream(CHILE_URL, 200, 50, 500);
      assert.ok(failing.every((r) => !r.ok), JSON.stringify(summariseStream(failing)));
      lab.setNode('gw-1', { ready: true });
      lab.setNode('gw-2', { ready: true });
      await lab.waitForRoutes('node-1', REMOTE, GATEWAY_IP['gw-1']);
    });

    it('overlapping CIDRs: an error naming both clusters and CIDRs, no route for them, endpoints left out; the others keep working', async () => {
      const node = agents.get('node-1')!;
      assert.equal(await node.stop('SIGTERM'), 0, await node.logs());
      const overlapping = await lab.writeConfig({ clusters: [...BASE_CLUSTERS, { name: 'mexico', podCIDRs: ['10.2.128.0/17'] }] });
      const restarted = lab.startAgent('node-1', overlapping);
      agents.set('node-1', restarted);
      const logs = await waitForLog(restarted, 'overlapping networks');
      const error = logs.split('\n').find((l) => l.includes('overlapping networks'))!;
      assert.match(error, /"level":"error"/);
      assert.match(error, /cluster chile01's pod CIDR 10\.2\.0\.0\/16 overlaps cluster mexico's pod CIDR 10\.2\.128\.0\/17/);
      await lab.waitForRoutes('node-1', ['10.2.0.0/16', '10.2.128.0/17'], null);
      await lab.waitForRoutes('node-1', ['10.3.0.0/16'], GATEWAY_IP['gw-1']);
      const state = await lab.routingState('node-1');
      assert.ok(!state.includes('to 10.2.0.0/16') && !state.includes('to 10.2.128.0/17'), 'no rule for the overlapping ranges');
      await waitForLog(restarted, 'endpoint 10.2.0.10 of cluster chile01 is in chile01\'s pod CIDR 10.2.0.0/16');
      // That is the model; the kernel follows with the restarted agent's first full sync. Until then the
      // previous run's DNAT to 10.2.0.10 stays (rules outlive the agent) and a connection to it times out.
      await waitFor(async () => {
        const nat = await lab.natTable('node-1');
        return nat.includes('default/derived-serve:http has no endpoints') && !nat.includes('10.2.0.10:8080');
      }, 'derived-serve without endpoints in the nat table', { timeoutMs: AGENT_WAIT_MS, intervalMs: 50 });
      const peru = await lab.stream(PERU_URL, 300, 10);
      assert.ok(peru.every((r) => r.ok && r.outcome === 'peru/serve-a'), JSON.stringify(summariseStream(peru)));
      const chile = await lab.stream(CHILE_URL, 100, 20);
      assert.ok(chile.every((r) => r.outcome === 'ECONNREFUSED'), `the endpoint was left out, so the service has none: ${JSON.stringify(summariseStream(chile))}`);
    });

    it('--cleanup leaves the rules, routing tables and links exactly as they were before the agent started', async () => {
      for (const [member, agent] of agents) assert.equal(await agent.stop('SIGTERM'), 0, `${member}\n${await agent.logs()}`);
      assert.notEqual(await lab.routingState('node-1'), pristine, 'the agent left its routes in place when stopped');
      for (const member of ['node-1', 'gw-1', 'gw-2'] as const) {
        const r = await lab.runAgent(member, ['--config', configPath, '--cleanup']);
        assert.equal(r.code, 0, r.stderr);
      }
      assert.equal(await lab.routingState('node-1'), pristine);
      for (const gw of ['gw-1', 'gw-2'] as const) {
        const state = await lab.routingState(gw);
        assert.ok(!state.includes('mcs-vx0') && !state.includes(`lookup ${ROUTE_TABLE}`) && !state.includes(`table ${ROUTE_TABLE}`), state);
      }
    });
  });
}
