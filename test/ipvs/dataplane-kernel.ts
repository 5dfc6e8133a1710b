// An IPVS table as the Dataplane conformance scenarios take it: the executor
// (fake or netlink), a way to refuse its next write, and a virtual service of
// another owner (kube-proxy's, by address rather than by the agent's marks).

import { IpvsDataplane } from '../../src/ipvs/dataplane.js';
import { IpvsError, type IpvsClient, type ServiceKey } from '../../src/ipvs/types.js';
import { refusing, type KernelUnderTest } from '../support/dataplane-conformance.js';

const FOREIGN: ServiceKey = { kind: 'address', family: 4, protocol: 'tcp', address: '10.96.0.99', port: 80 };

export function ipvsKernel(client: IpvsClient, close: () => Promise<void> = async () => {}): KernelUnderTest {
  const { executor, refuseNext } = refusing(client, ['addService', 'updateService', 'deleteService', 'addDest', 'updateDest', 'deleteDest'], () => new IpvsError('EINVAL', 'refused by the test'));
  return {
    dataplane: () => new IpvsDataplane(executor),
    refuseNext,
    foreign: {
      write: async () => {
        await client.addService({ key: FOREIGN, scheduler: 'rr', flags: 0, timeout: 0, netmask: 0xffffffff });
        await client.addDest(FOREIGN, { address: '10.1.0.99', port: 8080, weight: 1, forward: 'masq', upperThreshold: 0, lowerThreshold: 0 });
      },
      read: async () => {
        const theirs = (await client.services()).filter((s) => s.key.kind === 'address');
        const dests = await Promise.all(theirs.map((s) => client.dests(s.key)));
        return JSON.stringify(theirs.map((s, i) => [s.key, s.scheduler, dests[i]!.map((d) => [d.address, d.port, d.weight])]));
      },
    },
    close,
  };
}
