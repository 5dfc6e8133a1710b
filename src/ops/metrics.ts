import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { RestoreError } from '../iptables/backend.js';
import type { SyncResult } from '../sync/engine.js';
import { DRIFT_CAUSES, type CheckTrigger, type DriftCause, type DriftMetricsSink } from '../drift/drift-watch.js';
import type { Origin } from '../drift/watch-filter.js';

// Every metric the agent exports, in the order README's table lists them.
// Names follow Prometheus conventions (base units, _total for counters) and
// mirror kube-proxy's where one exists, so its dashboards and alerts port.

type Kind = 'counter' | 'gauge' | 'histogram';

interface MetricDef {
  readonly name: string;
  readonly kind: Kind;
  readonly labels: readonly string[];
  readonly help: string;
}

const PREFIX = 'clusterset_proxy_';

const def = (name: string, kind: Kind, labels: readonly string[], help: string): MetricDef => ({ name: PREFIX + name, kind, labels, help });

export const METRIC_DEFS = {
  syncDuration: def('sync_duration_seconds', 'histogram', ['kind'], 'Duration of a sync, by kind: full (reads the kernel back, repairs drift) or partial (changed services only).'),
  programming: def('network_programming_duration_seconds', 'histogram', [], 'From a change received (Service, EndpointSlice, config) to the rules applying it being in the kernel.'),
  lastSync: def('last_sync_timestamp_seconds', 'gauge', [], 'Unix time of the last successful sync. Far behind last_queued_timestamp_seconds: the agent is stuck.'),
  lastQueued: def('last_queued_timestamp_seconds', 'gauge', [], 'Unix time of the last change queued for a sync.'),
  syncFailures: def('sync_failures_total', 'counter', [], 'Syncs that failed (each is retried as a full sync with backoff).'),
  restoreFailures: def('restore_failures_total', 'counter', [], 'iptables-restore runs the kernel refused; the tables keep their last good state.'),
  ownedChains: def('owned_chains', 'gauge', [], 'Chains the agent owns, counted at each full sync.'),
  ownedRules: def('owned_rules', 'gauge', [], 'Rules the agent owns (jumps included), counted at each full sync.'),
  endpoints: def('endpoints', 'gauge', ['cluster', 'state'], 'Endpoints of service-group ports by cluster and state: ready, serving_terminating (used when none is ready), not_ready.'),
  objectProblems: def('object_problems', 'gauge', [], 'Problems standing now with Services and EndpointSlices (malformed objects, parts skipped).'),
  quarantinedGroups: def('quarantined_groups', 'gauge', [], 'Service groups set aside now because planning their rules failed or the kernel refused them; each keeps its last applied rules and is retried with backoff while the rest syncs.'),
  clusterHealthy: def('cluster_healthy', 'gauge', ['cluster'], '1 while a cluster is judged reachable, 0 while not; a series per cluster once probed.'),
  failovers: def('failovers_total', 'counter', ['from', 'to'], 'Service groups whose traffic moved, by decision before and after: local, remote, mixed, none.'),
  gatewayActive: def('gateway_active', 'gauge', ['cluster', 'gateway'], '1 for the gateway node currently carrying the cluster\'s cross-cluster traffic (from the route controller).'),
  cidrOverlaps: def('cidr_overlaps', 'gauge', [], 'Overlaps standing now between configured networks of the clusters (each is reported as an Event; the overlapping range gets no route).'),
  configReloads: def('config_reloads_total', 'counter', ['result'], 'ConfigMap changes seen, by result: success (applied) or failure (refused; the last good config stays).'),
  configLastReloadOk: def('config_last_reload_successful', 'gauge', [], '1 when the last ConfigMap change was applied, 0 when it was refused.'),
  configRestartRequired: def('config_restart_required', 'gauge', [], 'Number of changed keys that wait for a restart to take effect.'),
  nftGenerations: def('nftables_generations_total', 'counter', ['origin'], 'nf_tables commits seen by the drift watch (nft backend), by origin: agent (its own writes, ignored), watched (someone else changed a built-in chain holding our jumps or an MCS- chain), other (someone else, nothing watched: no check).'),
  driftChecks: def('drift_checks_total', 'counter', ['trigger'], 'Reads of the watched chains (iptables -S per chain, never a full save), by trigger: event (nft, after a watched change) or poll (legacy, every second).'),
  driftDetected: def('drift_detected_total', 'counter', ['cause'], 'Drift found between full syncs, by cause: jump_order (a foreign rule ahead of our jump), jump_missing, chain_deleted, chain_changed (an MCS- chain changed by someone else), table_deleted, events_lost (nf_tables events dropped in a burst: our jumps are checked at once, the rest at the next full sync).'),
  driftRepaired: def('drift_repaired_total', 'counter', ['cause'], 'Drift repaired between full syncs, by cause: jumps put first again by one small restore, deleted or changed chains by an early full sync; events_lost once our jumps were checked.'),
  ipvsDraining: def('ipvs_draining_real_servers', 'gauge', [], 'IPVS mode: removed TCP real servers kept at weight 0 (their connections finish, no new ones) until they are idle or their drain bound passes; 0 in other modes.'),
  ipvsDrained: def('ipvs_drained_real_servers_total', 'counter', ['reason'], 'IPVS mode: draining real servers deleted by the periodic sweep, by reason: idle (no connection left) or bound (the drain bound passed with connections left).'),
} as const satisfies Record<string, MetricDef>;

