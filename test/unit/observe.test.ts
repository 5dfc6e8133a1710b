import { test } from 'node:test';
import assert from 'node:assert/strict';
import { observe, type TableDump } from '../../src/iptables/observe.js';
import { diffPlans } from '../../src/iptables/diff.js';
import { JUMPS, SET_CHAINS, skeletonFragment } from '../../src/iptables/layout.js';
import type { Fragment, Plan, Table } from '../../src/iptables/plan-types.js';

const PORTALS = '-m set --match-set MCS-FRONTENDS dst,dst -m comment --comment "clusterset-proxy service portals" -j MCS-SERVICES';
const skeleton = skeletonFragment(12);

function dumps(nat: Record<string, string[]>, filter: Record<string, string[]> = {}): Map<Table, TableDump> {
  const toMap = (t: Record<string, string[]>) => new Map(Object.entries(t).map(([k, rules]) => [k, { rules }]));
  return new Map([['nat', toMap(nat)], ['filter', toMap(filter)]]);
}

const a: Fragment = {
  key: 'ns/a',
  chains: [{ table: 'nat', name: 'MCS-SVC-A', rules: ['-j DNAT --to-destination 10.0.0.1:80'] }],
  setRules: [{ table: 'nat', chain: 'MCS-DISPATCH-01', spec: '-d 1.1.1.1/32 -j MCS-SVC-A' }],
};
const desired: Plan = { setChains: SET_CHAINS, skeleton, jumps: JUMPS, fragments: new Map([[a.key, a]]) };

function kernelMatching(extraNat: Record<string, string[]> = {}): Map<Table, TableDump> {
  return dumps({
    PREROUTING: [PORTALS, '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
    OUTPUT: [PORTALS, '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
    POSTROUTING: ['-m comment --comment "clusterset-proxy postrouting rules" -j MCS-POSTROUTING'],
    'KUBE-SERVICES': ['-d 10.96.0.1/32 -j KUBE-SVC-X'],
    'MCS-SERVICES': [...skeleton.chains[0]!.rules],
    'MCS-MARK-MASQ': [...skeleton.chains[1]!.rules],
    'MCS-POSTROUTING': [...skeleton.chains[2]!.rules],
    ...Object.fromEntries(SET_CHAINS.filter((c) => c.table === 'nat').map((c) => [c.name, []])),
    'MCS-DISPATCH-01': ['-d 1.1.1.1/32 -j MCS-SVC-A'],
    'MCS-SVC-A': ['-j DNAT --to-destination 10.0.0.1:80'],
    ...extraNat,
  }, {
    FORWARD: [JUMPS[3]!.spec], OUTPUT: [JUMPS[4]!.spec], 'MCS-SERVICES': [],
  });
}

test('a kernel that matches the plan needs no change (adoption after restart)', () => {
  const seen = observe(kernelMatching(), desired);
  assert.deepEqual(seen.strayJumps, []);
  assert.deepEqual(diffPlans(seen.plan, desired, seen.strayJumps).units, []);
  assert.equal(seen.ownedChains, 5 + 64);
});

test('drift is repaired: an edited chain is rewritten, a stale chain and its dispatch rule removed', () => {
  const seen = observe(kernelMatching({
    'MCS-SVC-A': ['-j DNAT --to-destination 6.6.6.6:80'],
    'MCS-SVC-OLD': ['-j ACCEPT'],
    'MCS-DISPATCH-01': ['-d 1.1.1.1/32 -j MCS-SVC-A', '-d 9.9.9.9/32 -j MCS-SVC-OLD'],
  }), desired);
  const tx = diffPlans(seen.plan, desired, seen.strayJumps);
  const keys = tx.units.map((u) => u.key);
  assert.deepEqual(keys.sort(), ['nat/MCS-SVC-OLD', 'ns/a'].map((k) => (k === 'ns/a' ? k : `~stale:${k}`)).sort());
  const stale = tx.units.find((u) => u.key.startsWith('~stale'))!;
  assert.deepEqual(stale.ops.nat.deleteRules, [{ chain: 'MCS-DISPATCH-01', spec: '-d 9.9.9.9/32 -j MCS-SVC-OLD' }]);
  assert.deepEqual(stale.ops.nat.deleteChains, ['MCS-SVC-OLD']);
});

test('a jump that fell behind KUBE-SERVICES is deleted and re-inserted first; other rules are ignored', () => {
  const seen = observe(kernelMatching({
    PREROUTING: ['-j USER-RULES', '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES', PORTALS],
  }), desired);
  assert.deepEqual(seen.strayJumps, [{ table: 'nat', chain: 'PREROUTING', spec: PORTALS }]);
  const tx = diffPlans(seen.plan, desired, seen.strayJumps);
  assert.deepEqual(tx.units.map((u) => u.key), ['']);
  const nat = tx.units.flatMap((u) => [...u.ops.nat.deleteRules, ...u.ops.nat.insertFirst]);
  assert.deepEqual(nat, [{ chain: 'PREROUTING', spec: PORTALS }, { chain: 'PREROUTING', spec: PORTALS }]);
});

test('duplicated jumps are all removed and one is re-inserted', () => {
  const seen = observe(kernelMatching({ OUTPUT: [PORTALS, PORTALS] }), desired);
  assert.equal(seen.strayJumps.filter((j) => j.chain === 'OUTPUT').length, 2);
});

test('the one-list layout of earlier versions is taken over in place: MCS-SERVICES rewritten, old jumps replaced', () => {
  const oldPortals = '-m comment --comment "clusterset-proxy service portals" -j MCS-SERVICES';
  const seen = observe(kernelMatching({
    PREROUTING: [oldPortals, '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
    OUTPUT: [oldPortals],
    'MCS-SERVICES': ['-d 1.1.1.1/32 -j MCS-SVC-A'],
    'MCS-DISPATCH-01': [],
  }), desired);
  const tx = diffPlans(seen.plan, desired, seen.strayJumps);
  const setup = tx.units.find((u) => u.key === '')!;
  assert.ok(setup.ops.nat.declare.includes('MCS-SERVICES'));
  assert.deepEqual(setup.ops.nat.appendRules.filter((r) => r.chain === 'MCS-SERVICES').length, 64);
  assert.deepEqual(setup.ops.nat.deleteRules.map((r) => r.spec), [oldPortals, oldPortals]);
  assert.deepEqual(setup.ops.nat.insertFirst.map((r) => r.chain).sort(), ['OUTPUT', 'PREROUTING']);
  const unitA = tx.units.find((u) => u.key === 'ns/a')!;
  assert.deepEqual(unitA.ops.nat.appendRules, [{ chain: 'MCS-DISPATCH-01', spec: '-d 1.1.1.1/32 -j MCS-SVC-A' }]);
  assert.deepEqual(unitA.ops.nat.declare, []);
});
