// The Dataplane scenarios through IpvsDataplane against the kernel over
// generic netlink. Needs ip_vs: run inside UML by test/uml/ipvs-kernel.test.ts
// (the file name keeps it out of the host's test glob). Each scenario starts
// from an empty IPVS table of the guest and leaves one.

import { NetlinkIpvs } from '../../src/ipvs/netlink-client.js';
import { dataplaneConformance } from '../support/dataplane-conformance.js';
import { ipvsKernel } from './dataplane-kernel.js';

dataplaneConformance('IPVS', true, async () => {
  const client = new NetlinkIpvs();
  await client.flush();
  return ipvsKernel(client, async () => {
    await client.flush();
    client.close();
  });
});
