// A cluster's node network, two gateways and a remote cluster, in network
// namespaces, for the cross-cluster route tests and the failover benchmark.
//
//   sw:      bridge br0: the node subnet 192.168.50.0/24
//   node:    eth0 192.168.50.10, the agent as node-1, clients (OUTPUT path)
//   gw1/gw2: eth0 .11/.12, the agent as gw-1/gw-2, a veth "tunnel" to remote
//   remote:  pods 10.2.0.10 (chile01) and 10.3.0.10 (peru) on lo; replies go
//            back through the tunnel of the active gateway
//
// The TestApiServer runs in this process; each agent namespace reaches it
// through a unix-relay on 127.0.0.1:6443. Nothing is linked to the root
// namespace, and the node namespace has no default route: remote pods are
// reachable only through the routes the agent installs.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { V1Node } from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { waitFor } from './api-server.js';
import { AGENT_WAIT_MS } from './lab.js';
import { netnsExec, startHttpServer } from './netns.js';
import type { StreamRequest } from './stream-client.js';
import { GatewayLab, GATEWAY_LABEL, ROUTE_TABLE, type Gateway, type Member } from './gateway-lab.js';

export { GATEWAY_LABEL, ROUTE_TABLE, type Gateway, type Member, type RunningAgent } from './gateway-lab.js';

export const NODE_IP = '192.168.50.10';
export const GATEWAY_IP: Record<Gateway, string> = { 'gw-1': '192.168.50.11', 'gw-2': '192.168.50.12' };
/** What the tunnel of each gateway carries: both remote clusters' pod ranges. */
const REMOTE_SUPERNET = '10.2.0.0/15';

export const BASE_CLUSTERS = [
  { name: 'brazil', podCIDRs: ['10.244.0.0/16'], serviceCIDRs: ['10.96.0.0/12'], nodeCIDRs: ['192.168.50.0/24'] },
  { name: 'chile01', podCIDRs: ['10.2.0.0/16'] },
  { name: 'peru', podCIDRs: ['10.3.0.0/16'] },
];

export class RouteLab extends GatewayLab {
  private readonly state: Record<Member, { gateway: boolean; ready: boolean }> = {
    'node-1': { gateway: false, ready: true }, 'gw-1': { gateway: true, ready: true }, 'gw-2': { gateway: true, ready: true },
  };

  constructor(readonly mode: 'direct' | 'vxlan') {
    super();
  }

