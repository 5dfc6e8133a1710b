// Gateway failover figures, measured on the real agent binary (one in the node
// namespace, one in each gateway namespace, see test/support/route-lab.ts):
//   npm run build && node dist/bench/gateway-failover.js [--runs N] [--mode vxlan|direct|both]
// Each run moves the gateway label to the other gateway under a steady stream
// of new connections from the node (one every 20 ms), and the tunnel with it:
// - label-move: the old gateway stays up (it relays until it re-points too);
// - gateway-down: the old gateway's link goes down at the same moment.
// Figures: label applied → node's routes re-pointed (polled `ip route`), the
// agent's own Node event → routes applied, requests failed, and the outage
// (first failed request start → first success after the last failure).
import { parseArgs } from 'node:util';
import { endpoint, importedSlice, service } from '../test/support/fixtures.js';
import { GATEWAY_IP, RouteLab, summariseStream, type Gateway, type RunningAgent } from '../test/support/route-lab.js';
import { spread } from './stats.js';

const URL = 'http://10.96.0.50/';
const REMOTE = ['10.2.0.0/16', '10.3.0.0/16'];
const SCENARIOS = ['label-move', 'gateway-down'] as const;

interface Run {
  readonly repointMs: number;
  readonly eventToAppliedMs: number;
  readonly failed: number;
  readonly sent: number;
  readonly outageMs: number;
}

/** The agent's figure for the latest gateway change it logged. */
async function lastEventToApplied(agent: RunningAgent, seen: number): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const lines = (await agent.logs()).split('\n').filter((l) => l.includes('active gateway changed'));
    if (lines.length > seen) return (JSON.parse(lines.at(-1)!) as { eventToAppliedMs: number }).eventToAppliedMs;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('the node agent logged no gateway change');
}

async function measure(mode: 'vxlan' | 'direct', runs: number): Promise<Record<string, Run[]>> {
  const lab = new RouteLab(mode);
  const out: Record<string, Run[]> = {};
  try {
    await lab.start();
    lab.api.apply(service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]));
    lab.api.apply(importedSlice('default', 'chile01', 'serve-abc', 'derived-serve', [endpoint('10.2.0.10')]));
    const config = await lab.writeConfig();
    for (const gw of ['gw-1', 'gw-2'] as const) lab.startAgent(gw, config);
    const node = lab.startAgent('node-1', config);
    await lab.waitForRoutes('node-1', REMOTE, GATEWAY_IP['gw-1']);
    await new Promise((r) => setTimeout(r, 1000));
    let active: Gateway = 'gw-1';
    let changes = 0;
    for (const scenario of SCENARIOS) {
      out[scenario] = [];
      for (let i = 0; i < runs; i++) {
        const next: Gateway = active === 'gw-1' ? 'gw-2' : 'gw-1';
        const streaming = lab.stream(URL, 2000, 20, 1000);
        await new Promise((r) => setTimeout(r, 700));
        const moved = Date.now();
        if (scenario === 'gateway-down') await lab.ip(lab.ns[active], 'link', 'set', 'eth0', 'down');
        lab.setNode(active, { gateway: false });
        lab.setNode(next, { gateway: true });
        await lab.moveTunnel(next, active);
        await lab.waitForRoutes('node-1', REMOTE, GATEWAY_IP[next]);
        const repointMs = Date.now() - moved;
        const s = summariseStream(await streaming);
        const eventToAppliedMs = await lastEventToApplied(node, changes++);
        if (scenario === 'gateway-down') await lab.ip(lab.ns[active], 'link', 'set', 'eth0', 'up');
        out[scenario].push({ repointMs, eventToAppliedMs, failed: s.failed, sent: s.sent, outageMs: s.outageMs });
        active = next;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  } finally {
    await lab.stop();
  }
  return out;
}

function row(mode: string, scenario: string, runs: readonly Run[]): string {
  const f = (values: number[]) => { const s = spread(values); return `${s.p50} / ${s.max}`; };
  const failed = runs.reduce((n, r) => n + r.failed, 0);
  const sent = runs.reduce((n, r) => n + r.sent, 0);
  return `| ${mode} | ${scenario} | ${runs.length} | ${f(runs.map((r) => r.repointMs))} | ${f(runs.map((r) => Math.round(r.eventToAppliedMs)))} | ${failed} / ${sent} (max ${Math.max(...runs.map((r) => r.failed))} per run) | ${f(runs.map((r) => r.outageMs))} |`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, mode: { type: 'string', default: 'both' } } });
  const modes = values.mode === 'both' ? (['vxlan', 'direct'] as const) : [values.mode as 'vxlan' | 'direct'];
  const lines = ['| mode | scenario | runs | label → routes re-pointed, ms p50 / max | Node event → applied (agent), ms p50 / max | requests failed / sent | outage, ms p50 / max |', '| --- | --- | --- | --- | --- | --- | --- |'];
  for (const mode of modes) {
    const results = await measure(mode, Number(values.runs));
    for (const [scenario, runs] of Object.entries(results)) lines.push(row(mode, scenario, runs));
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
