import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execChainReader } from '../../src/drift/kernel-check.js';
import { serviceChainName } from '../../src/iptables/names.js';
import { waitFor } from '../support/api-server.js';
import { get, sample, waitForLog } from '../support/agent-client.js';
import { endpoint, importedSlice, service } from '../support/fixtures.js';
import { KUBE_PROXY_NAT, USER_FILTER } from '../support/foreign-rules.js';
import { kubeProxyRewrite } from '../support/kube-proxy-storm.js';
import { Lab, type AgentProcess } from '../support/lab.js';

assert.equal(process.getuid?.(), 0, 'data-plane tests need root: run them as root (CI does)');

const CHAIN = serviceChainName('default', 'derived-serve', 'http', 'TCP');
const KUBE_JUMP = '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES';
const METRICS = 'http://127.0.0.1:10265/metrics';

function chainRules(nat: string, chain: string): string[] {
  return nat.split('\n').filter((l) => l.startsWith(`-A ${chain} `));
}

async function metrics(lab: Lab): Promise<string> {
  const r = await get(lab, METRICS);
  assert.equal(r.status, 200, r.body);
  return r.body;
}

function counter(text: string, series: string): number {
  const v = sample(text, series);
  assert.ok(!Number.isNaN(v), `${series} is exported`);
  return v;
}

const FULL_SYNCS = 'clusterset_proxy_sync_duration_seconds_count{kind="full"}';

