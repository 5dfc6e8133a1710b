// The same cases against this machine's kernel, each in a fresh network namespace.
import { after, test } from 'node:test';
import { NativeNftables } from '../../src/nftables/native.js';
import { Topology } from '../support/netns.js';
import { CASES } from './conformance.js';

const topology = new Topology();
after(() => topology.teardown());

let n = 0;
for (const c of CASES) {
  test(`kernel nf_tables: ${c.name}`, async () => {
    const ns = await topology.namespace(`nft${n++}`);
    const client = new NativeNftables({ netns: ns });
    try {
      await c.run(client);
    } finally {
      client.close();
    }
  });
}
