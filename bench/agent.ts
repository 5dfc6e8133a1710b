import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import type { BackendMode } from '../src/iptables/backend.js';
import { waitFor } from '../test/support/api-server.js';
import { netnsExec } from '../test/support/netns.js';
import { AGENT_BIN, Lab, type AgentProcess } from '../test/support/lab.js';
import { changeTarget, type Workload } from './workload.js';

// The real agent binary (bin/clusterset-proxy) in a node namespace, listing
// every object from the test API server over the loopback relay, as an
// operator starts it after a reboot: an empty kernel table. Figures:
// - start: process start → first full sync applied, split by the agent's own
//   log lines into loading, listing and the first full sync;
// - memory (VmRSS) once that sync is done and again after a churn of
//   one-endpoint changes sent through the API server, every one applied.

export interface AgentOptions {
  /** How long the agent may take to list everything and finish its first sync. */
  readonly timeoutMs: number;
  /** One-endpoint changes sent through the API server after the first sync. */
  readonly churnChanges: number;
  /** Changes sent per second during the churn. */
  readonly churnRate: number;
}

export interface AgentFigures {
  readonly services: number;
  readonly slices: number;
  /** Bytes of JSON the API server holds for those objects, as listed. */
  readonly objectBytes: number;
  /** Process spawned → log line "full sync done" (the first one). */
  readonly startMs: number;
  /** Process spawned → "clusterset-proxy starting": node, module loading, config, backend probe. */
  readonly loadMs: number;
  /** "clusterset-proxy starting" → "watches synced": listing and ingesting every object. */
  readonly listMs: number;
  /** The first full sync's own duration (plan, read back, restores). */
  readonly firstSyncMs: number;
  /** Restores of the first full sync. */
  readonly firstSyncRestores: number;
  readonly rssAfterSyncBytes: number;
  readonly churn: {
    readonly changes: number;
    readonly spanMs: number;
    /** Last change sent → seen in the kernel (polled with iptables-save). */
    readonly drainMs: number;
    readonly rssBytes: number;
    /** VmHWM: the peak resident set over the whole run. */
    readonly peakBytes: number;
    /** The agent's own network_programming_duration_seconds over the churn: mean, in ms. */
    readonly programmingMeanMs: number | null;
    readonly programmingCount: number;
  };
}

interface LogLine {
  readonly time: string;
  readonly msg: string;
  readonly [field: string]: unknown;
}

function logLines(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      // A line being written.
    }
  }
  return out;
}

export async function measureAgent(workload: Workload, mode: BackendMode, opts: AgentOptions): Promise<AgentFigures> {
  const lab = new Lab(mode);
  try {
    await lab.start();
    let slices = 0;
    let objectBytes = 0;
    for (const o of workload.objects()) {
      lab.apply(o);
      objectBytes += JSON.stringify(o).length;
      if (o.kind === 'EndpointSlice') slices++;
    }
    const c = workload.config();
    // No health verdicts during the run: the lab's pods do not answer probes, and a cluster judged down would empty every selection.
    const config = await lab.writeConfig({
      clusterName: c.clusterName, clusters: c.clusters, clusterCIDR: c.clusterCIDR, logLevel: 'info',
      healthProbe: { interval: '1h', timeout: '1s' },
    });
    const spawnedAt = Date.now();
    const agent = await lab.startAgent(['--config', config]);
    const synced = await waitFor(async () => {
      const lines = logLines(await agent.logs());
      return lines.find((l) => l.msg === 'full sync done') ? lines : null;
    }, 'the agent\'s first full sync', { timeoutMs: opts.timeoutMs, intervalMs: 50 });
    const at = (msg: string) => {
      const line = synced.find((l) => l.msg === msg);
      if (!line) throw new Error(`the agent logged no "${msg}"`);
      return { ms: Date.parse(line.time) - spawnedAt, line };
    };
    const starting = at('clusterset-proxy starting');
    const watches = at('watches synced; starting the first full sync');
    const done = at('full sync done');
    const pid = await agentPid(lab.nodeNs);
    const afterSync = await readFile(`/proc/${pid}/status`, 'utf8');

    const before = await programming(lab.nodeNs);
    const churn = await runChurn(lab, agent, workload, opts);
    const after = await programming(lab.nodeNs);
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const count = after.count - before.count;
    return {
      services: workload.services.length,
      slices,
      objectBytes,
      startMs: done.ms,
      loadMs: starting.ms,
      listMs: watches.ms - starting.ms,
      firstSyncMs: Number(done.line.durationMs),
      firstSyncRestores: Number(done.line.restores),
      rssAfterSyncBytes: statusKb(afterSync, 'VmRSS') * 1024,
      churn: {
        ...churn,
        rssBytes: statusKb(status, 'VmRSS') * 1024,
        peakBytes: statusKb(status, 'VmHWM') * 1024,
        programmingMeanMs: count > 0 ? ((after.sum - before.sum) / count) * 1000 : null,
        programmingCount: count,
      },
    };
  } finally {
    await lab.stop();
  }
}

/** Sends the changes at the configured rate, then waits for the last one to reach the kernel. */
async function runChurn(lab: Lab, agent: AgentProcess, workload: Workload, opts: AgentOptions): Promise<{ changes: number; spanMs: number; drainMs: number }> {
  const count = opts.churnChanges;
  if (count === 0) return { changes: 0, spanMs: 0, drainMs: 0 };
  const started = performance.now();
  let sent = 0;
  let lastAddress = '';
  while (sent < count) {
    const due = Math.min(count, Math.floor(((performance.now() - started) / 1000) * opts.churnRate) + 1);
    while (sent < due) {
      const change = workload.change(changeTarget(sent, workload.services.length));
      lab.apply(change.slice);
      lastAddress = change.slice.endpoints.at(-1)?.addresses[0] ?? lastAddress;
      sent++;
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const lastSent = performance.now();
  let exited = false;
  void agent.exited.then(() => (exited = true));
  await waitFor(async () => {
    if (exited) throw new Error(`the agent exited during the churn; its log: ${agent.logFile}`);
    return (await lab.save('nat')).includes(`--to-destination ${lastAddress}:`) ? true : null;
  }, 'the last change in the kernel', { timeoutMs: 120_000, intervalMs: 200 });
  return { changes: count, spanMs: lastSent - started, drainMs: performance.now() - lastSent };
}

/** The agent's network_programming_duration_seconds, read from its metrics endpoint in the node namespace. */
async function programming(ns: string): Promise<{ sum: number; count: number }> {
  const script = 'fetch("http://127.0.0.1:10265/metrics").then((r) => r.text()).then((t) => process.stdout.write(t))';
  const { stdout } = await netnsExec(ns, process.execPath, ['-e', script]);
  const value = (suffix: string) => Number(new RegExp(`^clusterset_proxy_network_programming_duration_seconds_${suffix} (\\S+)$`, 'm').exec(stdout)?.[1] ?? 0);
  return { sum: value('sum'), count: value('count') };
}

/** `ip netns exec` execs the agent in place, so its process is the one in the namespace running the agent's script. */
async function agentPid(ns: string): Promise<number> {
  const { stdout } = await execa('ip', ['netns', 'pids', ns]);
  for (const pid of stdout.split(/\s+/).filter(Boolean)) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(AGENT_BIN)) return Number(pid);
  }
  throw new Error(`no agent process in namespace ${ns}`);
}

function statusKb(status: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  if (!match) throw new Error(`/proc status has no ${field}`);
  return Number(match[1]);
}
