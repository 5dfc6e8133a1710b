import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkSkeleton, diffTableByGroup, NftablesDataplane, STALE_PART } from '../../src/nftables/dataplane.js';
import { FakeNftables } from '../../src/nftables/fake.js';
import { planSkeleton, shardOf, shardSet } from '../../src/nftables/layout.js';
import type { NftGroup } from '../../src/nftables/plan.js';

const skeleton = planSkeleton({ clusterCIDR: '10.244.0.0/16' });

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

test('a full sync on an empty kernel writes the skeleton and every element in one batch', async () => {
  const fake = new FakeNftables();
  const dp = new NftablesDataplane(fake);
  const r = await dp.syncAll(skeleton, groups(3));
  assert.equal(r.skeletonWritten, true);
  assert.equal(r.elements, 3 * 66);
  assert.equal(r.batches, 1);
  assert.equal(fake.elementsWritten, 3 * 66);
});

test('an endpoint change is one batch of the changed slots, with no kernel read and no skeleton write', async () => {
  const fake = new FakeNftables();
  const dp = new NftablesDataplane(fake);
  await dp.syncAll(skeleton, groups(3));
  const before = { commits: fake.commits, skeleton: fake.skeletonWrites, written: fake.elementsWritten };
  let reads = 0;
  const read = fake.read.bind(fake);
  fake.read = () => (reads++, read());
  const r = await dp.applyGroups(new Map([['default/svc-1', group(1, ['10.2.1.1:8080', '10.2.1.9:8080'])]]));
  assert.equal(r.batches, 1);
  assert.equal(r.elements, 64); // 32 slots deleted and re-added with the new endpoint
  assert.equal(fake.commits, before.commits + 1);
  assert.equal(fake.skeletonWrites, before.skeleton);
  assert.equal(reads, 0);
  const slots = (await read())!.sets.filter((s) => s.name.startsWith('slots-')).flatMap((s) => s.elements);
  assert.equal(slots.filter((e) => e.data === '10.2.1.9 . 8080').length, 32);
  assert.equal(slots.filter((e) => e.data === '10.2.1.2 . 8080').length, 0);
});

test('a restarted agent adopts a matching table without writing anything', async () => {
  const fake = new FakeNftables();
  await new NftablesDataplane(fake).syncAll(skeleton, groups(5));
  const writes = { commits: fake.commits, skeleton: fake.skeletonWrites };
  const r = await new NftablesDataplane(fake).syncAll(skeleton, groups(5));
  assert.equal(r.adopted, true);
  assert.equal(r.elements, 0);
  assert.deepEqual({ commits: fake.commits, skeleton: fake.skeletonWrites }, writes);
});

test('a full sync repairs drift: a deleted element is re-added alone, a stale one removed', async () => {
  const fake = new FakeNftables();
  const dp = new NftablesDataplane(fake);
  await dp.syncAll(skeleton, groups(3));
  await fake.commit([{ op: 'deleteElements', set: 'slots-02', elements: [{ set: 'slots-02', key: '10.96.1.2 . tcp . 80 . 7' }] }]);
  await fake.commit([{ op: 'addElements', set: 'slots-09', elements: [{ set: 'slots-09', key: '10.96.9.9 . tcp . 80 . 0', data: '10.9.9.9 . 80' }] }]);
  const r = await dp.syncAll(skeleton, groups(3));
  assert.equal(r.elements, 2);
  assert.equal(r.skeletonWritten, false);
  const slots = (await fake.read())!.sets.filter((s) => s.name.startsWith('slots-')).flatMap((s) => s.elements);
  assert.equal(slots.length, 3 * 64);
  assert.ok(slots.some((e) => e.key === '10.96.1.2 . tcp . 80 . 7'));
});

test('a full sync rewrites a skeleton that lost a rule, keeping the elements, and rebuilds a deleted table', async () => {
  const fake = new FakeNftables();
  const dp = new NftablesDataplane(fake);
  await dp.syncAll(skeleton, groups(2));
  fake.dropRule('dispatch-01');
  const written = fake.elementsWritten;
  const r = await dp.syncAll(skeleton, groups(2));
  assert.equal(r.skeletonWritten, true);
  assert.equal(r.elements, 0);
  assert.equal(fake.elementsWritten, written);
  fake.dropTable();
  const again = await dp.syncAll(skeleton, groups(2));
  assert.equal(again.skeletonWritten, true);
  assert.equal(again.elements, 2 * 66);
});

