// A full sync through NftablesDataplane over the fake: the table read back
// and compared with the desired groups (table-diff.ts), so a table that
// matches is adopted without a write, drift costs only what drifted, and a
// damaged skeleton is rewritten with the elements kept.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeNftables } from '../../src/nftables/fake.js';
import { NFT_IPV4, shardOf, shardSet } from '../../src/nftables/layout.js';
import { NftablesDataplane } from '../../src/nftables/nftables-dataplane.js';
import type { NftGroup } from '../../src/nftables/plan.js';
import { diffTableByGroup, STALE_PART } from '../../src/nftables/table-diff.js';
import type { DataplaneSettings } from '../../src/sync/dataplane.js';

const SETTINGS: DataplaneSettings = { clusterCIDR: '10.244.0.0/16', localCluster: 'brazil', masqueradeBit: 14, maxChainsPerRestore: Infinity };

function group(n: number, endpoints: string[]): NftGroup {
  const slots = Array.from({ length: 64 }, (_, i) => endpoints[i % endpoints.length]!);
  return {
    key: `default/svc-${n}`,
    ports: [{ clusterIP: `10.96.1.${n}`, protocol: 'tcp', port: 80, name: `default/derived-svc-${n}:http`, clusterset: false, affinity: false, slots: endpoints.length ? slots : [], localIPs: [] }],
  };
}

function groups(count: number): Map<string, NftGroup> {
  return new Map(Array.from({ length: count }, (_, i) => [`default/svc-${i}`, group(i, [`10.2.${i}.1:8080`, `10.2.${i}.2:8080`])] as const));
}

/** One full sync as the reconciler runs it: read back, diff, apply. */
async function fullSync(fake: FakeNftables, desired: ReadonlyMap<string, NftGroup>, settings = SETTINGS) {
  const dp = new NftablesDataplane(fake, settings);
  const tx = dp.diff(await dp.observe(desired), desired);
  const outcome = await dp.apply(tx);
  assert.equal(outcome.refused, null);
  return { elements: outcome.stats.chainsWritten, skeletonWritten: tx.skeleton !== null, keys: tx.keys };
}

test('a restarted agent adopts a matching table without writing anything', async () => {
  const fake = new FakeNftables();
  await fullSync(fake, groups(5));
  const writes = { commits: fake.commits, skeleton: fake.skeletonWrites };
  const r = await fullSync(fake, groups(5));
  assert.deepEqual(r, { elements: 0, skeletonWritten: false, keys: [] });
  assert.deepEqual({ commits: fake.commits, skeleton: fake.skeletonWrites }, writes);
});

test('a full sync repairs drift: a deleted element is re-added alone, a stale one removed', async () => {
  const fake = new FakeNftables();
  await fullSync(fake, groups(3));
  await fake.commit([{ op: 'deleteElements', set: 'slots-02', elements: [{ set: 'slots-02', key: '10.96.1.2 . tcp . 80 . 7' }] }]);
  await fake.commit([{ op: 'addElements', set: 'slots-09', elements: [{ set: 'slots-09', key: '10.96.9.9 . tcp . 80 . 0', data: '10.9.9.9 . 80' }] }]);
  const r = await fullSync(fake, groups(3));
  assert.equal(r.elements, 2);
  assert.equal(r.skeletonWritten, false);
  const slots = (await fake.read())!.sets.filter((s) => s.name.startsWith('slots-')).flatMap((s) => s.elements);
  assert.equal(slots.length, 3 * 64);
  assert.ok(slots.some((e) => e.key === '10.96.1.2 . tcp . 80 . 7'));
});

test('a full sync rewrites a skeleton that lost a rule, keeping the elements, and rebuilds a deleted table', async () => {
  const fake = new FakeNftables();
  await fullSync(fake, groups(2));
  fake.dropRule('dispatch-01');
  const written = fake.elementsWritten;
  const r = await fullSync(fake, groups(2));
  assert.equal(r.skeletonWritten, true);
  assert.equal(r.elements, 0);
  assert.equal(fake.elementsWritten, written);
  fake.dropTable();
  const again = await fullSync(fake, groups(2));
  assert.equal(again.skeletonWritten, true);
  assert.equal(again.elements, 2 * 66);
});

test('a changed cluster CIDR rewrites the skeleton: the masquerade chain comment records it', async () => {
  const fake = new FakeNftables();
  await fullSync(fake, groups(1));
  const changed = { ...SETTINGS, clusterCIDR: '10.100.0.0/16' };
  assert.equal((await fullSync(fake, groups(1), changed)).skeletonWritten, true);
  assert.equal((await fullSync(fake, groups(1), changed)).skeletonWritten, false);
  const masq = (await fake.read())!.chains.find((c) => c.name === 'masq-postrouting')!;
  assert.match(masq.comment!, /cluster CIDR 10\.100\.0\.0\/16/);
});

test('a full diff by group attributes each change to its group and what nobody owns to the stale part', async () => {
  const fake = new FakeNftables();
  await fullSync(fake, groups(3));
  const same = diffTableByGroup(await fake.read(), groups(3), NFT_IPV4);
  assert.deepEqual(same, []);
  const desired = new Map(groups(3));
  desired.delete('default/svc-2');
  desired.set('default/svc-1', group(1, ['10.2.1.1:8080', '10.2.1.7:8080']));
  const parts = diffTableByGroup(await fake.read(), desired, NFT_IPV4);
  assert.deepEqual(parts.map((p) => p.key), ['default/svc-1', STALE_PART]);
  await fake.commit([...parts.flatMap((p) => p.ops.filter((o) => o.op.startsWith('delete'))), ...parts.flatMap((p) => p.ops.filter((o) => o.op.startsWith('add')))]);
  assert.deepEqual(diffTableByGroup(await fake.read(), desired, NFT_IPV4), []);
  const slots = (await fake.read())!.sets.filter((s) => s.name.startsWith('slots-')).flatMap((s) => s.elements);
  assert.equal(slots.length, 2 * 64);
  assert.equal(slots.filter((e) => e.data === '10.2.1.7 . 8080').length, 32);
});

test('a full diff by group deletes a slot element outside the slot range and re-adds one a group lost', async () => {
  const fake = new FakeNftables();
  await fullSync(fake, groups(2));
  const set = shardSet(shardOf('10.96.1.1'));
  await fake.commit([
    { op: 'addElements', set, elements: [{ set, key: '10.96.1.1 . tcp . 80 . 99', data: '10.2.1.1 . 8080' }] },
    { op: 'deleteElements', set, elements: [{ set, key: '10.96.1.1 . tcp . 80 . 5' }] },
  ]);
  const parts = diffTableByGroup(await fake.read(), groups(2), NFT_IPV4);
  assert.deepEqual(parts.map((p) => [p.key, p.ops.map((o) => o.op)]), [['default/svc-1', ['addPacked']], [STALE_PART, ['deletePacked']]]);
  const ops = parts.flatMap((p) => p.ops);
  await fake.commit([...ops.filter((o) => o.op.startsWith('delete')), ...ops.filter((o) => o.op.startsWith('add'))]);
  assert.deepEqual(diffTableByGroup(await fake.read(), groups(2), NFT_IPV4), []);
});
