// Real packets while the nftables data plane fills its table from nothing:
// the table is dormant until the commit that wakes it, so a connection to a
// ClusterIP whose elements are already in is not DNATed before that commit,
// and is after it.
//
//   client 10.3.0.2 ── 10.3.0.1 node 10.1.0.1 ── pod 10.1.0.11 (http-echo :8080)

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import type { NftablesClient, NftOp } from '../../src/nftables/client.js';
import { NativeNftables } from '../../src/nftables/native.js';
import { NftablesDataplane } from '../../src/nftables/nftables-dataplane.js';
import { planNftGroup } from '../../src/nftables/plan.js';
import { httpRequests, startHttpServer, Topology, type HttpServer, type HttpSummary } from '../support/netns.js';

const CLUSTER_IP = '10.96.0.60';
const POD = '10.1.0.11';
const topology = new Topology();
let node = '';
let client = '';
let server: HttpServer | null = null;

before(async () => {
  node = await topology.namespace('node');
  client = await topology.namespace('client');
  const pods = await topology.namespace('pods');
  await topology.link({ ns: node, ifname: 'to-pods', address: '10.1.0.1/24' }, { ns: pods, ifname: 'eth0', address: `${POD}/24` });
  await topology.link({ ns: node, ifname: 'to-client', address: '10.3.0.1/24' }, { ns: client, ifname: 'eth0', address: '10.3.0.2/24' });
  await execa('ip', ['-n', pods, 'route', 'add', 'default', 'via', '10.1.0.1']);
  await execa('ip', ['-n', client, 'route', 'add', 'default', 'via', '10.3.0.1']);
  await topology.enableForwarding(node);
  server = await startHttpServer(pods, POD, 8080, 'pod');
});

after(async () => {
  await server?.stop().catch(() => {});
  await topology.teardown();
});

const request = (): Promise<HttpSummary> => httpRequests(client, `http://${CLUSTER_IP}/`, 3, { timeoutMs: 2000 });

test('nftables fill: a ClusterIP whose elements are in is not DNATed while the table is dormant, and is once the last commit wakes it', async () => {
  const native = new NativeNftables({ netns: node });
  const seen: { dormant: boolean; answer: HttpSummary }[] = [];
  // Before the commit that wakes the table: every element is in, the table still dormant.
  const watching: NftablesClient = {
    family: native.family,
    writeSkeleton: (s, o) => native.writeSkeleton(s, o),
    read: () => native.read(),
    close: () => native.close(),
    async commit(ops: readonly NftOp[]) {
      if (ops.some((op) => op.op === 'wakeTable')) {
        await native.commit(ops.filter((op) => op.op !== 'wakeTable'));
        seen.push({ dormant: (await native.read())!.dormant === true, answer: await request() });
      }
      await native.commit(ops);
    },
  };
  try {
    const dp = new NftablesDataplane(watching, { clusterCIDR: '10.1.0.0/24', localCluster: 'brazil', masqueradeBit: 14, maxChainsPerRestore: 1000 });
    const group = planNftGroup('default/web', [{
      ip: CLUSTER_IP, port: 80, protocol: 'TCP', name: { namespace: 'default', service: 'derived-web', port: 'http' }, affinity: null,
      endpoints: [{ ip: POD, port: 8080, cluster: 'brazil', weight: 1 }],
    }], { localCluster: 'brazil' });
    const tx = dp.diff(null, new Map([['default/web', group]]));
    assert.equal(tx.fill, true);
    assert.equal((await dp.apply(tx)).refused, null);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.dormant, true);
    assert.equal(seen[0]!.answer.ok, 0, `dormant table answered: ${JSON.stringify(seen[0]!.answer)}`);
    assert.equal((await native.read())!.dormant, false);
    const after = await request();
    assert.deepEqual([after.ok, after.bodies], [3, { pod: 3 }], JSON.stringify(after));
  } finally {
    native.close();
  }
});
