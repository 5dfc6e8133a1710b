// Drift figures, measured on the real agent binary in node namespaces beside
// kube-proxy-style rules that send the derived ClusterIP to the remote cluster:
//   npm run bench:drift [-- --tries 20 --baseline-tries 3 --idle-seconds 60]
// 1. kube-proxy re-inserts its KUBE-SERVICES jumps (nat PREROUTING and OUTPUT) ahead of ours → our jump first again (p50/max over the tries),
//    and the requests misrouted to the remote cluster meanwhile under a steady stream of new connections.
// 2. The same with the drift watch off (driftWatch: false): repaired by the next full sync only.
// 3. CPU of an idle agent over a minute, drift watch on and off, both agents running side by side.
// 4. The agent's CPU while kube-proxy rewrites thousands of its own chains, watch on and off, side by side.
import { parseArgs } from 'node:util';
import { cpus } from 'node:os';
import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import type { BackendMode } from '../src/iptables/backend.js';
import { get, sample, waitForLog } from '../test/support/agent-client.js';
import { kubeProxyRewrite } from '../test/support/kube-proxy-storm.js';
import { endpoint, importedSlice, service, slice } from '../test/support/fixtures.js';
import { KUBE_PROXY_NAT } from '../test/support/foreign-rules.js';
import { Lab, type AgentProcess } from '../test/support/lab.js';
import { netnsExec } from '../test/support/netns.js';
import { spread } from './stats.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

interface Generation {
  readonly at: number;
  readonly pid: number;
  readonly procName: string;
  readonly touches: readonly string[];
}

/** The nf_tables generations of the node namespace, as the kernel announces them (nft only). */
class GenerationLog {
  readonly seen: Generation[] = [];
  private waiters: (() => void)[] = [];
  private constructor(private readonly child: ChildProcess) {}

  static async start(ns: string): Promise<GenerationLog> {
    const script = fileURLToPath(new URL('../test/support/nft-generations.js', import.meta.url));
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const log = new GenerationLog(child);
    const lines = createInterface({ input: child.stdout! });
    await new Promise<void>((resolve) => {
      lines.on('line', (line) => {
        const msg = JSON.parse(line) as { ready?: boolean } & Partial<Generation>;
        if (msg.ready) return resolve();
        if (msg.at === undefined) return;
        log.seen.push(msg as Generation);
        for (const w of log.waiters.splice(0)) w();
      });
    });
    return log;
  }

  /** The first generation from index `from` on that satisfies `pred`. */
  async next(from: number, pred: (g: Generation) => boolean, timeoutMs: number): Promise<{ g: Generation; index: number }> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const index = this.seen.findIndex((g, i) => i >= from && pred(g));
      if (index !== -1) return { g: this.seen[index]!, index };
      const left = deadline - performance.now();
      if (left <= 0) throw new Error('no such nf_tables generation in time');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

const SERVICE_URL = 'http://10.96.0.50/';
const LOCAL_RULE = '-> brazil 10.1.0.10:8080';
const KUBE_JUMP = '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES';
/** kube-proxy's view of the derived Service: its endpoints are the imported (remote) ones. */
const KUBE_DERIVED = `*nat
:KUBE-SVC-DERIVEDSERVE0000 - [0:0]
:KUBE-SEP-DERIVEDSERVE0000 - [0:0]
-I KUBE-SERVICES 1 -d 10.96.0.50/32 -p tcp -m comment --comment "default/derived-serve:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-DERIVEDSERVE0000
-A KUBE-SVC-DERIVEDSERVE0000 -m comment --comment "default/derived-serve:http -> 10.2.0.10:8080" -j KUBE-SEP-DERIVEDSERVE0000
-A KUBE-SEP-DERIVEDSERVE0000 -p tcp -m comment --comment "default/derived-serve:http" -m tcp -j DNAT --to-destination 10.2.0.10:8080
COMMIT
`;

interface Setup {
  readonly lab: Lab;
  readonly agent: AgentProcess;
}

async function setUp(backend: BackendMode, config: Record<string, unknown>, services: number): Promise<Setup> {
  const lab = new Lab(backend);
  await lab.start();
  await lab.addPod({ ip: '10.1.0.10', body: 'brazil' });
  await lab.addPod({ ip: '10.2.0.10', body: 'chile01' });
  await lab.routeServiceRange('10.96.0.0/12');
  await lab.restore(KUBE_PROXY_NAT);
  await lab.restore(KUBE_DERIVED);
  lab.apply(
    service('default', 'serve', '10.96.0.40', [{ name: 'http', port: 80 }]),
    slice('default', 'serve-local', 'serve', [endpoint('10.1.0.10')]),
    service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]),
    importedSlice('default', 'chile01', 'serve-1', 'derived-serve', [endpoint('10.2.0.10')]),
  );
  // Filler services: an agent with something to hold.
  for (let i = 1; i < services; i++) {
    lab.apply(
      service('default', `derived-f${i}`, `10.97.${i >> 8}.${i & 255}`, [{ name: 'http', port: 80 }]),
      importedSlice('default', 'chile01', `f${i}-1`, `derived-f${i}`, [endpoint(`10.3.${i >> 8}.${i & 255}`)]),
    );
  }
  const path = await lab.writeConfig({ clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], ...config });
  const agent = await lab.startAgent(['--config', path]);
  await lab.waitForRules((t) => t.includes(LOCAL_RULE), 'the first rules', 60_000);
  await waitForLog(agent, '"full sync done"', 60_000);
  return { lab, agent };
}

