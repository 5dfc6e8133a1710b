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
import { cleanupStale, Topology } from '../test/support/netns.js';
import { measureBurst, MIN_SYNC_INTERVAL, type BurstFigures, type Feeder } from './burst.js';
import { Workload } from './workload.js';

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
      for (const feeder of order) results.push(await measureBurst(engine, workload, count, feeder, results.length * count));
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
    ...results.map((f) => `| ${f.feeder} | ${f.syncs} | ${ms(f.syncMs.p50)} / ${ms(f.syncMs.max)} | ${ms(f.spanMs)} | ${ms(f.lastLagMs)} | ${ms(f.maxLagMs)} | ${ms(f.cpuMs)} |`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:nftables-burst: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
