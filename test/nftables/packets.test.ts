// Real packets through the nftables data plane, in namespaces:
//
//   client 10.3.0.2 ── 10.3.0.1 node 10.1.0.1 ── pods 10.1.0.11-14 (http-echo :8080, udp-echo :5353)
//
// The node runs table ip clusterset-proxy, written by NftablesDataplane
// through the addon. Pods 11 and 12 are cluster brazil (local), 13 and 14
// cluster chile. ClusterIP 10.96.0.50. Requests come from the client
// (prerouting path) or from the node itself (output path).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import type { ClusterEndpoint, Frontend } from '../../src/model/group.js';
import { ALL_HEALTHY, selectByPolicy, type HealthView } from '../../src/policy/select.js';
import type { PolicySettings } from '../../src/policy/policy.js';
import { NftablesDataplane } from '../../src/nftables/dataplane.js';
import { planSkeleton } from '../../src/nftables/layout.js';
import { NativeNftables } from '../../src/nftables/native.js';
import { planNftGroup, type FrontendInput, type NftGroup } from '../../src/nftables/plan.js';
import { httpRequests, netnsExec, startHttpServer, startUdpServer, Topology, udpExchange, type HttpServer } from '../support/netns.js';

const CLUSTER_IP = '10.96.0.50';
const DEAD_POD = '10.1.0.99';
const skeleton = planSkeleton({ clusterCIDR: '10.1.0.0/24' });
const topology = new Topology();
let node = '';
let client = '';
let pods = '';
const servers: HttpServer[] = [];

const POD_IPS = ['10.1.0.11', '10.1.0.12', '10.1.0.13', '10.1.0.14'];
const CLUSTER_OF: Record<string, string> = { '10.1.0.11': 'brazil', '10.1.0.12': 'brazil', '10.1.0.13': 'chile', '10.1.0.14': 'chile' };

