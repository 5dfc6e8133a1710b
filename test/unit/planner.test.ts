import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Frontend, FrontendPort, ServiceGroup } from '../../src/model/group.js';
import { hash16, serviceChainName } from '../../src/iptables/names.js';
import { planFragment, type PlanContext as RulesContext } from '../../src/iptables/planner.js';
import { selectGroup, type SelectionContext } from '../../src/selection/selection.js';
import { usableEndpoints } from '../../src/policy/select.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';
import { ALL_HEALTHY } from '../../src/policy/select.js';
import { probability } from '../../src/iptables/service-rules.js';
import { fragmentMembers } from '../../src/iptables/frontend-set.js';

type PlanContext = RulesContext & SelectionContext;

/** Selection, then the iptables fragment of it: the two steps a sync runs for one group. */
function planGroup(g: ServiceGroup, c: PlanContext) {
  return { fragment: planFragment(selectGroup(g, c), c) };
}

const ctx: PlanContext = { clusterCIDR: '10.244.0.0/16', localCluster: 'brazil', masqueradeBit: 12, policy: DEFAULT_CONFIG.trafficPolicy, health: ALL_HEALTHY };
const activeActive: PlanContext = { ...ctx, policy: { ...ctx.policy, defaults: { ...ctx.policy.defaults, mode: 'active-active' } } };

function ep(ip: string, cluster: string, conditions: { ready?: boolean; serving?: boolean; terminating?: boolean } = {}) {
  const ready = conditions.ready ?? true;
  return { ip, port: 8080, cluster, ready, serving: conditions.serving ?? ready, terminating: conditions.terminating ?? false };
}

function group(endpoints: FrontendPort['endpoints'], affinitySeconds: number | null = null): ServiceGroup {
  const fe: Frontend = {
    namespace: 'default', name: 'derived-serve', clusterIPs: ['10.96.0.50'], clustersetIPs: [], affinitySeconds,
    ports: [{ label: 'http', port: 80, protocol: 'TCP', endpoints }], annotations: {},
  };
  return { key: 'default/serve', namespace: 'default', name: 'serve', source: 'service-import', frontends: [fe], local: null };
}

test('chain names are MCS-SVC- plus 16 base32 characters of sha256(namespace/name:port/protocol)', () => {
  assert.equal(hash16(''), '4OYMIQUY7QOBJGX3'); // RFC 4648 base32 of sha256(""), checked with Python's base64.b32encode
  assert.equal(serviceChainName('default', 'derived-serve', 'http', 'TCP'), 'MCS-SVC-KD2NDEFDA4NDLMHO');
});

test('probabilities are written as the kernel stores and iptables-save prints them', () => {
  assert.equal(probability(1 / 3), '0.33333333349');
  assert.equal(probability(0.5), '0.50000000000');
  assert.equal(probability(0.1), '0.10000000009');
});

test('endpoint conditions follow kube-proxy: ready ones, else serving-and-terminating ones', () => {
  const all = [ep('10.2.0.1', 'chile', { ready: false, serving: true, terminating: true }), ep('10.2.0.2', 'chile', { ready: false, serving: false, terminating: true })];
  assert.deepEqual(usableEndpoints(all).map((e) => e.ip), ['10.2.0.1']);
  assert.deepEqual(usableEndpoints([...all, ep('10.2.0.3', 'chile')]).map((e) => e.ip), ['10.2.0.3']);
  assert.deepEqual(usableEndpoints([ep('10.2.0.3', 'chile'), ep('10.2.0.3', 'chile')]).length, 1);
});

test('each endpoint gets an equal share through cascading random probabilities, in a stable order', () => {
  const frag = planGroup(group([ep('10.2.0.3', 'chile'), ep('10.2.0.1', 'chile'), ep('10.2.0.20', 'chile')]), ctx).fragment;
  const rules = frag.chains[0]!.rules;
  assert.deepEqual(rules.map((r) => /--to-destination (\S+)/.exec(r)?.[1]).filter(Boolean), ['10.2.0.1:8080', '10.2.0.3:8080', '10.2.0.20:8080']);
  const probs = rules.map((r) => /--probability (\S+)/.exec(r)?.[1] ?? null);
  assert.deepEqual(probs.slice(-3), ['0.33333333349', '0.50000000000', null]);
  // The share of each rule: its probability times the chance every earlier rule passed.
  let pass = 1;
  for (const prob of probs.slice(-3)) {
    const p = prob === null ? 1 : Number(prob);
    assert.ok(Math.abs(pass * p - 1 / 3) < 1e-9, `share ${pass * p}`);
    pass *= 1 - p;
  }
});

test('a service port renders to a dispatch rule and a chain that reads like documentation', () => {
  const frag = planGroup(group([ep('10.1.0.10', 'brazil'), ep('10.2.0.10', 'chile')]), activeActive).fragment;
  assert.equal(frag.key, 'default/serve');
  assert.deepEqual(frag.setRules, [{
    table: 'nat', chain: 'MCS-DISPATCH-50',
    spec: '-d 10.96.0.50/32 -p tcp -m comment --comment "default/derived-serve:http cluster IP" -m tcp --dport 80 -j MCS-SVC-KD2NDEFDA4NDLMHO',
  }]);
  assert.deepEqual(frag.chains, [{
    table: 'nat', name: 'MCS-SVC-KD2NDEFDA4NDLMHO',
    rules: [
      '! -s 10.244.0.0/16 -m comment --comment "default/derived-serve:http masquerade traffic from outside the cluster" -j MCS-MARK-MASQ',
      '-s 10.1.0.10/32 -m comment --comment "default/derived-serve:http hairpin" -j MCS-MARK-MASQ',
      '-p tcp -m comment --comment "default/derived-serve:http -> brazil 10.1.0.10:8080" -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.1.0.10:8080',
      '-p tcp -m comment --comment "default/derived-serve:http -> chile 10.2.0.10:8080" -j DNAT --to-destination 10.2.0.10:8080',
    ],
  }]);
});

