import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';
import type { IptablesBackend } from '../../src/iptables/backend.js';
import { createIptablesBackend } from '../../src/iptables/exec-backend.js';
import { silentLogger } from '../../src/log.js';
import { serviceChainName } from '../../src/iptables/names.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { endpoint, importedSlice, service } from '../support/fixtures.js';
import { KUBE_PROXY_NAT } from '../support/foreign-rules.js';
import { Lab } from '../support/lab.js';

/** Packet counter of the first nat rule containing `needle`, from iptables-save -c. */
async function packets(lab: Lab, needle: string): Promise<number> {
  const line = (await lab.save('nat', true)).split('\n').find((l) => l.includes(needle));
  assert.ok(line, `no rule with ${needle}`);
  return Number(/^\[(\d+):/.exec(line)![1]);
}

for (const backend of ['nft', 'legacy'] as const) {
  describe(`partial sync on the ${backend} backend: one endpoint change touches one chain`, () => {
    const lab = new Lab(backend);
    const payloads: string[] = [];
    let engine: SyncEngine;
    const chainA = serviceChainName('default', 'derived-a', 'http', 'TCP');
    const chainB = serviceChainName('default', 'derived-b', 'http', 'TCP');

    before(async () => {
      await lab.start();
      await lab.addPod({ ip: '10.2.0.10', body: 'a' });
      await lab.addPod({ ip: '10.2.0.20', body: 'b' });
      await lab.routeServiceRange('10.96.0.0/12');
      await lab.restore(KUBE_PROXY_NAT);
      const real = await createIptablesBackend({ mode: backend, netns: lab.nodeNs, log: silentLogger() });
      const recording: IptablesBackend = {
        mode: real.mode,
        save: (t) => real.save(t),
        restoreSets: (p) => real.restoreSets(p),
        saveSet: (name) => real.saveSet(name),
        restore: async (p) => {
          payloads.push(p);
          await real.restore(p);
        },
      };
      engine = new SyncEngine({ config: { ...DEFAULT_CONFIG, clusters: [{ name: 'chile01' }] }, dataplane: new IptablesDataplane(recording), log: silentLogger() });
      for (const [name, ip, ep] of [['a', '10.96.0.1', '10.2.0.10'], ['b', '10.96.0.2', '10.2.0.20']] as const) {
        engine.upsertService(service('default', `derived-${name}`, ip, [{ name: 'http', port: 80 }]));
        engine.upsertSlice(importedSlice('default', 'chile01', `${name}-1`, `derived-${name}`, [endpoint(ep)]));
      }
      // Filler services, so that "only one chain" means something.
      for (let i = 1; i <= 200; i++) {
        engine.upsertService(service('default', `derived-f${i}`, `10.97.0.${i}`, [{ name: 'http', port: 80 }]));
        engine.upsertSlice(importedSlice('default', 'chile01', `f${i}-1`, `derived-f${i}`, [endpoint(`10.3.0.${i}`)]));
      }
      await engine.syncFull();
    });
    after(() => lab.stop());

    it('the payload declares only the changed chain and leaves the dispatch chain alone', async () => {
      assert.deepEqual((await lab.requests('http://10.96.0.2/', 5)).bodies, { b: 5 });
      assert.equal(await packets(lab, `-j ${chainB}`), 5);
      const counted = await packets(lab, '--to-destination 10.2.0.20:8080');

      payloads.length = 0;
      engine.upsertSlice(importedSlice('default', 'chile01', 'a-1', 'derived-a', [endpoint('10.2.0.10'), endpoint('10.2.0.11')]));
      const result = await engine.syncPartial();
      assert.equal(payloads.length, 1);
      const payload = payloads[0]!;
      assert.deepEqual(payload.split('\n').filter((l) => l.startsWith(':')), [`:${chainA} - [0:0]`]);
      assert.ok(!payload.includes('MCS-SERVICES') && !payload.includes(chainB), payload);
      assert.ok(result.payloadBytes < 1024, `${result.payloadBytes} bytes`);

      // Untouched rules keep their counters (a rewritten chain starts again from zero) and keep counting.
      assert.equal(await packets(lab, `-j ${chainB}`), 5);
      assert.equal(await packets(lab, '--to-destination 10.2.0.20:8080'), counted);
      assert.deepEqual((await lab.requests('http://10.96.0.2/', 3)).bodies, { b: 3 });
      assert.equal(await packets(lab, `-j ${chainB}`), 8);
      assert.match(await lab.save('nat'), /--to-destination 10.2.0.11:8080/);
    });
  });
}
