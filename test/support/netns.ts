// Network-namespace toolkit for data-plane tests, benchmarks and the demo.
// Everything runs inside namespaces this process creates; nothing is linked to
// the root namespace (veth pairs are created directly between two test
// namespaces). Namespaces carry the prefix `mcs<pid>-` and are deleted on
// teardown, on process exit and on SIGINT/SIGTERM/SIGHUP; cleanupStale()
// removes those of earlier runs that crashed.

import { execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa, type Options } from 'execa';

export const PREFIX_ROOT = 'mcs';

/** The prefix of every namespace this process names: `<root><pid>-`. */
export function processPrefix(root = PREFIX_ROOT): string {
  return `${root}${process.pid}-`;
}

/** Created and not yet deleted by this process: what the exit hook deletes. */
const owned = new Set<string>();

export async function createNetns(name: string): Promise<void> {
  installExitHooks();
  await execa('ip', ['netns', 'add', name]);
  owned.add(name);
  await execa('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
}

/** Kills the processes left in the namespace, then deletes it. Deleting a missing namespace is a no-op. */
export async function deleteNetns(name: string): Promise<void> {
  const pids = await execa('ip', ['netns', 'pids', name], { reject: false });
  if (!pids.failed) killAll(pids.stdout);
  const result = await execa('ip', ['netns', 'del', name], { reject: false });
  owned.delete(name);
  if (result.failed && !result.stderr.includes('No such file')) throw new Error(`ip netns del ${name}: ${result.stderr}`);
}

/** Runs `ip netns exec <ns> <file> <args...>`. */
export function netnsExec<O extends Options = {}>(ns: string, file: string, args: readonly string[] = [], options: O = {} as O) {
  return execa('ip', ['netns', 'exec', ns, file, ...args], options);
}

/** Deletes namespaces named `<root><pid>-...` whose pid is no longer alive; returns their names. */
export async function cleanupStale(root = PREFIX_ROOT): Promise<string[]> {
  const { stdout } = await execa('ip', ['netns', 'list']);
  const stale: string[] = [];
  for (const line of stdout.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    if (!name.startsWith(root)) continue;
    const match = /^(\d+)-/.exec(name.slice(root.length));
    if (!match || isAlive(Number(match[1]))) continue;
    await deleteNetns(name);
    stale.push(name);
  }
  return stale;
}

export interface Endpoint {
  readonly ns: string;
  readonly ifname: string;
  /** CIDR, e.g. 10.99.0.1/24. */
  readonly address: string;
}

let topologies = 0;

/** Builds namespaces and links for one test; teardown() deletes all of it. */
export class Topology {
  readonly prefix: string;
  private readonly namespaces: string[] = [];

  constructor(root = PREFIX_ROOT) {
    this.prefix = `${processPrefix(root)}${topologies++}-`;
  }

  /** Creates `<prefix><short>` with lo up and returns the full name. */
  async namespace(short: string): Promise<string> {
    const name = `${this.prefix}${short}`;
    await createNetns(name);
    this.namespaces.push(name);
    return name;
  }

  /** A veth pair between two namespaces of this topology, addressed and up. */
  async link(a: Endpoint, b: Endpoint): Promise<void> {
    await execa('ip', ['-n', a.ns, 'link', 'add', a.ifname, 'type', 'veth', 'peer', 'name', b.ifname, 'netns', b.ns]);
    for (const end of [a, b]) {
      await execa('ip', ['-n', end.ns, 'addr', 'add', end.address, 'dev', end.ifname]);
      await execa('ip', ['-n', end.ns, 'link', 'set', end.ifname, 'up']);
    }
  }

  async enableForwarding(ns: string): Promise<void> {
    await netnsExec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  }

  /** `ip route add <destination> via <gateway>` inside ns. */
  async route(ns: string, destination: string, gateway: string): Promise<void> {
    await execa('ip', ['-n', ns, 'route', 'add', destination, 'via', gateway]);
  }

  /** Deletes every namespace made here, killing what runs inside. Safe to call twice. */
  async teardown(): Promise<void> {
    for (const name of this.namespaces.splice(0).reverse()) await deleteNetns(name);
  }
}

export interface HttpServer {
  readonly pid: number;
  stop(): Promise<void>;
}

/** Starts http-echo inside ns, answering every request with body; resolves once it listens. */
export function startHttpServer(ns: string, ip: string, port: number, body: string): Promise<HttpServer> {
  return startServerScript(ns, 'http-echo.js', [ip, String(port), body]);
}

/** Starts udp-echo inside ns, answering every datagram with body; resolves once it listens. */
export function startUdpServer(ns: string, ip: string, port: number, body: string): Promise<HttpServer> {
  return startServerScript(ns, 'udp-echo.js', [ip, String(port), body]);
}

/** Runs a support script inside ns until stopped; resolves once it prints its first line. */
async function startServerScript(ns: string, script: string, args: readonly string[]): Promise<HttpServer> {
  const child = netnsExec(ns, process.execPath, [supportScript(script), ...args], {
    stdin: 'pipe',
    buffer: false,
    reject: false,
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const lines = createInterface({ input: child.stdout });
  const ready = new Promise<void>((resolve) => lines.once('line', () => resolve()));
  const exited = child.then(() => {
    throw new Error(`${script} in ${ns} exited before listening: ${stderr.trim()}`);
  });
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${script} in ${ns} not listening after 5 s`)), 5000).unref());
  try {
    await Promise.race([ready, exited, timeout]);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  exited.catch(() => {});
  lines.close();
  return {
    pid: child.pid!,
    async stop() {
      child.kill('SIGTERM');
      await child;
    },
  };
}

export interface HttpSummary {
  ok: number;
  failed: number;
  /** Response bodies and how often each came back. */
  bodies: Record<string, number>;
  /** Error codes (ECONNREFUSED, ETIMEDOUT, HTTP_503...) and their counts. */
  errors: Record<string, number>;
}

export interface HttpRequestOptions {
  /** Per request; default 1000. */
  readonly timeoutMs?: number;
  /** Requests in flight at once; default 1. */
  readonly concurrency?: number;
  /** Least time between the starts of two requests of one worker; default 0. */
  readonly intervalMs?: number;
}

/** Makes count requests from inside ns, each on a new TCP connection. */
export async function httpRequests(ns: string, url: string, count: number, options: HttpRequestOptions = {}): Promise<HttpSummary> {
  const args = [supportScript('http-client.js'), url, String(count), String(options.timeoutMs ?? 1000), String(options.concurrency ?? 1), String(options.intervalMs ?? 0)];
  const { stdout } = await netnsExec(ns, process.execPath, args);
  return JSON.parse(stdout) as HttpSummary;
}

/** Sends `count` datagrams from one socket (so conntrack sees one flow), one every intervalMs; the bodies of the answers, in order. */
export async function udpExchange(ns: string, ip: string, port: number, count: number, intervalMs: number): Promise<string[]> {
  const { stdout } = await netnsExec(ns, process.execPath, [supportScript('udp-client.js'), ip, String(port), String(count), String(intervalMs)]);
  return JSON.parse(stdout) as string[];
}

function supportScript(name: string): string {
  return fileURLToPath(new URL(`./${name}`, import.meta.url));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killAll(pidList: string): void {
  for (const pid of pidList.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

let hooksInstalled = false;

/** Exit handlers must be synchronous: delete what is left with execFileSync. */
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  const cleanup = (): void => {
    for (const name of owned) {
      try {
        killAll(String(execFileSync('ip', ['netns', 'pids', name], { stdio: ['ignore', 'pipe', 'ignore'] })));
        execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
      } catch {
        // Best effort while exiting; cleanupStale() catches what is left.
      }
    }
    owned.clear();
  };
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      cleanup();
      process.kill(process.pid, signal);
    });
  }
}
