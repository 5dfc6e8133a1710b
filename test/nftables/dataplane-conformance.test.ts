// The Dataplane scenarios (test/support/dataplane-conformance.ts) through
// NftablesDataplane, for each family's table (ip and ip6 clusterset-proxy):
// on the fake, and on this machine's nf_tables, each scenario in a fresh
// network namespace where kube-proxy's table of the same family stands
// beside the agent's (the fake models the agent's table alone).

import { execa } from 'execa';
import { NftError, type NftablesClient } from '../../src/nftables/client.js';
import { FakeNftables } from '../../src/nftables/fake.js';
import { NFT_IPV4, NFT_IPV6, type NftFamily } from '../../src/nftables/layout.js';
import { NativeNftables } from '../../src/nftables/native.js';
import { NftablesDataplane } from '../../src/nftables/nftables-dataplane.js';
import { dataplaneConformance, refusing, SETTINGS, type KernelUnderTest } from '../support/dataplane-conformance.js';
import { Topology } from '../support/netns.js';

/** kube-proxy's nftables table of the family, in the same namespace. */
const FOREIGN: Record<NftFamily['name'], string> = {
  ip: 'table ip kube-proxy {\n\tchain services {\n\t\ttype nat hook output priority -100; policy accept;\n\t\tip daddr 10.96.0.99 tcp dport 80 return\n\t}\n}\n',
  ip6: 'table ip6 kube-proxy {\n\tchain services {\n\t\ttype nat hook output priority -100; policy accept;\n\t\tip6 daddr fd00:96::99 tcp dport 80 return\n\t}\n}\n',
};

function kernelOf(client: NftablesClient, foreign: KernelUnderTest['foreign'], close: () => Promise<void>): KernelUnderTest {
  const { executor, refuseNext } = refusing(client, ['commit', 'writeSkeleton'], () => new NftError('the batch was refused by the test', 'EINVAL', 0));
  return { dataplane: () => new NftablesDataplane(executor, SETTINGS), refuseNext, ...(foreign ? { foreign } : {}), close };
}

for (const family of [NFT_IPV4, NFT_IPV6]) {
  const table = `table ${family.name} clusterset-proxy`;
  dataplaneConformance(`fake nf_tables, ${table}`, false, async () => kernelOf(new FakeNftables(family), undefined, async () => {}), family.ipFamily);

  dataplaneConformance(`nf_tables, ${table}`, true, async () => {
    const topology = new Topology();
    const ns = await topology.namespace('dpcnft');
    const client = new NativeNftables({ netns: ns, family });
    const nft = (args: string[], input?: string) => execa('ip', ['netns', 'exec', ns, 'nft', ...args], input === undefined ? {} : { input });
    return kernelOf(client, {
      write: async () => {
        await nft(['-f', '-'], FOREIGN[family.name]);
      },
      read: async () => (await nft(['list', 'table', family.name, 'kube-proxy'])).stdout,
    }, async () => {
      client.close();
      await topology.teardown();
    });
  }, family.ipFamily);
}