test('a port without usable endpoints accepts in nat and rejects in filter, so clients fail fast', () => {
  const frag = planGroup(group([ep('10.2.0.1', 'chile', { ready: false })]), { ...ctx, clusterCIDR: '' }).fragment;
  assert.deepEqual(frag.chains[0]!.rules, ['-m comment --comment "default/derived-serve:http has no endpoints" -j ACCEPT']);
  assert.deepEqual(frag.setRules.map((r) => [r.table, r.spec]), [
    ['nat', '-d 10.96.0.50/32 -p tcp -m comment --comment "default/derived-serve:http cluster IP" -m tcp --dport 80 -j MCS-SVC-KD2NDEFDA4NDLMHO'],
    ['filter', '-d 10.96.0.50/32 -p tcp -m comment --comment "default/derived-serve:http has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable'],
  ]);
});

test('a ClusterSet IP dispatches through MCS-EXT-, which marks every connection for masquerade, into the port\'s one service chain', () => {
  const base = group([ep('10.1.0.10', 'brazil'), ep('10.2.0.10', 'chile')]);
  const withIPs: ServiceGroup = { ...base, frontends: [{ ...base.frontends[0]!, clustersetIPs: ['242.1.0.50', '10.96.0.50', '242.1.0.51'] }] };
  const frag = planGroup(withIPs, activeActive).fragment;
  const plain = planGroup(base, activeActive).fragment;
  assert.deepEqual(frag.setRules.map((r) => r.spec), [
    '-d 10.96.0.50/32 -p tcp -m comment --comment "default/derived-serve:http cluster IP" -m tcp --dport 80 -j MCS-SVC-KD2NDEFDA4NDLMHO',
    '-d 242.1.0.50/32 -p tcp -m comment --comment "default/derived-serve:http clusterset IP" -m tcp --dport 80 -j MCS-EXT-KD2NDEFDA4NDLMHO',
    '-d 242.1.0.51/32 -p tcp -m comment --comment "default/derived-serve:http clusterset IP" -m tcp --dport 80 -j MCS-EXT-KD2NDEFDA4NDLMHO',
  ]);
  // Each address is dispatched from its own bucket and is a member of MCS-FRONTENDS, so the guarded jumps reach it.
  assert.deepEqual(frag.setRules.filter((r) => r.table === 'nat').map((r) => r.chain), ['MCS-DISPATCH-50', 'MCS-DISPATCH-50', 'MCS-DISPATCH-51']);
  assert.deepEqual([...fragmentMembers(frag)], [
    ['10.96.0.50,tcp:80', 'default/derived-serve:http'], ['242.1.0.50,tcp:80', 'default/derived-serve:http'], ['242.1.0.51,tcp:80', 'default/derived-serve:http'],
  ]);
  assert.deepEqual(frag.chains, [plain.chains[0], {
    table: 'nat', name: 'MCS-EXT-KD2NDEFDA4NDLMHO',
    rules: ['-m comment --comment "default/derived-serve:http masquerade traffic to the clusterset IP" -j MCS-MARK-MASQ', '-j MCS-SVC-KD2NDEFDA4NDLMHO'],
  }]);

  const none = planGroup({ ...withIPs, frontends: [{ ...withIPs.frontends[0]!, ports: [{ ...base.frontends[0]!.ports[0]!, endpoints: [] }] }] }, ctx).fragment;
  assert.deepEqual(none.setRules.filter((r) => r.table === 'filter').map((r) => r.spec.split(' ')[1]), ['10.96.0.50/32', '242.1.0.50/32', '242.1.0.51/32'], 'every address of a port without endpoints is rejected');
  assert.deepEqual(none.chains.map((c) => c.rules.at(-1)), ['-m comment --comment "default/derived-serve:http has no endpoints" -j ACCEPT', '-j MCS-SVC-KD2NDEFDA4NDLMHO']);
});

test('ClientIP affinity checks each endpoint\'s recent list before choosing, and records the choice', () => {
  const rules = planGroup(group([ep('10.2.0.1', 'chile'), ep('10.2.0.2', 'chile')], 600), { ...ctx, clusterCIDR: '' }).fragment.chains[0]!.rules;
  assert.equal(rules.length, 4);
  assert.match(rules[0]!, /-m recent --rcheck --seconds 600 --reap --name MCS-SEP-\w{16} --mask 255.255.255.255 --rsource -j DNAT --to-destination 10.2.0.1:8080$/);
  assert.match(rules[2]!, /--probability 0.50000000000 -m recent --set --name MCS-SEP-\w{16} --mask 255.255.255.255 --rsource -j DNAT --to-destination 10.2.0.1:8080$/);
  assert.equal(/--name (\S+)/.exec(rules[0]!)![1], /--name (\S+)/.exec(rules[2]!)![1]);
});
