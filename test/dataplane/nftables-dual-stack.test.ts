// Dual stack in nftables mode, with real IPv6 packets: the agent programs
// table ip clusterset-proxy and table ip6 clusterset-proxy; a client in the
// node (nat output path) or in a pod (prerouting path) connects to a
// Service's IPv6 ClusterIP and a pod of the chosen cluster answers. IPv6
// fails over to the other cluster on its own while IPv4 stays local; an
// IPv6 frontend without endpoints is refused; kube-proxy's `ip6 kube-proxy`
// table, DNATing the same ClusterIP to a pod answering "kube-proxy", is
// never reached and never touched; a deleted ip6 table is rebuilt by the
// next full sync; --cleanup deletes both tables and nothing else.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1EndpointSlice } from '@kubernetes/client-node';
import { endpoint, importedSlice, service, slice } from '../support/fixtures.js';
import { Lab, type AgentProcess } from '../support/lab.js';
import { netnsExec } from '../support/netns.js';

assert.equal(process.getuid?.(), 0, 'data-plane tests need root: run them as root (CI does)');

const KUBE_PROXY_POD6 = 'fd00:9::10';

// kube-proxy's nftables mode, IPv6 half: its table, its service-ips map and
// nat chains at dstnat priority, sending derived-serve's IPv6 ClusterIP to its own pod.
const KUBE_PROXY_NFT6 = `table ip6 kube-proxy {
  map service-ips {
    type ipv6_addr . inet_proto . inet_service : verdict
    elements = { fd00:96::50 . tcp . 80 : goto service-serve }
  }
  chain service-serve {
    meta l4proto tcp dnat to [${KUBE_PROXY_POD6}]:8080
  }
  chain nat-prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip6 daddr . meta l4proto . th dport vmap @service-ips
  }
  chain nat-output {
    type nat hook output priority -100; policy accept;
    ip6 daddr . meta l4proto . th dport vmap @service-ips
  }
}
`;

const dual = (name: string, ip4: string, ip6: string) =>
  service('default', name, ip4, [{ name: 'http', port: 80 }], { clusterIPs: [ip4, ip6], ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'RequireDualStack' });
const v6 = (s: V1EndpointSlice): V1EndpointSlice => ({ ...s, addressType: 'IPv6' });
const localSlice6 = (ready = true) => v6(slice('default', 'serve-local6', 'serve', [endpoint('fd00:1::10', { ready })]));

