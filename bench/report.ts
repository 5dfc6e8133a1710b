import { readFile } from 'node:fs/promises';
import { cpus, release, totalmem } from 'node:os';
import { execa } from 'execa';
import type { BackendResult, BenchResult } from './harness.js';

// The printed table: one section per backend, each figure side by side with
// the kube-proxy-style layout and the bare-restore floor, and the target it is
// held to (targets are set for the 10k profile; legacy has only the floor one).

export interface Machine {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly iptables: string;
  readonly node: string;
}

export async function describeMachine(): Promise<Machine> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const versions = await Promise.all(['nft', 'legacy'].map(async (m) => (await execa(`iptables-${m}`, ['--version'], { reject: false })).stdout.trim()));
  return {
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    iptables: versions.join(', '),
    node: process.version,
  };
}

type Verdict = 'pass' | 'miss' | '';

interface Row {
  readonly figure: string;
  readonly ours: string;
  readonly kubeProxy: string;
  readonly floor: string;
  readonly ratio: string;
  readonly target: string;
  readonly verdict: Verdict;
}

const ms = (v: number) => (v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 1 : 0)} ms`);
const bytes = (v: number) => (v >= 2 ** 20 ? `${(v / 2 ** 20).toFixed(1)} MB` : v >= 4096 ? `${(v / 1024).toFixed(0)} KB` : `${v} B`);
const times = (v: number) => `${v.toFixed(v < 10 ? 2 : 1)}×`;
const verdict = (ok: boolean): Verdict => (ok ? 'pass' : 'miss');

function rows(r: BackendResult): Row[] {
  const { ours, kubeProxy: kp, agent } = r;
  const nft = r.mode === 'nft';
  const held = (target: string, ok: boolean) => (nft ? { target, verdict: verdict(ok) } : { target: '–', verdict: '' as const });
  const kpCold = kp.coldStartMs ?? kp.coldStartLimitMs;
  const startRatio = kpCold / agent.startMs;
  const changeRatio = kp.oneChange.p50 / ours.oneChange.p50;
  const overhead = ours.oneChange.p50 / ours.floor.p50;
  const b = ours.burst;
  const intervals = Math.ceil(b.lastAppliedMs / b.minSyncIntervalMs);
  const churn = agent.churn;
  return [
    {
      figure: 'start: agent process start → first full sync applied',
      ours: `${ms(agent.startMs)} (load ${ms(agent.loadMs)}, list ${ms(agent.listMs)}, sync ${ms(agent.firstSyncMs)})`,
      kubeProxy: kp.coldStartMs === null ? `> ${ms(kp.coldStartLimitMs)} (killed)` : `${ms(kp.coldStartMs)} (1 restore)`,
      floor: `engine only ${ms(ours.coldStart.ms)}`,
      ratio: `${kp.coldStartMs === null ? '> ' : ''}${times(startRatio)} faster`,
      ...held('< 4 s', agent.startMs < 4000),
    },
    {
      figure: 'cold start, engine only (first full sync)',
      ours: `${ms(ours.coldStart.ms)} (${ours.coldStart.restores} restore${ours.coldStart.restores === 1 ? '' : 's'})`,
      kubeProxy: '', floor: '', ratio: `${times(agent.startMs / ours.coldStart.ms)} of it in the agent's start`, target: '', verdict: '',
    },
    { figure: 'cold start, bytes written', ours: bytes(ours.coldStart.bytes), kubeProxy: bytes(kp.coldStartBytes), floor: '', ratio: `${times(kp.coldStartBytes / ours.coldStart.bytes)} less`, target: '', verdict: '' },
    { figure: 'one change, watch event → kernel, p50', ours: ms(ours.oneChange.p50), kubeProxy: ms(kp.oneChange.p50), floor: ms(ours.floor.p50), ratio: `${times(changeRatio)} faster`, ...held('< 50 ms, ≥ 10× faster', ours.oneChange.p50 < 50 && changeRatio >= 10) },
    { figure: 'one change, watch event → kernel, p99', ours: ms(ours.oneChange.p99), kubeProxy: ms(kp.oneChange.p99), floor: ms(ours.floor.p99), ratio: `${times(kp.oneChange.p99 / ours.oneChange.p99)} faster`, ...held('< 150 ms', ours.oneChange.p99 < 150) },
    { figure: 'one change: of which the runner\'s wait, p50 / p99', ours: `${ms(ours.runnerDelay.p50)} / ${ms(ours.runnerDelay.p99)}`, kubeProxy: '', floor: '', ratio: '', target: '', verdict: '' },
    { figure: 'one change: of which the sync, p50 / p99', ours: `${ms(ours.engineSync.p50)} / ${ms(ours.engineSync.p99)}`, kubeProxy: '', floor: `${ms(ours.floor.p50)} / ${ms(ours.floor.p99)}`, ratio: '', target: '', verdict: '' },
    { figure: 'one change, bytes written', ours: bytes(ours.oneChangeBytes.p50), kubeProxy: bytes(kp.oneChangeBytes.p50), floor: '', ratio: `${times(kp.oneChangeBytes.p50 / ours.oneChangeBytes.p50)} less`, ...held('< 4 KB', ours.oneChangeBytes.max < 4096) },
    {
      figure: `burst: ${b.changes} changes over ${ms(b.spanMs)}, restores`,
      ours: `${b.restores} in ${b.syncs} syncs`, kubeProxy: '', floor: '', ratio: '',
      ...held(`one per ${ms(b.minSyncIntervalMs)} interval`, b.restores === b.syncs && b.syncs <= intervals + 1),
    },
    { figure: 'burst: last change applied', ours: `${ms(b.lastAppliedMs)} (max wait ${ms(b.maxLagMs)})`, kubeProxy: '', floor: '', ratio: '', ...held('< 1.5 s', b.lastAppliedMs < 1500) },
    { figure: 'agent overhead (one change p50 / bare restore p50)', ours: ms(ours.oneChange.p50), kubeProxy: '', floor: ms(ours.floor.p50), ratio: times(overhead), target: '≤ 1.5×', verdict: verdict(overhead <= 1.5) },
    { figure: 'agent memory (RSS) after the first full sync', ours: bytes(agent.rssAfterSyncBytes), kubeProxy: '', floor: '', ratio: '', target: '', verdict: '' },
    {
      figure: `agent memory (RSS) after ${churn.changes} changes`,
      ours: `${bytes(churn.rssBytes)} (peak ${bytes(churn.peakBytes)})`, kubeProxy: '', floor: '', ratio: '',
      ...held('< 150 MB', churn.rssBytes < 150 * 2 ** 20),
    },
  ];
}

