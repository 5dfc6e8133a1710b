// npm run bench:nftables [-- --sizes 1000,10000,100000] [--changes 200] [--iptables-sizes 1000,10000]
//                         [--per-packet 10000] [--connections 2000] [--burst 1000]   (--per-packet 0 skips that figure)
//
// The nftables data plane against this kernel, side by side with iptables
// mode (nft backend) in the same run, each size in a network namespace of its
// own. N Services × 10 endpoints over 3 clusters (the bench workload).
// Both modes run the agent's SyncEngine over their Dataplane (nftables:
// NftablesDataplane over the addon; iptables: IptablesDataplane over
// iptables-nft-restore).
//   cold start: every group planned and written, skeleton included (empty table)
//   one change: one endpoint replaced, from the EndpointSlice entering the
//               engine (model → selection → plan → diff) to the kernel's ack
//   new service: a Service and its slices added (no jump, no rule: elements only)
//   restart adoption: a new engine over the same table: one full sync that
//               reads it back, compares, and writes nothing
//   agent path: the same workload through the agent's SyncEngine and nftables
//               data plane: cold start, a periodic full sync over an unchanged
//               table (read back + compare, nothing written), and a burst of
//               --burst changes spread over one second through the sync runner
//               (minSyncInterval 100 ms): how long after its arrival the last
//               change was in the kernel
//   kernel memory: /proc/meminfo SUnreclaim before and after the cold start
//               (the machine is shared: other work moves it too, so it is a rough figure)

import { parseArgs } from 'node:util';
import { readFile } from 'node:fs/promises';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { IptablesDataplane } from '../src/iptables/dataplane.js';
import { createIptablesBackend } from '../src/iptables/exec-backend.js';
import { silentLogger } from '../src/log.js';
import { SyncEngine } from '../src/sync/engine.js';
import { NftablesDataplane } from '../src/nftables/nftables-dataplane.js';
import { measureBurst, MIN_SYNC_INTERVAL } from './burst.js';
import { NativeNftables } from '../src/nftables/native.js';
import { cleanupStale, Topology } from '../test/support/netns.js';
import { buildLab, measureRates, SERVER, type PacketLab } from './per-packet.js';
import { spread, type Spread } from './stats.js';
import { changeTarget, SERVICE_PORT, Workload } from './workload.js';
import { describeMachine } from './report.js';

/** Services and slices into an engine. */
function upsert(engine: SyncEngine, objects: Iterable<V1Service | V1EndpointSlice>): void {
  for (const o of objects) {
    if ('addressType' in o) engine.upsertSlice(o as V1EndpointSlice);
    else engine.upsertService(o as V1Service);
  }
}

/** Every Service and slice of the workload into an engine. */
function feed(engine: SyncEngine, workload: Workload): void {
  upsert(engine, workload.objects());
}

async function slabKb(): Promise<number> {
  const text = await readFile('/proc/meminfo', 'utf8');
  return Number(/SUnreclaim:\s+(\d+) kB/.exec(text)![1]);
}

interface NftFigures {
  readonly n: number;
  readonly ingestMs: number;
  readonly coldMs: number;
  readonly coldElements: number;
  readonly coldBatches: number;
  readonly change: Spread;
  readonly changeElements: Spread;
  readonly newService: Spread;
  readonly adoptMs: number;
  readonly slabMb: number;
  readonly slabReleasedMb: number;
}

