// Per-request IPVS netlink latency, run inside UML:
//   npm run test:uml -- --exec node dist/test/ipvs/latency.js [services] [dests per service] [max in flight]
// Fills the table, then times single real-server changes one at a time (each
// is one netlink request and its ACK) and a full read-back.

import { performance } from 'node:perf_hooks';
import { MAX_IN_FLIGHT, NetlinkIpvs } from '../../src/ipvs/netlink-client.js';
import type { DestSpec, ServiceKey } from '../../src/ipvs/types.js';

const services = Number(process.argv[2] ?? 1000);
const perService = Number(process.argv[3] ?? 10);
const maxInFlight = process.argv[4] === undefined ? undefined : Number(process.argv[4]);
const SAMPLES = 500;

const keyOf = (i: number): ServiceKey => ({ kind: 'fwmark', family: 4, fwmark: 0x10000 + i });
const destOf = (i: number, j: number, weight = 1): DestSpec => ({
  address: `10.${100 + (j >> 8)}.${(i >> 8) & 255}.${i & 255}`, port: 8080 + (j & 255), weight, forward: 'masq', upperThreshold: 0, lowerThreshold: 0,
});

function quantiles(ms: number[]): string {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(3);
  return `p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${sorted.at(-1)!.toFixed(3)} ms (n=${sorted.length})`;
}

async function timed(label: string, work: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await work();
  const ms = performance.now() - t0;
  console.log(`${label}: ${ms.toFixed(0)} ms`);
  return ms;
}

const ipvs = new NetlinkIpvs({ maxInFlight });
await ipvs.flush();
const fillMs = await timed(`fill ${services} services x ${perService} real servers (${services * (perService + 1)} requests, up to ${maxInFlight ?? MAX_IN_FLIGHT} in flight)`, () =>
  Promise.all(Array.from({ length: services }, async (_, i) => {
    await ipvs.addService({ key: keyOf(i), scheduler: 'wrr', flags: 0, timeout: 0, netmask: 0xffffffff });
    for (let j = 0; j < perService; j++) await ipvs.addDest(keyOf(i), destOf(i, j));
  })));
console.log(`fill: ${((fillMs * 1000) / (services * (perService + 1))).toFixed(1)} µs per request`);

for (const [label, change] of [
  ['weight change (SET_DEST)', (i: number) => ipvs.updateDest(keyOf(i), destOf(i, 0, 1 + (i % 5)))],
  ['real server add (NEW_DEST)', (i: number) => ipvs.addDest(keyOf(i), destOf(i, perService))],
  ['real server delete (DEL_DEST)', (i: number) => ipvs.deleteDest(keyOf(i), destOf(i, perService))],
] as const) {
  const samples: number[] = [];
  for (let s = 0; s < SAMPLES; s++) {
    const i = (s * 7919) % services;
    const before = ipvs.requests;
    const t0 = performance.now();
    await change(i);
    samples.push(performance.now() - t0);
    if (ipvs.requests - before !== 1) throw new Error(`${label} took ${ipvs.requests - before} requests`);
  }
  console.log(`${label}, one request each: ${quantiles(samples)}`);
}

await timed(`read back ${services} services`, () => ipvs.services());
await timed(`read back the real servers of every service (${services} dumps)`, () => Promise.all(Array.from({ length: services }, (_, i) => ipvs.dests(keyOf(i)))));
await timed('flush', () => ipvs.flush());
ipvs.close();
