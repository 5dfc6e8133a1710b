// Local -> remote failover and back under a steady stream of requests, the
// agent binary in IPVS mode and in iptables mode (iptables-legacy) side by
// side in the same kernel, run inside UML:
//   npm run bench:ipvs-failover -- [rounds]
// (that is `npm run test:uml -- --mem 1024 --exec node dist/test/ipvs/failover-bench.js [rounds]`).
// Per mode and round: requests made and failed, and the host time from the
// slice update to the first answer from the other cluster (UML makes every
// system call of the agent, its tools and the client far slower than a native
// kernel: these times are the emulator's, the failure counts are not).

import { cpus } from 'node:os';
import { streamFailover, type FailoverRound, type StreamMode } from './stream-failover.js';

const rounds = Number(process.argv[2] ?? 5);
const opts = { rounds, concurrency: 2, intervalMs: 10, timeoutMs: 10_000 };

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function row(mode: StreamMode, results: FailoverRound[]): string {
  const requests = results.reduce((n, r) => n + r.summary.ok + r.summary.failed, 0);
  const failed = results.map((r) => r.summary.failed);
  const errors: Record<string, number> = {};
  for (const r of results) for (const [code, n] of Object.entries(r.summary.errors)) errors[code] = (errors[code] ?? 0) + n;
  return `| ${mode === 'ipvs' ? 'IPVS (netlink)' : 'iptables-legacy'} | ${rounds} | ${requests} | ${failed.reduce((a, b) => a + b, 0)} (worst round ${Math.max(...failed)})${Object.keys(errors).length > 0 ? ` ${JSON.stringify(errors)}` : ''} | ${median(results.map((r) => r.toRemoteMs)).toFixed(0)} | ${median(results.map((r) => r.backMs)).toFixed(0)} |`;
}

const lines: string[] = [];
for (const mode of ['ipvs', 'iptables'] as const) {
  process.stderr.write(`${mode}: ${rounds} rounds\n`);
  lines.push(row(mode, await streamFailover(mode, opts)));
}
process.stdout.write([
  `failover under a steady stream, ${new Date().toISOString().slice(0, 10)}, in UML (${cpus().length} guest CPU), node ${process.version}`,
  `command: npm run bench:ipvs-failover -- ${rounds}`,
  `stream: ${opts.concurrency} clients, a new connection every ${opts.intervalMs} ms each at most, ${opts.timeoutMs} ms timeout per request`,
  '',
  '| data plane | rounds | requests | failed | to remote p50 (ms) | back to local p50 (ms) |',
  '| --- | --- | --- | --- | --- | --- |',
  ...lines,
  '',
].join('\n'));
