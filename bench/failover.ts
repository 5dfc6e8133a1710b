// Failover figures, measured on the real agent binary in a node namespace:
//   npm run bench:failover [-- --rounds N]
// 1. EndpointSlice update leaving the local cluster without ready endpoints → rules switched to the remote cluster.
// 2. Local pod process killed → rules switched, with local probing on.
// 3. Requests failed during each switch, under a steady stream of new connections.
import { parseArgs } from 'node:util';
import { cpus } from 'node:os';
import { endpoint, importedSlice, service, slice } from '../test/support/fixtures.js';
import { Lab } from '../test/support/lab.js';
import { spread } from './stats.js';

const LOCAL_RULE = '-> brazil 10.1.0.10:8080';
const URL = 'http://10.96.0.40/';

/** Polls the nat table until `done` holds; returns the elapsed milliseconds from `since`. */
async function until(lab: Lab, since: number, done: (nat: string) => boolean): Promise<number> {
  for (;;) {
    if (done(await lab.save('nat'))) return performance.now() - since;
    if (performance.now() - since > 20_000) throw new Error('rules did not switch within 20 s');
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '10' } } });
  const rounds = Number(values.rounds);
  const lab = new Lab('nft');
  try {
    await lab.start();
    await lab.addPod({ ip: '10.1.0.10', body: 'brazil' });
    await lab.addPod({ ip: '10.2.0.10', body: 'chile01' });
    await lab.routeServiceRange('10.96.0.0/12');
    const local = (ready: boolean) => slice('default', 'serve-local', 'serve', [endpoint('10.1.0.10', { ready })]);
    lab.apply(
      service('default', 'serve', '10.96.0.40', [{ name: 'http', port: 80 }]), local(true),
      service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]),
      importedSlice('default', 'chile01', 'serve-1', 'derived-serve', [endpoint('10.2.0.10')]),
    );
    const probe = { interval: '200ms', timeout: '100ms', unhealthyThreshold: 2, healthyThreshold: 2, probeLocal: true };
    const config = await lab.writeConfig({ clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], minSyncInterval: '100ms', healthProbe: probe });
    const agent = await lab.startAgent(['--config', config]);
    await lab.waitForRules((t) => t.includes(LOCAL_RULE), 'the first rules');

    const sliceSwitch: number[] = [];
    const sliceFailed: number[] = [];
    const killSwitch: number[] = [];
    const killFailed: number[] = [];
    for (let i = 0; i < rounds; i++) {
      // A steady stream: two clients, a new connection every 5 ms each.
      let stream = lab.requests(URL, 200, { concurrency: 2, intervalMs: 5, timeoutMs: 1000 });
      await new Promise((r) => setTimeout(r, 150));
      let t0 = performance.now();
      lab.apply(local(false));
      sliceSwitch.push(await until(lab, t0, (t) => !t.includes(LOCAL_RULE)));
      sliceFailed.push((await stream).failed);
      lab.apply(local(true));
      await lab.waitForRules((t) => t.includes(LOCAL_RULE), 'local back');

      stream = lab.requests(URL, 200, { concurrency: 2, intervalMs: 5, timeoutMs: 1000 });
      await new Promise((r) => setTimeout(r, 150));
      t0 = performance.now();
      await lab.killPod('10.1.0.10');
      killSwitch.push(await until(lab, t0, (t) => !t.includes(LOCAL_RULE)));
      killFailed.push((await stream).failed);
      await lab.revivePod('10.1.0.10', 'brazil');
      await lab.waitForRules((t) => t.includes(LOCAL_RULE), 'local pod back after its probes', 20_000);
    }
    await agent.stop();

    const row = (name: string, ms: number[], failed: number[]) => {
      const s = spread(ms);
      return `| ${name} | ${s.p50.toFixed(0)} | ${s.p99.toFixed(0)} | ${Math.max(...failed)} of 200 (median ${spread(failed).p50}) |`;
    };
    process.stdout.write([
      `clusterset-proxy failover, ${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpus()[0]?.model.trim()}, node ${process.version}, nft backend`,
      `command: npm run bench:failover -- --rounds ${rounds}`,
      'settings: minSyncInterval 100ms; probes every 200ms, timeout 100ms, 2 failures to turn unhealthy',
      '',
      '| switch | to rules switched p50 (ms) | p99 (ms) | requests failed (worst round) |',
      '| --- | --- | --- | --- |',
      row('EndpointSlice update: local endpoint unready', sliceSwitch, sliceFailed),
      row('local pod process killed (probeLocal)', killSwitch, killFailed),
      '',
    ].join('\n'));
  } finally {
    await lab.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:failover failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
