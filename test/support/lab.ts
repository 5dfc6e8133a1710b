// A node and the pods of several clusters in network namespaces, an API server
// the agent reaches from inside the node namespace, and the real agent binary.
// Shared by the data-plane tests, the benchmarks and the demo.
//
//   root ns (this process)           node ns                      pod namespaces
//   TestApiServer on a unix socket ← unix-relay 127.0.0.1:6443
//                                    bin/clusterset-proxy
//                                    clients (OUTPUT path)  ─veth→ 10.2.0.10 (chile01) ...
//
// Pods are addressed Calico-style: a /32 on the pod side, a link-local next
// hop on the node side, so any number of pods of one subnet can hang off one
// node without a bridge. Nothing is linked to the root namespace.

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { KubernetesObject } from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import type { BackendMode } from '../../src/iptables/backend.js';
import type { IPFamily } from '../../src/selection/selection.js';
import { kubeconfigYaml, TestApiServer, waitFor } from './api-server.js';
import { cleanupStale, httpRequests, netnsExec, startHttpServer, startUdpServer, Topology, type HttpServer, type HttpSummary } from './netns.js';

export const NEXT_HOP = '169.254.1.1';
export const NEXT_HOP6 = 'fe80::1';
/** The node's own IPv6 address (on lo): the source of its IPv6 clients' connections. */
export const NODE_IP6 = 'fd00:50::1';
const RELAY_PORT = 6443;
/**
 * How long a test waits for the agent to reach a state. Generous: on a loaded
 * machine an agent's start alone (node, modules, the first list) can take
 * many seconds; a wait ends as soon as the state is reached, or at once if the
 * agent exits.
 */
export const AGENT_WAIT_MS = 60_000;
/** Seconds a test's own iptables-restore waits for the (per-process, see netns.ts) xtables lock. */
const LOCK_WAIT_SECONDS = '30';

export interface PodSpec {
  /** Answers every request with this body, e.g. "chile01/serve-a". */
  readonly body: string;
  readonly ip: string;
  /** An IPv6 address as well (dual-stack pod): a /128 beside the IPv4 /32, next hop the node's fe80::1. */
  readonly ip6?: string;
  readonly port?: number;
}

export interface AgentProcess {
  readonly logFile: string;
  /** Resolves with the exit code, or the name of the signal that ended the process. */
  readonly exited: Promise<number | NodeJS.Signals>;
  stop(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals>;
  logs(): Promise<string>;
}

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const AGENT_BIN = join(ROOT, 'bin', 'clusterset-proxy');

export class Lab {
  readonly api = new TestApiServer({ bookmarkIntervalMs: 1000 });
  readonly topology = new Topology();
  nodeNs = '';
  private dir = '';
  private relay: ChildProcess | null = null;
  private readonly servers = new Map<string, HttpServer>();
  private readonly podNs = new Map<string, string>();
  private readonly podLink = new Map<string, string>();
  private readonly agents = new Set<AgentProcess>();
  private pods = 0;
  private agentsStarted = 0;
  /** Set when an agent exits without being stopped: waits end at once with this. */
  private unexpectedExit: string | undefined;

  constructor(readonly backend: BackendMode) {}