function notes(r: BackendResult): string[] {
  const { ours, kubeProxy: kp, agent } = r;
  const churn = agent.churn;
  const out = [
    `our table: ${ours.coldStart.chains} chains, ${ours.coldStart.rules} rules; kube-proxy-style: ${kp.chains} chains`,
    `objects: ${agent.services} Services and ${agent.slices} EndpointSlices, ${bytes(agent.objectBytes)} of JSON (labels, annotations and managedFields as Karmada and the API server write them)`,
    `start: bin/clusterset-proxy in a node namespace against the test API server, an empty kernel table; load = spawn → "clusterset-proxy starting", list = → "watches synced", sync = the first full sync (${agent.firstSyncRestores} restores); engine only = that sync in process, after the informers listed everything in ${ms(ours.ingestMs)}`,
    `one change: ${ours.oneChange.count} changes sent through the API server, each timed from its watch event reaching the informer's handler (decoded, trimmed) to its sync resolved, and replayed bare for the floor; ${kp.oneChange.count} on kube-proxy-style (its restore alone, spawned the same way: no iptables-save, no planning)`,
    `memory: VmRSS of the agent binary; the churn sent ${churn.changes} one-endpoint changes through the API server over ${ms(churn.spanMs)}, the last one in the kernel ${ms(churn.drainMs)} after it was sent${churn.programmingMeanMs === null ? '' : `; the agent's own network_programming_duration_seconds over them: mean ${ms(churn.programmingMeanMs)} (${churn.programmingCount} syncs)`}`,
  ];
  if (kp.chunkedLoadMs !== null) {
    out.push(`kube-proxy-style cold start killed at ${ms(kp.coldStartLimitMs)}; for its partial syncs the same table was loaded in parts (${ms(kp.chunkedLoadMs)}), which kube-proxy itself cannot do: it restores its whole table in one run`);
  }
  return out;
}

export function formatResult(result: BenchResult, machine: Machine, command: string): string {
  const { n, e, c } = result.profile.size;
  const out = [
    `clusterset-proxy benchmark, ${result.profile.name} profile: N=${n.toLocaleString('en')} services × E=${e} endpoints over C=${c} clusters`,
    '',
    `- date: ${result.startedAt.toISOString().replace(/\.\d+Z$/, 'Z')}`,
    `- command: \`${command}\``,
    `- machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB; kernel ${machine.kernel}; ${machine.iptables}; node ${machine.node}`,
  ];
  if (n !== 10_000) out.push('- targets are set for N=10,000: at this size the verdicts only indicate');
  for (const r of result.backends) {
    out.push('', `### ${r.mode}`, '', '| figure | ours | kube-proxy-style | floor | ratio | target | result |', '| --- | --- | --- | --- | --- | --- | --- |');
    for (const row of rows(r)) out.push(`| ${row.figure} | ${row.ours} | ${row.kubeProxy} | ${row.floor} | ${row.ratio} | ${row.target} | ${row.verdict} |`);
    out.push('', ...notes(r).map((line) => `- ${line}`));
  }
  return `${out.join('\n')}\n`;
}
