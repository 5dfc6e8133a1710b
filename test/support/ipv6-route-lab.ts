// The cross-cluster route topology of route-lab.ts on an IPv6 node network
// (stack 'IPv6': the nodes have no IPv4 address at all, so the VXLAN tunnel
// can only run over IPv6) or a dual-stack one (stack 'dual': both families of
// remote pods through one tunnel over the IPv4 underlay).
//
//   sw:      bridge br0: the node subnet fd00:50::/64 (and 192.168.50.0/24 in dual)
//   node:    eth0 ::10, the agent as node-1, the clients
//   gw1/gw2: eth0 ::11/::12, the agent as gw-1/gw-2, a veth "tunnel" to remote
//   remote:  pods fd00:2::10 (chile01) and fd00:3::10 (peru) on lo (dual: also
//            10.2.0.10 and 10.3.0.10); replies go back through the active gateway
//
// Duplicate address detection is off in every namespace (accept_dad=0 before
// any interface exists, nodad on each address): a tentative address cannot be
// used, and waiting for DAD would only slow the test down.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { V1Node } from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { waitFor } from './api-server.js';
import { AGENT_WAIT_MS } from './lab.js';
import { netnsExec, startHttpServer } from './netns.js';
import { GatewayLab, GATEWAY_LABEL, ROUTE_TABLE, type Gateway, type Member } from './gateway-lab.js';

export { ROUTE_TABLE } from './gateway-lab.js';

export type Stack = 'IPv6' | 'dual';

export const NODE_IP6: Record<Member, string> = { 'node-1': 'fd00:50::10', 'gw-1': 'fd00:50::11', 'gw-2': 'fd00:50::12' };
export const NODE_IP4: Record<Member, string> = { 'node-1': '192.168.50.10', 'gw-1': '192.168.50.11', 'gw-2': '192.168.50.12' };
export const REMOTE6 = ['fd00:2::/56', 'fd00:3::/56'];
export const REMOTE4 = ['10.2.0.0/16', '10.3.0.0/16'];
/** Pods of the remote clusters, and what each answers. */
export const PODS6 = { chile01: 'fd00:2::10', peru: 'fd00:3::10' } as const;
export const PODS4 = { chile01: '10.2.0.10', peru: '10.3.0.10' } as const;

const CLUSTERS = {
  IPv6: [
    { name: 'brazil', podCIDRs: ['fd00:10:244::/56'], serviceCIDRs: ['fd00:10:96::/112'], nodeCIDRs: ['fd00:50::/64'] },
    { name: 'chile01', podCIDRs: ['fd00:2::/56'] },
    { name: 'peru', podCIDRs: ['fd00:3::/56'] },
  ],
  dual: [
    { name: 'brazil', podCIDRs: ['10.244.0.0/16', 'fd00:10:244::/56'], serviceCIDRs: ['10.96.0.0/12', 'fd00:10:96::/112'], nodeCIDRs: ['192.168.50.0/24', 'fd00:50::/64'] },
    { name: 'chile01', podCIDRs: ['10.2.0.0/16', 'fd00:2::/56'] },
    { name: 'peru', podCIDRs: ['10.3.0.0/16', 'fd00:3::/56'] },
  ],
};

export class Ipv6RouteLab extends GatewayLab {
  private readonly state: Record<Member, { gateway: boolean }> = { 'node-1': { gateway: false }, 'gw-1': { gateway: true }, 'gw-2': { gateway: true } };

  constructor(readonly stack: Stack, readonly mode: 'direct' | 'vxlan') {
    super();
  }

