// Cases every NftablesClient must pass: the fake and the kernel alike. Each
// case starts from no table and gets a fresh client from the factory.

import assert from 'node:assert/strict';
import { NftError, type NftablesClient, type ObservedTable } from '../../src/nftables/client.js';
import { planSkeleton } from '../../src/nftables/layout.js';
import type { Element } from '../../src/nftables/plan.js';

export interface ConformanceCase {
  readonly name: string;
  run(client: NftablesClient): Promise<void>;
}

const skeleton = planSkeleton({ clusterCIDR: '10.244.0.0/16' });
const slot = (n: number, ep: string, comment?: string): Element => ({ set: 'slots-10', key: `10.96.0.10 . tcp . 80 . ${n}`, data: `${ep} . 8080`, ...(comment ? { comment } : {}) });

function elements(t: ObservedTable | null, set: string): Element[] {
  assert.ok(t, 'the table exists');
  const s = t.sets.find((x) => x.name === set);
  assert.ok(s, `set ${set} exists`);
  return [...s.elements].sort((a, b) => a.key.localeCompare(b.key));
}

async function refused(p: Promise<unknown>, code: string, opIndex: number): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof NftError, `an NftError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.opIndex, opIndex);
    return true;
  });
}

export const CASES: readonly ConformanceCase[] = [
  {
    name: 'no table reads as null, and element operations on it fail with ENOENT',
    async run(c) {
      assert.equal(await c.read(), null);
      await refused(c.commit([{ op: 'addElements', set: 'slots-10', elements: [slot(0, '10.1.0.1')] }]), 'ENOENT', 0);
      await refused(c.commit([{ op: 'deleteTable' }]), 'ENOENT', 0);
    },
  },
  {
    name: 'the skeleton creates every set empty and every base chain with its hook, priority, comment and rules',
    async run(c) {
      await c.writeSkeleton(skeleton);
      const t = await c.read();
      assert.ok(t);
      const shape = t.sets.map((s) => [s.name, s.keyLen, s.dataLen, s.elements.length].join(' ')).sort();
      assert.equal(shape.length, 6 + 64);
      assert.deepEqual(shape.slice(0, 6), ['affinity 12 0 0', 'clusterset_ips 4 0 0', 'hairpin 8 0 0', 'no_endpoints 12 0 0', 'service_ips 4 0 0', 'service_ports 12 0 0']);
      assert.ok(shape.slice(6).every((x, i) => x === `slots-${String(i).padStart(2, '0')} 16 8 0`), shape.slice(6).join());
      for (const spec of skeleton.chains) {
        const ch: ObservedTable["chains"][number] | undefined = t.chains.find((x) => x.name === spec.name);
        assert.ok(ch, spec.name);
        assert.deepEqual([ch.type, ch.hook, ch.priority, ch.rules], [spec.type, spec.hook, spec.priority, spec.rules.length], spec.name);
        assert.ok(ch.comment?.length, `${spec.name} carries a comment`);
      }
    },
  },
  {
    name: 'elements come back as written: keys, values and comments',
    async run(c) {
      await c.writeSkeleton(skeleton);
      await c.commit([
        { op: 'addElements', set: 'slots-10', elements: [slot(0, '10.1.0.1', 'default/web:http brazil'), slot(63, '10.1.0.2')] },
        { op: 'addElements', set: 'no_endpoints', elements: [{ set: 'no_endpoints', key: '10.96.0.11 . udp . 53', comment: 'kube-system/dns:dns' }] },
        { op: 'addElements', set: 'hairpin', elements: [{ set: 'hairpin', key: '10.1.0.1 . 10.96.0.10' }] },
      ]);
      const t = await c.read();
      assert.deepEqual(elements(t, 'slots-10'), [slot(0, '10.1.0.1', 'default/web:http brazil'), slot(63, '10.1.0.2')]);
      assert.deepEqual(elements(t, 'no_endpoints'), [{ set: 'no_endpoints', key: '10.96.0.11 . udp . 53', comment: 'kube-system/dns:dns' }]);
      assert.deepEqual(elements(t, 'hairpin'), [{ set: 'hairpin', key: '10.1.0.1 . 10.96.0.10' }]);
    },
  },
  {
    name: 're-adding an element with the same value is accepted and changes nothing; another value is EEXIST',
    async run(c) {
      await c.writeSkeleton(skeleton);
      await c.commit([{ op: 'addElements', set: 'slots-10', elements: [slot(1, '10.1.0.1', 'first')] }]);
      await c.commit([{ op: 'addElements', set: 'slots-10', elements: [slot(1, '10.1.0.1', 'second')] }]);
      assert.deepEqual(elements(await c.read(), 'slots-10'), [slot(1, '10.1.0.1', 'first')]);
      await refused(c.commit([{ op: 'addElements', set: 'slots-10', elements: [slot(1, '10.1.0.2')] }]), 'EEXIST', 0);
    },
  },
  {
    name: 'deleting a missing element is ENOENT and names the operation',
    async run(c) {
      await c.writeSkeleton(skeleton);
      await c.commit([{ op: 'addElements', set: 'slots-10', elements: [slot(2, '10.1.0.1')] }]);
      await refused(c.commit([
        { op: 'deleteElements', set: 'slots-10', elements: [slot(2, '10.1.0.1')] },
        { op: 'deleteElements', set: 'affinity', elements: [{ set: 'affinity', key: '10.96.0.10 . tcp . 80' }] },
      ]), 'ENOENT', 1);
    },
  },
  {
    name: 'a batch applies whole or not at all',
    async run(c) {
      await c.writeSkeleton(skeleton);
      await c.commit([{ op: 'addElements', set: 'slots-10', elements: [slot(3, '10.1.0.1')] }]);
      await refused(c.commit([
        { op: 'deleteElements', set: 'slots-10', elements: [slot(3, '10.1.0.1')] },
        { op: 'addElements', set: 'slots-10', elements: [slot(4, '10.1.0.4')] },
        { op: 'deleteElements', set: 'slots-10', elements: [slot(5, '10.1.0.5')] },
      ]), 'ENOENT', 2);
      assert.deepEqual(elements(await c.read(), 'slots-10'), [slot(3, '10.1.0.1')]);
    },
  },
  {
    name: 'a value changes by deleting and adding its key in one batch',
    async run(c) {
      await c.writeSkeleton(skeleton);
      await c.commit([{ op: 'addElements', set: 'slots-10', elements: [slot(6, '10.1.0.1', 'a')] }]);
      await c.commit([
        { op: 'deleteElements', set: 'slots-10', elements: [slot(6, '10.1.0.1')] },
        { op: 'addElements', set: 'slots-10', elements: [slot(6, '10.1.0.9', 'b')] },
      ]);
      assert.deepEqual(elements(await c.read(), 'slots-10'), [slot(6, '10.1.0.9', 'b')]);
    },
  },
  {
    name: 'rewriting the skeleton keeps the elements and restores a deleted chain',
    async run(c) {
      await c.writeSkeleton(skeleton);
      await c.commit([{ op: 'addElements', set: 'slots-10', elements: [slot(7, '10.1.0.1')] }]);
      await c.writeSkeleton(skeleton);
      const t = await c.read();
      assert.deepEqual(elements(t, 'slots-10'), [slot(7, '10.1.0.1')]);
      assert.equal(t!.chains.length, skeleton.chains.length);
    },
  },
  {
    name: 'flushing a set empties it; deleting the table removes everything',
    async run(c) {
      await c.writeSkeleton(skeleton);
      await c.commit([{ op: 'addElements', set: 'slots-10', elements: [slot(8, '10.1.0.1'), slot(9, '10.1.0.2')] }]);
      await c.commit([{ op: 'flushSet', set: 'slots-10' }]);
      assert.deepEqual(elements(await c.read(), 'slots-10'), []);
      await c.commit([{ op: 'deleteTable' }]);
      assert.equal(await c.read(), null);
    },
  },
  {
    name: 'a large batch (20,000 elements, several netlink messages) applies as one',
    async run(c) {
      await c.writeSkeleton(skeleton);
      const many: Element[] = [];
      for (let i = 0; i < 20_000; i++) many.push({ set: 'slots-10', key: `10.96.${i >> 8}.${i & 255} . tcp . 80 . ${i % 64}`, data: '10.1.0.1 . 8080', comment: `ns/svc-${i}:http` });
      await c.commit([{ op: 'addElements', set: 'slots-10', elements: many }]);
      assert.equal(elements(await c.read(), 'slots-10').length, 20_000);
      // The last message of a batch fails: nothing of the earlier messages stays.
      await refused(c.commit([
        { op: 'deleteElements', set: 'slots-10', elements: many },
        { op: 'deleteElements', set: 'slots-10', elements: [slot(60, '10.9.9.9')] },
      ]), 'ENOENT', 1);
      assert.equal(elements(await c.read(), 'slots-10').length, 20_000);
    },
  },
];
