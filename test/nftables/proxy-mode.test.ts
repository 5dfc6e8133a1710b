import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/log.js';
import { decideProxyMode, ProxyModeError, resolveProxyMode } from '../../src/ops/proxy-mode.js';
import { netnsExec, Topology } from '../support/netns.js';

const none = () => ({ nftablesTable: false, iptablesChains: 0 });

test('explicit modes win without looking at the kernel; ipvs is refused with a clear error', () => {
  const probe = () => {
    throw new Error('the kernel is not consulted');
  };
  assert.deepEqual(decideProxyMode('iptables', probe), { mode: 'iptables', reason: 'mode iptables is set' });
  assert.equal(decideProxyMode('nftables', probe).mode, 'nftables');
  assert.throws(() => decideProxyMode('ipvs', probe), (err: unknown) => err instanceof ProxyModeError && /ipvs is not available in this build/.test(err.message));
});

test('auto follows kube-proxy: its nftables table, else its iptables chains, else iptables', () => {
  assert.equal(decideProxyMode('auto', () => ({ nftablesTable: true, iptablesChains: 12 })).mode, 'nftables');
  const ipt = decideProxyMode('auto', () => ({ nftablesTable: false, iptablesChains: 12 }));
  assert.equal(ipt.mode, 'iptables');
  assert.match(ipt.reason, /12 KUBE- chains/);
  assert.match(decideProxyMode('auto', none).reason, /iptables, the default/);
});

const topology = new Topology();
after(() => topology.teardown());

test('auto reads a real kernel: an empty namespace, iptables KUBE-SERVICES, then a kube-proxy nftables table', async () => {
  const ns = await topology.namespace('mode');
  const log = silentLogger();
  assert.equal((await resolveProxyMode('auto', { netns: ns, log })).mode, 'iptables');
  await netnsExec(ns, 'iptables-nft', ['-t', 'nat', '-N', 'KUBE-SERVICES']);
  const ipt = await resolveProxyMode('auto', { netns: ns, log });
  assert.equal(ipt.mode, 'iptables');
  assert.match(ipt.reason, /1 KUBE- chains/);
  await netnsExec(ns, 'nft', ['add', 'table', 'ip', 'kube-proxy']);
  const nft = await resolveProxyMode('auto', { netns: ns, log });
  assert.equal(nft.mode, 'nftables');
  assert.match(nft.reason, /ip kube-proxy/);
});
