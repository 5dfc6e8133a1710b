// Dual stack in iptables mode, with real IPv6 packets: a client in the node
// connects to a Service's IPv6 ClusterIP and a dual-stack pod of the chosen
// cluster answers (nat OUTPUT path through ip6tables); IPv6 fails over to the
// other cluster on its own while IPv4 stays local; foreign ip6tables rules are
// left byte for byte, and --cleanup restores ip6tables exactly and destroys
// both families' frontend sets (MCS-FRONTENDS, MCS-FRONTENDS6).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Service } from '@kubernetes/client-node';
import { importedSlice, withClustersetIPs } from '../support/fixtures.js';
import { dualStackObjects, localSlice6, v6 } from '../support/dual-stack-objects.js';
import { Lab, zeroCounters, type AgentProcess } from '../support/lab.js';
import { waitForLog } from '../support/agent-client.js';

assert.equal(process.getuid?.(), 0, 'data-plane tests need root: run them as root (CI does)');

// A kube-proxy-style IPv6 rule and a user's filter rule: ours to leave alone.
const FOREIGN6 = `*nat
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d fd00:96::99/128 -p tcp -m comment --comment "other/svc:http cluster IP" -m tcp --dport 80 -j RETURN
COMMIT
*filter
:USER-AUDIT - [0:0]
-A INPUT -s fd00:66::/64 -m comment --comment "user rule" -j USER-AUDIT
-A USER-AUDIT -j RETURN
COMMIT
`;

