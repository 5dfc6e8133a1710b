import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FrontendSelection, GroupSelection } from '../../src/selection/selection.js';
import type { DataplaneSettings } from '../../src/sync/dataplane.js';
import { FakeNftables } from '../../src/nftables/fake.js';
import { NftablesDataplane } from '../../src/nftables/nftables-dataplane.js';
import type { NftGroup } from '../../src/nftables/plan.js';

const SETTINGS: DataplaneSettings = { clusterCIDR: '10.244.0.0/16', localCluster: 'brazil', masqueradeBit: 12, maxChainsPerRestore: 1000 };

function frontend(n: number, ips: string[]): FrontendSelection {
  return {
    kind: 'cluster-ip', family: 'ipv4', ip: `10.96.0.${n}`, port: 80, protocol: 'TCP', name: { namespace: 'shop', service: `derived-svc${n}`, port: 'http' },
    affinity: null, endpoints: ips.map((ip) => ({ ip, port: 8080, cluster: 'chile', weight: 1 })),
    decision: { clusters: ips.length ? ['chile'] : [], target: ips.length ? 'remote' : 'none', failOpen: false },
  };
}

function selection(n: number, ips: string[]): GroupSelection {
  const fe = frontend(n, ips);
  return { key: `shop/svc${n}`, settings: { mode: 'local-first', clusterWeights: {}, failoverOrder: [], unifiedName: true }, decision: fe.decision, frontends: [fe], problems: [] };
}

function desired(dp: NftablesDataplane, sels: GroupSelection[]): Map<string, NftGroup> {
  return new Map(sels.map((s) => [s.key, dp.plan(s)!]));
}

test('nftables data plane: a full diff from nothing writes the skeleton and every element; read back it is empty', async () => {
  const fake = new FakeNftables();
  const dp = new NftablesDataplane(fake, SETTINGS);
  const want = desired(dp, [selection(1, ['10.2.0.1', '10.2.0.2']), selection(2, [])]);
  const tx = dp.diff(null, want);
  assert.deepEqual(tx.keys, ['', 'shop/svc1', 'shop/svc2']);
  const outcome = await dp.apply(tx);
  assert.equal(outcome.refused, null);
  assert.equal(fake.skeletonWrites, 1);
  const again = dp.diff(await dp.observe(want), want);
  assert.deepEqual(again.keys, []);
  const before = fake.commits;
  await dp.apply(again);
  assert.equal(fake.commits, before);
});

test('nftables data plane: one group\'s change is one batch; the kernel read back attributes it to its group', async () => {
  const fake = new FakeNftables();
  const dp = new NftablesDataplane(fake, SETTINGS);
  const want = desired(dp, [selection(1, ['10.2.0.1', '10.2.0.2'])]);
  await dp.apply(dp.diff(null, want));
  const next = dp.plan(selection(1, ['10.2.0.1', '10.2.0.9']))!;
  const tx = dp.diffGroup('shop/svc1', want.get('shop/svc1'), next);
  assert.deepEqual(tx.keys, ['shop/svc1']);
  const before = fake.commits;
  assert.equal((await dp.apply(tx)).refused, null);
  assert.equal(fake.commits, before + 1);
  const kernel = await dp.observe(new Map([['shop/svc1', next]]));
  assert.deepEqual(kernel.group('shop/svc1')!.ports[0]!.slots, next.ports[0]!.slots);
});

test('nftables data plane: a refused part is blamed on its group and the parts before it are applied', async () => {
  const fake = new FakeNftables();
  const dp = new NftablesDataplane(fake, SETTINGS);
  const a = dp.plan(selection(1, ['10.2.0.1']))!;
  const b = dp.plan(selection(2, ['10.2.0.2']))!;
  await dp.apply(dp.diff(null, new Map()));
  // b claims to replace a state the kernel never had: its deletions are refused.
  const tx = dp.merge([dp.diffGroup('shop/svc1', undefined, a), dp.diffGroup('shop/svc2', dp.plan(selection(2, ['10.2.0.7']))!, b)]);
  const outcome = await dp.apply(tx);
  assert.ok(outcome.refused && outcome.refused.kind === 'refused');
  assert.equal(outcome.refused.blamed, 'shop/svc2');
  assert.deepEqual(outcome.refused.groups, ['shop/svc2']);
  const kernel = await dp.observe(new Map([['shop/svc1', a]]));
  assert.deepEqual(kernel.group('shop/svc1'), a);
});

