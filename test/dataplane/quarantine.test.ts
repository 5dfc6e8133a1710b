import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serviceChainName } from '../../src/iptables/names.js';
import { waitFor } from '../support/api-server.js';
import { get, sample, waitForEvent, waitForLog } from '../support/agent-client.js';
import { endpoint, importedSlice, service } from '../support/fixtures.js';
import { KUBE_PROXY_NAT } from '../support/foreign-rules.js';
import { AGENT_WAIT_MS, Lab, type AgentProcess } from '../support/lab.js';
import { INVALID_OPTION } from '../support/refusing-backend.js';

assert.equal(process.getuid?.(), 0, 'data-plane tests need root: run them as root (CI does)');

// One service group the kernel refuses while a good agent runs: the agent
// with the real iptables-restore in a node namespace, every rule sending
// traffic to POISON made invalid on its way in (test/support/refusing-agent.ts),
// so the real tool refuses the payload and names the line, as it does for any
// rule the kernel cannot take.

const REFUSING_AGENT = join(fileURLToPath(new URL('../support/', import.meta.url)), 'refusing-agent.js');
const POISON = '10.2.0.66';
const HEALTH = 'http://127.0.0.1:10266';
const METRICS = 'http://127.0.0.1:10265';
const chainA = serviceChainName('default', 'derived-a', 'http', 'TCP');
const sliceA = (...ips: string[]) => importedSlice('default', 'chile01', 'a-1', 'derived-a', ips.map((ip) => endpoint(ip)));
const sliceB = (...ips: string[]) => importedSlice('default', 'chile01', 'b-1', 'derived-b', ips.map((ip) => endpoint(ip)));

/** The DNAT targets of a chain in an iptables-save text. */
function targetsOf(nat: string, chain: string): string[] {
  return nat.split('\n').filter((l) => l.startsWith(`-A ${chain} `)).map((l) => /--to-destination (\S+)/.exec(l)?.[1] ?? '').filter((t) => t !== '');
}

function count(text: string, needle: string): number {
  return text.split('\n').filter((l) => l.includes(needle)).length;
}

for (const backend of ['nft', 'legacy'] as const) {
  describe(`a poison service group on the ${backend} backend (kernel refusal: a wrapper makes the real iptables-restore refuse one endpoint's rule, line-numbered)`, () => {
    const lab = new Lab(backend);
    let agent: AgentProcess;

    before(async () => {
      await lab.start();
      await lab.addPod({ ip: '10.2.0.10', body: 'a' });
      await lab.addPod({ ip: '10.2.0.20', body: 'b' });
      await lab.addPod({ ip: '10.2.0.21', body: 'b2' });
      await lab.routeServiceRange('10.96.0.0/12');
      await lab.restore(KUBE_PROXY_NAT);
      lab.apply(
        service('default', 'derived-a', '10.96.0.1', [{ name: 'http', port: 80 }]), sliceA('10.2.0.10'),
        service('default', 'derived-b', '10.96.0.2', [{ name: 'http', port: 80 }]), sliceB('10.2.0.20'),
      );
      const config = await lab.writeConfig({
        clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16',
        // A change still counted as waiting would fail /healthz after 1 s.
        minSyncInterval: '50ms', healthzTimeout: '1s',
      });
      agent = await lab.startAgent(['--config', config, '--refuse-endpoint', POISON], REFUSING_AGENT);
      await lab.waitForRules((nat) => nat.includes('10.2.0.10:8080') && nat.includes('10.2.0.20:8080'), 'both services programmed');
    });
    after(() => lab.stop());

    it('the other services keep syncing, the poison keeps its old rules, /healthz holds, and fixing the object heals it', async () => {
      assert.deepEqual((await lab.requests('http://10.96.0.1/', 3)).bodies, { a: 3 });

      // The poison arrives: an endpoint whose rule the kernel refuses.
      lab.apply(sliceA('10.2.0.10', POISON));
      let logs = await waitForLog(agent, 'service default/a quarantined');
      assert.match(logs, new RegExp(`quarantined: the kernel refused its rules .*${POISON.replaceAll('.', '\\.')}:8080.*unknown option.*${INVALID_OPTION}`));

      // A change to another service: applied, with no sync failing on the way. Every sync that
      // succeeds applies every change queued before it, so this is "in the next sync".
      lab.apply(sliceB('10.2.0.21'));
      const nat = await lab.waitForRules((t) => t.includes('10.2.0.21:8080'), 'the change to b applied');
      assert.deepEqual((await lab.requests('http://10.96.0.2/', 3)).bodies, { b2: 3 });
      logs = await agent.logs();
      assert.equal(count(logs, 'sync failed'), 0, 'no sync failed');
      assert.equal(count(logs, 'quarantined:'), 1, 'reported once');

      // The poison group keeps its last good rules, and they still carry traffic.
      assert.deepEqual(targetsOf(nat, chainA), ['10.2.0.10:8080']);
      assert.ok(!nat.includes(POISON));
      assert.deepEqual((await lab.requests('http://10.96.0.1/', 3)).bodies, { a: 3 });

      const event = await waitForEvent(lab, 'Quarantined', 'Service', 'derived-a');
      assert.equal(event.type, 'Warning');
      assert.match(event.message, new RegExp(`${POISON.replaceAll('.', '\\.')}:8080.*unknown option`));
      assert.equal(sample((await get(lab, `${METRICS}/metrics`)).body, 'clusterset_proxy_quarantined_groups'), 1);

      // Two retries of the poison (each a refused restore or two) take longer than the 1 s healthz
      // bound: its change must not count as waiting.
      const refused = count(logs, 'iptables restore refused');
      await waitFor(async () => count(await agent.logs(), 'iptables restore refused') >= refused + 4 || null, 'two retries of the poison group', { timeoutMs: AGENT_WAIT_MS, intervalMs: 100 });
      const healthz = await get(lab, `${HEALTH}/healthz`);
      assert.equal(healthz.status, 200, healthz.body);
      assert.equal(count(await agent.logs(), 'quarantined:'), 1, 'retries failing the same way are not news');

      // The object is fixed: the next sync applies it and lifts the quarantine.
      lab.apply(sliceA('10.2.0.10', '10.2.0.11'));
      await waitForLog(agent, 'service default/a healed');
      const healed = await lab.waitForRules((t) => targetsOf(t, chainA).includes('10.2.0.11:8080'), 'the fixed group applied');
      assert.deepEqual(targetsOf(healed, chainA), ['10.2.0.10:8080', '10.2.0.11:8080']);
      await waitForEvent(lab, 'QuarantineLifted', 'Service', 'derived-a');
      assert.equal(sample((await get(lab, `${METRICS}/metrics`)).body, 'clusterset_proxy_quarantined_groups'), 0);
      assert.equal(count(await agent.logs(), 'sync failed'), 0);
    });
  });
}