/** Whether our jump is first in nat PREROUTING and OUTPUT (the node's own clients go through OUTPUT). */
async function oursFirst(lab: Lab): Promise<boolean> {
  for (const chain of ['OUTPUT', 'PREROUTING']) {
    const { stdout } = await netnsExec(lab.nodeNs, `iptables-${lab.backend}`, ['-w', '5', '-t', 'nat', '-S', chain, '1']);
    if (!stdout.trim().endsWith('-j MCS-SERVICES')) return false;
  }
  return true;
}

/** kube-proxy's prepend, one try: returns ms until our jump is first again and the requests misrouted meanwhile. */
async function reinsertTry(lab: Lab, timeoutMs: number, gens: GenerationLog | null): Promise<{ ms: number; misrouted: number; requests: number; streamMs: number }> {
  // A steady stream of new connections, one every 10 ms, covering the window.
  const count = Math.ceil(timeoutMs / 10) + 60;
  const streamStart = performance.now();
  const stream = lab.requests(SERVICE_URL, count, { intervalMs: 10, timeoutMs: 1000 });
  await new Promise((r) => setTimeout(r, 300));
  const t0 = performance.now();
  const from = gens?.seen.length ?? 0;
  await lab.restore(`*nat\n-D PREROUTING ${KUBE_JUMP}\n-I PREROUTING 1 ${KUBE_JUMP}\n-D OUTPUT ${KUBE_JUMP}\n-I OUTPUT 1 ${KUBE_JUMP}\nCOMMIT\n`);
  let ms = NaN;
  for (;;) {
    if (await oursFirst(lab)) {
      ms = performance.now() - t0;
      break;
    }
    if (performance.now() - t0 > timeoutMs) throw new Error(`our jump was not first again within ${timeoutMs} ms`);
  }
  if (gens) {
    // The kernel's own clock of it: from the foreign commit to the agent's commit that put our jumps back.
    const prerouting = (g: Generation) => g.touches.includes('nat/PREROUTING');
    const foreign = await gens.next(from, prerouting, timeoutMs);
    const repair = await gens.next(foreign.index + 1, (g) => prerouting(g) && g.pid !== foreign.g.pid, timeoutMs);
    ms = repair.g.at - foreign.g.at;
  }
  const summary = await stream;
  return { ms, misrouted: summary.bodies.chile01 ?? 0, requests: summary.ok + summary.failed, streamMs: performance.now() - streamStart };
}

async function agentPid(lab: Lab): Promise<number> {
  const { stdout } = await execa('ip', ['netns', 'pids', lab.nodeNs]);
  for (const pid of stdout.split('\n').filter(Boolean)) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('bin/clusterset-proxy')) return Number(pid);
  }
  throw new Error('agent process not found');
}