  async start(): Promise<this> {
    const socketPath = await this.prepare('clusterset-proxy-routes6-');
    for (const key of Object.keys(this.ns) as (keyof GatewayLab['ns'])[]) {
      this.ns[key] = await this.topology.namespace(key.replace('-', ''));
      await netnsExec(this.ns[key], 'sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    }
    await this.ip(this.ns.sw, 'link', 'add', 'br0', 'type', 'bridge');
    await this.ip(this.ns.sw, 'link', 'set', 'br0', 'up');
    for (const member of ['node-1', 'gw-1', 'gw-2'] as const) {
      const ns = this.nsOf(member);
      const port = `p-${member.replace('-', '')}`;
      await this.ip(this.ns.sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      await this.ip(this.ns.sw, 'link', 'set', port, 'master', 'br0', 'up');
      await this.ip(ns, '-6', 'addr', 'add', `${NODE_IP6[member]}/64`, 'dev', 'eth0', 'nodad');
      if (this.stack === 'dual') await this.ip(ns, 'addr', 'add', `${NODE_IP4[member]}/24`, 'dev', 'eth0');
      await this.ip(ns, 'link', 'set', 'eth0', 'up');
      await this.startRelay(ns, socketPath);
    }
    for (const [i, gw] of [[1, 'gw-1'], [2, 'gw-2']] as const) {
      await this.ip(this.ns[gw], 'link', 'add', 'tun0', 'type', 'veth', 'peer', 'name', `tun${i}`, 'netns', this.ns.remote);
      await this.ip(this.ns[gw], '-6', 'addr', 'add', `fd00:30:${i}::1/64`, 'dev', 'tun0', 'nodad');
      await this.ip(this.ns.remote, '-6', 'addr', 'add', `fd00:30:${i}::2/64`, 'dev', `tun${i}`, 'nodad');
      if (this.stack === 'dual') {
        await this.ip(this.ns[gw], 'addr', 'add', `172.30.${i}.1/30`, 'dev', 'tun0');
        await this.ip(this.ns.remote, 'addr', 'add', `172.30.${i}.2/30`, 'dev', `tun${i}`);
      }
      await this.ip(this.ns[gw], 'link', 'set', 'tun0', 'up');
      await this.ip(this.ns.remote, 'link', 'set', `tun${i}`, 'up');
    }
    for (const [cluster, ip] of Object.entries(PODS6)) {
      await this.ip(this.ns.remote, '-6', 'addr', 'add', `${ip}/128`, 'dev', 'lo', 'nodad');
      this.servers.push(await startHttpServer(this.ns.remote, ip, 8080, `${cluster}/serve-a`));
    }
    if (this.stack === 'dual') {
      for (const [cluster, ip] of Object.entries(PODS4)) {
        await this.ip(this.ns.remote, 'addr', 'add', `${ip}/32`, 'dev', 'lo');
        this.servers.push(await startHttpServer(this.ns.remote, ip, 8080, `${cluster}/serve-a`));
      }
    }
    await this.moveTunnel('gw-1');
    for (const member of Object.keys(this.state) as Member[]) this.api.apply(this.nodeObject(member));
    return this;
  }

  /** The tunnel of the active gateway: the old end loses its routes, the remote side answers through the new one. */
  async moveTunnel(to: Gateway, from?: Gateway): Promise<void> {
    const n = (gw: Gateway) => (gw === 'gw-1' ? 1 : 2);
    if (from) await this.ip(this.ns[from], '-6', 'route', 'del', 'fd00:2::/31', 'via', `fd00:30:${n(from)}::2`);
    await this.ip(this.ns[to], '-6', 'route', 'replace', 'fd00:2::/31', 'via', `fd00:30:${n(to)}::2`);
    await this.ip(this.ns.remote, '-6', 'route', 'replace', 'fd00:50::/64', 'via', `fd00:30:${n(to)}::1`);
    if (this.stack === 'dual') {
      if (from) await this.ip(this.ns[from], 'route', 'del', '10.2.0.0/15', 'via', `172.30.${n(from)}.2`);
      await this.ip(this.ns[to], 'route', 'replace', '10.2.0.0/15', 'via', `172.30.${n(to)}.2`);
      await this.ip(this.ns.remote, 'route', 'replace', '192.168.50.0/24', 'via', `172.30.${n(to)}.1`);
    }
  }

  setGateway(name: Member, gateway: boolean): void {
    this.state[name].gateway = gateway;
    this.api.apply(this.nodeObject(name));
  }

  private nodeObject(name: Member): V1Node {
    const addresses = [
      ...(this.stack === 'dual' ? [{ type: 'InternalIP', address: NODE_IP4[name] }] : []),
      { type: 'InternalIP', address: NODE_IP6[name] },
      { type: 'Hostname', address: name },
    ];
    return {
      apiVersion: 'v1', kind: 'Node',
      metadata: { name, labels: { 'kubernetes.io/hostname': name, ...(this.state[name].gateway ? { [GATEWAY_LABEL]: 'true' } : {}) } },
      status: { conditions: [{ type: 'Ready', status: 'True' }], addresses },
    } as V1Node;
  }

  async writeConfig(): Promise<string> {
    const path = join(this.dir, `config-${Date.now()}.yaml`);
    await writeFile(path, toYaml({
      clusterName: 'brazil', clusters: CLUSTERS[this.stack],
      // The single-value form for IPv6-only, the list form for dual-stack.
      clusterCIDR: this.stack === 'IPv6' ? 'fd00:10:244::/56' : ['10.244.0.0/16', 'fd00:10:244::/56'],
      minSyncInterval: '50ms', iptablesBackend: 'nft', metricsBindAddress: '', healthzBindAddress: '',
      gateway: { mode: this.mode },
    }));
    return path;
  }

  /** The agent's table in one family, '' when empty. */
  async tableRoutes(member: Member, family: '-4' | '-6'): Promise<string> {
    const r = await execa('ip', ['-n', this.nsOf(member), family, 'route', 'show', 'table', String(ROUTE_TABLE)], { reject: false });
    if (r.failed && !r.stderr.includes('FIB table does not exist')) throw new Error(r.stderr);
    return r.failed ? '' : r.stdout;
  }

  /** The rules at the agent's priority, both families. */
  async agentRules(member: Member): Promise<string[]> {
    const out: string[] = [];
    for (const family of ['-4', '-6']) {
      const { stdout } = await execa('ip', ['-n', this.nsOf(member), family, 'rule']);
      out.push(...stdout.split('\n').filter((l) => l.startsWith(`${ROUTE_TABLE}:`)));
    }
    return out;
  }

  /** Waits until the member's table routes these CIDRs (all of one family) via `via`; ends at once if an agent exits. */
  waitForRoutes(member: Member, cidrs: readonly string[], via: string, timeoutMs = AGENT_WAIT_MS): Promise<string> {
    const family = cidrs[0]!.includes(':') ? '-6' : '-4';
    return waitFor(async () => {
      this.throwIfAgentExited();
      const lines = (await this.tableRoutes(member, family)).split('\n');
      return cidrs.every((c) => lines.some((l) => l.startsWith(`${c} via ${via} `))) ? lines.join('\n') : null;
    }, `table ${ROUTE_TABLE} of ${member} to route ${cidrs.join(', ')} via ${via}`, { timeoutMs, intervalMs: 10 });
  }
}
