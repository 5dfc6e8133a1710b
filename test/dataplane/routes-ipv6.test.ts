import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { waitFor } from '../support/api-server.js';
import { httpRequests } from '../support/netns.js';
import type { RunningAgent } from '../support/route-lab.js';
import { vxlanLinkLocal, vxlanMac } from '../../src/routes/plan.js';
import { Ipv6RouteLab, NODE_IP4, NODE_IP6, PODS4, PODS6, REMOTE4, REMOTE6, ROUTE_TABLE } from '../support/ipv6-route-lab.js';

assert.equal(process.getuid?.(), 0, 'data-plane tests need root: run them as root (CI does)');

const url6 = (ip: string) => `http://[${ip}]:8080/`;
/** Over the tunnel, the IPv6 next hop is the link-local address of the gateway's VXLAN interface. */
const tunnel6 = (gw: 'gw-1' | 'gw-2') => vxlanLinkLocal(vxlanMac(gw));
const url4 = (ip: string) => `http://${ip}:8080/`;

async function waitForLog(agent: RunningAgent, needle: RegExp, timeoutMs = 60_000): Promise<string> {
  return waitFor(async () => {
    const logs = await agent.logs();
    return needle.test(logs) ? logs : null;
  }, `${needle} in the agent's log`, { timeoutMs, intervalMs: 50 });
}

/** Waits as lab.waitForRoutes does, generously (agents start slowly on a loaded machine); a timeout carries the member agent's log. */
async function routed(lab: Ipv6RouteLab, agent: RunningAgent | undefined, cidrs: readonly string[], via: string): Promise<string> {
  return lab.waitForRoutes('node-1', cidrs, via, 60_000).catch(async (err: Error) => {
    throw new Error(`${err.message}\nagent log:\n${(await agent?.logs()) ?? ''}`);
  });
}

/** The agent's objects left on a member: rules at its priority, routes of its table (both families), its interface. */
async function agentObjects(lab: Ipv6RouteLab, member: 'node-1'): Promise<string> {
  const links = (await execa('ip', ['-n', lab.nsOf(member), '-o', 'link'])).stdout.split('\n').filter((l) => l.includes('mcs-vx0'));
  return [...await lab.agentRules(member), await lab.tableRoutes(member, '-4'), await lab.tableRoutes(member, '-6'), ...links].filter((l) => l !== '').join('\n');
}

