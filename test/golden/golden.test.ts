// Byte identity of what the agent programs: the fixture (test/golden/fixture.ts)
// synced through the engine into the fake and into the real iptables-nft and
// iptables-legacy in a fresh namespace, and each resulting table compared byte
// for byte with the iptables-save text stored next to this file (only the
// tool's "# Generated/Completed" comment lines are left out: they carry a
// date). Any change to rule text, rule order, chain names or what a
// quarantined group keeps fails here.
//
// The frontend set's members are compared the same way (frontends.ipset).
//
// GOLDEN_WRITE=1 rewrites the stored files from the fake instead of comparing.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { IptablesBackend } from '../../src/iptables/backend.js';
import { ExecIptablesBackend } from '../../src/iptables/exec-backend.js';
import { FakeIptables } from '../../src/iptables/fake-backend.js';
import { FRONTEND_SET } from '../../src/iptables/layout.js';
import { silentLogger } from '../../src/log.js';
import { explain, readKernelForExplain, renderExplain } from '../../src/ops/explain.js';
import { KUBE_PROXY_NAT, USER_FILTER } from '../support/foreign-rules.js';
import { cleanupStale, Topology } from '../support/netns.js';
import { syncFixture } from './fixture.js';

const TABLES = ['nat', 'filter'] as const;
const goldenPath = (table: string) => fileURLToPath(new URL(`../../../test/golden/${table}.save`, import.meta.url));
const write = process.env.GOLDEN_WRITE === '1';

/** iptables-save text without its comment lines. */
function withoutComments(text: string): string {
  return text.split('\n').filter((l) => !l.startsWith('#')).join('\n');
}

async function checkAgainstGolden(backend: IptablesBackend, source = false): Promise<void> {
  const { quarantined, refusals } = await syncFixture(backend);
  assert.equal(quarantined, 1, 'the poison group is quarantined');
  assert.ok(refusals >= 1, 'the poison payload was refused');
  for (const table of TABLES) {
    const actual = withoutComments(await backend.save(table));
    if (write && source) {
      writeFileSync(goldenPath(table), actual);
      continue;
    }
    assert.equal(actual, readFileSync(goldenPath(table), 'utf8'), `${backend.mode}: iptables-save -t ${table} differs from test/golden/${table}.save`);
  }
  // The frontend set's members, sorted (ipset lists a hash in its own order; the create line carries a random seed).
  const members = `${((await backend.saveSet(FRONTEND_SET)) ?? '').split('\n').filter((l) => l.startsWith('add ')).sort().join('\n')}\n`;
  const setPath = goldenPath('frontends').replace(/\.save$/, '.ipset');
  if (write && source) writeFileSync(setPath, members);
  else assert.equal(members, readFileSync(setPath, 'utf8'), `${backend.mode}: ipset save ${FRONTEND_SET} differs from test/golden/frontends.ipset`);
}

test('the fixture synced into the fake matches the golden iptables-save text byte for byte', async () => {
  const fake = new FakeIptables('nft');
  fake.load(KUBE_PROXY_NAT + USER_FILTER);
  await checkAgainstGolden(fake, true);
});

/** Explain's report (JSON, then text) for each group of the fixture and one name that is no group. */
async function explainAll(): Promise<string> {
  const fake = new FakeIptables('nft');
  fake.load(KUBE_PROXY_NAT + USER_FILTER);
  const { engine } = await syncFixture(fake);
  const kernel = await readKernelForExplain(() => engine.plane.readForExplain!());
  const out: string[] = [];
  for (const q of ['shop/web', 'shop/derived-web', 'shop/derived-api', 'shop/derived-dns', 'shop/derived-legacy', 'shop/derived-empty', 'shop/cart', 'other/derived-search', 'shop/derived-pay', 'shop/nothing']) {
    const [namespace, name] = q.split('/') as [string, string];
    const report = explain(engine, { namespace, name }, kernel, (c) => (c === 'peru' ? 'unhealthy since 2026-01-01T00:00:00.000Z' : 'healthy'));
    out.push(JSON.stringify(report), renderExplain(report));
  }
  return out.join('\n');
}

test('explain says the same for the fixture, JSON and text, byte for byte (test/golden/explain.txt)', async () => {
  const actual = await explainAll();
  if (write) writeFileSync(goldenPath('explain').replace(/\.save$/, '.txt'), actual);
  else assert.equal(actual, readFileSync(goldenPath('explain').replace(/\.save$/, '.txt'), 'utf8'));
  assert.match(actual, /"share":0\.24999999994125/, 'shares as the kernel draws them (rounded probabilities) are in the report');
});

test('the golden text carries what the fixture promises (a guard against storing an empty or partial table)', () => {
  const nat = readFileSync(goldenPath('nat'), 'utf8');
  const filter = readFileSync(goldenPath('filter'), 'utf8');
  for (const needle of [
    '-m recent --rcheck --seconds 600', // affinity
    '--probability', // weighted choice
    'shop/derived-web:metrics', // a named port
    'shop/derived-dns:53', // an unnamed port
    'shop/cart:http -> peru 10.3.6.10:8080', // a MultiClusterService group
    '-> chile01 10.4.0.10:8080', // the quarantined group's old rule
    '-> chile01 10.2.6.11:8080', // the change applied beside it
    'KUBE-SERVICES', // foreign rules kept
  ]) assert.ok(nat.includes(needle), `nat holds ${needle}`);
  for (const [absent, why] of [
    ['10.4.0.66', 'the refused endpoint never gets in'],
    ['10.3.0.99', 'a probed-dead endpoint drops out'],
    ['derived-legacy', 'a group with policy off is left to kube-proxy'],
    ['10.244.2.10', 'a cluster weighted 0 gets no traffic'],
    ['10.2.3.10', 'failover sends everything to the first cluster of its order'],
    ['10.3.2.11', 'a terminating endpoint that no longer serves is not used'],
  ]) assert.ok(!nat.includes(absent!), `nat does not hold ${absent}: ${why}`);
  assert.ok(filter.includes('shop/derived-empty:http has no endpoints'), 'a port without endpoints is rejected');
});

for (const mode of ['nft', 'legacy'] as const) {
  describe(`iptables-${mode} in a fresh namespace`, () => {
    let topology: Topology;
    before(async () => {
      assert.equal(process.getuid?.(), 0, 'this test creates a network namespace: run it as root');
      await cleanupStale();
      topology = new Topology();
    });
    after(() => topology.teardown());

    test(`the fixture synced through real iptables-${mode}-restore matches the golden iptables-save text byte for byte`, async () => {
      const node = await topology.namespace(`golden-${mode}`);
      const backend = new ExecIptablesBackend(mode, { netns: node, log: silentLogger() });
      await backend.restore(KUBE_PROXY_NAT + USER_FILTER);
      await checkAgainstGolden(backend);
    });
  });
}
