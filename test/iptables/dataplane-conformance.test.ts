// The Dataplane scenarios (test/support/dataplane-conformance.ts) through
// IptablesDataplane: on the fake in both modes, and on real iptables-nft and
// iptables-legacy, each scenario in a fresh network namespace.

import { RestoreError, type BackendMode, type IptablesBackend } from '../../src/iptables/backend.js';
import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import { ExecIptablesBackend } from '../../src/iptables/exec-backend.js';
import { FakeIptables } from '../../src/iptables/fake-backend.js';
import { silentLogger } from '../../src/log.js';
import { dataplaneConformance, refusing, SETTINGS, type KernelUnderTest } from '../support/dataplane-conformance.js';
import { Topology } from '../support/netns.js';

/** kube-proxy's chain and jump in the same nat table. */
const FOREIGN = '*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -d 10.96.0.99/32 -p tcp -m tcp --dport 80 -j RETURN\n-A OUTPUT -j KUBE-SERVICES\nCOMMIT\n';

function kernelOf(backend: IptablesBackend, close: () => Promise<void>): KernelUnderTest {
  const { executor, refuseNext } = refusing(backend, ['restore'], () => new RestoreError(`iptables-${backend.mode}-restore: refused`, 'refused by the test', undefined));
  return {
    dataplane: () => new IptablesDataplane(executor, SETTINGS),
    refuseNext,
    foreign: {
      write: () => backend.restore(FOREIGN),
      read: async () => (await backend.save('nat')).split('\n').filter((l) => l.includes('KUBE-SERVICES')).join('\n'),
    },
    close,
  };
}

for (const mode of ['nft', 'legacy'] as const satisfies readonly BackendMode[]) {
  dataplaneConformance(`fake iptables-${mode}`, true, async () => kernelOf(new FakeIptables(mode), async () => {}));
}

for (const mode of ['nft', 'legacy'] as const satisfies readonly BackendMode[]) {
  dataplaneConformance(`iptables-${mode}`, true, async () => {
    const topology = new Topology();
    const ns = await topology.namespace('dpc');
    return kernelOf(new ExecIptablesBackend(mode, { netns: ns, log: silentLogger() }), () => topology.teardown());
  });
}
