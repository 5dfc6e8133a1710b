import { existsSync } from 'node:fs';
import type { Logger } from '../log.js';
import type { Dataplane } from '../sync/dataplane.js';
import { familyDataplanes } from '../sync/family-dataplanes.js';
import type { NftablesClient } from './client.js';
import { FakeNftables } from './fake.js';
import { NFT_IPV4, NFT_IPV6 } from './layout.js';
import { NftablesDataplane } from './nftables-dataplane.js';

/** nftables mode: one data plane per family served, each over its client's table (`ip`, `ip6` clusterset-proxy). */
export function nftablesDataplanes(clients: readonly NftablesClient[]): Dataplane {
  return familyDataplanes(clients.map((c) => new NftablesDataplane(c)));
}

/** Both families over fakes: the plan alone (--dry-run, offline explain). */
export function planOnlyNftables(): Dataplane {
  return nftablesDataplanes([new FakeNftables(NFT_IPV4), new FakeNftables(NFT_IPV6)]);
}

/**
 * The kernel's tables: IPv4 always, IPv6 wherever the kernel has IPv6 (a
 * kernel booted with ipv6.disable=1 has no /proc/sys/net/ipv6 and no ip6
 * packets to serve) and the table can be read.
 */
export async function nativeNftablesClients(log: Logger, ipv6Proc = '/proc/sys/net/ipv6'): Promise<NftablesClient[]> {
  const { NativeNftables } = await import('./native.js');
  const v4 = new NativeNftables();
  if (!existsSync(ipv6Proc)) {
    log.warn('the kernel has no IPv6 here: table ip6 clusterset-proxy is not written; IPv6 ClusterIPs are not served, IPv4 ones are');
    return [v4];
  }
  const v6 = new NativeNftables({ family: NFT_IPV6 });
  try {
    await v6.read();
    return [v4, v6];
  } catch (err) {
    v6.close();
    log.warn({ err: (err as Error).message.split('\n')[0] }, 'nf_tables family ip6 cannot be read on this node: IPv6 ClusterIPs are not served, IPv4 ones are');
    return [v4];
  }
}
