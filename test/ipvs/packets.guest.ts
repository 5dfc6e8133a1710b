// Real packets through an IPVS firewall-mark service, inside UML (run by
// test/uml/ipvs-packets.test.ts). The guest's root namespace is the node: it
// marks ClusterIP traffic in mangle, delivers marked packets locally through a
// policy-routing table so IPVS sees them, and forwards to two real servers,
// each in its own namespace; a client namespace makes the requests. The links
// to the guest's root namespace exist only inside the UML kernel, which has no
// network device connected to the host.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { execa } from 'execa';
import { NetlinkIpvs } from '../../src/ipvs/netlink-client.js';
import type { DestSpec, ServiceKey } from '../../src/ipvs/types.js';
import { httpRequests, startHttpServer, Topology, type HttpServer } from '../support/netns.js';

const CLUSTER_IP = '10.96.0.10';
const MARK = 0x4000;
const TABLE = '100';
const service: ServiceKey = { kind: 'fwmark', family: 4, fwmark: MARK };
const server = (address: string, weight: number): DestSpec => ({ address, port: 8080, weight, forward: 'masq', upperThreshold: 0, lowerThreshold: 0 });
const s1 = server('10.0.2.2', 3);
const s2 = server('10.0.3.2', 1);

const topology = new Topology();
const servers: HttpServer[] = [];
const ipvs = new NetlinkIpvs();
let client = '';

/** A veth pair from the guest's root namespace (the node) to ns, addressed, up, and unless told otherwise with ns routing back through the node. */
async function linkToNode(ns: string, ifname: string, node: string, peer: string, routeBack = true): Promise<void> {
  await execa('ip', ['link', 'add', ifname, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  await execa('ip', ['addr', 'add', `${node}/24`, 'dev', ifname]);
  await execa('ip', ['link', 'set', ifname, 'up']);
  await execa('ip', ['-n', ns, 'addr', 'add', `${peer}/24`, 'dev', 'eth0']);
  await execa('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  if (routeBack) await execa('ip', ['-n', ns, 'route', 'add', 'default', 'via', node]);
}

/** The body of each answer and how often it came, over `count` new connections. */
async function spread(count: number, clusterIp = CLUSTER_IP): Promise<Record<string, number>> {
  const summary = await httpRequests(client, `http://${clusterIp}/`, count, { timeoutMs: 10_000 });
  assert.deepEqual(summary.errors, {});
  return summary.bodies;
}

const hex = (n: number) => `0x${n.toString(16)}`;

/** Marks new TCP connections to ip:80 with `mark` in mangle, as the node does for each frontend. */
async function markFrontend(ip: string, mark: number): Promise<void> {
  // This UML kernel has no nf_tables for IPv4: the legacy iptables backend marks.
  await execa('iptables-legacy', ['-t', 'mangle', '-A', 'PREROUTING', '-d', `${ip}/32`, '-p', 'tcp', '--dport', '80', '-j', 'MARK', '--set-xmark', `${hex(mark)}/0xffffffff`]);
}

before(async () => {
  client = await topology.namespace('client');
  const a = await topology.namespace('s1');
  const b = await topology.namespace('s2');
  await linkToNode(client, 'vcli', '10.0.1.1', '10.0.1.2');
  await linkToNode(a, 'vs1', '10.0.2.1', s1.address);
  await linkToNode(b, 'vs2', '10.0.3.1', s2.address);
  await execa('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  await markFrontend(CLUSTER_IP, MARK);
  // Packets carrying the mark bit are for this node: IPVS takes them at local input, no address on any interface needed.
  // IPVS sends them on still marked, and with vs/conntrack=1 NAT's LOCAL_OUT re-route looks the real server up with
  // that mark (from iif lo): without the first rule it resolves as local and the packet leaves through lo.
  await execa('ip', ['rule', 'add', 'pref', '100', 'iif', 'lo', 'fwmark', `${hex(MARK)}/${hex(MARK)}`, 'lookup', 'main']);
  await execa('ip', ['rule', 'add', 'pref', '101', 'fwmark', `${hex(MARK)}/${hex(MARK)}`, 'lookup', TABLE]);
  await execa('ip', ['route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', TABLE]);
  servers.push(await startHttpServer(a, s1.address, 8080, 's1'), await startHttpServer(b, s2.address, 8080, 's2'));
  await ipvs.flush();
  await ipvs.addService({ key: service, scheduler: 'wrr', flags: 0, timeout: 0, netmask: 0xffffffff });
  await ipvs.addDest(service, s1);
  await ipvs.addDest(service, s2);
});

after(async () => {
  for (const s of servers) await s.stop();
  await ipvs.flush();
  ipvs.close();
  await topology.teardown();
});

test('new connections to the ClusterIP reach both real servers in the exact wrr ratio', async () => {
  // wrr is deterministic: with weights 3 and 1, every 4 new connections are 3 + 1.
  assert.deepEqual(await spread(40), { s1: 30, s2: 10 });
});

test('a weight change takes effect on the next connections', async () => {
  await ipvs.updateDest(service, { ...s1, weight: 1 });
  assert.deepEqual(await spread(20), { s1: 10, s2: 10 });
});

test('weight 0 drains a real server of new connections', async () => {
  await ipvs.updateDest(service, { ...s1, weight: 0 });
  assert.deepEqual(await spread(10), { s2: 10 });
});

test('a deleted real server gets nothing and the other takes all', async () => {
  await ipvs.updateDest(service, s1);
  await ipvs.deleteDest(service, s2);
  assert.deepEqual(await spread(10), { s1: 10 });
});

test('a real server with no route back answers once IPVS traffic is masqueraded with conntrack on', async () => {
  // Like an endpoint in another cluster: it reaches the node's link address only, never the client.
  const remoteIp = '10.96.0.11';
  const remoteMark = MARK | 1;
  const remote = await topology.namespace('s3');
  await linkToNode(remote, 'vs3', '10.0.4.1', '10.0.4.2', false);
  servers.push(await startHttpServer(remote, '10.0.4.2', 8080, 's3'));
  await markFrontend(remoteIp, remoteMark);
  const key: ServiceKey = { kind: 'fwmark', family: 4, fwmark: remoteMark };
  await ipvs.addService({ key, scheduler: 'wrr', flags: 0, timeout: 0, netmask: 0xffffffff });
  await ipvs.addDest(key, server('10.0.4.2', 1));

  const unanswered = await httpRequests(client, `http://${remoteIp}/`, 1, { timeoutMs: 3000 });
  assert.deepEqual([unanswered.ok, unanswered.errors], [0, { ETIMEDOUT: 1 }]);

  // IPVS keeps its own connection table; only with vs/conntrack=1 does netfilter's NAT see (and SNAT) its traffic.
  await execa('sysctl', ['-qw', 'net.ipv4.vs.conntrack=1']);
  await execa('iptables-legacy', ['-t', 'nat', '-A', 'POSTROUTING', '-m', 'mark', '--mark', hex(remoteMark), '-j', 'MASQUERADE']);
  assert.deepEqual(await spread(4, remoteIp), { s3: 4 });
});
