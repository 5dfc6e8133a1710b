// Local -> remote failover and back under a steady stream of requests, on the
// agent binary in a lab, for one data plane mode: shared by the UML test
// (test/ipvs/stream-failover.guest.ts) and the UML bench
// (test/ipvs/failover-bench.ts), which runs it for IPVS and iptables-legacy
// side by side in one kernel.
//
// The derived Service's local (brazil) endpoint becomes unready, so the
// selection moves to the remote cluster (chile01), then ready again. A client
// pod streams requests to the ClusterIP throughout, each on a new TCP
// connection; every step waits for its effect in the stream's own answers
// (never on the clock), and a round counts the requests that failed.

import { waitFor } from '../support/api-server.js';
import { endpoint, importedSlice, service } from '../support/fixtures.js';
import { AGENT_WAIT_MS, Lab } from '../support/lab.js';
import { httpRequestStream, type HttpSummary } from '../support/netns.js';

export type StreamMode = 'ipvs' | 'iptables';

export interface FailoverRound {
  /** The stream's totals over the round: answers by body, failures by error. */
  readonly summary: HttpSummary;
  /** Host milliseconds from the slice update to the first remote answer, and from the update back to the first local one. */
  readonly toRemoteMs: number;
  readonly backMs: number;
}

const CLUSTER_IP = '10.96.0.50';
const URL = `http://${CLUSTER_IP}/`;
const LOCAL = 'brazil';
const REMOTE = 'chile01';
/**
 * How long a step may take: UML runs every system call of the agent, its
 * tools and the clients through a tracing host process, so on a loaded
 * machine one sync can take seconds. Only a broken run waits this long.
 */
const STEP_WAIT_MS = 5 * AGENT_WAIT_MS;

const derived = () => service('default', 'derived-serve', CLUSTER_IP, [{ name: 'http', port: 80 }]);
const local = (ready: boolean) => importedSlice('default', LOCAL, 'serve-b', 'derived-serve', [endpoint('10.1.0.10', { ready })]);
const remote = () => importedSlice('default', REMOTE, 'serve-c', 'derived-serve', [endpoint('10.2.0.10')]);

export interface StreamOptions {
  readonly rounds: number;
  /** Requests in flight at once; each worker starts one at most every intervalMs. */
  readonly concurrency: number;
  readonly intervalMs: number;
  /** Per request: a request the data plane drops fails after this, it is not waited for forever. */
  readonly timeoutMs: number;
}

/**
 * Runs `rounds` failovers and returns each. The lab's kernel tables start
 * empty (iptables-legacy: this UML kernel has no nf_tables for IPv4); the
 * agent runs with the mode given.
 */
export async function streamFailover(mode: StreamMode, opts: StreamOptions): Promise<FailoverRound[]> {
  const lab = new Lab('legacy');
  try {
    await lab.start();
    await lab.addPod({ ip: '10.1.0.10', body: LOCAL });
    await lab.addPod({ ip: '10.2.0.10', body: REMOTE });
    const client = await lab.addPod({ ip: '10.244.0.5', body: 'client' });
    // Health probes off (an hour apart): the failover under test is the slice's, not a probe's.
    const config = await lab.writeConfig({
      clusterName: LOCAL, clusters: [{ name: LOCAL }, { name: REMOTE }], clusterCIDR: '10.244.0.0/16',
      iptablesBackend: 'legacy', minSyncInterval: '50ms', healthProbe: { interval: '1h', timeout: '1s' },
    });
    lab.apply(derived(), local(true), remote());
    await lab.startAgent(['--config', config, '--proxy-mode', mode]);
    // The agent's first sync, before any stream: until then the ClusterIP leads nowhere.
    await waitFor(async () => {
      lab.throwIfAgentExited();
      const r = await lab.requests(URL, 1, { fromNs: client, timeoutMs: 5000 });
      return r.bodies[LOCAL] === 1 ? true : null;
    }, 'the first answer from the local cluster', { timeoutMs: 2 * STEP_WAIT_MS, intervalMs: 200 });

    const rounds: FailoverRound[] = [];
    for (let i = 0; i < opts.rounds; i++) {
      const stream = httpRequestStream(client, URL, { concurrency: opts.concurrency, intervalMs: opts.intervalMs, timeoutMs: opts.timeoutMs });
      let toRemoteMs = 0;
      let backMs = 0;
      try {
        const seen = (body: string, more = 0) => (s: HttpSummary) => (s.bodies[body] ?? 0) > more;
        await stream.until(seen(LOCAL), 'answers from the local cluster', STEP_WAIT_MS);
        lab.throwIfAgentExited();
        let t0 = performance.now();
        lab.apply(local(false));
        await stream.until(seen(REMOTE, stream.progress.bodies[REMOTE] ?? 0), 'answers from the remote cluster', STEP_WAIT_MS);
        toRemoteMs = performance.now() - t0;
        // Some more of the stream on the remote cluster before going back.
        const onRemote = stream.progress.ok;
        await stream.until((s) => s.ok >= onRemote + 20, 'twenty more answers', STEP_WAIT_MS);
        t0 = performance.now();
        const localSoFar = stream.progress.bodies[LOCAL] ?? 0;
        lab.apply(local(true));
        await stream.until(seen(LOCAL, localSoFar), 'answers from the local cluster again', STEP_WAIT_MS);
        backMs = performance.now() - t0;
        const back = stream.progress.ok;
        await stream.until((s) => s.ok >= back + 20, 'twenty more answers', STEP_WAIT_MS);
      } catch (err) {
        await stream.stop().catch(() => undefined);
        throw new Error(`${mode} round ${i + 1}: ${(err as Error).message}${await lab.agentLogTails()}`);
      }
      rounds.push({ summary: await stream.stop(), toRemoteMs, backMs });
      lab.throwIfAgentExited();
    }
    return rounds;
  } finally {
    await lab.stop();
  }
}