for (const mode of ['vxlan', 'direct'] as const) {
  describe(`cross-cluster routes over an IPv6-only node network, ${mode} mode`, () => {
    const lab = new Ipv6RouteLab('IPv6', mode);
    const agents = new Map<string, RunningAgent>();

    before(async () => {
      await lab.start();
      const configPath = await lab.writeConfig();
      for (const member of ['gw-1', 'gw-2', 'node-1'] as const) agents.set(member, lab.startAgent(member, configPath));
    });
    after(() => lab.stop());

    it('routes the remote IPv6 pod CIDRs to the gateway (over VXLAN: its interface\'s link-local address; direct: its IPv6 InternalIP); IPv6 requests from the node are answered through it', async (t) => {
      const table = await routed(lab, agents.get('node-1'), REMOTE6, mode === 'vxlan' ? tunnel6('gw-1') : NODE_IP6['gw-1']);
      if (mode === 'vxlan') {
        assert.ok(table.split('\n').map((l) => l.trim()).includes(`fd00:2::/56 via ${tunnel6('gw-1')} dev mcs-vx0 proto static metric 1024 pref medium`), table);
        const { stdout } = await execa('ip', ['-n', lab.ns.node, '-d', 'link', 'show', 'mcs-vx0']);
        assert.match(stdout, /vxlan id 4097 .*dstport 4801 nolearning/);
        assert.match(stdout, /alias clusterset-proxy: vxlan underlay IPv6/);
        const neigh = (await execa('ip', ['-n', lab.ns.node, '-6', 'neigh', 'show', 'dev', 'mcs-vx0'])).stdout;
        assert.ok(neigh.split('\n').map((l) => l.trim()).includes(`${tunnel6('gw-1')} lladdr ${vxlanMac('gw-1')} PERMANENT`), neigh);
        const fdb = (await execa('bridge', ['-n', lab.ns.node, 'fdb', 'show', 'dev', 'mcs-vx0'])).stdout;
        assert.match(fdb, /dst fd00:50::11 self permanent/);
      } else {
        assert.match(table, /^fd00:2::\/56 via fd00:50::11 dev eth0 proto static metric 1024/m);
      }
      assert.deepEqual(await lab.agentRules('node-1'), [`${ROUTE_TABLE}:\tfrom all to fd00:2::/56 lookup ${ROUTE_TABLE}`, `${ROUTE_TABLE}:\tfrom all to fd00:3::/56 lookup ${ROUTE_TABLE}`]);
      assert.equal(await lab.tableRoutes('gw-1', '-6'), '', 'no route through itself on the gateway');
      const v4 = (await execa('ip', ['-n', lab.ns.node, '-4', '-o', 'addr'])).stdout.split('\n').filter((l) => l !== '' && !/ inet 127\./.test(l));
      assert.deepEqual(v4, [], 'the node has no IPv4 address outside 127.0.0.0/8: the tunnel can only run over IPv6');
      await waitForLog(agents.get('gw-1')!, /"role":"gateway"[^\n]*"msg":"active gateway"/);
      await waitFor(async () => (await execa('ip', ['netns', 'exec', lab.ns['gw-1'], 'sysctl', '-n', 'net.ipv6.conf.all.forwarding'])).stdout.trim() === '1' || null, 'IPv6 forwarding on gw-1', { timeoutMs: 60_000 });
      const before = await lab.tunnelPackets('gw-1');
      const chile = await httpRequests(lab.ns.node, url6(PODS6.chile01), 20);
      const peru = await httpRequests(lab.ns.node, url6(PODS6.peru), 20);
      assert.deepEqual([chile.bodies, chile.errors], [{ 'chile01/serve-a': 20 }, {}]);
      assert.deepEqual([peru.bodies, peru.errors], [{ 'peru/serve-a': 20 }, {}]);
      assert.ok((await lab.tunnelPackets('gw-1')) - before >= 40, 'the requests went through gw-1');
      t.diagnostic(`${mode}: 40 IPv6 requests through gw-1, all answered`);
    });

    it('the gateway label moves: IPv6 routes, next hop and FDB entry re-point to the new gateway and IPv6 traffic continues through it', async () => {
      lab.setGateway('gw-1', false);
      await lab.moveTunnel('gw-2', 'gw-1');
      await routed(lab, agents.get('node-1'), REMOTE6, mode === 'vxlan' ? tunnel6('gw-2') : NODE_IP6['gw-2']);
      await waitForLog(agents.get('gw-2')!, /"role":"gateway"/);
      await waitFor(async () => (await execa('ip', ['netns', 'exec', lab.ns['gw-2'], 'sysctl', '-n', 'net.ipv6.conf.all.forwarding'])).stdout.trim() === '1' || null, 'IPv6 forwarding on gw-2', { timeoutMs: 60_000 });
      if (mode === 'vxlan') {
        const neigh = (await execa('ip', ['-n', lab.ns.node, '-6', 'neigh', 'show', 'dev', 'mcs-vx0', 'nud', 'permanent'])).stdout;
        assert.deepEqual(neigh.split('\n').map((l) => l.split(' ')[0]), [tunnel6('gw-2')], 'the old next hop is gone');
        const fdb = (await execa('bridge', ['-n', lab.ns.node, 'fdb', 'show', 'dev', 'mcs-vx0'])).stdout;
        assert.match(fdb, /dst fd00:50::12 self permanent/);
        assert.doesNotMatch(fdb, /fd00:50::11/);
      }
      const before = await lab.tunnelPackets('gw-2');
      const chile = await httpRequests(lab.ns.node, url6(PODS6.chile01), 20);
      assert.deepEqual([chile.bodies, chile.errors], [{ 'chile01/serve-a': 20 }, {}]);
      assert.ok((await lab.tunnelPackets('gw-2')) - before >= 20, 'the requests went through gw-2');
    });

    it('--cleanup removes the IPv6 rules, routes and the interface', async () => {
      await agents.get('node-1')!.stop();
      assert.notEqual(await agentObjects(lab, 'node-1'), '', 'a stopped agent leaves its routes in place');
      const configPath = await lab.writeConfig();
      const r = await lab.runAgent('node-1', ['--config', configPath, '--cleanup']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await agentObjects(lab, 'node-1'), '');
    });
  });
}

