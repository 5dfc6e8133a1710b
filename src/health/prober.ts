import { connect } from 'node:net';
import type { Logger } from '../log.js';
import type { HealthView } from '../policy/select.js';
import { Hysteresis } from './hysteresis.js';

export interface ProbeSettings {
  /** Milliseconds between rounds (each round jittered by up to 20 %). */
  readonly interval: number;
  /** Milliseconds a TCP connect may take. */
  readonly timeout: number;
  readonly unhealthyThreshold: number;
  readonly healthyThreshold: number;
  /** Endpoints of a cluster tried per round, rotating through all of them. */
  readonly endpointsPerCluster: number;
  /** Connects in flight at once. */
  readonly concurrency: number;
  /** Also probe each endpoint of the local cluster (endpoint-level verdicts). */
  readonly probeLocal: boolean;
}

/** Endpoints to probe, `ip:port` strings per cluster. */
export type ProbeTargets = ReadonlyMap<string, readonly string[]>;

export type Connector = (ip: string, port: number, timeoutMs: number) => Promise<boolean>;

/** A TCP handshake: the path through the tunnel and the pod's socket both work. */
export const tcpConnect: Connector = (ip, port, timeoutMs) =>
  new Promise((resolve) => {
    const socket = connect({ host: ip, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });

export interface ProberOptions {
  readonly settings: ProbeSettings;
  readonly localCluster: string;
  readonly targets: () => ProbeTargets;
  /** A cluster or local endpoint changed verdict. */
  readonly onChange: (change: { kind: 'cluster' | 'endpoint'; target: string; healthy: boolean }) => void;
  /** After each round: the verdict on every remote cluster probed (metrics want a series from the start). */
  readonly onRound?: (clusters: ReadonlyMap<string, boolean>) => void;
  readonly log: Logger;
  readonly connector?: Connector;
}

/**
 * Active reachability checks. Karmada keeps the slices of a cluster it can no
 * longer reach, so the agent judges reachability itself: a remote cluster is
 * up in a round when any of the endpoints tried answers a TCP connect.
 */
export class Prober implements HealthView {
  private readonly clusters: Hysteresis;
  private readonly endpoints: Hysteresis;
  private readonly cursor = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private settings: ProbeSettings;
  private localCluster: string;
  private running: Promise<void> | null = null;

  constructor(private readonly opts: ProberOptions) {
    this.settings = opts.settings;
    this.localCluster = opts.localCluster;
    const thresholds = { unhealthy: opts.settings.unhealthyThreshold, healthy: opts.settings.healthyThreshold };
    this.clusters = new Hysteresis(thresholds);
    this.endpoints = new Hysteresis(thresholds);
  }

  clusterHealthy(cluster: string): boolean {
    return this.clusters.isHealthy(cluster);
  }

  endpointHealthy(ip: string, port: number): boolean {
    return this.endpoints.isHealthy(`${ip}:${port}`);
  }

  /** Live config: new probe settings, and which cluster is local (probed per endpoint, if at all). */
  updateSettings(settings: ProbeSettings, localCluster: string): void {
    this.settings = settings;
    this.localCluster = localCluster;
    const thresholds = { unhealthy: settings.unhealthyThreshold, healthy: settings.healthyThreshold };
    this.clusters.setThresholds(thresholds);
    this.endpoints.setThresholds(thresholds);
  }

  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  private schedule(): void {
    const delay = this.settings.interval * (0.8 + Math.random() * 0.2);
    this.timer = setTimeout(() => {
      this.running = this.round().finally(() => {
        this.running = null;
        if (this.timer) this.schedule();
      });
    }, delay);
  }

  /** One probe round over every cluster (and local endpoint, when enabled). */
  async round(): Promise<void> {
    const s = this.settings;
    const connector = this.opts.connector ?? tcpConnect;
    const jobs: { key: string; kind: 'cluster' | 'endpoint'; tries: string[] }[] = [];
    const seen = new Set<string>();
    const seenEndpoints = new Set<string>();
    for (const [cluster, eps] of this.opts.targets()) {
      if (eps.length === 0) continue;
      if (cluster === this.localCluster) {
        if (!s.probeLocal) continue;
        for (const ep of eps) {
          seenEndpoints.add(ep);
          jobs.push({ key: ep, kind: 'endpoint', tries: [ep] });
        }
        continue;
      }
      seen.add(cluster);
      const start = this.cursor.get(cluster) ?? 0;
      const tries = Array.from({ length: Math.min(s.endpointsPerCluster, eps.length) }, (_, i) => eps[(start + i) % eps.length]!);
      this.cursor.set(cluster, (start + tries.length) % eps.length);
      jobs.push({ key: cluster, kind: 'cluster', tries });
    }
    this.clusters.retain(seen);
    this.endpoints.retain(seenEndpoints);

    const results = await mapBounded(jobs, s.concurrency, async (job) => {
      for (const ep of job.tries) {
        const colon = ep.lastIndexOf(':');
        if (await connector(ep.slice(0, colon), Number(ep.slice(colon + 1)), s.timeout)) return true;
      }
      return false;
    });
    jobs.forEach((job, i) => {
      const book = job.kind === 'cluster' ? this.clusters : this.endpoints;
      const verdict = book.record(job.key, results[i]!);
      if (verdict === null) return;
      const fields = { [job.kind]: job.key, healthy: verdict, threshold: verdict ? s.healthyThreshold : s.unhealthyThreshold };
      if (verdict) this.opts.log.info(fields, `${job.kind} ${job.key} is reachable again`);
      else this.opts.log.warn(fields, `${job.kind} ${job.key} is unreachable: its endpoints leave every selection`);
      this.opts.onChange({ kind: job.kind, target: job.key, healthy: verdict });
    });
    this.opts.onRound?.(new Map([...seen].map((cluster) => [cluster, this.clusters.isHealthy(cluster)])));
  }
}

async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}