for (const backend of ['nft', 'legacy'] as const) {
  describe(`drift on the ${backend} backend: others' changes to our jumps and chains are repaired before the next full sync`, () => {
    const lab = new Lab(backend);
    let agent: AgentProcess;

    before(async () => {
      await lab.start();
      await lab.addPod({ ip: '10.2.0.10', body: 'chile01/serve-a' });
      await lab.routeServiceRange('10.96.0.0/12');
      await lab.restore(KUBE_PROXY_NAT + USER_FILTER);
      // A full sync only every 10 minutes: any repair seen below was made by the drift watch.
      const config = await lab.writeConfig({ clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], minSyncInterval: '200ms', syncPeriod: '10m' });
      lab.apply(service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]), importedSlice('default', 'chile01', 'serve-abc', 'derived-serve', [endpoint('10.2.0.10')]));
      agent = await lab.startAgent(['--config', config]);
      await lab.waitForRules((t) => t.includes('--to-destination 10.2.0.10:8080'), 'the DNAT rule to 10.2.0.10');
      await waitForLog(agent, backend === 'nft' ? 'watching nf_tables events' : 'checking the built-in chains');
    });
    after(async () => {
      // DRIFT_LOGS=1 prints what the agent logged, to see what moved.
      if (process.env.DRIFT_LOGS) console.log(await agent.logs());
      await lab.stop();
    });

    it('the chain reader lists several chains in one read, as iptables-save does, and a missing chain as null', async () => {
      const read = await execChainReader(backend, { netns: lab.nodeNs }).read([
        { table: 'nat', name: 'PREROUTING' }, { table: 'nat', name: 'MCS-NO-SUCH-CHAIN' }, { table: 'nat', name: CHAIN }, { table: 'filter', name: 'FORWARD' },
      ]);
      const nat = await lab.save('nat');
      const filter = await lab.save('filter');
      assert.deepEqual(read.get('nat/PREROUTING'), chainRules(nat, 'PREROUTING').map((l) => l.slice('-A PREROUTING '.length)));
      assert.equal(read.get('nat/MCS-NO-SUCH-CHAIN'), null);
      assert.deepEqual(read.get(`nat/${CHAIN}`), chainRules(nat, CHAIN).map((l) => l.slice(`-A ${CHAIN} `.length)));
      assert.ok(read.get(`nat/${CHAIN}`)!.length > 0);
      assert.deepEqual(read.get('filter/FORWARD'), chainRules(filter, 'FORWARD').map((l) => l.slice('-A FORWARD '.length)));
    });

    it('a KUBE-SERVICES jump re-inserted ahead of ours in nat PREROUTING: ours is first again, by a targeted restore', async () => {
      const before = await metrics(lab);
      const nat = await lab.save('nat');
      assert.match(chainRules(nat, 'PREROUTING')[0]!, /-j MCS-SERVICES$/);
      // What kube-proxy does when it finds its jump missing: prepend it.
      const started = performance.now();
      await lab.restore(`*nat\n-D PREROUTING ${KUBE_JUMP}\n-I PREROUTING 1 ${KUBE_JUMP}\nCOMMIT\n`);
      const repaired = await lab.waitForRules((t) => /-j MCS-SERVICES$/.test(chainRules(t, 'PREROUTING')[0] ?? ''), 'our jump first again in PREROUTING', 20_000);
      const elapsed = performance.now() - started;
      const prerouting = chainRules(repaired, 'PREROUTING');
      assert.equal(prerouting.length, 2, prerouting.join('\n'));
      assert.match(prerouting[1]!, /-j KUBE-SERVICES$/);
      const logs = await waitForLog(agent, 'our jumps are first again');
      assert.match(logs, /nat PREROUTING: .*KUBE-SERVICES.* was ahead of our jump to MCS-SERVICES/);
      const afterText = await metrics(lab);
      assert.ok(counter(afterText, 'clusterset_proxy_drift_repaired_total{cause="jump_order"}') >= counter(before, 'clusterset_proxy_drift_repaired_total{cause="jump_order"}') + 1);
      assert.equal(counter(afterText, FULL_SYNCS), counter(before, FULL_SYNCS), 'no full sync was needed');
      console.log(`# ${backend}: foreign re-insert → our jump first again in ${Math.round(elapsed)} ms (observed from outside, save polled every 50 ms)`);
    });

    it('a deleted MCS-SVC- chain (dispatch rule, rules and chain) is restored', async () => {
      const before = await metrics(lab);
      const nat = await lab.save('nat');
      const dispatch = chainRules(nat, 'MCS-DISPATCH-50').find((l) => l.endsWith(`-j ${CHAIN}`));
      assert.ok(dispatch, nat);
      const started = performance.now();
      await lab.restore(`*nat\n${dispatch.replace(/^-A /, '-D ')}\n-F ${CHAIN}\n-X ${CHAIN}\nCOMMIT\n`);
      // The restore succeeded, so the chain was gone; the agent may put it back before a save could show it.
      await lab.waitForRules((t) => t.includes(`:${CHAIN} `) && t.includes(dispatch) && t.includes('--to-destination 10.2.0.10:8080'), 'the service chain back', 20_000);
      const elapsed = performance.now() - started;
      const afterText = await waitFor(async () => {
        const text = await metrics(lab);
        const cause = backend === 'nft' ? 'chain_deleted' : 'chain_changed';
        return counter(text, `clusterset_proxy_drift_repaired_total{cause="${cause}"}`) > counter(before, `clusterset_proxy_drift_repaired_total{cause="${cause}"}`) ? text : null;
      }, 'the repair counted', { timeoutMs: 10_000, intervalMs: 50 });
      assert.ok(counter(afterText, FULL_SYNCS) > counter(before, FULL_SYNCS), 'repaired through a full sync');
      assert.deepEqual((await lab.requests('http://10.96.0.50/', 3)).bodies, { 'chile01/serve-a': 3 });
      console.log(`# ${backend}: deleted service chain → restored in ${Math.round(elapsed)} ms`);
    });

    it('a foreign rule added inside an MCS-SVC- chain is taken out again', async () => {
      const before = await metrics(lab);
      const intruder = `-A ${CHAIN} -m comment --comment "not ours" -j RETURN`;
      await lab.restore(`*nat\n${intruder.replace(/^-A (\S+)/, '-I $1 1')}\nCOMMIT\n`);
      await lab.waitForRules((t) => !t.includes('"not ours"') && t.includes('--to-destination 10.2.0.10:8080'), 'the foreign rule gone', 20_000);
      const afterText = await waitFor(async () => {
        const text = await metrics(lab);
        const series = 'clusterset_proxy_drift_repaired_total{cause="chain_changed"}';
        return counter(text, series) > counter(before, series) ? text : null;
      }, 'the repair counted', { timeoutMs: 10_000, intervalMs: 50 });
      assert.ok(counter(afterText, FULL_SYNCS) > counter(before, FULL_SYNCS), 'repaired through a full sync');
    });

    it('kube-proxy rewriting its own KUBE- chains (2,000 services) triggers no repair and no full sync', async () => {
      const before = await metrics(lab);
      await lab.restore(kubeProxyRewrite(2000, 1));
      await lab.restore(kubeProxyRewrite(2000, 2));
      const delta = (text: string, series: string) => counter(text, series) - counter(before, series);
      const lostRepaired = 'clusterset_proxy_drift_repaired_total{cause="events_lost"}';
      // Wait until the watch has seen the rewrites: nft counts the foreign generations (or, where the socket's buffer
      // is smaller than the burst, the lost events and the check of our jumps they cost); legacy polls twice more.
      const afterText = await waitFor(async () => {
        const text = await metrics(lab);
        const seen = backend === 'nft'
          ? delta(text, 'clusterset_proxy_nftables_generations_total{origin="other"}') >= 2 || delta(text, lostRepaired) >= 1
          : delta(text, 'clusterset_proxy_drift_checks_total{trigger="poll"}') >= 2;
        return seen ? text : null;
      }, 'the rewrite seen by the watch', { timeoutMs: 20_000, intervalMs: 100 });
      for (const series of [
        FULL_SYNCS,
        'clusterset_proxy_nftables_generations_total{origin="watched"}',
        ...['jump_order', 'jump_missing', 'chain_deleted', 'chain_changed', 'table_deleted'].map((c) => `clusterset_proxy_drift_detected_total{cause="${c}"}`),
      ]) {
        assert.equal(delta(afterText, series), 0, series);
      }
      // At most the one check of our jumps that lost events cost.
      assert.ok(delta(afterText, 'clusterset_proxy_drift_checks_total{trigger="event"}') <= delta(afterText, lostRepaired));
      const nat = await lab.save('nat');
      assert.match(chainRules(nat, 'PREROUTING')[0]!, /-j MCS-SERVICES$/);
      assert.ok(chainRules(nat, 'KUBE-SERVICES').length > 2000, 'the rewrite went in');
    });
  });
}
