import { test } from 'node:test';
import assert from 'node:assert/strict';
import { diffFragment, diffPlans } from '../../src/iptables/diff.js';
import { JUMPS, SET_CHAINS, skeletonFragment } from '../../src/iptables/layout.js';
import { EMPTY_PLAN } from '../../src/iptables/planner.js';
import { batchUnits, renderPayload } from '../../src/iptables/render.js';
import type { Fragment, Plan } from '../../src/iptables/plan-types.js';

const frag = (key: string, chain: string, rules: string[], dispatch: string[] = []): Fragment => ({
  key,
  chains: [{ table: 'nat', name: chain, rules }],
  setRules: dispatch.map((spec) => ({ table: 'nat', chain: 'MCS-DISPATCH-01', spec })),
});

const plan = (...fragments: Fragment[]): Plan => ({
  setChains: SET_CHAINS, skeleton: skeletonFragment(12), jumps: JUMPS,
  fragments: new Map(fragments.map((f) => [f.key, f])),
});

test('an unchanged fragment yields no change at all', () => {
  const a = frag('ns/a', 'MCS-SVC-A', ['-j ACCEPT'], ['-d 1.1.1.1/32 -j MCS-SVC-A']);
  assert.equal(diffFragment('ns/a', a, a), null);
});

test('a changed chain is re-declared and rewritten whole; its dispatch rule is left alone', () => {
  const before = frag('ns/a', 'MCS-SVC-A', ['-j DNAT --to-destination 10.0.0.1:80'], ['-d 1.1.1.1/32 -j MCS-SVC-A']);
  const after = frag('ns/a', 'MCS-SVC-A', ['-j DNAT --to-destination 10.0.0.2:80'], ['-d 1.1.1.1/32 -j MCS-SVC-A']);
  const change = diffFragment('ns/a', before, after)!;
  assert.equal(renderPayload([change]), [
    '*nat', ':MCS-SVC-A - [0:0]', '-A MCS-SVC-A -j DNAT --to-destination 10.0.0.2:80', 'COMMIT', '',
  ].join('\n'));
  assert.equal(change.chainCount, 1);
});

test('a removed service deletes its dispatch rule before flushing and deleting its chain, in one transaction', () => {
  const a = frag('ns/a', 'MCS-SVC-A', ['-j ACCEPT'], ['-d 1.1.1.1/32 -j MCS-SVC-A']);
  assert.equal(renderPayload([diffFragment('ns/a', a, undefined)!]), [
    '*nat', ':MCS-SVC-A - [0:0]', '-D MCS-DISPATCH-01 -d 1.1.1.1/32 -j MCS-SVC-A', '-X MCS-SVC-A', 'COMMIT', '',
  ].join('\n'));
});

test('a changed ClusterIP swaps single dispatch rules without touching the chain', () => {
  const before = frag('ns/a', 'MCS-SVC-A', ['-j ACCEPT'], ['-d 1.1.1.1/32 -j MCS-SVC-A']);
  const after = frag('ns/a', 'MCS-SVC-A', ['-j ACCEPT'], ['-d 2.2.2.2/32 -j MCS-SVC-A']);
  assert.equal(renderPayload([diffFragment('ns/a', before, after)!]), [
    '*nat', '-D MCS-DISPATCH-01 -d 1.1.1.1/32 -j MCS-SVC-A', '-A MCS-DISPATCH-01 -d 2.2.2.2/32 -j MCS-SVC-A', 'COMMIT', '',
  ].join('\n'));
});

