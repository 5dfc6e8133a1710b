import type { BackendMode } from '../src/iptables/backend.js';
import { cleanupStale } from '../test/support/netns.js';
import { measureKubeProxy, measureOurs, type KubeProxyFigures, type OurFigures } from './figures.js';
import { measureAgent, type AgentFigures } from './agent.js';
import { Workload, type WorkloadSize } from './workload.js';

export interface Profile {
  readonly name: string;
  readonly size: WorkloadSize;
  readonly backends: readonly BackendMode[];
  /** One-endpoint changes timed on our engine (figure 1), each also replayed bare (figure 4). */
  readonly changes: number;
  /** Partial syncs timed on the kube-proxy-style layout: on legacy each costs seconds at 10k. */
  readonly kubeProxyChanges: number;
  readonly burstChanges: number;
  readonly burstSpanMs: number;
  /** The kube-proxy-style cold start is killed past this (nft at 10k takes longer than 10 minutes). */
  readonly kubeProxyColdLimitMs: number;
  readonly kubeProxyLoadChunkChains: number;
  /** How long the agent binary may take to list everything and finish its first sync. */
  readonly agentStartLimitMs: number;
  /** One-endpoint changes sent to the running agent through the API server before its memory is read again. */
  readonly churnChanges: number;
  /** Of those, sent per second. */
  readonly churnRate: number;
}

const COMMON = {
  backends: ['nft', 'legacy'] as const,
  burstChanges: 1000,
  burstSpanMs: 1000,
  kubeProxyLoadChunkChains: 2000,
  kubeProxyChanges: 30,
  churnChanges: 1000,
  churnRate: 100,
};

export const PROFILES = {
  quick: { ...COMMON, name: 'quick', size: { n: 1000, e: 10, c: 3 }, changes: 100, kubeProxyColdLimitMs: 60_000, agentStartLimitMs: 120_000 },
  full: { ...COMMON, name: 'full', size: { n: 10_000, e: 10, c: 3 }, changes: 100, kubeProxyColdLimitMs: 120_000, agentStartLimitMs: 600_000 },
} satisfies Record<string, Profile>;

export interface BackendResult {
  readonly mode: BackendMode;
  readonly ours: OurFigures;
  readonly kubeProxy: KubeProxyFigures;
  /** The agent binary: start, memory after the first sync and after churn. */
  readonly agent: AgentFigures;
}

export interface BenchResult {
  readonly profile: Profile;
  readonly startedAt: Date;
  readonly backends: readonly BackendResult[];
}

/** Runs every figure on every backend of the profile; each backend starts from the same objects. */
export async function runBenchmark(profile: Profile, progress: (line: string) => void = () => {}): Promise<BenchResult> {
  const startedAt = new Date();
  await cleanupStale();
  const backends: BackendResult[] = [];
  for (const mode of profile.backends) {
    const { n, e, c } = profile.size;
    progress(`${mode}: our engine (N=${n}, E=${e}, C=${c})`);
    const ours = await measureOurs(new Workload(profile.size), mode, profile);
    progress(`${mode}: kube-proxy-style layout`);
    const kubeProxy = await measureKubeProxy(new Workload(profile.size), mode, {
      changes: profile.kubeProxyChanges,
      coldStartLimitMs: profile.kubeProxyColdLimitMs,
      loadChunkChains: profile.kubeProxyLoadChunkChains,
    });
    progress(`${mode}: the agent binary`);
    const agent = await measureAgent(new Workload(profile.size), mode, { timeoutMs: profile.agentStartLimitMs, churnChanges: profile.churnChanges, churnRate: profile.churnRate });
    backends.push({ mode, ours, kubeProxy, agent });
  }
  return { profile, startedAt, backends };
}