  /** Creates the node namespace, starts the API server and the relay that reaches it. */
  async start(): Promise<this> {
    await cleanupStale();
    this.dir = await mkdtemp(join(tmpdir(), 'clusterset-proxy-lab-'));
    const socketPath = join(this.dir, 'api.sock');
    await this.api.start({ socketPath });
    this.nodeNs = await this.topology.namespace('node');
    await this.topology.enableForwarding(this.nodeNs);
    await noDad(this.nodeNs);
    await netnsExec(this.nodeNs, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
    await execa('ip', ['-n', this.nodeNs, '-6', 'addr', 'add', `${NODE_IP6}/128`, 'dev', 'lo', 'nodad']);
    this.relay = spawn('ip', ['netns', 'exec', this.nodeNs, process.execPath, join(ROOT, 'dist/test/support/unix-relay.js'), socketPath, String(RELAY_PORT)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      this.relay!.once('exit', (code) => reject(new Error(`unix-relay exited with ${code}`)));
      this.relay!.stdout!.once('data', () => resolve());
    });
    await writeFile(this.kubeconfig, kubeconfigYaml(`http://127.0.0.1:${RELAY_PORT}`));
    return this;
  }

  get kubeconfig(): string {
    return join(this.dir, 'kubeconfig');
  }

  /** This lab's scratch directory (deleted by stop()). */
  get directory(): string {
    return this.dir;
  }

  /** A pod namespace wired to the node, with an HTTP server answering `body`. */
  async addPod(pod: PodSpec): Promise<string> {
    const n = this.pods++;
    const ns = await this.topology.namespace(`p${n}`);
    // No duplicate address detection: a tentative address would not answer.
    if (pod.ip6) await noDad(ns);
    await execa('ip', ['-n', this.nodeNs, 'link', 'add', `vp${n}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await execa('ip', ['-n', this.nodeNs, 'addr', 'add', `${NEXT_HOP}/32`, 'dev', `vp${n}`]);
    await execa('ip', ['-n', this.nodeNs, 'link', 'set', `vp${n}`, 'up']);
    await execa('ip', ['-n', this.nodeNs, 'route', 'add', `${pod.ip}/32`, 'dev', `vp${n}`]);
    await execa('ip', ['-n', ns, 'addr', 'add', `${pod.ip}/32`, 'dev', 'eth0']);
    await execa('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    await execa('ip', ['-n', ns, 'route', 'add', `${NEXT_HOP}/32`, 'dev', 'eth0']);
    await execa('ip', ['-n', ns, 'route', 'add', 'default', 'via', NEXT_HOP, 'dev', 'eth0']);
    if (pod.ip6) {
      await execa('ip', ['-n', this.nodeNs, '-6', 'addr', 'add', `${NEXT_HOP6}/64`, 'dev', `vp${n}`, 'nodad']);
      await execa('ip', ['-n', this.nodeNs, '-6', 'route', 'add', `${pod.ip6}/128`, 'dev', `vp${n}`]);
      await execa('ip', ['-n', ns, '-6', 'addr', 'add', `${pod.ip6}/128`, 'dev', 'eth0', 'nodad']);
      await execa('ip', ['-n', ns, '-6', 'route', 'add', 'default', 'via', NEXT_HOP6, 'dev', 'eth0']);
      this.podNs.set(pod.ip6, ns);
      this.podLink.set(pod.ip6, `vp${n}`);
    }
    this.servers.set(pod.ip, await startHttpServer(ns, pod.ip6 ? '::' : '0.0.0.0', pod.port ?? 8080, pod.body));
    this.podNs.set(pod.ip, ns);
    this.podLink.set(pod.ip, `vp${n}`);
    return ns;
  }

  /** Kills the pod's HTTP server, as a crashed process would; `revivePod` starts it again. */
  async killPod(ip: string): Promise<void> {
    await this.servers.get(ip)?.stop();
    this.servers.delete(ip);
  }

  async revivePod(ip: string, body: string, port = 8080): Promise<void> {
    this.servers.set(ip, await startHttpServer(this.podNamespace(ip), '0.0.0.0', port, body));
  }

  /** Cuts or restores the pod's link to the node, as a dead tunnel would. */
  async setPodLink(ip: string, up: boolean): Promise<void> {
    await execa('ip', ['-n', this.nodeNs, 'link', 'set', this.podLink.get(ip)!, up ? 'up' : 'down']);
    // A link brought back up loses its routes; the pod's /32 must come back with it.
    if (up) await execa('ip', ['-n', this.nodeNs, 'route', 'replace', `${ip}/32`, 'dev', this.podLink.get(ip)!]);
  }

  /** A UDP server in an existing pod, answering every datagram with `body`. */
  async addUdpServer(ip: string, port: number, body: string): Promise<void> {
    this.servers.set(`udp:${ip}:${port}`, await startUdpServer(this.podNamespace(ip), '0.0.0.0', port, body));
  }

  /** The namespace of the pod with this IP, e.g. to run a client there (PREROUTING path). */
  podNamespace(ip: string): string {
    return this.podNs.get(ip)!;
  }

  /** Routes a ClusterIP range (either family) out of the node, so connect() gets as far as the nat OUTPUT hook. */
  async routeServiceRange(cidr: string, viaPodIndex = 0): Promise<void> {
    await execa('ip', ['-n', this.nodeNs, ...(cidr.includes(':') ? ['-6'] : []), 'route', 'add', cidr, 'dev', `vp${viaPodIndex}`]);
  }

  apply(...objects: KubernetesObject[]): void {
    for (const o of objects) this.api.apply(o);
  }

  async writeConfig(config: Record<string, unknown>): Promise<string> {
    const path = join(this.dir, `config-${Date.now()}-${Math.random().toString(36).slice(2, 6)}.yaml`);
    await writeFile(path, toYaml({ iptablesBackend: this.backend, ...config }));
    return path;
  }

  /**
   * Runs the agent binary (or another entry point taking its flags) inside the
   * node namespace, logging to a file; `nodeArgs` go to node itself (e.g. --cpu-prof).
   */
  async startAgent(args: readonly string[], entryPoint = AGENT_BIN, env: NodeJS.ProcessEnv = process.env, nodeArgs: readonly string[] = []): Promise<AgentProcess> {
    const logFile = join(this.dir, `agent-${Date.now()}-${this.agentsStarted++}.log`);
    const out = createWriteStream(logFile);
    const child = spawn('ip', ['netns', 'exec', this.nodeNs, process.execPath, ...nodeArgs, entryPoint, '--kubeconfig', this.kubeconfig, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    child.stdout!.pipe(out, { end: false });
    child.stderr!.pipe(out, { end: false });
    let stopping = false;
    const exited = new Promise<number | NodeJS.Signals>((resolve) => child.once('exit', (code, signal) => {
      if (!stopping) this.unexpectedExit ??= `the agent (${logFile}) exited by itself with ${code ?? signal}`;
      resolve(code ?? signal!);
    }));
    const agent: AgentProcess = {
      logFile,
      exited,
      stop: async (signal = 'SIGTERM') => {
        stopping = true;
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        const code = await exited;
        this.agents.delete(agent);
        return code;
      },
      // The log file appears once the stream opens it.
      logs: () => readFile(logFile, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? '' : Promise.reject(err))),
    };
    this.agents.add(agent);
    return agent;
  }

  /** Runs the agent binary to completion (--once, --cleanup, --dry-run). */
  async runAgent(args: readonly string[]): Promise<{ code: number | undefined; stdout: string; stderr: string }> {
    const r = await netnsExec(this.nodeNs, process.execPath, [AGENT_BIN, '--kubeconfig', this.kubeconfig, ...args], { reject: false });
    return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  }

  /** iptables-save (ip6tables-save with `ipv6`) of one table in the node. */
  async save(table: 'nat' | 'filter' | 'mangle', counters = false, family: IPFamily = 'ipv4'): Promise<string> {
    const args = ['-t', table, ...(counters ? ['-c'] : [])];
    const { stdout } = await netnsExec(this.nodeNs, `${tools(family)}-${this.backend}-save`, args);
    return stdout;
  }

  /** All tables of one family, without the timestamp comments, for byte-for-byte comparison. */
  async saveAll(family: IPFamily = 'ipv4'): Promise<string> {
    const parts = await Promise.all((['filter', 'mangle', 'nat'] as const).map((t) => this.save(t, false, family)));
    return parts.join('').split('\n').filter((l) => !l.startsWith('#')).join('\n');
  }

  /** The names of the node's ipsets (one list for both families: ipsets are per namespace). */
  async ipsets(): Promise<string[]> {
    const { stdout } = await netnsExec(this.nodeNs, 'ipset', ['list', '-n']);
    return stdout.split('\n').filter((l) => l !== '').sort();
  }

  async restore(payload: string, family: IPFamily = 'ipv4'): Promise<void> {
    await netnsExec(this.nodeNs, `${tools(family)}-${this.backend}-restore`, ['-w', LOCK_WAIT_SECONDS, '--noflush'], { input: payload });
  }

  /** Waits until the node's nat table (ip6tables' with `ipv6`) satisfies predicate; fails with the table and the agents' logs. */
  async waitForRules(predicate: (nat: string) => boolean, what: string, timeoutMs = AGENT_WAIT_MS, family: IPFamily = 'ipv4'): Promise<string> {
    let last = '';
    try {
      return await waitFor(async () => {
        this.throwIfAgentExited();
        last = await this.save('nat', false, family);
        return predicate(last) ? last : null;
      }, what, { timeoutMs, intervalMs: 50 });
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- nat table:\n${last.split('\n').filter((l) => l.includes('MCS')).join('\n')}${await this.agentLogTails()}`);
    }
  }

  /** Throws if an agent exited without being told to. */
  throwIfAgentExited(): void {
    if (this.unexpectedExit) throw new Error(this.unexpectedExit);
  }

  /** The last lines of every running agent's log, for failure messages. */
  async agentLogTails(lines = 40): Promise<string> {
    let out = '';
    for (const agent of this.agents) out += `\n--- ${agent.logFile} (last ${lines} lines):\n${(await agent.logs()).split('\n').slice(-lines).join('\n')}`;
    return out;
  }

  requests(url: string, count: number, opts: { timeoutMs?: number; fromNs?: string; concurrency?: number; intervalMs?: number } = {}): Promise<HttpSummary> {
    return httpRequests(opts.fromNs ?? this.nodeNs, url, count, opts);
  }

  async stop(): Promise<void> {
    for (const agent of [...this.agents]) await agent.stop('SIGKILL');
    for (const server of this.servers.values()) await server.stop().catch(() => {});
    this.relay?.kill('SIGKILL');
    await this.topology.teardown();
    await this.api.stop();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}

function tools(family: IPFamily): string {
  return family === 'ipv6' ? 'ip6tables' : 'iptables';
}

/** Duplicate address detection off for every interface created in ns from now on. */
async function noDad(ns: string): Promise<void> {
  await netnsExec(ns, 'sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
}

/** A dump with every chain's packet and byte counters zeroed (iptables-legacy counts built-in chains' traffic). */
export function zeroCounters(dump: string): string {
  return dump.replace(/\[\d+:\d+\]/g, '[0:0]');
}
