// Reading a running agent from the outside: HTTP inside the node namespace,
// the exposition text, the log file, and the Events it wrote.

import type { CoreEvent } from '../../src/ops/event-recorder.js';
import { waitFor } from './api-server.js';
import { AGENT_WAIT_MS, type AgentProcess, type Lab } from './lab.js';
import { netnsExec } from './netns.js';

/** GET inside the node namespace, where the agent listens; a failed request is status 0 with the error and its cause. */
export async function get(lab: Lab, url: string): Promise<{ status: number; body: string }> {
  const script = `fetch(${JSON.stringify(url)}).then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })), (e) => process.stdout.write(JSON.stringify({ status: 0, body: String(e) + (e.cause ? ': ' + String(e.cause) : '') })))`;
  const { stdout } = await netnsExec(lab.nodeNs, process.execPath, ['-e', script]);
  return JSON.parse(stdout) as { status: number; body: string };
}

/** One sample of the exposition text; NaN when the series is absent. */
export function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
}

export function events(lab: Lab): CoreEvent[] {
  return lab.api.list({ apiVersion: 'v1', kind: 'Event' }) as unknown as CoreEvent[];
}

export async function waitForEvent(lab: Lab, reason: string, kind: string, name: string): Promise<CoreEvent> {
  return waitFor(() => events(lab).find((e) => e.reason === reason && e.involvedObject.kind === kind && e.involvedObject.name === name), `a ${reason} Event on ${kind} ${name}`, { timeoutMs: AGENT_WAIT_MS, intervalMs: 50 });
}

export async function waitForLog(agent: AgentProcess, needle: string | RegExp, timeoutMs = AGENT_WAIT_MS): Promise<string> {
  let logs = '';
  try {
    return await waitFor(async () => {
      logs = await agent.logs();
      return (typeof needle === 'string' ? logs.includes(needle) : needle.test(logs)) ? logs : null;
    }, `${needle} in the agent's log`, { timeoutMs, intervalMs: 50 });
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
}