test('nftables data plane: dry-run text, explain shares, adoption by name and cleanup', async () => {
  const fake = new FakeNftables();
  const dp = new NftablesDataplane(fake, SETTINGS);
  const want = desired(dp, [selection(10, ['10.2.0.1', '10.2.0.2', '10.2.0.3'])]);
  const text = dp.render(dp.diff(null, want));
  assert.match(text, /^table ip clusterset-proxy \{/);
  assert.match(text, /add element ip clusterset-proxy slots-10 \{ 10\.96\.0\.10 \. tcp \. 80 \. 0 : 10\.2\.0\.\d \. 8080, /);
  assert.match(text, /add element ip clusterset-proxy service_ports \{ 10\.96\.0\.10 \. tcp \. 80 comment "shop\/derived-svc10:http" \}/);
  const d = dp.describe(frontend(10, ['10.2.0.1', '10.2.0.2', '10.2.0.3']));
  assert.equal(d.handle, 'slots-10 10.96.0.10 . tcp . 80');
  assert.deepEqual([...d.shares.values()], [22 / 64, 21 / 64, 21 / 64]);
  await dp.apply(dp.diff(null, want));
  const kernel = await dp.observe(new Map());
  const adopted = dp.adopt('shop/svc10', [{ name: { namespace: 'shop', service: 'derived-svc10', port: 'http' }, protocol: 'TCP' }], kernel);
  assert.deepEqual(adopted?.ports[0]?.slots, want.get('shop/svc10')!.ports[0]!.slots);
  assert.equal((await dp.cleanup()).restores, 1);
  assert.equal(await fake.read(), null);
  assert.equal((await dp.cleanup()).restores, 0);
});

test('nftables data plane: a batch of many groups holds each set\'s operations together, deletions first', async () => {
  const fake = new FakeNftables();
  const dp = new NftablesDataplane(fake, SETTINGS);
  const sels = [1, 2, 3, 65, 66].map((n) => selection(n, ['10.2.0.1', '10.2.0.2']));
  await dp.apply(dp.diff(null, desired(dp, sels.slice(0, 3))));
  const batches: { op: string; set?: string }[][] = [];
  const commit = fake.commit.bind(fake);
  fake.commit = async (ops) => {
    batches.push(ops.map((o) => ({ op: o.op, ...('set' in o ? { set: o.set } : {}) })));
    return commit(ops);
  };
  // svc1 goes, svc2 and svc3 change endpoints, svc65 and svc66 (the shards of svc1 and svc2) are new.
  const next = desired(dp, [selection(2, ['10.2.0.3']), selection(3, ['10.2.0.4']), ...sels.slice(3)]);
  assert.equal((await dp.apply(dp.diff(await dp.observe(next), next))).refused, null);
  assert.equal(batches.length, 1);
  const ops = batches[0]!;
  const firstAdd = ops.findIndex((o) => o.op.startsWith('add'));
  assert.ok(firstAdd > 0 && ops.slice(firstAdd).every((o) => o.op.startsWith('add')), 'deletions come first');
  for (const half of [ops.slice(0, firstAdd), ops.slice(firstAdd)]) {
    const runs = half.map((o) => o.set).filter((set, i, all) => i === 0 || set !== all[i - 1]);
    assert.deepEqual(runs, [...new Set(runs)], `each set's operations are adjacent: ${runs.join(', ')}`);
  }
  assert.ok(new Set(ops.slice(firstAdd).map((o) => o.set)).size < ops.length - firstAdd, 'some set has several additions');
  assert.deepEqual(dp.diff(await dp.observe(next), next).keys, []);
});