async function measureNft(n: number, changes: number): Promise<NftFigures> {
  const topology = new Topology();
  const workload = new Workload({ n, e: 10, c: 3 });
  try {
    const ns = await topology.namespace('nft');
    const client = new NativeNftables({ netns: ns });
    const engine = new SyncEngine({ config: workload.config(), dataplane: new NftablesDataplane(client), log: silentLogger() });
    const t0 = performance.now();
    feed(engine, workload);
    const ingestMs = performance.now() - t0;
    const slabBefore = await slabKb();
    const t1 = performance.now();
    const cold = await engine.syncFull();
    const coldMs = performance.now() - t1;
    const slabAfter = await slabKb();

    const times: number[] = [];
    const elements: number[] = [];
    for (let i = 0; i < changes; i++) {
      const change = workload.change(changeTarget(i, n));
      const started = performance.now();
      engine.upsertSlice(change.slice);
      const r = await engine.syncPartial();
      times.push(performance.now() - started);
      elements.push(r.chainsWritten);
    }
    // New services: a Service and its three slices, applied together.
    const added: number[] = [];
    const extra = new Workload({ n: n + 20, e: 10, c: 3 });
    const extraObjects = (s: (typeof extra.services)[number]) => [extra.serviceObject(s), ...extra.clusters.map((_, c) => extra.sliceObject(s, c))];
    for (const s of extra.services.slice(n)) {
      const started = performance.now();
      upsert(engine, extraObjects(s));
      await engine.syncPartial();
      added.push(performance.now() - started);
    }
    // A restarted agent over the same table: one dump, compare, nothing written.
    const again = new SyncEngine({ config: workload.config(), dataplane: new NftablesDataplane(client), log: silentLogger() });
    // The workload holds its changed endpoints: its objects are the table's state now.
    feed(again, workload);
    for (const s of extra.services.slice(n)) upsert(again, extraObjects(s));
    const t2 = performance.now();
    const adopted = await again.syncFull();
    const adoptMs = performance.now() - t2;
    if (adopted.chainsWritten !== 0) throw new Error(`restart adoption wrote ${adopted.chainsWritten} elements: the restarted engine planned another table`);

    client.close();
    await topology.teardown();
    const slabGone = await slabKb();
    return {
      n, ingestMs, coldMs, coldElements: cold.chainsWritten, coldBatches: cold.restores, change: spread(times), changeElements: spread(elements),
      newService: spread(added), adoptMs, slabMb: (slabAfter - slabBefore) / 1024, slabReleasedMb: (slabAfter - slabGone) / 1024,
    };
  } finally {
    await topology.teardown();
  }
}

interface AgentFigures {
  readonly n: number;
  readonly coldMs: number;
  readonly coldCpuMs: number;
  readonly fullMs: number;
  readonly fullCpuMs: number;
  readonly burst: number;
  /** From the first change's arrival to the last's. */
  readonly burstSpanMs: number;
  readonly syncs: number;
  /** Duration of the burst's syncs. */
  readonly syncMs: Spread;
  /** From the last change's arrival to the end of the sync that applied it. */
  readonly lastLagMs: number;
  /** The same for every change: the worst. */
  readonly maxLagMs: number;
}


const cpuMs = (since: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
};

/** The agent's own path: SyncEngine over the nftables data plane, its sync runner for the burst. */
async function measureAgent(n: number, burst: number): Promise<AgentFigures> {
  const topology = new Topology();
  const workload = new Workload({ n, e: 10, c: 3 });
  try {
    const ns = await topology.namespace('nfa');
    const client = new NativeNftables({ netns: ns });
    const engine = new SyncEngine({ config: { ...workload.config(), minSyncInterval: MIN_SYNC_INTERVAL }, dataplane: new NftablesDataplane(client), log: silentLogger() });
    feed(engine, workload);
    let cpu = process.cpuUsage();
    let t = performance.now();
    await engine.syncFull();
    const coldMs = performance.now() - t;
    const coldCpuMs = cpuMs(cpu);
    cpu = process.cpuUsage();
    t = performance.now();
    await engine.syncFull();
    const fullMs = performance.now() - t;
    const fullCpuMs = cpuMs(cpu);

    // Fed as a watch stream feeds it: yielding between arrivals.
    const burstFigures = await measureBurst(engine, workload, burst, 'yielding');
    client.close();
    return {
      n, coldMs, coldCpuMs, fullMs, fullCpuMs, burst, burstSpanMs: burstFigures.spanMs, syncs: burstFigures.syncs, syncMs: burstFigures.syncMs,
      lastLagMs: burstFigures.lastLagMs, maxLagMs: burstFigures.maxLagMs,
    };
  } finally {
    await topology.teardown();
  }
}

