// Network-namespace toolkit for data-plane tests, benchmarks and the demo.
// Everything runs inside namespaces this process creates; nothing is linked to
// the root namespace (veth pairs are created directly between two test
// namespaces). Namespaces carry the prefix `mcs<pid>-` and are deleted on
// teardown, on process exit and on SIGINT/SIGTERM/SIGHUP; cleanupStale()
// removes those of earlier runs that crashed.

import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa, type Options } from 'execa';

export const PREFIX_ROOT = 'mcs';

/** How long a support script (echo server, client) may take to start on a loaded machine. */
const SCRIPT_START_MS = 60_000;

/*
 * iptables-legacy serialises every writer of the machine on one flock file,
 * /run/xtables.lock, whatever network namespace it writes to; a test suite
 * running next to another would wait for the other's restores (and time out
 * under load). The tables of our namespaces are ours alone, so this process
 * and everything it starts (agents, iptables tools) lock a file of its own
 * instead: iptables honours XTABLES_LOCKFILE. An agent on a real node leaves
 * the variable unset and shares kube-proxy's lock. A value set by the caller
 * is kept.
 */
const LOCK_PREFIX = 'clusterset-proxy-xtables-';
const ownLockFile = process.env.XTABLES_LOCKFILE === undefined ? join(tmpdir(), `${LOCK_PREFIX}${process.pid}.lock`) : undefined;
if (ownLockFile) process.env.XTABLES_LOCKFILE = ownLockFile;

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

/** Deletes namespaces named `<root><pid>-...` (and lock files) whose pid is no longer alive; returns the namespaces' names. */
export async function cleanupStale(root = PREFIX_ROOT): Promise<string[]> {
  for (const file of readdirSync(tmpdir())) {
    const match = new RegExp(`^${LOCK_PREFIX}(\\d+)\\.lock$`).exec(file);
    if (match && !isAlive(Number(match[1]))) rmSync(join(tmpdir(), file), { force: true });
  }
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
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${script} in ${ns} not listening after ${SCRIPT_START_MS / 1000} s`)), SCRIPT_START_MS).unref());
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
  /** Per request; default 10000: on a loaded machine an answer can take seconds, and a test that expects one must not fail for that. */
  readonly timeoutMs?: number;
  /** Requests in flight at once; default 1. */
  readonly concurrency?: number;
  /** Least time between the starts of two requests of one worker; default 0. */
  readonly intervalMs?: number;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/** Makes count requests from inside ns, each on a new TCP connection. */
export async function httpRequests(ns: string, url: string, count: number, options: HttpRequestOptions = {}): Promise<HttpSummary> {
  const args = [supportScript('http-client.js'), url, String(count), String(options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS), String(options.concurrency ?? 1), String(options.intervalMs ?? 0)];
  const { stdout } = await netnsExec(ns, process.execPath, args);
  return JSON.parse(stdout) as HttpSummary;
}

/** Sends `count` datagrams from one socket (so conntrack sees one flow), one at a time every intervalMs; the bodies of the answers, in order ("" for none within timeoutMs). */
export async function udpExchange(ns: string, ip: string, port: number, count: number, intervalMs: number, timeoutMs = 5000): Promise<string[]> {
  const { stdout } = await netnsExec(ns, process.execPath, [supportScript('udp-client.js'), ip, String(port), String(count), String(intervalMs), String(timeoutMs)]);
  return JSON.parse(stdout) as string[];
}

/** A client that runs until stopped; a test waits on what it has seen so far instead of on the clock. */
export interface ClientStream<P, R> {
  /** What the client has seen so far. */
  readonly progress: P;
  /** Resolves as soon as the progress satisfies predicate; fails after timeoutMs or if the client exits first. */
  until(predicate: (progress: P) => boolean, what: string, timeoutMs?: number): Promise<void>;
  /** Stops sending, lets the requests in flight finish, and returns the client's final report. */
  stop(): Promise<R>;
}

/** Bound of ClientStream.until by default: generous, it only decides how long a broken test takes to fail. */
const STREAM_WAIT_MS = 60_000;

/**
 * Runs a client script with count 0 inside ns: it prints one JSON line per
 * outcome, then its report, and stops when its stdin closes. `add` counts an
 * outcome line into progress and ignores the report.
 */
function clientStream<P, R>(ns: string, args: readonly string[], progress: P, add: (progress: P, line: unknown) => void): ClientStream<P, R> {
  const child = netnsExec(ns, process.execPath, args, { stdin: 'pipe', buffer: false, reject: false });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const lines = createInterface({ input: child.stdout });
  let last: unknown;
  const waiters = new Set<() => void>();
  lines.on('line', (line) => {
    last = JSON.parse(line) as unknown;
    add(progress, last);
    for (const check of [...waiters]) check();
  });
  let exited = false;
  const done = child.then((r) => {
    exited = true;
    for (const check of [...waiters]) check();
    return r;
  });
  const current = (): P => structuredClone(progress);
  return {
    get progress() {
      return current();
    },
    until(predicate, what, timeoutMs = STREAM_WAIT_MS) {
      return new Promise<void>((resolve, reject) => {
        const finish = (err?: Error) => {
          waiters.delete(check);
          clearTimeout(timer);
          if (err) reject(err);
          else resolve();
        };
        const check = () => {
          if (predicate(current())) finish();
          else if (exited) finish(new Error(`the client in ${ns} exited before ${what}: ${stderr.trim()}`));
        };
        const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${JSON.stringify(current())}`)), timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async stop() {
      child.stdin?.end();
      const r = await done;
      if (r.exitCode !== 0 || last === undefined) throw new Error(`the client in ${ns} failed (${r.exitCode ?? r.signal}): ${stderr.trim()}`);
      return last as R;
    },
  };
}

/** Requests from inside ns, each on a new TCP connection, until stopped; progress counts the outcomes so far. */
export function httpRequestStream(ns: string, url: string, options: Omit<HttpRequestOptions, 'count'> = {}): ClientStream<HttpSummary, HttpSummary> {
  const args = [supportScript('http-client.js'), url, '0', String(options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS), String(options.concurrency ?? 1), String(options.intervalMs ?? 0)];
  return clientStream<HttpSummary, HttpSummary>(ns, args, { ok: 0, failed: 0, bodies: {}, errors: {} }, (summary, line) => {
    const outcome = line as { body: string } | { error: string } | HttpSummary;
    if ('ok' in outcome) return; // the report
    if ('body' in outcome) {
      summary.ok++;
      summary.bodies[outcome.body] = (summary.bodies[outcome.body] ?? 0) + 1;
    } else {
      summary.failed++;
      summary.errors[outcome.error] = (summary.errors[outcome.error] ?? 0) + 1;
    }
  });
}

/** Datagrams from one socket (one conntrack flow), one at a time every intervalMs, until stopped; progress is the answers' bodies so far ("" for none within timeoutMs). */
export function udpExchangeStream(ns: string, ip: string, port: number, intervalMs: number, timeoutMs = 5000): ClientStream<string[], string[]> {
  const args = [supportScript('udp-client.js'), ip, String(port), '0', String(intervalMs), String(timeoutMs)];
  return clientStream<string[], string[]>(ns, args, [], (answers, line) => {
    if (!Array.isArray(line)) answers.push((line as { answer: string }).answer); // an array is the report
  });
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
    if (ownLockFile) rmSync(ownLockFile, { force: true });
  };
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      cleanup();
      process.kill(process.pid, signal);
    });
  }
}
