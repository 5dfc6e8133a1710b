import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/log.js';
import { decideProxyMode, ProxyModeError, resolveProxyMode } from '../../src/ops/proxy-mode.js';
import { netnsExec, Topology } from '../support/netns.js';

const none = () => ({ nftablesTable: false, iptablesChains: 0 });

test('explicit iptables and nftables win without looking at the kernel', () => {
  const probe = () => {
    throw new Error('the kernel is not consulted');
  };
  assert.deepEqual(decideProxyMode('iptables', probe), { mode: 'iptables', reason: 'mode iptables is set' });
  assert.equal(decideProxyMode('nftables', probe).mode, 'nftables');
});

test('ipvs is accepted when set, and refused with the cause when kube-proxy runs in nftables mode', () => {
  assert.equal(decideProxyMode('ipvs', none).mode, 'ipvs');
  assert.equal(decideProxyMode('ipvs', () => ({ nftablesTable: false, iptablesChains: 40 })).mode, 'ipvs');
  assert.throws(
    () => decideProxyMode('ipvs', () => ({ nftablesTable: true, iptablesChains: 0 })),
    (err: unknown) => err instanceof ProxyModeError && /ipvs is refused/.test(err.message) && /"ip kube-proxy"/.test(err.message) && /flushes every IPVS service/.test(err.message),
  );
});

test('auto never picks ipvs', () => {
  for (const nftablesTable of [false, true]) {
    for (const iptablesChains of [0, 5]) assert.notEqual(decideProxyMode('auto', () => ({ nftablesTable, iptablesChains })).mode, 'ipvs');
  }
});

test('resolveProxyMode asks for kube-proxy\'s nftables table before accepting ipvs', async () => {
  const log = silentLogger();
  assert.equal((await resolveProxyMode('ipvs', { log, nftablesTable: async () => false })).mode, 'ipvs');
  await assert.rejects(resolveProxyMode('ipvs', { log, nftablesTable: async () => true }), ProxyModeError);
  let asked = false;
  await resolveProxyMode('nftables', { log, nftablesTable: async () => (asked = true) });
  assert.equal(asked, false);
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

test('auto reads a real kernel: an empty namespace, iptables KUBE-SERVICES, then a kube-proxy nftables table (ip6 alone, as on an IPv6-only cluster, then ip)', async () => {
  const ns = await topology.namespace('mode');
  const log = silentLogger();
  assert.equal((await resolveProxyMode('auto', { netns: ns, log })).mode, 'iptables');
  await netnsExec(ns, 'iptables-nft', ['-t', 'nat', '-N', 'KUBE-SERVICES']);
  const ipt = await resolveProxyMode('auto', { netns: ns, log });
  assert.equal(ipt.mode, 'iptables');
  assert.match(ipt.reason, /1 KUBE- chains/);
  await netnsExec(ns, 'nft', ['add', 'table', 'ip6', 'kube-proxy']);
  const nft6 = await resolveProxyMode('auto', { netns: ns, log });
  assert.equal(nft6.mode, 'nftables');
  assert.match(nft6.reason, /ip6 kube-proxy/);
  await netnsExec(ns, 'nft', ['delete', 'table', 'ip6', 'kube-proxy']);
  await netnsExec(ns, 'nft', ['add', 'table', 'ip', 'kube-proxy']);
  const nft = await resolveProxyMode('auto', { netns: ns, log });
  assert.equal(nft.mode, 'nftables');
  assert.match(nft.reason, /ip kube-proxy/);
});