test('from nothing, the skeleton comes first and the jumps are inserted at position 1', () => {
  const tx = diffPlans(EMPTY_PLAN, plan(frag('ns/a', 'MCS-SVC-A', ['-j ACCEPT'], ['-d 1.1.1.1/32 -j MCS-SVC-A'])));
  assert.deepEqual(tx.units.map((u) => u.key), ['', 'ns/a']);
  const payload = renderPayload(tx.units);
  const nat = payload.split('COMMIT')[0]!;
  // Every chain is declared before the first rule referencing it: buckets, then MCS-SERVICES jumping to them.
  assert.ok(nat.indexOf(':MCS-DISPATCH-63 - [0:0]') < nat.indexOf('-A MCS-SERVICES'), payload);
  assert.ok(nat.indexOf(':MCS-SERVICES - [0:0]') < nat.indexOf('-A MCS-SERVICES'), payload);
  assert.match(nat, /-A MCS-SERVICES -d 0\.0\.0\.63\/0\.0\.0\.63 -m comment --comment "ClusterIPs ending 63 mod 64" -j MCS-DISPATCH-63\n/);
  assert.ok(nat.indexOf('-A MCS-SERVICES') < nat.indexOf('-A MCS-DISPATCH-01 -d 1.1.1.1/32'), payload);
  assert.match(payload, /-I PREROUTING 1 -m set --match-set MCS-FRONTENDS dst,dst -m comment --comment "clusterset-proxy service portals" -j MCS-SERVICES/);
  assert.match(payload, /\*filter\n:MCS-SERVICES - \[0:0\]\n-I FORWARD 1 -m conntrack --ctstate NEW -m set --match-set MCS-FRONTENDS dst,dst /);
});

test('diffing a plan against itself is empty; stray jumps are deleted and re-inserted first', () => {
  const p = plan(frag('ns/a', 'MCS-SVC-A', ['-j ACCEPT']));
  assert.deepEqual(diffPlans(p, p).units, []);
  const withoutJump: Plan = { ...p, jumps: p.jumps.filter((j) => j.chain !== 'PREROUTING') };
  const stray = p.jumps.filter((j) => j.chain === 'PREROUTING');
  const payload = renderPayload(diffPlans(withoutJump, p, stray).units);
  assert.match(payload, /-D PREROUTING -m set --match-set MCS-FRONTENDS dst,dst -m comment --comment "clusterset-proxy service portals" -j MCS-SERVICES\n-I PREROUTING 1 /);
});

test('removing everything deletes jumps, fragments and the skeleton, the dispatch chains last', () => {
  const p = plan(frag('ns/a', 'MCS-SVC-A', ['-j MCS-MARK-MASQ'], ['-d 1.1.1.1/32 -j MCS-SVC-A']));
  const tx = diffPlans(p, EMPTY_PLAN);
  assert.deepEqual(tx.units.map((u) => u.key), ['ns/a', '~teardown']);
  const nat = renderPayload(tx.units).split('COMMIT')[0]!.trim().split('\n');
  const buckets = Array.from({ length: 64 }, (_, i) => `-X MCS-DISPATCH-${String(i).padStart(2, '0')}`);
  assert.deepEqual(nat, [
    '*nat',
    ':MCS-SVC-A - [0:0]',
    ':MCS-SERVICES - [0:0]',
    ':MCS-MARK-MASQ - [0:0]',
    ':MCS-POSTROUTING - [0:0]',
    '-D MCS-DISPATCH-01 -d 1.1.1.1/32 -j MCS-SVC-A',
    '-D PREROUTING -m set --match-set MCS-FRONTENDS dst,dst -m comment --comment "clusterset-proxy service portals" -j MCS-SERVICES',
    '-D OUTPUT -m set --match-set MCS-FRONTENDS dst,dst -m comment --comment "clusterset-proxy service portals" -j MCS-SERVICES',
    '-D POSTROUTING -m comment --comment "clusterset-proxy postrouting rules" -j MCS-POSTROUTING',
    '-X MCS-SVC-A',
    // MCS-SERVICES was flushed by its declaration above: no rule references a bucket any more.
    ...buckets,
    '-X MCS-SERVICES',
    '-X MCS-MARK-MASQ',
    '-X MCS-POSTROUTING',
  ]);
});

test('batches respect the chain budget, keep order, and never split a unit', () => {
  const units = [1, 2, 3, 4, 5].map((i) => diffFragment(`k${i}`, undefined, frag(`k${i}`, `C${i}`, ['-j ACCEPT']))!);
  assert.deepEqual(batchUnits(units, 2).map((b) => b.map((u) => u.key)), [['k1', 'k2'], ['k3', 'k4'], ['k5']]);
  assert.deepEqual(batchUnits(units, 1000).length, 1);
});