/** utime + stime of the process and of its reaped children (the iptables processes it ran), in ms. */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14-17 of stat: utime stime cutime cstime, counted from field 3 after the command name.
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
  return (ticks * 1000) / 100;
}

/** The read and write times the agent logged for each jump repair. */
function repairTimes(logs: string): { read: number[]; write: number[] } {
  const read: number[] = [];
  const write: number[] = [];
  for (const line of logs.split('\n')) {
    if (!line.includes('our jumps are first again')) continue;
    const entry = JSON.parse(line) as { readMs?: number; writeMs?: number };
    if (entry.readMs !== undefined) read.push(entry.readMs);
    if (entry.writeMs !== undefined) write.push(entry.writeMs);
  }
  return { read, write };
}

function fmt(n: number): string {
  return n.toFixed(0);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      tries: { type: 'string', default: '20' }, 'baseline-tries': { type: 'string', default: '3' }, 'idle-seconds': { type: 'string', default: '60' },
      'storm-services': { type: 'string', default: '5000' }, 'storm-rounds': { type: 'string', default: '3' },
    },
  });
  const stormServices = Number(values['storm-services']);
  const stormRounds = Number(values['storm-rounds']);
  const tries = Number(values.tries);
  const baselineTries = Number(values['baseline-tries']);
  const idleSeconds = Number(values['idle-seconds']);
  const lines: string[] = [
    `clusterset-proxy drift, ${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpus()[0]?.model.trim()}, node ${process.version}`,
    `command: npm run bench:drift -- --tries ${tries} --baseline-tries ${baselineTries} --idle-seconds ${idleSeconds} --storm-services ${stormServices} --storm-rounds ${stormRounds}`,
    'settings: minSyncInterval 100ms; 50 services; requests: one new connection every 10 ms from the node; kube-proxy\'s jump prepended in nat PREROUTING and OUTPUT in one restore; time: nft from the foreign commit to the agent\'s, both as nf_tables announced them; legacy until iptables -S OUTPUT 1 / PREROUTING 1 show ours first; the agent\'s read and write: its own figures in the repair\'s log line (nft: netlink dump and in-process move; legacy: getsockopt read and iptables-legacy-restore)',
    '',
    '| backend | drift watch | tries | re-insert → our jump first p50 (ms) | max (ms) | misrouted per try p50 | max | requests/s | agent read p50 / max (ms) | agent write p50 / max (ms) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const backend of ['nft', 'legacy'] as const) {
    for (const watch of [true, false]) {
      const n = watch ? tries : baselineTries;
      if (n === 0) continue;
      const { lab, agent } = await setUp(backend, { minSyncInterval: '100ms', syncPeriod: watch ? '10m' : '10s', driftWatch: watch }, 50);
      try {
        const before = await lab.requests(SERVICE_URL, 10);
        if (before.bodies.brazil !== 10) throw new Error(`the local pod should answer first: ${JSON.stringify(before)}`);
        const gens = backend === 'nft' ? await GenerationLog.start(lab.nodeNs) : null;
        const results = [];
        try {
          for (let i = 0; i < n; i++) results.push(await reinsertTry(lab, watch ? 5000 : 15_000, gens));
        } finally {
          gens?.stop();
        }
        const ms = spread(results.map((r) => r.ms));
        const mis = spread(results.map((r) => r.misrouted));
        const rate = results.reduce((s, r) => s + r.requests, 0) / (results.reduce((s, r) => s + r.streamMs, 0) / 1000);
        const repairs = repairTimes(await agent.logs());
        const own = (xs: number[]) => (xs.length === 0 ? '–' : `${spread(xs).p50.toFixed(1)} / ${spread(xs).max.toFixed(1)}`);
        lines.push(`| ${backend} | ${watch ? 'on' : 'off (syncPeriod 10s)'} | ${n} | ${fmt(ms.p50)} | ${fmt(ms.max)} | ${mis.p50} | ${mis.max} | ${fmt(rate)} | ${own(repairs.read)} | ${own(repairs.write)} |`);
        process.stderr.write(`${lines.at(-1)}\n`);
      } finally {
        await lab.stop();
      }
    }
  }
  if (idleSeconds > 0) {
    lines.push('', `| backend | idle agent CPU over ${idleSeconds} s, watch on (ms) | watch off (ms) | on, % of one core | off, % of one core |`, '| --- | --- | --- | --- | --- |');
    for (const backend of ['nft', 'legacy'] as const) {
      // Side by side, so the machine's load weighs on both alike.
      const on = await setUp(backend, { driftWatch: true, syncPeriod: '10m' }, 50);
      const off = await setUp(backend, { driftWatch: false, syncPeriod: '10m' }, 50);
      try {
        await new Promise((r) => setTimeout(r, 5000));
        const pids = [await agentPid(on.lab), await agentPid(off.lab)];
        const start = await Promise.all(pids.map(cpuMs));
        await new Promise((r) => setTimeout(r, idleSeconds * 1000));
        const end = await Promise.all(pids.map(cpuMs));
        const used = end.map((e, i) => e - start[i]!);
        const pct = (ms: number) => ((ms / (idleSeconds * 1000)) * 100).toFixed(2);
        lines.push(`| ${backend} | ${fmt(used[0]!)} | ${fmt(used[1]!)} | ${pct(used[0]!)} | ${pct(used[1]!)} |`);
        process.stderr.write(`${lines.at(-1)}\n`);
      } finally {
        await on.lab.stop();
        await off.lab.stop();
      }
    }
  }
  if (stormServices > 0) {
    lines.push('', `kube-proxy-style rewrites of its own nat chains (${stormServices} services: ${stormServices * 2 + 2} chains, ${stormServices * 4 + 2} rules, one --noflush restore each), ${stormRounds} per agent, both agents side by side:`, '',
      '| backend | agent CPU during the rewrites, watch on (ms) | watch off (ms) | restore wall time p50, on / off (ms) | nf_tables generations seen by the on agent: agent / watched / other | checks / repairs |',
      '| --- | --- | --- | --- | --- | --- |');
    for (const backend of ['nft', 'legacy'] as const) {
      const on = await setUp(backend, { driftWatch: true, syncPeriod: '10m' }, 50);
      const off = await setUp(backend, { driftWatch: false, syncPeriod: '10m' }, 50);
      try {
        await new Promise((r) => setTimeout(r, 2000));
        const pids = [await agentPid(on.lab), await agentPid(off.lab)];
        const before = await Promise.all(pids.map(cpuMs));
        const metricsBefore = await get(on.lab, 'http://127.0.0.1:10265/metrics');
        const wall: [number[], number[]] = [[], []];
        for (let round = 1; round <= stormRounds; round++) {
          for (const [i, setup] of [on, off].entries()) {
            const t0 = performance.now();
            await setup.lab.restore(kubeProxyRewrite(stormServices, round));
            wall[i]!.push(performance.now() - t0);
          }
        }
        // Let the events drain and a legacy poll or two pass.
        await new Promise((r) => setTimeout(r, 3000));
        const after = await Promise.all(pids.map(cpuMs));
        const m = (await get(on.lab, 'http://127.0.0.1:10265/metrics')).body;
        const delta = (series: string) => sample(m, series) - sample(metricsBefore.body, series);
        const gens = ['agent', 'watched', 'other'].map((o) => delta(`clusterset_proxy_nftables_generations_total{origin="${o}"}`)).join(' / ');
        const checks = delta('clusterset_proxy_drift_checks_total{trigger="event"}') + delta('clusterset_proxy_drift_checks_total{trigger="poll"}');
        const repairs = ['jump_order', 'jump_missing', 'chain_deleted', 'chain_changed', 'table_deleted', 'events_lost'].reduce((n, c) => n + delta(`clusterset_proxy_drift_repaired_total{cause="${c}"}`), 0);
        lines.push(`| ${backend} | ${fmt(after[0]! - before[0]!)} | ${fmt(after[1]! - before[1]!)} | ${fmt(spread(wall[0]).p50)} / ${fmt(spread(wall[1]).p50)} | ${gens} | ${checks} (${backend === 'legacy' ? 'polls' : 'event checks'}) / ${repairs} |`);
        process.stderr.write(`${lines.at(-1)}\n`);
      } finally {
        await on.lab.stop();
        await off.lab.stop();
      }
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:drift failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