for (const backend of ['nft', 'legacy'] as const) {
  describe(`dual stack over iptables-${backend}: IPv6 ClusterIPs through ip6tables, each family selecting on its own`, () => {
    const lab = new Lab(backend);
    let pristine6 = '';
    let agent: AgentProcess;

    before(async () => {
      await lab.start();
      await lab.addPod({ ip: '10.1.0.10', ip6: 'fd00:1::10', body: 'brazil' });
      await lab.addPod({ ip: '10.2.0.10', ip6: 'fd00:2::10', body: 'chile01' });
      await lab.routeServiceRange('10.96.0.0/12');
      await lab.routeServiceRange('fd00:96::/112');
      await lab.routeServiceRange('fd00:97::/112');
      await lab.restore(FOREIGN6, 'ipv6');
      pristine6 = zeroCounters(await lab.saveAll('ipv6'));
      // derived-serve with its ClusterSet IPs, one per family, as Karmada writes them.
      lab.apply(...dualStackObjects().map((o) => (o.kind === 'Service' && o.metadata?.name === 'derived-serve' ? withClustersetIPs(o as V1Service, ['10.97.0.50', 'fd00:97::50']) : o)));
      const config = await lab.writeConfig({
        clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], minSyncInterval: '50ms',
        clusterCIDR: ['10.1.0.0/16', 'fd00:1::/48'],
        // A full sync only every 10 minutes: a repair of ip6tables seen below was made by the drift watch.
        syncPeriod: '10m',
      });
      agent = await lab.startAgent(['--config', config]);
      await lab.waitForRules((t) => t.includes('-d fd00:96::40/128') && t.includes('-d fd00:96::60/128'), 'IPv6 ClusterIPs programmed', undefined, 'ipv6');
      await lab.waitForRules((t) => t.includes('-d 10.96.0.40/32'), 'IPv4 ClusterIPs programmed');
    });
    after(() => lab.stop());

    it('a dual-stack Service answers on both ClusterIPs; an IPv6-only Service answers on its one', async () => {
      assert.deepEqual((await lab.requests('http://[fd00:96::40]/', 5)).bodies, { brazil: 5 });
      assert.deepEqual((await lab.requests('http://10.96.0.40/', 5)).bodies, { brazil: 5 });
      assert.deepEqual((await lab.requests('http://[fd00:96::50]/', 5)).bodies, { brazil: 5 });
      assert.deepEqual((await lab.requests('http://[fd00:96::60]/', 5)).bodies, { chile01: 5 });
    });

    it('the IPv6 ClusterSet IP is served like the IPv6 ClusterIP, and fails over with it', async () => {
      const nat6 = await lab.save('nat', false, 'ipv6');
      assert.match(nat6, /-d fd00:97::50\/128 .*clusterset IP/);
      assert.deepEqual((await lab.requests('http://[fd00:97::50]/', 5)).bodies, { brazil: 5 });
      lab.apply(localSlice6(false));
      await lab.waitForRules((t) => !t.includes('-> brazil fd00:1::10:8080'), 'local IPv6 endpoints to leave', undefined, 'ipv6');
      assert.deepEqual((await lab.requests('http://[fd00:97::50]/', 5)).bodies, { chile01: 5 });
      assert.deepEqual((await lab.requests('http://[fd00:96::50]/', 5)).bodies, { chile01: 5 });
      lab.apply(localSlice6(true));
      await lab.waitForRules((t) => t.includes('-> brazil fd00:1::10:8080'), 'local IPv6 endpoints back', undefined, 'ipv6');
      assert.deepEqual((await lab.requests('http://[fd00:97::50]/', 5)).bodies, { brazil: 5 });
    });

    it('local IPv6 endpoints unready: IPv6 fails over to the other cluster and back, IPv4 stays local', async () => {
      lab.apply(localSlice6(false));
      await lab.waitForRules((t) => !t.includes('-> brazil fd00:1::10:8080'), 'local IPv6 endpoints to leave', undefined, 'ipv6');
      assert.deepEqual((await lab.requests('http://[fd00:96::40]/', 5)).bodies, { chile01: 5 });
      assert.deepEqual((await lab.requests('http://10.96.0.40/', 5)).bodies, { brazil: 5 });
      lab.apply(localSlice6(true));
      await lab.waitForRules((t) => t.includes('-> brazil fd00:1::10:8080'), 'local IPv6 endpoints back', undefined, 'ipv6');
      assert.deepEqual((await lab.requests('http://[fd00:96::40]/', 5)).bodies, { brazil: 5 });
    });

    it('an IPv6 ClusterIP without endpoints of its family is rejected at once', async () => {
      lab.apply(v6(importedSlice('default', 'chile01', 'only6-1', 'derived-only6', [])));
      await lab.waitForRules((t) => t.includes('derived-only6:http has no endpoints'), 'the reject', undefined, 'ipv6');
      const filter = await lab.save('filter', false, 'ipv6');
      assert.match(filter, /-d fd00:96::60\/128 .*-j REJECT --reject-with icmp6-port-unreachable/);
      const r = await lab.requests('http://[fd00:96::60]/', 1, { timeoutMs: 20_000 });
      assert.equal(r.ok, 0, JSON.stringify(r));
      assert.deepEqual(Object.keys(r.errors), ['ECONNREFUSED'], 'refused, not timed out');
    });

    it('kube-proxy\'s IPv6 jump re-inserted ahead of ours: the ip6tables drift watch puts ours first again, and IPv6 answers locally', async () => {
      const head = (nat: string) => nat.split('\n').filter((l) => l.startsWith('-A PREROUTING '))[0] ?? '';
      assert.match(head(await lab.save('nat', false, 'ipv6')), /-j MCS-SERVICES$/);
      await waitForLog(agent, /watching nf_tables events for changes to the ip6tables|ip6tables-legacy announces no changes/);
      const kubeJump = '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES';
      await lab.restore(`*nat\n-D PREROUTING ${kubeJump}\n-I PREROUTING 1 ${kubeJump}\nCOMMIT\n`, 'ipv6');
      const repaired = await lab.waitForRules((t) => /-j MCS-SERVICES$/.test(head(t)), 'our IPv6 jump first again in PREROUTING', 30_000, 'ipv6');
      assert.equal(repaired.split('\n').filter((l) => l.startsWith('-A PREROUTING ')).length, 2, repaired);
      const logs = await waitForLog(agent, 'our jumps are first again');
      assert.match(logs, /"family":"ipv6".*nat PREROUTING: .*KUBE-SERVICES.* was ahead of our jump to MCS-SERVICES/);
      assert.ok(!logs.includes('kernel drift repaired by a full sync'), 'a targeted repair, no full sync');
      assert.deepEqual((await lab.requests('http://[fd00:96::40]/', 3)).bodies, { brazil: 3 });
    });

    it('foreign ip6tables rules are left byte for byte, and --cleanup restores ip6tables exactly', async () => {
      const programmed = await lab.saveAll('ipv6');
      for (const line of FOREIGN6.split('\n').filter((l) => l.startsWith('-A'))) assert.ok(programmed.includes(line), line);
      // Ahead of kube-proxy's jump, as in iptables, matching the IPv6 frontend set.
      assert.match(programmed, /-A OUTPUT -m set --match-set MCS-FRONTENDS6 dst,dst -m comment --comment "clusterset-proxy service portals" -j MCS-SERVICES\n-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES/);
      assert.deepEqual(await lab.ipsets(), ['MCS-FRONTENDS', 'MCS-FRONTENDS6']);
      await agent.stop();
      const config = await lab.writeConfig({ clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }] });
      const r = await lab.runAgent(['--config', config, '--cleanup']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(zeroCounters(await lab.saveAll('ipv6')), pristine6);
      assert.ok(!(await lab.saveAll('ipv4')).includes('MCS-'), 'iptables is cleaned up too');
      assert.deepEqual(await lab.ipsets(), [], 'both families\' frontend sets are destroyed');
    });
  });
}
