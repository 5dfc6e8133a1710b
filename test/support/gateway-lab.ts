// What the cross-cluster route labs share (route-lab.ts on an IPv4 node
// network, ipv6-route-lab.ts on an IPv6 or dual-stack one): the namespaces
// node, gw-1, gw-2, a switch and a remote cluster; the TestApiServer in this
// process, reached from each member through a unix-relay on 127.0.0.1:6443;
// and the agents started as members, with their logs and exits.

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { kubeconfigYaml, TestApiServer } from './api-server.js';
import { cleanupStale, netnsExec, Topology, type HttpServer } from './netns.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const AGENT_BIN = join(ROOT, 'bin', 'clusterset-proxy');
const RELAY_PORT = 6443;

export type Gateway = 'gw-1' | 'gw-2';
export type Member = 'node-1' | Gateway;
export const ROUTE_TABLE = 19779;
export const GATEWAY_LABEL = 'submariner.io/gateway';

export interface RunningAgent {
  readonly logFile: string;
  /** Resolves with the exit code, or the name of the signal that ended the process. */
  stop(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals>;
  logs(): Promise<string>;
}

export abstract class GatewayLab {
  readonly api = new TestApiServer({ bookmarkIntervalMs: 1000 });
  readonly topology = new Topology();
  readonly ns = { sw: '', node: '', 'gw-1': '', 'gw-2': '', remote: '' };
  protected dir = '';
  protected readonly servers: HttpServer[] = [];
  private readonly children: ChildProcess[] = [];
  private readonly agents = new Set<RunningAgent>();
  /** The latest agent started as each member, for failure messages. */
  private readonly latest = new Map<Member, RunningAgent>();
  /** Set when an agent exits without being stopped: waits end at once with this. */
  private unexpectedExit: string | undefined;

  /** Removes stale namespaces, starts the API server and writes the kubeconfig; returns the server's socket. */
  protected async prepare(dirPrefix: string): Promise<string> {
    await cleanupStale();
    this.dir = await mkdtemp(join(tmpdir(), dirPrefix));
    const socketPath = join(this.dir, 'api.sock');
    await this.api.start({ socketPath });
    await writeFile(this.kubeconfig, kubeconfigYaml(`http://127.0.0.1:${RELAY_PORT}`));
    return socketPath;
  }

  get kubeconfig(): string {
    return join(this.dir, 'kubeconfig');
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

  /** Packets the gateway sent into its tunnel. */
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

  protected async startRelay(ns: string, socketPath: string): Promise<void> {
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