  async start(): Promise<this> {
    const socketPath = await this.prepare('clusterset-proxy-routes-');
    for (const key of Object.keys(this.ns) as (keyof RouteLab['ns'])[]) {
      this.ns[key] = await this.topology.namespace(key.replace('-', ''));
      // IPv4 only: IPv6 link-local addresses appear late and would make before/after comparisons flaky.
      await netnsExec(this.ns[key], 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    }
    await this.ip(this.ns.sw, 'link', 'add', 'br0', 'type', 'bridge');
    await this.ip(this.ns.sw, 'link', 'set', 'br0', 'up');
    // eth0 first in every namespace: its address is the one the kernel picks for host traffic.
    for (const [member, ip] of [['node', NODE_IP], ['gw-1', GATEWAY_IP['gw-1']], ['gw-2', GATEWAY_IP['gw-2']]] as const) {
      const port = `p-${member.replace('-', '')}`;
      await this.ip(this.ns.sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.ns[member]);
      await this.ip(this.ns.sw, 'link', 'set', port, 'master', 'br0', 'up');
      await this.ip(this.ns[member], 'addr', 'add', `${ip}/24`, 'dev', 'eth0');
      await this.ip(this.ns[member], 'link', 'set', 'eth0', 'up');
      await this.startRelay(this.ns[member], socketPath);
    }
    // The ClusterIP range leaves the node like on a real one, so connect() reaches the nat OUTPUT hook.
    await this.ip(this.ns.node, 'route', 'add', '10.96.0.0/12', 'dev', 'eth0');
    for (const [i, gw] of [[1, 'gw-1'], [2, 'gw-2']] as const) {
      await this.topology.link({ ns: this.ns[gw], ifname: 'tun0', address: `172.30.${i}.1/30` }, { ns: this.ns.remote, ifname: `tun${i}`, address: `172.30.${i}.2/30` });
    }
    for (const [ip, body] of [['10.2.0.10', 'chile01/serve-a'], ['10.3.0.10', 'peru/serve-a']] as const) {
      await this.ip(this.ns.remote, 'addr', 'add', `${ip}/32`, 'dev', 'lo');
      this.servers.push(await startHttpServer(this.ns.remote, ip, 8080, body));
    }
    await this.moveTunnel('gw-1');
    for (const member of Object.keys(this.state) as Member[]) this.api.apply(this.nodeObject(member));
    return this;
  }

  /** The tunnel of the active gateway: the old end loses its route, the remote side answers through the new one. */
  async moveTunnel(to: Gateway, from?: Gateway): Promise<void> {
    if (from) await this.ip(this.ns[from], 'route', 'del', REMOTE_SUPERNET, 'via', from === 'gw-1' ? '172.30.1.2' : '172.30.2.2');
    await this.ip(this.ns[to], 'route', 'replace', REMOTE_SUPERNET, 'via', to === 'gw-1' ? '172.30.1.2' : '172.30.2.2');
    await this.ip(this.ns.remote, 'route', 'replace', '192.168.50.0/24', 'via', to === 'gw-1' ? '172.30.1.1' : '172.30.2.1');
  }

  /** Updates a Node's gateway label and Ready condition in the API. */
  setNode(name: Member, change: Partial<{ gateway: boolean; ready: boolean }>): void {
    Object.assign(this.state[name], change);
    this.api.apply(this.nodeObject(name));
  }

  private nodeObject(name: Member): V1Node {
    const { gateway, ready } = this.state[name];
    return {
      apiVersion: 'v1', kind: 'Node',
      metadata: { name, labels: { 'kubernetes.io/hostname': name, ...(gateway ? { [GATEWAY_LABEL]: 'true' } : {}) } },
      status: {
        conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
        addresses: [{ type: 'InternalIP', address: name === 'node-1' ? NODE_IP : GATEWAY_IP[name] }, { type: 'Hostname', address: name }],
      },
    } as V1Node;
  }

  async writeConfig(extra: Record<string, unknown> = {}): Promise<string> {
    const path = join(this.dir, `config-${Date.now()}-${Math.random().toString(36).slice(2, 6)}.yaml`);
    await writeFile(path, toYaml({
      clusterName: 'brazil', clusters: BASE_CLUSTERS, clusterCIDR: '10.244.0.0/16', minSyncInterval: '50ms',
      iptablesBackend: 'nft', metricsBindAddress: '', healthzBindAddress: '',
      gateway: { mode: this.mode }, ...extra,
    }));
    return path;
  }

  /** `ip rule`, `ip route show table all` and `ip link`: what --cleanup must restore exactly. */
  async routingState(member: Member): Promise<string> {
    const ns = this.nsOf(member);
    const parts = await Promise.all([['rule'], ['route', 'show', 'table', 'all'], ['link']].map((args) => execa('ip', ['-n', ns, ...args])));
    return parts.map((p) => p.stdout).join('\n---\n');
  }

  /** The agent's table, '' when empty (the kernel then reports that the table does not exist). */
  async tableRoutes(member: Member): Promise<string> {
    const r = await execa('ip', ['-n', this.nsOf(member), 'route', 'show', 'table', String(ROUTE_TABLE)], { reject: false });
    if (r.failed && !r.stderr.includes('FIB table does not exist')) throw new Error(r.stderr);
    return r.failed ? '' : r.stdout;
  }

  /** Waits until the member's table routes these CIDRs via `via` (null: no route for them); fails with the table and the agents' logs. */
  async waitForRoutes(member: Member, cidrs: readonly string[], via: string | null, timeoutMs = AGENT_WAIT_MS): Promise<string> {
    let table = '';
    try {
      return await waitFor(async () => {
        this.throwIfAgentExited();
        table = await this.tableRoutes(member);
        const lines = table.split('\n');
        const done = cidrs.every((c) => (via === null ? !lines.some((l) => l.startsWith(`${c} `)) : lines.some((l) => l.startsWith(`${c} via ${via} `))));
        return done ? table || '(empty)' : null;
      }, `table ${ROUTE_TABLE} of ${member} to route ${cidrs.join(', ')} ${via === null ? 'nowhere' : `via ${via}`}`, { timeoutMs, intervalMs: 10 });
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- table ${ROUTE_TABLE} of ${member}:\n${table}${await this.agentLogTails()}`);
    }
  }

  /** The member's nat table as iptables-save prints it (the agent runs with the nft backend here). */
  async natTable(member: Member): Promise<string> {
    const { stdout } = await netnsExec(this.nsOf(member), 'iptables-nft-save', ['-t', 'nat']);
    return stdout;
  }

  /** A steady stream of requests from the node for durationMs (see stream-client.ts); timeoutMs per request, generous by default. */
  async stream(url: string, durationMs: number, intervalMs = 20, timeoutMs = 10_000): Promise<StreamRequest[]> {
    const script = fileURLToPath(new URL('./stream-client.js', import.meta.url));
    const { stdout } = await netnsExec(this.ns.node, process.execPath, [script, url, String(durationMs), String(intervalMs), String(timeoutMs)]);
    return JSON.parse(stdout) as StreamRequest[];
  }
}

export interface StreamSummary {
  readonly sent: number;
  readonly failed: number;
  /** From the start of the first failed request to the start of the first success after the last failure: how long new requests failed. */
  readonly outageMs: number;
  readonly errors: Record<string, number>;
}

export function summariseStream(results: readonly StreamRequest[]): StreamSummary {
  const failed = results.filter((r) => !r.ok);
  const errors: Record<string, number> = {};
  for (const f of failed) errors[f.outcome] = (errors[f.outcome] ?? 0) + 1;
  let outageMs = 0;
  if (failed.length > 0) {
    const last = failed.at(-1)!;
    const recovered = results.find((r) => r.ok && r.start > last.start);
    outageMs = (recovered?.start ?? last.end) - failed[0]!.start;
  }
  return { sent: results.length, failed: failed.length, outageMs, errors };
}
