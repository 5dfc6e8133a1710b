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
import { AGENT_WAIT_MS } from './lab.js';
import { cleanupStale, netnsExec, startHttpServer, Topology, type HttpServer } from './netns.js';
import type { StreamRequest } from './stream-client.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const AGENT_BIN = join(ROOT, 'bin', 'clusterset-proxy');
const RELAY_PORT = 6443;

export type Gateway = 'gw-1' | 'gw-2';
export type Member = 'node-1' | Gateway;
export const NODE_IP = '192.168.50.10';
export const GATEWAY_IP: Record<Gateway, string> = { 'gw-1': '192.168.50.11', 'gw-2': '192.168.50.12' };
/** What the tunnel of each gateway carries: both remote clusters' pod ranges. */
const REMOTE_SUPERNET = '10.2.0.0/15';
export const ROUTE_TABLE = 19779;
export const GATEWAY_LABEL = 'submariner.io/gateway';

export const BASE_CLUSTERS = [
  { name: 'brazil', podCIDRs: ['10.244.0.0/16'], serviceCIDRs: ['10.96.0.0/12'], nodeCIDRs: ['192.168.50.0/24'] },
  { name: 'chile01', podCIDRs: ['10.2.0.0/16'] },
  { name: 'peru', podCIDRs: ['10.3.0.0/16'] },
];

export interface RunningAgent {
  readonly logFile: string;
  /** Resolves with the exit code, or the name of the signal that ended the process. */
  stop(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals>;
  logs(): Promise<string>;
}

export class RouteLab {
  readonly api = new TestApiServer({ bookmarkIntervalMs: 1000 });
  readonly topology = new Topology();
  readonly ns = { sw: '', node: '', 'gw-1': '', 'gw-2': '', remote: '' };
  private dir = '';
  private readonly children: ChildProcess[] = [];
  private readonly servers: HttpServer[] = [];
  private readonly agents = new Set<RunningAgent>();
  /** The latest agent started as each member, for failure messages. */
  private readonly latest = new Map<Member, RunningAgent>();
  /** Set when an agent exits without being stopped: waits end at once with this. */
  private unexpectedExit: string | undefined;
  private readonly state: Record<Member, { gateway: boolean; ready: boolean }> = {
    'node-1': { gateway: false, ready: true }, 'gw-1': { gateway: true, ready: true }, 'gw-2': { gateway: true, ready: true },
  };

  constructor(readonly mode: 'direct' | 'vxlan') {}

  async start(): Promise<this> {
    await cleanupStale();
    this.dir = await mkdtemp(join(tmpdir(), 'clusterset-proxy-routes-'));
    const socketPath = join(this.dir, 'api.sock');
    await this.api.start({ socketPath });
    await writeFile(this.kubeconfig, kubeconfigYaml(`http://127.0.0.1:${RELAY_PORT}`));
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

  get kubeconfig(): string {
    return join(this.dir, 'kubeconfig');
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

  /** Runs the agent binary as `member` in that member's namespace. */
  startAgent(member: Member, configPath: string): RunningAgent {
    const logFile = join(this.dir, `agent-${member}-${Date.now()}.log`);
    const out = createWriteStream(logFile);
    const child = spawn('ip', ['netns', 'exec', this.nsOf(member), process.execPath, AGENT_BIN, '--kubeconfig', this.kubeconfig, '--config', configPath, '--hostname-override', member], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.pipe(out, { end: false });
    child.stderr!.pipe(out, { end: false });
    let stopping = false;
    const exited = new Promise<number | NodeJS.Signals>((resolve) => child.once('exit', (code, signal) => {
      if (!stopping) this.unexpectedExit ??= `the agent of ${member} (${logFile}) exited by itself with ${code ?? signal}`;
      resolve(code ?? signal!);
    }));
    const agent: RunningAgent = {
      logFile,
      stop: async (signal = 'SIGTERM') => {
        stopping = true;
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        this.agents.delete(agent);
        return exited;
      },
      logs: () => readFile(logFile, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? '' : Promise.reject(err))),
    };
    this.agents.add(agent);
    this.latest.set(member, agent);
    return agent;
  }

  /** Throws if an agent exited without being told to. */
  throwIfAgentExited(): void {
    if (this.unexpectedExit) throw new Error(this.unexpectedExit);
  }

  /** The last lines of the latest agent of each member, for failure messages. */
  async agentLogTails(lines = 30): Promise<string> {
    let out = '';
    for (const [member, agent] of this.latest) out += `\n--- ${member}: ${agent.logFile} (last ${lines} lines):\n${(await agent.logs()).split('\n').slice(-lines).join('\n')}`;
    return out;
  }

  /** Runs the agent binary to completion in that member's namespace (--cleanup). */
  async runAgent(member: Member, args: readonly string[]): Promise<{ code: number | undefined; stderr: string }> {
    const r = await netnsExec(this.nsOf(member), process.execPath, [AGENT_BIN, '--kubeconfig', this.kubeconfig, ...args], { reject: false });
    return { code: r.exitCode, stderr: r.stderr };
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

  /** Packets the gateway sent into its tunnel. */
  async tunnelPackets(gw: Gateway): Promise<number> {
    const { stdout } = await netnsExec(this.ns[gw], 'cat', ['/sys/class/net/tun0/statistics/tx_packets']);
    return Number(stdout.trim());
  }

  /** A steady stream of requests from the node for durationMs (see stream-client.ts); timeoutMs per request, generous by default. */
  async stream(url: string, durationMs: number, intervalMs = 20, timeoutMs = 10_000): Promise<StreamRequest[]> {
    const script = fileURLToPath(new URL('./stream-client.js', import.meta.url));
    const { stdout } = await netnsExec(this.ns.node, process.execPath, [script, url, String(durationMs), String(intervalMs), String(timeoutMs)]);
    return JSON.parse(stdout) as StreamRequest[];
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
