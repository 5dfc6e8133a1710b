// The ClusterSet IP with real packets: a client on the node connects to the
// address Karmada writes into derived-serve's status.loadBalancer.ingress.
// kube-proxy's load-balancer rules for that address are in place (its
// iptables KUBE-EXT- chain, and in nftables mode its service-ips map too),
// DNATing to a pod that answers "kube-proxy": the agent's rules come first,
// so that answer appears only once the address leaves the Service's status.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { httpRequestStream, netnsExec, type HttpSummary } from '../support/netns.js';
import { endpoint, importedSlice, service, slice, withClustersetIPs } from '../support/fixtures.js';
import { Lab } from '../support/lab.js';
import { bucketChain, bucketOf } from '../../src/iptables/layout.js';

assert.equal(process.getuid?.(), 0, 'data-plane tests need root: run them as root (CI does)');

const CLUSTERSET_IP = '242.1.0.50';
const URL = `http://${CLUSTERSET_IP}/`;
const KUBE_PROXY_POD = '10.9.0.10';

// kube-proxy in iptables mode, for a load-balancer IP of derived-serve.
const KUBE_PROXY_LB = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-EXT-SERVE - [0:0]
:KUBE-SVC-SERVE - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d ${CLUSTERSET_IP}/32 -p tcp -m comment --comment "default/derived-serve:http loadbalancer IP" -m tcp --dport 80 -j KUBE-EXT-SERVE
-A KUBE-EXT-SERVE -m comment --comment "masquerade traffic for default/derived-serve:http external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-SERVE -j KUBE-SVC-SERVE
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-SVC-SERVE -p tcp -m comment --comment "default/derived-serve:http -> ${KUBE_PROXY_POD}:8080" -m tcp -j DNAT --to-destination ${KUBE_PROXY_POD}:8080
COMMIT
`;

// kube-proxy in nftables mode: its service-ips map sends the address to its own chains, at priority dstnat.
const KUBE_PROXY_NFT = `table ip kube-proxy {
  map service-ips {
    type ipv4_addr . inet_proto . inet_service : verdict
    elements = { ${CLUSTERSET_IP} . tcp . 80 : goto external-serve }
  }
  chain external-serve {
    meta mark set mark or 0x4000 goto service-serve
  }
  chain service-serve {
    meta l4proto tcp dnat to ${KUBE_PROXY_POD}:8080
  }
  chain nat-prerouting {
    type nat hook prerouting priority dstnat;
    ip daddr . meta l4proto . th dport vmap @service-ips
  }
  chain nat-output {
    type nat hook output priority -100;
    ip daddr . meta l4proto . th dport vmap @service-ips
  }
}
`;

const derived = (ips: readonly string[]) => withClustersetIPs(service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]), ips);
const localSlice = (ready: boolean) => slice('default', 'serve-local', 'serve', [endpoint('10.1.0.10', { ready })]);
const remoteSlice = (ready: boolean) => importedSlice('default', 'chile01', 'serve-1', 'derived-serve', [endpoint('10.2.0.10', { ready })]);

interface Mode {
  readonly title: string;
  readonly backend: 'nft' | 'legacy';
  readonly args: readonly string[];
  /** The agent's kernel state as text, and how an endpoint appears in it. */
  readonly kernel: (lab: Lab) => Promise<string>;
  readonly endpointText: (ip: string) => string;
  /** How the agent's own rules name the ClusterSet IP as a frontend. */
  readonly frontendText: string;
  readonly kubeProxy: (lab: Lab) => Promise<void>;
}

const MODES: readonly Mode[] = [
  {
    title: 'iptables mode (iptables-nft)', backend: 'nft', args: [],
    kernel: (lab) => lab.save('nat'), endpointText: (ip) => `${ip}:8080`, frontendText: `-A ${bucketChain(bucketOf(CLUSTERSET_IP))} -d ${CLUSTERSET_IP}/32`,
    kubeProxy: (lab) => lab.restore(KUBE_PROXY_LB),
  },
  {
    title: 'iptables mode (iptables-legacy)', backend: 'legacy', args: [],
    kernel: (lab) => lab.save('nat'), endpointText: (ip) => `${ip}:8080`, frontendText: `-A ${bucketChain(bucketOf(CLUSTERSET_IP))} -d ${CLUSTERSET_IP}/32`,
    kubeProxy: (lab) => lab.restore(KUBE_PROXY_LB),
  },
  {
    title: 'nftables mode', backend: 'nft', args: ['--proxy-mode', 'nftables'],
    kernel: async (lab) => (await netnsExec(lab.nodeNs, 'nft', ['list', 'table', 'ip', 'clusterset-proxy'], { reject: false })).stdout,
    endpointText: (ip) => `${ip} . 8080`, frontendText: `${CLUSTERSET_IP} . tcp . 80`,
    kubeProxy: async (lab) => {
      await lab.restore(KUBE_PROXY_LB);
      await netnsExec(lab.nodeNs, 'nft', ['-f', '-'], { input: KUBE_PROXY_NFT });
    },
  },
];

for (const mode of MODES) {
  describe(`${mode.title}: the ClusterSet IP is served with the ClusterIP's selection, ahead of kube-proxy's load-balancer rules`, () => {
    const lab = new Lab(mode.backend);

    const waitForKernel = async (predicate: (text: string) => boolean, what: string): Promise<void> => {
      let last = '';
      for (let i = 0; i < 600; i++) {
        lab.throwIfAgentExited();
        last = await mode.kernel(lab);
        if (predicate(last)) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`the kernel never showed ${what}:\n${last}${await lab.agentLogTails()}`);
    };
    const has = (ip: string) => (t: string) => t.includes(mode.endpointText(ip));

    before(async () => {
      await lab.start();
      await lab.addPod({ ip: '10.1.0.10', body: 'brazil' });
      await lab.addPod({ ip: '10.2.0.10', body: 'chile01' });
      await lab.addPod({ ip: KUBE_PROXY_POD, body: 'kube-proxy' });
      await lab.routeServiceRange('10.96.0.0/12');
      await lab.routeServiceRange('242.1.0.0/16');
      await mode.kubeProxy(lab);
      lab.apply(
        service('default', 'serve', '10.96.0.40', [{ name: 'http', port: 80 }]), localSlice(true),
        derived([CLUSTERSET_IP]), remoteSlice(true),
      );
      const config = await lab.writeConfig({ clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16', minSyncInterval: '50ms' });
      await lab.startAgent(['--config', config, ...mode.args]);
      await waitForKernel((t) => t.includes(mode.frontendText) && has('10.1.0.10')(t), 'the ClusterSet IP programmed');
    });
    after(() => lab.stop());

    it('answers from the local cluster, as the ClusterIP does; kube-proxy\'s rule is never reached', async () => {
      assert.deepEqual((await lab.requests(URL, 10)).bodies, { brazil: 10 });
      assert.deepEqual((await lab.requests('http://10.96.0.50/', 10)).bodies, { brazil: 10 });
    });

    it('under a steady stream, local unready moves answers to the remote cluster and back, with no failed request', async () => {
      const stream = httpRequestStream(lab.nodeNs, URL, { intervalMs: 10 });
      let r: HttpSummary;
      try {
        await stream.until((s) => (s.bodies.brazil ?? 0) > 0, 'answers from the local cluster');
        lab.apply(localSlice(false));
        await waitForKernel((t) => !has('10.1.0.10')(t), 'the local endpoint to leave');
        await stream.until((s) => (s.bodies.chile01 ?? 0) > 0, 'answers from the remote cluster');
        lab.apply(localSlice(true));
        await waitForKernel(has('10.1.0.10'), 'the local endpoint back');
        const local = stream.progress.bodies.brazil ?? 0;
        await stream.until((s) => (s.bodies.brazil ?? 0) > local, 'answers from the local cluster again');
      } finally {
        r = await stream.stop();
      }
      assert.equal(r.failed, 0, JSON.stringify(r));
      assert.equal(r.bodies['kube-proxy'], undefined, JSON.stringify(r));
      assert.ok(r.bodies.brazil! > 0 && r.bodies.chile01! > 0, JSON.stringify(r));
    });

    it('with no usable endpoint anywhere, connections are rejected, not handed to kube-proxy', async () => {
      lab.apply(localSlice(false), remoteSlice(false));
      await waitForKernel((t) => !has('10.1.0.10')(t) && !has('10.2.0.10')(t), 'no endpoint left');
      const r = await lab.requests(URL, 5);
      assert.deepEqual([r.ok, r.bodies, Object.keys(r.errors)], [0, {}, ['ECONNREFUSED']], JSON.stringify(r));
      lab.apply(localSlice(true), remoteSlice(true));
      await waitForKernel(has('10.1.0.10'), 'the local endpoint back');
    });

    it('once the address leaves the Service\'s status, the agent lets go of it and kube-proxy\'s rule answers', async () => {
      lab.apply(derived([]));
      await waitForKernel((t) => !t.includes(mode.frontendText), 'the ClusterSet IP released');
      assert.deepEqual((await lab.requests(URL, 5)).bodies, { 'kube-proxy': 5 });
      assert.deepEqual((await lab.requests('http://10.96.0.50/', 5)).bodies, { brazil: 5 });
      lab.apply(derived([CLUSTERSET_IP]));
      await waitForKernel((t) => t.includes(mode.frontendText), 'the ClusterSet IP back');
      assert.deepEqual((await lab.requests(URL, 5)).bodies, { brazil: 5 });
    });
  });
}