describe('nftables mode, dual stack: table ip6 clusterset-proxy serves IPv6 ClusterIPs ahead of kube-proxy\'s ip6 table, each family selecting on its own', () => {
  const lab = new Lab('nft');
  let agent: AgentProcess;
  let chile = '';
  let tablesBefore = '';
  let kubeProxy6 = '';

  const nft = async (...args: string[]) => (await netnsExec(lab.nodeNs, 'nft', args, { reject: false })).stdout;
  const table6 = () => nft('list', 'table', 'ip6', 'clusterset-proxy');
  const waitForTable6 = async (predicate: (text: string) => boolean, what: string): Promise<void> => {
    let last = '';
    for (let i = 0; i < 1200; i++) {
      lab.throwIfAgentExited();
      last = await table6();
      if (predicate(last)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`table ip6 clusterset-proxy never showed ${what}:\n${last}${await lab.agentLogTails()}`);
  };
  const config = () => lab.writeConfig({
    clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], minSyncInterval: '50ms', syncPeriod: '2s',
    clusterCIDR: ['10.1.0.0/16', 'fd00:1::/48'],
  });

  before(async () => {
    await lab.start();
    await lab.addPod({ ip: '10.1.0.10', ip6: 'fd00:1::10', body: 'brazil' });
    chile = await lab.addPod({ ip: '10.2.0.10', ip6: 'fd00:2::10', body: 'chile01' });
    await lab.addPod({ ip: '10.9.0.10', ip6: KUBE_PROXY_POD6, body: 'kube-proxy' });
    await lab.routeServiceRange('10.96.0.0/12');
    await lab.routeServiceRange('fd00:96::/112');
    await netnsExec(lab.nodeNs, 'nft', ['-f', '-'], { input: KUBE_PROXY_NFT6 });
    kubeProxy6 = await nft('list', 'table', 'ip6', 'kube-proxy');
    assert.deepEqual((await lab.requests('http://[fd00:96::50]/', 2)).bodies, { 'kube-proxy': 2 }, 'kube-proxy\'s table answers before the agent runs');
    tablesBefore = await nft('list', 'tables');
    lab.apply(
      dual('serve', '10.96.0.40', 'fd00:96::40'),
      slice('default', 'serve-local', 'serve', [endpoint('10.1.0.10')]),
      localSlice6(),
      dual('derived-serve', '10.96.0.50', 'fd00:96::50'),
      importedSlice('default', 'chile01', 'serve-1', 'derived-serve', [endpoint('10.2.0.10')]),
      v6(importedSlice('default', 'chile01', 'serve-6', 'derived-serve', [endpoint('fd00:2::10')])),
      service('default', 'derived-only6', 'fd00:96::60', [{ name: 'http', port: 80 }], { clusterIPs: ['fd00:96::60'], ipFamilies: ['IPv6'] }),
      v6(importedSlice('default', 'chile01', 'only6-1', 'derived-only6', [endpoint('fd00:2::10')])),
    );
    agent = await lab.startAgent(['--config', await config(), '--proxy-mode', 'nftables']);
    await waitForTable6((t) => t.includes('fd00:96::40 . tcp . 80') && t.includes('fd00:96::60 . tcp . 80') && t.includes('fd00:1::10 . 8080'), 'the IPv6 ClusterIPs');
  });
  after(() => lab.stop());

  it('a dual-stack Service answers on both ClusterIPs, from the node and from a pod; an IPv6-only Service on its one; kube-proxy\'s rule is not reached', async () => {
    const ip4 = await nft('list', 'table', 'ip', 'clusterset-proxy');
    assert.ok(ip4.includes('10.96.0.40 . tcp . 80') && !ip4.includes('fd00'), 'table ip holds the IPv4 frontends only');
    const ip6 = await table6();
    assert.ok(!/\b10\.\d+\.\d+\.\d+/.test(ip6), 'table ip6 holds no IPv4 address');
    assert.match(ip6, /type nat hook output priority -110/);
    assert.deepEqual((await lab.requests('http://[fd00:96::40]/', 5)).bodies, { brazil: 5 });
    assert.deepEqual((await lab.requests('http://10.96.0.40/', 5)).bodies, { brazil: 5 });
    assert.deepEqual((await lab.requests('http://[fd00:96::50]/', 5)).bodies, { brazil: 5 });
    assert.deepEqual((await lab.requests('http://[fd00:96::50]/', 5, { fromNs: chile })).bodies, { brazil: 5 }, 'prerouting path');
    assert.deepEqual((await lab.requests('http://[fd00:96::60]/', 5)).bodies, { chile01: 5 });
  });

  it('local IPv6 endpoints unready: IPv6 fails over to the other cluster and back, IPv4 stays local', async () => {
    lab.apply(localSlice6(false));
    await waitForTable6((t) => !t.includes('fd00:1::10 . 8080'), 'the local IPv6 endpoint leaving');
    assert.deepEqual((await lab.requests('http://[fd00:96::50]/', 5)).bodies, { chile01: 5 });
    assert.deepEqual((await lab.requests('http://10.96.0.50/', 5)).bodies, { brazil: 5 });
    lab.apply(localSlice6(true));
    await waitForTable6((t) => t.includes('fd00:1::10 . 8080'), 'the local IPv6 endpoint back');
    assert.deepEqual((await lab.requests('http://[fd00:96::50]/', 5)).bodies, { brazil: 5 });
  });

  it('an IPv6 ClusterIP without endpoints of its family is refused at once (ICMPv6 port unreachable)', async () => {
    lab.apply(v6(importedSlice('default', 'chile01', 'only6-1', 'derived-only6', [])));
    await waitForTable6((t) => /set no_endpoints \{[^}]*fd00:96::60 \. tcp \. 80/.test(t), 'the reject');
    const r = await lab.requests('http://[fd00:96::60]/', 1, { timeoutMs: 20_000 });
    assert.equal(r.ok, 0, JSON.stringify(r));
    assert.deepEqual(Object.keys(r.errors), ['ECONNREFUSED'], 'refused, not timed out');
  });

  it('someone deletes table ip6 clusterset-proxy: the next full sync rebuilds it and IPv6 answers again', async () => {
    await netnsExec(lab.nodeNs, 'nft', ['delete', 'table', 'ip6', 'clusterset-proxy']);
    await waitForTable6((t) => t.includes('fd00:96::50 . tcp . 80') && t.includes('fd00:1::10 . 8080'), 'the table rebuilt');
    assert.deepEqual((await lab.requests('http://[fd00:96::50]/', 5)).bodies, { brazil: 5 });
  });

  it('kube-proxy\'s ip6 table is untouched; --cleanup deletes both tables and nothing else', async () => {
    assert.equal(await nft('list', 'table', 'ip6', 'kube-proxy'), kubeProxy6);
    await agent.stop();
    const r = await lab.runAgent(['--config', await config(), '--proxy-mode', 'nftables', '--cleanup']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await nft('list', 'tables'), tablesBefore);
    assert.equal(await nft('list', 'table', 'ip6', 'kube-proxy'), kubeProxy6);
    assert.deepEqual((await lab.requests('http://[fd00:96::50]/', 2)).bodies, { 'kube-proxy': 2 }, 'kube-proxy decides again');
  });
});
