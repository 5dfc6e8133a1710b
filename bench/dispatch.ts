// npm run bench:dispatch [-- --services 10000] [--connections 2000] [--rounds 6] [--backend nft|legacy]
//
// What iptables mode's dispatch costs every new connection on the node: the
// rate of new TCP connections through the node (client → node → server) to
// the first and the last of N services and to an address that is no service,
// for three nodes built side by side and measured interleaved by the
// per-packet harness (bench/per-packet.ts):
//   bare        no rules at all: the floor for a connection to no service
//   agent       the agent's rules for N services (N × 10 endpoints over 3 clusters)
//   kube-proxy  the same services in kube-proxy's iptables layout (one
//               KUBE-SERVICES rule per service port, walked in order), loaded
//               in parts of 3,000 chains (kube-proxy writes it in one restore)
// "First" and "last" are the first and last service in dispatch order (for the
// agent, the first rule of bucket 0 and the last of bucket 63); both DNAT to
// the one real server.

import { parseArgs } from 'node:util';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { IptablesDataplane } from '../src/iptables/dataplane.js';
import { createIptablesBackend } from '../src/iptables/exec-backend.js';
import { bucketOf, BUCKETS } from '../src/iptables/layout.js';
import { silentLogger } from '../src/log.js';
import { SyncEngine } from '../src/sync/engine.js';
import { cleanupStale, Topology } from '../test/support/netns.js';
import { kubeProxyJumps, kubeProxyLoadChunks } from './kube-proxy-layout.js';
import { buildLab, measureRates, SERVER, SERVER_PORT, type ConnectFigures, type PacketLab, type Target } from './per-packet.js';
import { bareRestore } from './restore.js';
import { describeMachine } from './report.js';
import { SERVICE_PORT, Workload, type BenchService } from './workload.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      services: { type: 'string', default: '10000' }, connections: { type: 'string', default: '2000' },
      rounds: { type: 'string', default: '6' }, backend: { type: 'string', default: 'nft' },
    },
    strict: true,
  });
  const n = Number(values.services);
  const connections = Number(values.connections);
  const rounds = Number(values.rounds);
  const mode = values.backend === 'legacy' ? 'legacy' : 'nft';
  const log = (line: string) => process.stderr.write(`[${new Date().toISOString()}] ${line}\n`);
  await cleanupStale();
  const topology = new Topology();
  try {
    const workload = new Workload({ n, e: 10, c: 3 });
    // The agent walks buckets in order and each bucket's rules in the order they were added.
    const byBucket = (b: number) => workload.services.filter((s) => bucketOf(s.clusterIP) === b);
    const agentFirst = byBucket(0)[0]!;
    const agentLast = byBucket(BUCKETS - 1).at(-1)!;
    const kubeFirst = workload.services[0]!;
    const kubeLast = workload.services[n - 1]!;
    for (const s of new Set([agentFirst, agentLast, kubeFirst, kubeLast])) s.endpoints.forEach((list) => list.splice(0, list.length, SERVER));

    const labs: PacketLab[] = [];
    log('bare node');
    labs.push(await buildLab(topology, 'bare', async () => {}));
    log(`agent: ${n} services, iptables-${mode}`);
    labs.push(await buildLab(topology, 'agent', async (node) => {
      const backend = await createIptablesBackend({ mode, netns: node, log: silentLogger() });
      const engine = new SyncEngine({ config: workload.config(), dataplane: new IptablesDataplane(backend), log: silentLogger() });
      for (const o of workload.objects()) {
        if ('addressType' in o) engine.upsertSlice(o as V1EndpointSlice);
        else engine.upsertService(o as V1Service);
      }
      await engine.syncFull();
    }));
    log(`kube-proxy layout: ${n} services, iptables-${mode}`);
    labs.push(await buildLab(topology, 'kube', async (node) => {
      await bareRestore(node, mode, kubeProxyJumps());
      for (const part of kubeProxyLoadChunks(workload.services, 3000)) await bareRestore(node, mode, part);
    }));

    const service = (name: string, s: BenchService): Target => ({ name, ip: s.clusterIP, port: SERVICE_PORT });
    const none: Target = { name: 'none', ip: SERVER, port: SERVER_PORT };
    const targets = (lab: PacketLab): Target[] => {
      if (lab.name === 'bare') return [none];
      return lab.name === 'agent' ? [service('first', agentFirst), service('last', agentLast), none] : [service('first', kubeFirst), service('last', kubeLast), none];
    };
    log(`measuring: ${rounds} rounds of ${connections} connections per target`);
    const rates = await measureRates(labs, targets, connections, rounds);
    // Each cell: the rate, one connection's wall time (1 / rate) and the client's CPU time per connection.
    const cell = (f: ConnectFigures) => `${f.perSecond.toFixed(0)}/s (${(1e6 / f.perSecond).toFixed(0)} µs, CPU ${f.cpuMicros.toFixed(0)} µs)`;
    const ratios = (a: ConnectFigures, b: ConnectFigures) => `${(b.perSecond / a.perSecond).toFixed(2)} / ${(a.cpuMicros / b.cpuMicros).toFixed(2)}`;
    const bare = rates.get('bare')!.get('none')!;
    const lines = [
      `New TCP connections through the node, ${n.toLocaleString('en')} services × 10 endpoints, iptables-${mode}; ${connections} sequential connections per measurement, labs interleaved in ABBA order over ${rounds} rounds, conntrack flushed before each; medians. Each cell: rate (one connection's wall time, the client's CPU time per connection); ratios: wall / CPU.`,
      '',
      '| node | first service | last service | no service | last / first | no service / bare |',
      '|---|---|---|---|---|---|',
      `| bare (no rules) | – | – | ${cell(bare)} | – | 1.00 / 1.00 |`,
    ];
    for (const [name, label] of [['agent', 'agent'], ['kube', 'kube-proxy layout']] as const) {
      const r = rates.get(name)!;
      const first = r.get('first')!;
      const last = r.get('last')!;
      const noService = r.get('none')!;
      lines.push(`| ${label} | ${cell(first)} | ${cell(last)} | ${cell(noService)} | ${ratios(last, first)} | ${ratios(noService, bare)} |`);
    }
    const m = await describeMachine();
    process.stdout.write(`${lines.join('\n')}\n\nMachine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, kernel ${m.kernel}, ${m.iptables}, Node ${m.node}.\n`);
  } finally {
    await topology.teardown();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:dispatch: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