interface IptFigures {
  readonly n: number;
  readonly coldMs: number;
  readonly change: Spread;
  readonly slabMb: number;
}

async function measureIptables(n: number, changes: number): Promise<IptFigures> {
  const topology = new Topology();
  const workload = new Workload({ n, e: 10, c: 3 });
  try {
    const ns = await topology.namespace('ipt');
    const backend = await createIptablesBackend({ mode: 'nft', netns: ns, log: silentLogger() });
    const engine = new SyncEngine({ config: workload.config(), dataplane: new IptablesDataplane(backend), log: silentLogger() });
    for (const s of workload.services) {
      engine.upsertService(workload.serviceObject(s));
      for (let c = 0; c < workload.clusters.length; c++) engine.upsertSlice(workload.sliceObject(s, c));
    }
    const slabBefore = await slabKb();
    const t0 = performance.now();
    await engine.syncFull();
    const coldMs = performance.now() - t0;
    const slabMb = ((await slabKb()) - slabBefore) / 1024;
    const times: number[] = [];
    for (let i = 0; i < changes; i++) {
      const change = workload.change(changeTarget(i, n));
      const started = performance.now();
      engine.upsertSlice(change.slice);
      await engine.syncPartial();
      times.push(performance.now() - started);
    }
    return { n, coldMs, change: spread(times), slabMb };
  } finally {
    await topology.teardown();
  }
}

interface PacketFigures {
  readonly mode: string;
  /** New connections per second to the first and the last of N services: median of the rounds. */
  readonly first: number;
  readonly last: number;
}

/**
 * New-connection rate through the node to the first and the last service of
 * N (both DNATed to one real server), both modes built side by side and
 * measured interleaved by the per-packet harness (bench/per-packet.ts).
 */
async function measurePerPacket(n: number, connections: number, rounds: number): Promise<PacketFigures[]> {
  const topology = new Topology();
  try {
    const labs: PacketLab[] = [];
    const ips = new Map<string, { first: string; last: string }>();
    for (const mode of ['nftables', 'iptables'] as const) {
      const workload = new Workload({ n, e: 10, c: 3 });
      const first = workload.services[0]!;
      const last = workload.services[n - 1]!;
      for (const s of [first, last]) s.endpoints.forEach((list) => list.splice(0, list.length, SERVER));
      labs.push(await buildLab(topology, mode.slice(0, 3), async (node) => {
        const nft = mode === 'nftables' ? new NativeNftables({ netns: node }) : null;
        const dataplane = nft ? new NftablesDataplane(nft) : new IptablesDataplane(await createIptablesBackend({ mode: 'nft', netns: node, log: silentLogger() }));
        const engine = new SyncEngine({ config: workload.config(), dataplane, log: silentLogger() });
        feed(engine, workload);
        await engine.syncFull();
        nft?.close();
      }));
      ips.set(mode.slice(0, 3), { first: first.clusterIP, last: last.clusterIP });
    }
    const rates = await measureRates(labs, (lab) => [
      { name: 'first', ip: ips.get(lab.name)!.first, port: SERVICE_PORT },
      { name: 'last', ip: ips.get(lab.name)!.last, port: SERVICE_PORT },
    ], connections, rounds);
    return labs.map((lab) => ({ mode: lab.name === 'nft' ? 'nftables' : 'iptables', first: rates.get(lab.name)!.get('first')!.perSecond, last: rates.get(lab.name)!.get('last')!.perSecond }));
  } finally {
    await topology.teardown();
  }
}

