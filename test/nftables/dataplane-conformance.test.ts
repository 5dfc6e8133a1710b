// The Dataplane scenarios (test/support/dataplane-conformance.ts) through
// NftablesDataplane: on the fake, and on this machine's nf_tables, each
// scenario in a fresh network namespace where an inet table of another owner
// stands beside the agent's (the fake models the agent's table alone).

import { execa } from 'execa';
import { NftError, type NftablesClient } from '../../src/nftables/client.js';
import { FakeNftables } from '../../src/nftables/fake.js';
import { NativeNftables } from '../../src/nftables/native.js';
import { NftablesDataplane } from '../../src/nftables/nftables-dataplane.js';
import { dataplaneConformance, refusing, SETTINGS, type KernelUnderTest } from '../support/dataplane-conformance.js';
import { Topology } from '../support/netns.js';

/** kube-proxy's nftables table, in the same namespace. */
const FOREIGN = 'table ip kube-proxy {\n\tchain services {\n\t\ttype nat hook output priority -100; policy accept;\n\t\tip daddr 10.96.0.99 tcp dport 80 return\n\t}\n}\n';

function kernelOf(client: NftablesClient, foreign: KernelUnderTest['foreign'], close: () => Promise<void>): KernelUnderTest {
  const { executor, refuseNext } = refusing(client, ['commit', 'writeSkeleton'], () => new NftError('the batch was refused by the test', 'EINVAL', 0));
  return { dataplane: () => new NftablesDataplane(executor, SETTINGS), refuseNext, ...(foreign ? { foreign } : {}), close };
}

dataplaneConformance('fake nf_tables', false, async () => kernelOf(new FakeNftables(), undefined, async () => {}));

dataplaneConformance('nf_tables', true, async () => {
  const topology = new Topology();
  const ns = await topology.namespace('dpcnft');
  const client = new NativeNftables({ netns: ns });
  const nft = (args: string[], input?: string) => execa('ip', ['netns', 'exec', ns, 'nft', ...args], input === undefined ? {} : { input });
  return kernelOf(client, {
    write: async () => {
      await nft(['-f', '-'], FOREIGN);
    },
    read: async () => (await nft(['list', 'table', 'ip', 'kube-proxy'])).stdout,
  }, async () => {
    client.close();
    await topology.teardown();
  });
});
