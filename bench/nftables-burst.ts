// npm run bench:nftables-burst [-- --n 10000] [--burst 1000] [--rounds 2]
//
// A burst of --burst one-endpoint changes spread over one second through the
// agent's SyncEngine, nftables data plane and sync runner (minSyncInterval
// 100 ms), at N services × 10 endpoints, fed two ways in one process:
//   timer-paced: the feeder awaits a timer only while it is ahead of schedule,
//                so once each change costs more than the gap between two
//                arrivals it runs through the rest without yielding
//   yielding:    the feeder yields to the event loop at every arrival, as a
//                watch stream does between socket reads
// Rounds alternate the order. Printed per burst: the syncs that applied it,
// how long after its arrival the last change was in the kernel, the worst
// change, and the process's CPU time. A loaded machine stretches everything;
// the two feeders side by side show whether the runner syncs during the burst.

import { parseArgs } from 'node:util';
import { execa } from 'execa';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { silentLogger } from '../src/log.js';
import { NftablesDataplane } from '../src/nftables/nftables-dataplane.js';
import { NativeNftables } from '../src/nftables/native.js';
import { SyncEngine } from '../src/sync/engine.js';
import { SyncRunner } from '../src/sync/runner.js';
import { cleanupStale, Topology } from '../test/support/netns.js';
import { spread } from './stats.js';
import { changeTarget, Workload } from './workload.js';

const MIN_SYNC_INTERVAL = 100;
type Feeder = 'timer-paced' | 'yielding';

interface BurstFigures {
  readonly feeder: Feeder;
  readonly syncs: number;
  readonly syncP50: number;
  readonly syncMax: number;
  readonly spanMs: number;
  readonly lastLagMs: number;
  readonly maxLagMs: number;
  readonly cpuMs: number;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function burst(engine: SyncEngine, workload: Workload, count: number, feeder: Feeder, offset: number): Promise<BurstFigures> {
  const syncs: { start: number; end: number }[] = [];
  const runner = new SyncRunner({
    minInterval: MIN_SYNC_INTERVAL, period: 3_600_000, initialBackoff: 100, maxBackoff: 1000,
    run: async (full) => {
      const start = performance.now();
      await (full ? engine.syncFull() : engine.syncPartial());
      syncs.push({ start, end: performance.now() });
    },
    onError: (err) => {
      throw err;
    },
  });
  const cpu = process.cpuUsage();
  const arrivals: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const due = t0 + (i * 1000) / count;
    while (performance.now() < due) await sleep(Math.max(0, due - performance.now()));
    if (feeder === 'yielding') await tick();
    engine.upsertSlice(workload.change(changeTarget(offset + i, workload.size.n)).slice);
    arrivals.push(performance.now());
    runner.request();
  }
  const appliedAt = (arrival: number) => syncs.find((s) => s.start >= arrival)?.end;
  const last = arrivals[arrivals.length - 1]!;
  for (let waited = 0; appliedAt(last) === undefined && waited < 600_000; waited += 10) await sleep(10);
  await runner.stop();
  const used = process.cpuUsage(cpu);
  const lags = arrivals.map((a) => (appliedAt(a) ?? NaN) - a);
  const durations = spread(syncs.map((s) => s.end - s.start));
  return {
    feeder, syncs: syncs.length, syncP50: durations.p50, syncMax: durations.max, spanMs: last - arrivals[0]!,
    lastLagMs: lags[lags.length - 1]!, maxLagMs: Math.max(...lags), cpuMs: (used.user + used.system) / 1000,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { n: { type: 'string', default: '10000' }, burst: { type: 'string', default: '1000' }, rounds: { type: 'string', default: '2' } }, strict: true });
  const n = Number(values.n);
  const count = Number(values.burst);
  await cleanupStale();
  const topology = new Topology();
  const workload = new Workload({ n, e: 10, c: 3 });
  const load = async () => (await execa('uptime')).stdout.replace(/.*load average: /, '');
  const results: BurstFigures[] = [];
  const loads: string[] = [await load()];
  try {
    const client = new NativeNftables({ netns: await topology.namespace('burst') });
    const engine = new SyncEngine({ config: { ...workload.config(), minSyncInterval: MIN_SYNC_INTERVAL }, dataplane: new NftablesDataplane(client), log: silentLogger() });
    for (const o of workload.objects()) {
      if ('addressType' in o) engine.upsertSlice(o as V1EndpointSlice);
      else engine.upsertService(o as V1Service);
    }
    await engine.syncFull();
    for (let r = 0; r < Number(values.rounds); r++) {
      const order: Feeder[] = r % 2 === 0 ? ['timer-paced', 'yielding'] : ['yielding', 'timer-paced'];
      for (const feeder of order) results.push(await burst(engine, workload, count, feeder, results.length * count));
    }
    client.close();
  } finally {
    await topology.teardown();
  }
  loads.push(await load());
  const ms = (x: number) => x.toFixed(0);
  const lines = [
    `${count} one-endpoint changes over one second at ${n.toLocaleString('en')} services × 10 endpoints, through SyncEngine, the nftables data plane and SyncRunner (minSyncInterval ${MIN_SYNC_INTERVAL} ms). Times in ms. Load average before / after: ${loads.join(' / ')}.`,
    '',
    '| feeder | syncs | sync p50 / max | span of arrivals | last change applied after | worst change applied after | CPU of the process |',
    '|---|---|---|---|---|---|---|',
    ...results.map((f) => `| ${f.feeder} | ${f.syncs} | ${ms(f.syncP50)} / ${ms(f.syncMax)} | ${ms(f.spanMs)} | ${ms(f.lastLagMs)} | ${ms(f.maxLagMs)} | ${ms(f.cpuMs)} |`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:nftables-burst: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