/** README's metrics table, generated from METRIC_DEFS; a test keeps the two identical. */
export function metricsReferenceTable(): string {
  const rows = Object.values(METRIC_DEFS).map((d) => `| \`${d.name}\` | ${d.kind} | ${d.labels.map((l) => `\`${l}\``).join(', ')} | ${d.help} |`);
  return ['| metric | type | labels | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

export type EndpointState = 'ready' | 'serving_terminating' | 'not_ready';

/** Endpoints of one cluster in one state. */
export interface EndpointCount {
  readonly cluster: string;
  readonly state: EndpointState;
  readonly count: number;
}

/** Values read at scrape time rather than kept up to date on every change. */
export interface ScrapeSources {
  endpointCounts(): readonly EndpointCount[];
  problemCount(): number;
  quarantinedCount(): number;
  /** Real servers draining now (IPVS mode). */
  drainingCount(): number;
}

const SYNC_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const PROGRAMMING_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export class AgentMetrics implements DriftMetricsSink {
  readonly registry = new Registry();
  private readonly syncDuration: Histogram<'kind'>;
  private readonly programming: Histogram;
  private readonly lastSync: Gauge;
  private readonly lastQueued: Gauge;
  private readonly syncFailures: Counter;
  private readonly restoreFailures: Counter;
  private readonly ownedChains: Gauge;
  private readonly ownedRules: Gauge;
  private readonly clusterHealthy: Gauge<'cluster'>;
  private readonly failovers: Counter<'from' | 'to'>;
  private readonly gatewayActive: Gauge<'cluster' | 'gateway'>;
  private readonly cidrOverlaps: Gauge;
  private readonly configReloads: Counter<'result'>;
  private readonly configLastReloadOk: Gauge;
  private readonly configRestartRequired: Gauge;
  private readonly nftGenerations: Counter<'origin'>;
  private readonly driftChecks: Counter<'trigger'>;
  private readonly driftDetected: Counter<'cause'>;
  private readonly driftRepaired: Counter<'cause'>;
  private readonly ipvsDrained: Counter<'reason'>;

  constructor(sources: ScrapeSources, opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    const m = METRIC_DEFS;
    const base = (d: MetricDef) => ({ name: d.name, help: d.help, labelNames: [...d.labels], registers });
    this.syncDuration = new Histogram({ ...base(m.syncDuration), buckets: SYNC_BUCKETS }) as Histogram<'kind'>;
    this.programming = new Histogram({ ...base(m.programming), buckets: PROGRAMMING_BUCKETS });
    this.lastSync = new Gauge(base(m.lastSync));
    this.lastQueued = new Gauge(base(m.lastQueued));
    this.syncFailures = new Counter(base(m.syncFailures));
    this.restoreFailures = new Counter(base(m.restoreFailures));
    this.ownedChains = new Gauge(base(m.ownedChains));
    this.ownedRules = new Gauge(base(m.ownedRules));
    new Gauge({
      ...base(m.endpoints),
      collect() {
        this.reset();
        for (const { cluster, state, count } of sources.endpointCounts()) this.set({ cluster, state }, count);
      },
    });
    new Gauge({
      ...base(m.objectProblems),
      collect() {
        this.set(sources.problemCount());
      },
    });
    new Gauge({
      ...base(m.quarantinedGroups),
      collect() {
        this.set(sources.quarantinedCount());
      },
    });
    this.clusterHealthy = new Gauge(base(m.clusterHealthy)) as Gauge<'cluster'>;
    this.failovers = new Counter(base(m.failovers)) as Counter<'from' | 'to'>;
    this.gatewayActive = new Gauge(base(m.gatewayActive)) as Gauge<'cluster' | 'gateway'>;
    this.cidrOverlaps = new Gauge(base(m.cidrOverlaps));
    this.configReloads = new Counter(base(m.configReloads)) as Counter<'result'>;
    this.configLastReloadOk = new Gauge(base(m.configLastReloadOk));
    this.configRestartRequired = new Gauge(base(m.configRestartRequired));
    this.nftGenerations = new Counter(base(m.nftGenerations)) as Counter<'origin'>;
    this.driftChecks = new Counter(base(m.driftChecks)) as Counter<'trigger'>;
    this.driftDetected = new Counter(base(m.driftDetected)) as Counter<'cause'>;
    this.driftRepaired = new Counter(base(m.driftRepaired)) as Counter<'cause'>;
    new Gauge({
      ...base(m.ipvsDraining),
      collect() {
        this.set(sources.drainingCount());
      },
    });
    this.ipvsDrained = new Counter(base(m.ipvsDrained)) as Counter<'reason'>;
    for (const reason of ['idle', 'bound'] as const) this.ipvsDrained.inc({ reason }, 0);
    for (const origin of ['agent', 'watched', 'other'] as const) this.nftGenerations.inc({ origin }, 0);
    for (const trigger of ['event', 'poll'] as const) this.driftChecks.inc({ trigger }, 0);
    for (const cause of DRIFT_CAUSES) {
      this.driftDetected.inc({ cause }, 0);
      this.driftRepaired.inc({ cause }, 0);
    }
    // Counters start at 0 so that rate() and increase() see their first increment.
    this.configReloads.inc({ result: 'success' }, 0);
    this.configReloads.inc({ result: 'failure' }, 0);
    this.configRestartRequired.set(0);
    // The config the agent started with was valid, or it would not have started.
    this.configLastReloadOk.set(1);
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** A change was queued for the next sync. */
  queued(): void {
    this.lastQueued.setToCurrentTime();
  }

  /** `now` is performance.now() when the sync finished, the clock of `oldestChangeAt`. */
  synced(r: SyncResult, now = performance.now()): void {
    this.syncDuration.observe({ kind: r.full ? 'full' : 'partial' }, r.durationMs / 1000);
    if (r.oldestChangeAt !== null) this.programming.observe(Math.max(0, now - r.oldestChangeAt) / 1000);
    this.lastSync.setToCurrentTime();
    if (r.owned) {
      this.ownedChains.set(r.owned.chains);
      this.ownedRules.set(r.owned.rules);
    }
  }

  syncFailed(err: unknown): void {
    this.syncFailures.inc();
    if (err instanceof RestoreError) this.restoreFailures.inc();
  }

  configReloaded(ok: boolean, restartKeys: number): void {
    this.configReloads.inc({ result: ok ? 'success' : 'failure' });
    this.configLastReloadOk.set(ok ? 1 : 0);
    if (ok) this.configRestartRequired.set(restartKeys);
  }

  clusterHealth(cluster: string, healthy: boolean): void {
    this.clusterHealthy.set({ cluster }, healthy ? 1 : 0);
  }

  failover(from: string, to: string): void {
    this.failovers.inc({ from, to });
  }

  /** The gateway now carrying traffic to `cluster`; null when it has none. */
  gateway(cluster: string, gateway: string | null, previous: string | null): void {
    if (previous !== null) this.gatewayActive.remove({ cluster, gateway: previous });
    if (gateway !== null) this.gatewayActive.set({ cluster, gateway }, 1);
  }

  overlaps(count: number): void {
    this.cidrOverlaps.set(count);
  }

  generation(origin: Origin): void {
    this.nftGenerations.inc({ origin });
  }

  check(trigger: CheckTrigger): void {
    this.driftChecks.inc({ trigger });
  }

  detected(cause: DriftCause): void {
    this.driftDetected.inc({ cause });
  }

  repaired(cause: DriftCause): void {
    this.driftRepaired.inc({ cause });
  }

  /** A sweep deleted drained real servers: `idle` with no connection left, `bound` past their drain bound. */
  drained(idle: number, bound: number): void {
    this.ipvsDrained.inc({ reason: 'idle' }, idle);
    this.ipvsDrained.inc({ reason: 'bound' }, bound);
  }

  /** The exposition text and its content type. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
