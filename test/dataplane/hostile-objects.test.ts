import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { ANNOTATION_PROVISION_CLUSTER, LABEL_SERVICE_PROXY_NAME } from '../../src/model/records.js';
import { ANNOTATION_WEIGHTS } from '../../src/policy/policy.js';
import { waitFor } from '../support/api-server.js';
import { waitForEvent, waitForLog } from '../support/agent-client.js';
import { dispatchedSlice, endpoint, importedSlice, service } from '../support/fixtures.js';
import { KUBE_PROXY_NAT, USER_FILTER } from '../support/foreign-rules.js';
import { Lab, type AgentProcess } from '../support/lab.js';

assert.equal(process.getuid?.(), 0, 'data-plane tests need root: run them as root (CI does)');

// Hostile values in API objects, through the real informers (the test API
// server speaks the wire protocol and, like a lenient server, accepts any
// annotation value and any name) and the real agent with the real
// iptables-restore in a node namespace. The provision-cluster annotation is
// free text and used to go unescaped into a rule comment: the exact payload
// below closed the comment and the nat table and put a DROP rule into the
// node's filter table, rewritten on every full sync and left by --cleanup.

/** The payload as it was used: a DROP of the node's port 2222 in filter, and a catch-all masquerade in nat. */
const PAYLOAD = 'evil"\nCOMMIT\n*filter\n-I INPUT 1 -p tcp --dport 2222 -j DROP\nCOMMIT\n*nat\n-I POSTROUTING 1 -j MASQUERADE\n-A MCS-SERVICES -m comment --comment "x';
const VARIANTS: readonly [string, unknown][] = [
  ['the exact payload', PAYLOAD],
  ['a newline alone', 'chile01\n'],
  ['a quote alone', 'chile"01'],
  ['-A text', 'x" -A INPUT -p tcp --dport 2223 -j DROP -m comment --comment "y'],
  ['a 64 KB value', `x"\n${'-A INPUT -p tcp --dport 2224 -j DROP\n'.repeat(1800)}`.slice(0, 65_536)],
  ['a number', 2225],
  ['an object', { cluster: 'chile01', dport: 2226 }],
  ['a list', ['chile01', '2227']],
  ['a boolean', true],
];
/** Addresses of no pod: a rule sending to one of them is a rule that should not exist. */
const NEVER = ['10.2.0.31', '10.2.0.32', '10.2.0.33', '10.2.0.34'];

/** Counters change with traffic; everything else must stay byte for byte. */
function normalise(dump: string): string {
  return dump.replace(/\[\d+:\d+\]/g, '[0:0]');
}

/** The rules that are not the agent's. */
function foreign(dump: string): string {
  return dump.split('\n').filter((l) => !l.includes('MCS-')).join('\n');
}

function hostileSlice(service: string, i: number, value: unknown): V1EndpointSlice {
  const s = dispatchedSlice('default', 'chile01', `${service}-h${i}`, service, [endpoint(NEVER[0]!)], [{ name: 'http', port: 8080 }]);
  s.metadata!.annotations = { [ANNOTATION_PROVISION_CLUSTER]: value as string };
  return s;
}

/** Objects with one bad part each: the rest of each must still count. */
function badParts(): (V1Service | V1EndpointSlice)[] {
  // Addresses a proxy must not send to (169.254.1.1 is the node's own next hop here), and a string "false".
  const addresses = dispatchedSlice('default', 'chile01', 'other-addr', 'other',
    ['127.0.0.1', '169.254.1.1', '224.0.0.1', '255.255.255.255', '0.0.0.0'].map((ip) => endpoint(ip)), [{ name: 'http', port: 8080 }]);
  addresses.endpoints.push({ addresses: [NEVER[1]!], conditions: { ready: 'false' as unknown as boolean } });
  const stringPort = dispatchedSlice('default', 'chile01', 'other-port', 'other', [endpoint(NEVER[2]!)], [{ name: 'http', port: 8080 }]);
  (stringPort.ports![0] as { port: unknown }).port = '8080';
  // A non-string value of one of the agent's own annotations on a served Service (it threw while planning).
  const web = service('default', 'web', '10.96.0.2', [{ name: 'http', port: 80 }], { annotations: { [ANNOTATION_WEIGHTS]: { chile01: 3 } as unknown as string } });
  // Names a lenient API server let through, on a Service handed to the agent and on a port.
  const badName = service('default', 'evil"\n-A INPUT -j DROP', '10.96.0.9', [{ name: 'http', port: 80 }], { labels: { [LABEL_SERVICE_PROXY_NAME]: 'clusterset-proxy' } });
  const badPort = service('default', 'derived-a', '10.96.0.1', [{ name: 'http', port: 80 }, { name: 'p"\n-A', port: 81 }]);
  return [addresses, stringPort, web, badName, badPort];
}