const ms = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(0));

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      sizes: { type: 'string', default: '1000,10000,100000' }, changes: { type: 'string', default: '200' }, 'iptables-sizes': { type: 'string', default: '1000,10000' },
      'per-packet': { type: 'string', default: '10000' }, connections: { type: 'string', default: '2000' }, burst: { type: 'string', default: '1000' },
    },
    strict: true,
  });
  const sizes = values.sizes!.split(',').filter(Boolean).map(Number);
  const iptSizes = values['iptables-sizes']!.split(',').filter(Boolean).map(Number);
  const changes = Number(values.changes);
  await cleanupStale();
  const log = (line: string) => process.stderr.write(`[${new Date().toISOString()}] ${line}\n`);
  const nft: NftFigures[] = [];
  const ipt = new Map<number, IptFigures>();
  const agent: AgentFigures[] = [];
  const burst = Number(values.burst);
  for (const n of sizes) {
    log(`nftables: ${n} services`);
    nft.push(await measureNft(n, changes));
    log(`nftables through the agent's engine: ${n} services`);
    agent.push(await measureAgent(n, burst));
    if (iptSizes.includes(n)) {
      log(`iptables (nft backend): ${n} services`);
      ipt.set(n, await measureIptables(n, changes));
    }
  }
  const lines = [
    `N Services × 10 endpoints over 3 clusters; ${changes} one-endpoint changes per size, each from the EndpointSlice entering the pipeline to the kernel's answer. Times in ms.`,
    '',
    '| N | mode | cold start | one change p50 | p99 | max | elements per change (p50) | new service p50 | restart adoption (read + compare) | kernel slab for the table |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const f of nft) {
    lines.push(`| ${f.n.toLocaleString('en')} | nftables | ${ms(f.coldMs)} (${f.coldElements.toLocaleString('en')} elements, ${f.coldBatches} commit${f.coldBatches === 1 ? "" : "s"}) | ${ms(f.change.p50)} | ${ms(f.change.p99)} | ${ms(f.change.max)} | ${f.changeElements.p50} | ${ms(f.newService.p50)} | ${ms(f.adoptMs)} | ${f.slabMb.toFixed(0)} MB (${f.slabReleasedMb.toFixed(0)} MB freed with the namespace) |`);
    const i = ipt.get(f.n);
    if (i) lines.push(`| ${f.n.toLocaleString('en')} | iptables (nft) | ${ms(i.coldMs)} | ${ms(i.change.p50)} | ${ms(i.change.p99)} | ${ms(i.change.max)} | – | – | – | ${i.slabMb.toFixed(0)} MB |`);
  }
  lines.push(
    '',
    `Through the agent's SyncEngine and nftables data plane (CPU: user + system time of this process, the kernel's commit and dump included; minSyncInterval ${MIN_SYNC_INTERVAL} ms). Burst: changes spread evenly over one second through the sync runner.`,
    '',
    '| N | cold start (CPU) | periodic full sync, nothing to write (CPU) | burst | syncs (p50 / max duration) | span of arrivals | last change applied after | worst change applied after |',
    '|---|---|---|---|---|---|---|---|',
  );
  for (const a of agent) {
    lines.push(`| ${a.n.toLocaleString('en')} | ${ms(a.coldMs)} (${ms(a.coldCpuMs)}) | ${ms(a.fullMs)} (${ms(a.fullCpuMs)}) | ${a.burst} | ${a.syncs} (${ms(a.syncMs.p50)} / ${ms(a.syncMs.max)}) | ${ms(a.burstSpanMs)} | ${ms(a.lastLagMs)} | ${ms(a.maxLagMs)} |`);
  }
  const packetN = Number(values['per-packet']);
  if (packetN > 0) {
    log(`per-packet: ${packetN} services, both modes`);
    const figures = await measurePerPacket(packetN, Number(values.connections), 6);
    lines.push('', `New connections per second through the node to the first and the last of ${packetN.toLocaleString('en')} services (${values.connections} sequential connections per measurement, both modes interleaved in ABBA order over 6 rounds, conntrack flushed before each; median):`, '', '| mode | first service | last service | last / first |', '|---|---|---|---|');
    for (const f of figures) lines.push(`| ${f.mode} | ${f.first.toFixed(0)}/s | ${f.last.toFixed(0)}/s | ${(f.last / f.first).toFixed(2)} |`);
  }
  const m = await describeMachine();
  process.stdout.write(`${lines.join('\n')}\n\nMachine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, kernel ${m.kernel}, ${m.iptables}, Node ${m.node}.\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:nftables: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