before(async () => {
  node = await topology.namespace('node');
  client = await topology.namespace('client');
  pods = await topology.namespace('pods');
  await topology.link({ ns: node, ifname: 'to-pods', address: '10.1.0.1/24' }, { ns: pods, ifname: 'eth0', address: '10.1.0.11/24' });
  await topology.link({ ns: node, ifname: 'to-client', address: '10.3.0.1/24' }, { ns: client, ifname: 'eth0', address: '10.3.0.2/24' });
  for (const ip of POD_IPS.slice(1)) await execa('ip', ['-n', pods, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
  await execa('ip', ['-n', pods, 'route', 'add', 'default', 'via', '10.1.0.1']);
  await execa('ip', ['-n', client, 'route', 'add', 'default', 'via', '10.3.0.1']);
  // Connections from the node to a ClusterIP need a route before the nat output hook rewrites them.
  await execa('ip', ['-n', node, 'route', 'add', '10.96.0.0/16', 'via', '10.1.0.11']);
  await topology.enableForwarding(node);
  for (const ip of POD_IPS) {
    servers.push(await startHttpServer(pods, ip, 8080, ip));
    servers.push(await startUdpServer(pods, ip, 5353, ip));
  }
});

after(async () => {
  for (const s of servers) await s.stop().catch(() => {});
  await topology.teardown();
});

function endpoint(ip: string, port = 8080): ClusterEndpoint {
  return { ip, port, cluster: CLUSTER_OF[ip]!, ready: true, serving: true, terminating: false };
}

const SETTINGS: PolicySettings = { mode: 'local-first', clusterWeights: {}, failoverOrder: [], unifiedName: true };

/** The group for ClusterIP:80/tcp and :53/udp as the policy selects from these endpoints. */
function planned(ips: readonly string[], settings: Partial<PolicySettings> = {}, options: { affinity?: boolean; health?: HealthView } = {}): NftGroup {
  const fe: Frontend = {
    namespace: 'default', name: 'derived-web', clusterIPs: [CLUSTER_IP], clustersetIPs: [], affinitySeconds: options.affinity ? 10800 : null, annotations: {},
    ports: [
      { label: 'http', port: 80, protocol: 'TCP', endpoints: ips.map((ip) => endpoint(ip)) },
      { label: 'dns', port: 53, protocol: 'UDP', endpoints: ips.map((ip) => endpoint(ip, 5353)) },
    ],
  };
  const selections: FrontendInput[] = fe.ports.map((port) => ({
    ip: CLUSTER_IP, port: port.port, protocol: port.protocol, name: { namespace: fe.namespace, service: fe.name, port: port.label }, affinity: fe.affinitySeconds,
    endpoints: selectByPolicy(port.endpoints, { ...SETTINGS, ...settings }, 'brazil', options.health ?? ALL_HEALTHY).endpoints,
  }));
  return planNftGroup('default/web', selections, { localCluster: 'brazil' });
}

async function withDataplane<T>(fn: (dp: NftablesDataplane, client: NativeNftables) => Promise<T>): Promise<T> {
  const c = new NativeNftables({ netns: node });
  try {
    return await fn(new NftablesDataplane(c), c);
  } finally {
    c.close();
  }
}

async function fromClient(count: number, timeoutMs = 1000) {
  return httpRequests(client, `http://${CLUSTER_IP}/`, count, { timeoutMs, concurrency: 4 });
}

async function nft(...args: string[]): Promise<string> {
  return (await netnsExec(node, 'nft', args)).stdout;
}

async function reset(): Promise<void> {
  await netnsExec(node, 'nft', ['flush', 'ruleset']);
  await netnsExec(node, 'conntrack', ['-F'], { reject: false });
}

test('local-first: connections from a client and from the node reach only the local cluster\'s endpoints', async () => {
  await reset();
  await withDataplane(async (dp) => {
    await dp.syncAll(skeleton, new Map([['default/web', planned(POD_IPS)]]));
    const r = await fromClient(60);
    assert.equal(r.ok, 60, JSON.stringify(r));
    assert.deepEqual(Object.keys(r.bodies).sort(), ['10.1.0.11', '10.1.0.12']);
    const local = await httpRequests(node, `http://${CLUSTER_IP}/`, 20, { concurrency: 4 });
    assert.equal(local.ok, 20, JSON.stringify(local));
    assert.deepEqual(Object.keys(local.bodies).sort(), ['10.1.0.11', '10.1.0.12']);
  });
});

test('active-active weights brazil=1 chile=3: the chile share of 400 connections is near 3/4', async () => {
  await reset();
  await withDataplane(async (dp) => {
    await dp.syncAll(skeleton, new Map([['default/web', planned(POD_IPS, { mode: 'active-active', clusterWeights: { brazil: 1, chile: 3 } })]]));
    const r = await fromClient(400);
    assert.equal(r.ok, 400, JSON.stringify(r));
    const chile = (r.bodies['10.1.0.13'] ?? 0) + (r.bodies['10.1.0.14'] ?? 0);
    // 48 of 64 slots: binomial mean 300, sd 8.7; the bounds are more than 5 sd away.
    assert.ok(chile >= 255 && chile <= 345, `chile answered ${chile} of 400: ${JSON.stringify(r.bodies)}`);
    assert.ok((r.bodies['10.1.0.11'] ?? 0) > 0 && (r.bodies['10.1.0.12'] ?? 0) > 0);
  });
});

test('UDP datagrams to the ClusterIP reach a selected endpoint on its target port', async () => {
  await reset();
  await withDataplane(async (dp) => {
    await dp.syncAll(skeleton, new Map([['default/web', planned(['10.1.0.13'])]]));
    const answers = await udpExchange(client, CLUSTER_IP, 53, 3, 50);
    assert.deepEqual(answers, ['10.1.0.13', '10.1.0.13', '10.1.0.13']);
  });
});

test('ClientIP affinity: every connection of one client lands on the same endpoint', async () => {
  await reset();
  await withDataplane(async (dp) => {
    await dp.syncAll(skeleton, new Map([['default/web', planned(POD_IPS, { mode: 'active-active' }, { affinity: true })]]));
    const r = await fromClient(40);
    assert.equal(r.ok, 40, JSON.stringify(r));
    assert.equal(Object.keys(r.bodies).length, 1, JSON.stringify(r.bodies));
    // Without affinity the same endpoints share the connections.
    await dp.applyGroups(new Map([['default/web', planned(POD_IPS, { mode: 'active-active' })]]));
    const spread = await fromClient(40);
    assert.ok(Object.keys(spread.bodies).length > 1, JSON.stringify(spread.bodies));
  });
});

test('failover: chile first; when chile is unhealthy an element update moves new connections to brazil', async () => {
  await reset();
  await withDataplane(async (dp, c) => {
    await dp.syncAll(skeleton, new Map([['default/web', planned(POD_IPS, { mode: 'failover', failoverOrder: ['chile', 'brazil'] })]]));
    const first = await fromClient(30);
    assert.deepEqual(Object.keys(first.bodies).sort(), ['10.1.0.13', '10.1.0.14']);
    const handles = await nft('-a', 'list', 'chain', 'ip', 'clusterset-proxy', 'dispatch-50');
    const chileDown: HealthView = { clusterHealthy: (name) => name !== 'chile', endpointHealthy: () => true };
    const r = await dp.applyGroups(new Map([['default/web', planned(POD_IPS, { mode: 'failover', failoverOrder: ['chile', 'brazil'] }, { health: chileDown })]]));
    assert.equal(r.batches, 1);
    const moved = await fromClient(30);
    assert.deepEqual(Object.keys(moved.bodies).sort(), ['10.1.0.11', '10.1.0.12']);
    // The change touched elements only: the chains and their rule handles are as before.
    assert.equal(await nft('-a', 'list', 'chain', 'ip', 'clusterset-proxy', 'dispatch-50'), handles);
    assert.ok(await c.read());
  });
});

test('no usable endpoint: new connections are refused at once, from the client and from the node', async () => {
  await reset();
  await withDataplane(async (dp) => {
    await dp.syncAll(skeleton, new Map([['default/web', planned([])]]));
    const r = await fromClient(5, 3000);
    assert.deepEqual(r.errors, { ECONNREFUSED: 5 }, JSON.stringify(r));
    const local = await httpRequests(node, `http://${CLUSTER_IP}/`, 5, { timeoutMs: 3000 });
    assert.deepEqual(local.errors, { ECONNREFUSED: 5 }, JSON.stringify(local));
  });
});

test('drift repair: a deleted slot element and then a deleted table come back with the next full sync', async () => {
  await reset();
  await withDataplane(async (dp) => {
    const groups = new Map([['default/web', planned(['10.1.0.13'])]]);
    await dp.syncAll(skeleton, groups);
    await nft('delete', 'element', 'ip', 'clusterset-proxy', 'slots-50', `{ ${CLUSTER_IP} . tcp . 80 . 5 }`);
    const repaired = await dp.syncAll(skeleton, groups);
    assert.equal(repaired.elements, 1);
    assert.equal(repaired.skeletonWritten, false);
    assert.match(await nft('list', 'map', 'ip', 'clusterset-proxy', 'slots-50'), new RegExp(`${CLUSTER_IP.replace(/\./g, '\\.')} \\. tcp \\. 80 \\. 5 : `));
    await nft('delete', 'table', 'ip', 'clusterset-proxy');
    const down = await fromClient(2, 500);
    assert.equal(down.ok, 0);
    const rebuilt = await dp.syncAll(skeleton, groups);
    assert.equal(rebuilt.skeletonWritten, true);
    const r = await fromClient(10);
    assert.deepEqual(r.bodies, { '10.1.0.13': 10 });
  });
});

test('restart adoption: a new agent finds its table as desired and writes nothing; traffic never stops', async () => {
  await reset();
  const groups = new Map([['default/web', planned(POD_IPS)]]);
  await withDataplane((dp) => dp.syncAll(skeleton, groups));
  const before = await nft('-a', 'list', 'table', 'ip', 'clusterset-proxy');
  const result = await withDataplane((dp) => dp.syncAll(skeleton, groups));
  assert.equal(result.adopted, true);
  assert.equal(result.elements, 0);
  assert.equal(result.batches, 0);
  assert.equal(await nft('-a', 'list', 'table', 'ip', 'clusterset-proxy'), before);
  const r = await fromClient(10);
  assert.equal(r.ok, 10);
});

// kube-proxy's nftables mode as it builds its table: nat chains at priority
// dstnat (-100) dispatching through a verdict map to a service chain that
// DNATs to an endpoint, here a dead pod.
function kubeProxyTable(target = DEAD_POD): string {
  return `table ip kube-proxy {
	comment "rules for kube-proxy"
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { ${CLUSTER_IP} . tcp . 80 : goto service-ULMVA6XW-default/web/tcp/http }
	}
	chain filter-prerouting {
		type filter hook prerouting priority dstnat - 10; policy accept;
	}
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump services
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		jump services
	}
	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
	}
	chain service-ULMVA6XW-default/web/tcp/http {
		ip daddr ${CLUSTER_IP} tcp dport 80 jump endpoint-5OJB2KTY-default/web/tcp/http__${target}/8080
	}
	chain endpoint-5OJB2KTY-default/web/tcp/http__${target}/8080 {
		meta l4proto tcp dnat to ${target}:8080
	}
}
`;
}

async function loadKubeProxy(target = DEAD_POD): Promise<string> {
  await netnsExec(node, 'nft', ['-f', '-'], { input: kubeProxyTable(target) });
  return nft('list', 'table', 'ip', 'kube-proxy');
}

for (const order of ['kube-proxy first', 'agent first'] as const) {
  test(`coexistence with kube-proxy's nftables table (${order}): the agent's DNAT wins and kube-proxy's table is untouched`, async () => {
    await reset();
    await withDataplane(async (dp) => {
      let kube = '';
      if (order === 'kube-proxy first') kube = await loadKubeProxy();
      await dp.syncAll(skeleton, new Map([['default/web', planned(['10.1.0.13'])]]));
      if (order === 'agent first') kube = await loadKubeProxy();
      const r = await fromClient(10);
      assert.deepEqual(r.bodies, { '10.1.0.13': 10 }, JSON.stringify(r));
      const local = await httpRequests(node, `http://${CLUSTER_IP}/`, 5);
      assert.deepEqual(local.bodies, { '10.1.0.13': 5 }, JSON.stringify(local));
      assert.equal(await nft('list', 'table', 'ip', 'kube-proxy'), kube);
      assert.equal(await dp.cleanup(), true);
      assert.equal(await nft('list', 'table', 'ip', 'kube-proxy'), kube);
      assert.equal((await netnsExec(node, 'nft', ['list', 'table', 'ip', 'clusterset-proxy'], { reject: false })).exitCode, 1);
    });
  });

  test(`coexistence with kube-proxy's iptables-nft rules (${order}): the agent's DNAT wins`, async () => {
    await reset();
    await netnsExec(node, 'iptables-nft', ['-t', 'nat', '-F'], { reject: false });
    const kubeRules = async () => {
      for (const chain of ['PREROUTING', 'OUTPUT']) {
        await netnsExec(node, 'iptables-nft', ['-t', 'nat', '-A', chain, '-d', `${CLUSTER_IP}/32`, '-p', 'tcp', '--dport', '80', '-m', 'comment', '--comment', 'default/web:http cluster IP', '-j', 'DNAT', '--to-destination', `${DEAD_POD}:8080`]);
      }
      return (await netnsExec(node, 'iptables-nft-save', ['-t', 'nat'])).stdout.replace(/^#.*$/gm, '');
    };
    await withDataplane(async (dp) => {
      let saved = '';
      if (order === 'kube-proxy first') saved = await kubeRules();
      await dp.syncAll(skeleton, new Map([['default/web', planned(['10.1.0.14'])]]));
      if (order === 'agent first') saved = await kubeRules();
      const r = await fromClient(10);
      assert.deepEqual(r.bodies, { '10.1.0.14': 10 }, JSON.stringify(r));
      const local = await httpRequests(node, `http://${CLUSTER_IP}/`, 5);
      assert.deepEqual(local.bodies, { '10.1.0.14': 5 }, JSON.stringify(local));
      await dp.cleanup();
      assert.equal((await netnsExec(node, 'iptables-nft-save', ['-t', 'nat'])).stdout.replace(/^#.*$/gm, ''), saved);
    });
  });
}

test('no endpoints while kube-proxy DNATs the same ClusterIP to a live pod: the agent\'s reject runs first', async () => {
  await reset();
  await loadKubeProxy('10.1.0.12');
  // Without the agent kube-proxy's DNAT answers.
  const kubeOnly = await fromClient(3);
  assert.deepEqual(kubeOnly.bodies, { '10.1.0.12': 3 });
  await withDataplane(async (dp) => {
    await dp.syncAll(skeleton, new Map([['default/web', planned([])]]));
    const r = await fromClient(5, 3000);
    assert.deepEqual(r.errors, { ECONNREFUSED: 5 }, JSON.stringify(r));
    await dp.cleanup();
  });
});
