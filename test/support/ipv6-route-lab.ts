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

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { V1Node } from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { kubeconfigYaml, TestApiServer, waitFor } from './api-server.js';
import { cleanupStale, netnsExec, startHttpServer, Topology, type HttpServer } from './netns.js';
import type { Gateway, Member, RunningAgent } from './route-lab.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const AGENT_BIN = join(ROOT, 'bin', 'clusterset-proxy');
const RELAY_PORT = 6443;
export const ROUTE_TABLE = 19779;
const GATEWAY_LABEL = 'submariner.io/gateway';

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

export class Ipv6RouteLab {
  readonly api = new TestApiServer({ bookmarkIntervalMs: 1000 });
  readonly topology = new Topology();
  readonly ns = { sw: '', node: '', 'gw-1': '', 'gw-2': '', remote: '' };
  private dir = '';
  private readonly children: ChildProcess[] = [];
  private readonly servers: HttpServer[] = [];
  private readonly agents = new Set<RunningAgent>();
  private readonly state: Record<Member, { gateway: boolean }> = { 'node-1': { gateway: false }, 'gw-1': { gateway: true }, 'gw-2': { gateway: true } };

  constructor(readonly stack: Stack, readonly mode: 'direct' | 'vxlan') {}

  async start(): Promise<this> {
    await cleanupStale();
    this.dir = await mkdtemp(join(tmpdir(), 'clusterset-proxy-routes6-'));
    const socketPath = join(this.dir, 'api.sock');
    await this.api.start({ socketPath });
    await writeFile(this.kubeconfig, kubeconfigYaml(`http://127.0.0.1:${RELAY_PORT}`));
    for (const key of Object.keys(this.ns) as (keyof Ipv6RouteLab['ns'])[]) {
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

  get kubeconfig(): string {
    return join(this.dir, 'kubeconfig');
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

  startAgent(member: Member, configPath: string): RunningAgent {
    const logFile = join(this.dir, `agent-${member}-${Date.now()}.log`);
    const out = createWriteStream(logFile);
    const child = spawn('ip', ['netns', 'exec', this.nsOf(member), process.execPath, AGENT_BIN, '--kubeconfig', this.kubeconfig, '--config', configPath, '--hostname-override', member], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.pipe(out, { end: false });
    child.stderr!.pipe(out, { end: false });
    const exited = new Promise<number | NodeJS.Signals>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal!)));
    const agent: RunningAgent = {
      logFile,
      stop: async (signal = 'SIGTERM') => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        this.agents.delete(agent);
        return exited;
      },
      logs: () => readFile(logFile, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? '' : Promise.reject(err))),
    };
    this.agents.add(agent);
    return agent;
  }

  async runAgent(member: Member, args: readonly string[]): Promise<{ code: number | undefined; stderr: string }> {
    const r = await netnsExec(this.nsOf(member), process.execPath, [AGENT_BIN, '--kubeconfig', this.kubeconfig, ...args], { reject: false });
    return { code: r.exitCode, stderr: r.stderr };
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

  /** Waits until the member's table routes these CIDRs (all of one family) via `via`. */
  waitForRoutes(member: Member, cidrs: readonly string[], via: string, timeoutMs = 10_000): Promise<string> {
    const family = cidrs[0]!.includes(':') ? '-6' : '-4';
    return waitFor(async () => {
      const lines = (await this.tableRoutes(member, family)).split('\n');
      return cidrs.every((c) => lines.some((l) => l.startsWith(`${c} via ${via} `))) ? lines.join('\n') : null;
    }, `table ${ROUTE_TABLE} of ${member} to route ${cidrs.join(', ')} via ${via}`, { timeoutMs, intervalMs: 10 });
  }

  async tunnelPackets(gw: Gateway): Promise<number> {
    const { stdout } = await netnsExec(this.ns[gw], 'cat', ['/sys/class/net/tun0/statistics/tx_packets']);
    return Number(stdout.trim());
  }

  async ip(ns: string, ...args: string[]): Promise<void> {
    await execa('ip', ['-n', ns, ...args]);
  }

  nsOf(member: Member): string {
    return member === 'node-1' ? this.ns.node : this.ns[member];
  }

  private async startRelay(ns: string, socketPath: string): Promise<void> {
    const relay = spawn('ip', ['netns', 'exec', ns, process.execPath, join(ROOT, 'dist/test/support/unix-relay.js'), socketPath, String(RELAY_PORT)], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.children.push(relay);
    await new Promise<void>((resolve, reject) => {
      relay.once('exit', (code) => reject(new Error(`unix-relay exited with ${code}`)));
      relay.stdout!.once('data', () => resolve());
    });
  }

  async stop(): Promise<void> {
    for (const agent of [...this.agents]) await agent.stop('SIGKILL');
    for (const server of this.servers) await server.stop().catch(() => {});
    for (const child of this.children) child.kill('SIGKILL');
    await this.topology.teardown();
    await this.api.stop();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
