// Prints one JSON line per nf_tables generation committed in this network
// namespace: when it was read, who committed it, and which of the watched
// built-in chains it touched. Benchmarks run it inside the node namespace to
// time the agent's repair from the kernel's own announcements:
//   ip netns exec <ns> node dist/test/support/nft-generations.js
// A line `stall <file>` on stdin keeps the event loop busy until <file>
// exists (at most two minutes), as an agent deep in a sync would be: the
// kernel's notifications pile up in the socket meanwhile.
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { NfTablesMonitor } from '../../src/drift/nf-monitor.js';
import { GenerationFilter } from '../../src/drift/watch-filter.js';
import { chainId } from '../../src/drift/kernel-check.js';
import { CHAIN_PREFIX, JUMPS } from '../../src/iptables/layout.js';

const filter = new GenerationFilter(
  { family: 'ip', tables: new Set(['nat', 'filter']), builtins: new Set(JUMPS.map((j) => chainId(j.table, j.chain))), prefix: CHAIN_PREFIX },
  () => false,
);
const monitor = new NfTablesMonitor({
  onEvents: (events) => {
    const at = performance.timeOrigin + performance.now();
    for (const v of filter.push(events)) {
      process.stdout.write(`${JSON.stringify({ at, id: v.id, pid: v.pid, procName: v.procName, touches: v.touches.map((t) => `${t.table}/${t.chain ?? ''}`) })}\n`);
    }
  },
  onLost: (reason) => process.stdout.write(`${JSON.stringify({ lost: reason })}\n`),
});
monitor.start();
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, file] = line.split(' ');
  if (command !== 'stall' || !file) return;
  process.stdout.write(`${JSON.stringify({ stalling: true })}\n`);
  const until = Date.now() + 120_000;
  while (!existsSync(file) && Date.now() < until) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  process.stdout.write(`${JSON.stringify({ stalled: true })}\n`);
});
// The socket does not hold the process open; this does, until killed.
setInterval(() => {}, 1 << 30);
