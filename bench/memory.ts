import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import type { BackendMode } from '../src/iptables/backend.js';
import { waitFor } from '../test/support/api-server.js';
import { AGENT_BIN, Lab } from '../test/support/lab.js';
import type { Workload } from './workload.js';

// Figure 5: the real agent binary in a node namespace, listing every object
// from the test API server. Its resident set includes client-node's informer
// caches, which hold the objects as the API sent them: the honest figure.

export interface MemoryFigure {
  readonly services: number;
  readonly slices: number;
  /** From the agent's start to its log line "full sync done". */
  readonly firstSyncMs: number;
  /** VmRSS once the first full sync is done, in bytes. */
  readonly rssBytes: number;
  /** VmHWM: the peak resident set up to then. */
  readonly peakBytes: number;
}

export async function measureMemory(workload: Workload, mode: BackendMode, timeoutMs: number): Promise<MemoryFigure> {
  const lab = new Lab(mode);
  try {
    await lab.start();
    let slices = 0;
    for (const o of workload.objects()) {
      lab.apply(o);
      if (o.kind === 'EndpointSlice') slices++;
    }
    const c = workload.config();
    const config = await lab.writeConfig({ clusterName: c.clusterName, clusters: c.clusters, clusterCIDR: c.clusterCIDR, logLevel: 'info' });
    const started = performance.now();
    const agent = await lab.startAgent(['--config', config]);
    await waitFor(async () => (await agent.logs()).includes('"msg":"full sync done"'), 'the agent\'s first full sync', { timeoutMs, intervalMs: 100 });
    const firstSyncMs = performance.now() - started;
    const status = await readFile(`/proc/${await agentPid(lab.nodeNs)}/status`, 'utf8');
    return { services: workload.services.length, slices, firstSyncMs, rssBytes: statusKb(status, 'VmRSS') * 1024, peakBytes: statusKb(status, 'VmHWM') * 1024 };
  } finally {
    await lab.stop();
  }
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