test('a changed cluster CIDR rewrites the skeleton: the masquerade chain comment records it', async () => {
  const fake = new FakeNftables();
  const dp = new NftablesDataplane(fake);
  await dp.syncAll(skeleton, groups(1));
  const r = await dp.syncAll(planSkeleton({ clusterCIDR: '10.100.0.0/16' }), groups(1));
  assert.equal(r.skeletonWritten, true);
  assert.equal(checkSkeleton(await fake.read(), planSkeleton({ clusterCIDR: '10.100.0.0/16' })).writeSkeleton, false);
});

test('a failed batch leaves the mirror as it was, so the retry sends the same change', async () => {
  const fake = new FakeNftables();
  const dp = new NftablesDataplane(fake);
  await dp.syncAll(skeleton, groups(2));
  fake.dropTable();
  const change = new Map([['default/svc-0', group(0, ['10.2.0.7:8080'])]]);
  await assert.rejects(dp.applyGroups(change), { code: 'ENOENT' });
  assert.deepEqual(dp.appliedGroups.get('default/svc-0'), group(0, ['10.2.0.1:8080', '10.2.0.2:8080']));
});

test('cleanup deletes the table and nothing else; a second cleanup finds none', async () => {
  const fake = new FakeNftables();
  const dp = new NftablesDataplane(fake);
  await dp.syncAll(skeleton, groups(1));
  assert.equal(await dp.cleanup(), true);
  assert.equal(await fake.read(), null);
  assert.equal(await dp.cleanup(), false);
});

test('a full diff by group attributes each change to its group and what nobody owns to the stale part', async () => {
  const fake = new FakeNftables();
  await new NftablesDataplane(fake).syncAll(skeleton, groups(3));
  const same = diffTableByGroup(await fake.read(), groups(3));
  assert.deepEqual(same, []);
  const desired = new Map(groups(3));
  desired.delete('default/svc-2');
  desired.set('default/svc-1', group(1, ['10.2.1.1:8080', '10.2.1.7:8080']));
  const parts = diffTableByGroup(await fake.read(), desired);
  assert.deepEqual(parts.map((p) => p.key), ['default/svc-1', STALE_PART]);
  await fake.commit([...parts.flatMap((p) => p.ops.filter((o) => o.op.startsWith('delete'))), ...parts.flatMap((p) => p.ops.filter((o) => o.op.startsWith('add')))]);
  assert.deepEqual(diffTableByGroup(await fake.read(), desired), []);
  const slots = (await fake.read())!.sets.filter((s) => s.name.startsWith('slots-')).flatMap((s) => s.elements);
  assert.equal(slots.length, 2 * 64);
  assert.equal(slots.filter((e) => e.data === '10.2.1.7 . 8080').length, 32);
});

test('a full diff by group deletes a slot element outside the slot range and re-adds one a group lost', async () => {
  const fake = new FakeNftables();
  await new NftablesDataplane(fake).syncAll(skeleton, groups(2));
  const set = shardSet(shardOf('10.96.1.1'));
  await fake.commit([
    { op: 'addElements', set, elements: [{ set, key: '10.96.1.1 . tcp . 80 . 99', data: '10.2.1.1 . 8080' }] },
    { op: 'deleteElements', set, elements: [{ set, key: '10.96.1.1 . tcp . 80 . 5' }] },
  ]);
  const parts = diffTableByGroup(await fake.read(), groups(2));
  assert.deepEqual(parts.map((p) => [p.key, p.ops.map((o) => o.op)]), [['default/svc-1', ['addPacked']], [STALE_PART, ['deletePacked']]]);
  const ops = parts.flatMap((p) => p.ops);
  await fake.commit([...ops.filter((o) => o.op.startsWith('delete')), ...ops.filter((o) => o.op.startsWith('add'))]);
  assert.deepEqual(diffTableByGroup(await fake.read(), groups(2)), []);
});