for (const backend of ['nft', 'legacy'] as const) {
  describe(`hostile API values on the ${backend} backend: nothing reaches iptables-restore, the bad objects are reported, every other service answers`, () => {
    const lab = new Lab(backend);
    let pristine = '';
    let agent: AgentProcess;
    let configPath = '';
    let changes = 0;

    before(async () => {
      await lab.start();
      await lab.addPod({ ip: '10.2.0.10', body: 'a' });
      await lab.addPod({ ip: '10.2.0.20', body: 'web' });
      await lab.addPod({ ip: '10.2.0.21', body: 'web2' });
      await lab.addPod({ ip: '10.2.0.30', body: 'victim' });
      await lab.addPod({ ip: '10.2.0.40', body: 'other' });
      await lab.routeServiceRange('10.96.0.0/12');
      await lab.restore(KUBE_PROXY_NAT + USER_FILTER);
      pristine = normalise(await lab.saveAll());
      lab.apply(
        service('default', 'derived-a', '10.96.0.1', [{ name: 'http', port: 80 }]),
        importedSlice('default', 'chile01', 'a-1', 'derived-a', [endpoint('10.2.0.10')]),
        service('default', 'web', '10.96.0.2', [{ name: 'http', port: 80 }]),
        dispatchedSlice('default', 'chile01', 'web-1', 'web', [endpoint('10.2.0.20')], [{ name: 'http', port: 8080 }]),
        service('default', 'victim', '10.96.0.3', [{ name: 'http', port: 80 }]),
        dispatchedSlice('default', 'chile01', 'victim-1', 'victim', [endpoint('10.2.0.30')], [{ name: 'http', port: 8080 }]),
        service('default', 'other', '10.96.0.4', [{ name: 'http', port: 80 }]),
        dispatchedSlice('default', 'chile01', 'other-1', 'other', [endpoint('10.2.0.40')], [{ name: 'http', port: 8080 }]),
      );
      // Full syncs every second: the injected rules used to be rewritten (and pile up) on each.
      configPath = await lab.writeConfig({
        clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16', minSyncInterval: '50ms', syncPeriod: '1s',
      });
      agent = await lab.startAgent(['--config', configPath]);
      await lab.waitForRules((t) => ['10.2.0.10:8080', '10.2.0.20:8080', '10.2.0.30:8080', '10.2.0.40:8080'].every((ep) => t.includes(ep)), 'the four services programmed');
    });
    after(() => lab.stop());

    /**
     * After the hostile objects: a change to another service is applied (syncs go on), then two
     * more full syncs run. Then the foreign rules of every table must be byte for byte as they
     * were, nothing of any payload anywhere, and every service must answer real packets.
     */
    async function assertUntouched(): Promise<void> {
      const withSecond = ++changes % 2 === 1;
      lab.apply(dispatchedSlice('default', 'chile01', 'web-1', 'web', [endpoint('10.2.0.20'), ...(withSecond ? [endpoint('10.2.0.21')] : [])], [{ name: 'http', port: 8080 }]));
      await lab.waitForRules((t) => t.includes('10.2.0.21:8080') === withSecond, 'the change to web');
      const fullSyncs = (text: string) => text.split('\n').filter((l) => l.includes('full sync done')).length;
      const seen = fullSyncs(await agent.logs());
      await waitFor(async () => fullSyncs(await agent.logs()) >= seen + 2 || null, 'two more full syncs', { timeoutMs: 30_000, intervalMs: 100 });

      const dump = normalise(await lab.saveAll());
      assert.equal(foreign(dump), foreign(pristine), 'the foreign rules of every table are byte for byte as they were');
      for (const needle of ['evil', '2222', '2223', '2224', '2225', '2226', '2227', '-j MASQUERADE\n-A MCS', '127.0.0.1', '169.254.1.1', '224.0.0.1', '0.0.0.0:', ...NEVER]) {
        assert.ok(!dump.includes(needle), `${needle} is nowhere in the tables`);
      }
      const failures = (await agent.logs()).split('\n').filter((l) => /sync failed|quarantined:/.test(l));
      assert.deepEqual(failures, [], 'no sync failed and no group was set aside');

      assert.deepEqual((await lab.requests('http://10.96.0.1/', 4)).bodies, { a: 4 });
      const web = await lab.requests('http://10.96.0.2/', withSecond ? 20 : 4);
      assert.deepEqual(Object.keys(web.bodies).sort(), withSecond ? ['web', 'web2'] : ['web'], JSON.stringify(web));
      assert.equal(web.ok, withSecond ? 20 : 4, JSON.stringify(web));
      // The victims answer only from their good endpoints.
      assert.deepEqual((await lab.requests('http://10.96.0.3/', 6)).bodies, { victim: 6 });
      assert.deepEqual((await lab.requests('http://10.96.0.4/', 6)).bodies, { other: 6 });
    }

    it('the exact payload in provision-cluster: no rule of it in any table through full syncs, the slice reported by name', async () => {
      lab.apply(hostileSlice('victim', 0, PAYLOAD));
      await assertUntouched();
      await waitForLog(agent, `EndpointSlice default/chile01-victim-h0 metadata.annotations[${ANNOTATION_PROVISION_CLUSTER}] \\"evil\\\\\\"\\\\nCOMMIT\\\\n*filter\\\\n-I INPUT 1 -p tcp --dport 2222 -j DROP`);
      const event = await waitForEvent(lab, 'Malformed', 'EndpointSlice', 'chile01-victim-h0');
      assert.match(event.message, /metadata\.annotations\[endpointslice\.karmada\.io\/provision-cluster\] "evil\\"\\nCOMMIT\\n\*filter\\n-I INPUT 1 -p tcp --dport 2222 -j DROP.*is not a cluster name.*slice skipped/);
    });

    it('variants in provision-cluster (a newline alone, a quote alone, -A text, a 64 KB value) are each reported and change nothing', async () => {
      const strings = VARIANTS.filter(([, v]) => typeof v === 'string').slice(1);
      lab.apply(...strings.map(([, value], i) => hostileSlice('victim', i + 1, value)));
      await assertUntouched();
      for (let i = 1; i <= strings.length; i++) await waitForLog(agent, `EndpointSlice default/chile01-victim-h${i} metadata.annotations[${ANNOTATION_PROVISION_CLUSTER}] `);
      // The 64 KB value is shown cut: no log line carries more than a few hundred characters of it.
      const lines = (await agent.logs()).split('\n');
      assert.ok(lines.every((l) => l.length < 2000), 'every log line is short');
    });

    it('non-string values, addresses a proxy must not use, a string "false", a string port and bad names: each reported, only its part left out', async () => {
      const others = VARIANTS.filter(([, v]) => typeof v !== 'string');
      lab.apply(...others.map(([, value], i) => hostileSlice('other', i, value)), ...badParts());
      await assertUntouched();
      for (const line of [
        ...others.map((_, i) => `EndpointSlice default/chile01-other-h${i} metadata.annotations[${ANNOTATION_PROVISION_CLUSTER}] `),
        'EndpointSlice default/chile01-other-h0 metadata.annotations[endpointslice.karmada.io/provision-cluster] 2225 has the wrong type: expected a string, got a number; slice skipped',
        'EndpointSlice default/chile01-other-addr endpoint address \\"127.0.0.1\\" is a loopback address; endpoint skipped',
        'EndpointSlice default/chile01-other-addr endpoint address \\"169.254.1.1\\" is a link-local address',
        'EndpointSlice default/chile01-other-addr endpoint address \\"224.0.0.1\\" is a multicast address',
        'EndpointSlice default/chile01-other-addr endpoint address \\"255.255.255.255\\" is the broadcast address',
        'EndpointSlice default/chile01-other-addr endpoint address \\"0.0.0.0\\" is the unspecified address',
        'EndpointSlice default/chile01-other-addr endpoints[5].conditions.ready \\"false\\" has the wrong type: expected a boolean, got a string; read as false',
        'EndpointSlice default/chile01-other-port port http: port \\"8080\\" has the wrong type: expected an integer, got a string; port skipped',
        `Service default/web metadata.annotations[${ANNOTATION_WEIGHTS}] {\\\\\\"chile01\\\\\\":3} has the wrong type: expected a string, got an object; annotation ignored`,
        'metadata.name \\"evil\\\\\\"\\\\n-A INPUT -j DROP\\" is not a Service name',
        'Service default/derived-a spec.ports[1].name \\"p\\\\\\"\\\\n-A\\" is not a DNS label',
      ]) await waitForLog(agent, line);
    });

    it('--cleanup leaves the tables exactly as they were, with nothing of any payload', async () => {
      assert.equal(await agent.stop('SIGTERM'), 0);
      const r = await lab.runAgent(['--config', configPath, '--cleanup']);
      assert.equal(r.code, 0, r.stderr);
      const dump = normalise(await lab.saveAll());
      assert.equal(dump, pristine);
      assert.ok(!dump.includes('evil') && !dump.includes('2222'));
    });
  });
}