describe('cross-cluster routes on a dual-stack node network: both families of remote pods through one tunnel', () => {
  const lab = new Ipv6RouteLab('dual', 'vxlan');
  let node: RunningAgent | undefined;

  before(async () => {
    await lab.start();
    const configPath = await lab.writeConfig();
    for (const member of ['gw-1', 'gw-2'] as const) lab.startAgent(member, configPath);
    node = lab.startAgent('node-1', configPath);
  });
  after(() => lab.stop());

  it('IPv4 CIDRs go via the gateway\'s IPv4 address, IPv6 ones via its IPv6 address, over the IPv4 underlay; requests of both families are answered', async (t) => {
    const table4 = await routed(lab, node, REMOTE4, NODE_IP4['gw-1']);
    const table6 = await routed(lab, node, REMOTE6, tunnel6('gw-1'));
    assert.match(table4, /^10\.2\.0\.0\/16 via 192\.168\.50\.11 dev mcs-vx0 proto static onlink/m);
    assert.ok(table6.split('\n').map((l) => l.trim()).includes(`fd00:2::/56 via ${tunnel6('gw-1')} dev mcs-vx0 proto static metric 1024 pref medium`), table6);
    const { stdout } = await execa('ip', ['-n', lab.ns.node, '-d', 'link', 'show', 'mcs-vx0']);
    assert.match(stdout, /alias clusterset-proxy: vxlan underlay IPv4/);
    const fdb = (await execa('bridge', ['-n', lab.ns.node, 'fdb', 'show', 'dev', 'mcs-vx0'])).stdout;
    assert.match(fdb, /dst 192\.168\.50\.11 self permanent/);
    assert.deepEqual((await lab.agentRules('node-1')).map((l) => l.split('\t')[1]), [
      `from all to 10.2.0.0/16 lookup ${ROUTE_TABLE}`, `from all to 10.3.0.0/16 lookup ${ROUTE_TABLE}`,
      `from all to fd00:2::/56 lookup ${ROUTE_TABLE}`, `from all to fd00:3::/56 lookup ${ROUTE_TABLE}`,
    ]);
    await waitFor(async () => (await execa('ip', ['netns', 'exec', lab.ns['gw-1'], 'sysctl', '-n', 'net.ipv6.conf.all.forwarding'])).stdout.trim() === '1' || null, 'IPv6 forwarding on gw-1', { timeoutMs: 60_000 });
    const before = await lab.tunnelPackets('gw-1');
    const results = [];
    for (const url of [url4(PODS4.chile01), url6(PODS6.chile01), url4(PODS4.peru), url6(PODS6.peru)]) {
      const r = await httpRequests(lab.ns.node, url, 10);
      results.push(`${url} ${JSON.stringify(r.bodies)} ${JSON.stringify(r.errors)}`);
    }
    assert.deepEqual(results, [
      `${url4(PODS4.chile01)} {"chile01/serve-a":10} {}`, `${url6(PODS6.chile01)} {"chile01/serve-a":10} {}`,
      `${url4(PODS4.peru)} {"peru/serve-a":10} {}`, `${url6(PODS6.peru)} {"peru/serve-a":10} {}`,
    ]);
    assert.ok((await lab.tunnelPackets('gw-1')) - before >= 40, 'all of them went through gw-1');
    t.diagnostic('dual-stack: 20 IPv4 and 20 IPv6 requests through one VXLAN interface, all answered');
  });
});
