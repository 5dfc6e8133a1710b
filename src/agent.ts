import type { KubeConfig } from '@kubernetes/client-node';
import { RunningConfig } from './config/running.js';
import type { Config } from './config/schema.js';
import type { IptablesBackend } from './iptables/backend.js';
import { iptablesDataplanes } from './iptables/families.js';
import type { Dataplane } from './sync/dataplane.js';
import type { SweepResult } from './ipvs/dataplane.js';
import { startClusterWatches } from './kube/watch.js';
import { errorText, type Logger } from './log.js';
import { flushUdpFlows } from './conntrack/flush.js';
import { Prober } from './health/prober.js';
import { SyncEngine, type SyncResult } from './sync/engine.js';
import { SyncRunner } from './sync/runner.js';
import { hostname } from 'node:os';
import type { ConfigMapWatch, ConfigOverrides } from './ops/config-watch.js';
import { Operations } from './ops/operations.js';
import { releaseHeap } from './ops/heap-release.js';
import { RouteController } from './routes/controller.js';
import { DriftWatch } from './drift/drift-watch.js';
import { execChainReader } from './drift/kernel-check.js';
import { nativeJumps, type InProcessJumps } from './drift/nft-rules.js';
import { nativeLegacyTables, type LegacyTables } from './drift/legacy-tables.js';
import { ExecIptablesBackend } from './iptables/exec-backend.js';
import { CHAIN_PREFIX, LAYOUTS, POLLED_DISPATCH_CHAINS, SERVICES_CHAIN } from './iptables/layout.js';
import type { Fragment } from './iptables/plan-types.js';
import type { IPFamily } from './selection/selection.js';

export interface AgentOptions {
  readonly config: Config;
  readonly backend: IptablesBackend;
  /** ip6tables beside `backend`: IPv6 ClusterIPs are served through it (iptables mode, dual stack). */
  readonly backend6?: IptablesBackend;
  /** The data plane to program; iptables over `backend` (and ip6tables over `backend6`) when absent. */
  readonly dataplane?: Dataplane;
  readonly kubeConfig: KubeConfig;
  readonly log: Logger;
  /** This node, the source of Events (default: the hostname). */
  readonly nodeName?: string;
  /** The ConfigMap to take live config changes from, already started, and the flags that override it. */
  readonly configMap?: { readonly watch: ConfigMapWatch; readonly overrides: ConfigOverrides };
  /** Deferred deletions the data plane runs on a fixed period, in the sync loop's slots (IPVS: drained real servers). */
  readonly sweep?: { readonly run: () => Promise<SweepResult>; readonly intervalMs: number };
}

/** Watches → engine → runner, running until stopped. */
export class Agent {
  readonly engine: SyncEngine;
  readonly prober: Prober;
  readonly ops: Operations;
  /** Cross-cluster routes to the active gateway; status() for metrics and Events. */
  readonly routes: RouteController;
  private readonly runner: SyncRunner;
  /** Repair others' changes to our iptables (and ip6tables) jumps and chains between full syncs; none on a fake backend, in nftables mode (its own table) or with driftWatch off. */
  readonly drifts: DriftWatch[];
  /** The config in force: the start one, changed live by the ConfigMap; components subscribe to it. */
  readonly config: RunningConfig;
  private started = false;
  private heapReleased = false;
  private watches: Awaited<ReturnType<typeof startClusterWatches>> | null = null;

  constructor(private readonly opts: AgentOptions) {
    const { config, log } = opts;
    this.config = new RunningConfig(config);
    this.prober = new Prober({
      settings: config.healthProbe,
      localCluster: config.clusterName,
      targets: () => this.engine.probeTargets(),
      onChange: (c) => {
        if (this.engine.healthChanged(c.kind, c.target)) this.requestSync();
      },
      // The reporter records an Event only when a verdict changes.
      onRound: (verdicts) => {
        for (const [cluster, healthy] of verdicts) this.ops.reporter.clusterHealth(cluster, healthy);
      },
      log,
    });
    this.engine = new SyncEngine({
      config, dataplane: opts.dataplane ?? iptablesDataplanes(opts.backend, opts.backend6), log, health: this.prober,
      onSync: (r) => {
        this.logSync(r);
        // Watching starts once the first full sync has put our rules in: before, everything is "missing".
        if (r.full) for (const d of this.drifts) d.start();
        if (r.full) void this.releaseHeapOnce();
      },
      onDecision: (change) => this.ops.decisionChanged(change.group, change.before, change.after),
      onQuarantine: (change) => this.ops.quarantineChanged(change),
      flushUdp: (flows) => flushUdpFlows(flows, log),
    });
    this.ops = new Operations({ config: this.config, kubeConfig: opts.kubeConfig, nodeName: opts.nodeName ?? hostname(), log, engine: this.engine });
    this.drifts = [];
    if (config.driftWatch && !opts.dataplane && opts.backend instanceof ExecIptablesBackend) {
      // One watch per family served: ip6tables' jumps decide IPv6 traffic as iptables' decide IPv4.
      this.drifts.push(this.driftWatch(opts.backend, 'ipv4', 0));
      if (opts.backend6 instanceof ExecIptablesBackend) this.drifts.push(this.driftWatch(opts.backend6, 'ipv6', 1));
    }
    this.routes = new RouteController({ config, nodeName: opts.nodeName ?? hostname(), kubeConfig: opts.kubeConfig, log, onStatus: (s) => this.ops.routeStatus(s) });
    this.runner = new SyncRunner({
      minInterval: config.minSyncInterval,
      period: config.syncPeriod,
      initialBackoff: 1000,
      maxBackoff: 60_000,
      run: (full) => (full ? this.engine.syncFull() : this.engine.syncPartial()),
      repair: async () => {
        for (const d of this.drifts) await d.repair(() => this.engine.syncFull());
      },
      ...(opts.sweep ? { sweep: { run: () => this.sweep(opts.sweep!.run), intervalMs: opts.sweep.intervalMs } } : {}),
      onError: (err, failures, retryInMs) => {
        this.ops.syncFailed(err);
        log.error({ err: errorText(err), failures, retryInMs }, 'sync failed; the data plane keeps its last applied state; retrying as a full sync');
      },
    });
    // A live change: planning inputs, routes, intervals, probes and log level now; the next sync is a full one.
    this.config.subscribe((next) => {
      this.engine.updateConfig(next);
      this.watches?.setServicePrefix(next.servicePrefix);
      this.routes.updateConfig(next);
      this.runner.setIntervals(next.minSyncInterval, next.syncPeriod);
      this.prober.updateSettings(next.healthProbe, next.clusterName);
      this.opts.log.level = next.logLevel;
    });
  }

  /** Starts the watches, waits for their first complete lists, then syncs. */
  async start(): Promise<void> {
    // Health answers from the start: not ready until the first full sync.
    await this.ops.start();
    // Independent of the Service watches: routes follow the gateway even while those are still listing.
    this.routes.start();
    const request = (changed: boolean) => {
      if (changed && this.started) this.requestSync();
    };
    this.watches = startClusterWatches(this.opts.kubeConfig, {
      services: { onUpsert: (o) => request(this.engine.upsertService(o)), onDelete: (o) => request(this.engine.deleteService(o)) },
      endpointSlices: { onUpsert: (o) => request(this.engine.upsertSlice(o)), onDelete: (o) => request(this.engine.deleteSlice(o)) },
    }, this.opts.log, { servicePrefix: this.config.current.servicePrefix });
    // Syncing before every list is in would delete the chains of services not yet seen.
    await this.watches.whenSynced();
    this.opts.log.info({ services: this.engine.serviceCount }, 'watches synced; starting the first full sync');
    this.started = true;
    this.ops.queued();
    this.runner.start();
    this.prober.start();
    if (this.opts.configMap) {
      this.ops.watchConfig(this.opts.configMap.watch, this.opts.configMap.overrides, () => this.reconfigured());
    }
  }

  /** Stops watching and syncing; the rules stay so traffic keeps flowing across restarts. */
  async stop(): Promise<void> {
    await this.watches?.stop();
    await this.prober.stop();
    for (const d of this.drifts) await d.stop();
    await this.runner.stop();
    await this.routes.stop();
    await this.ops.stop();
  }

  /** After the first full sync: the pages taken by listing and planning everything go back to the system. */
  private async releaseHeapOnce(): Promise<void> {
    if (this.heapReleased) return;
    this.heapReleased = true;
    const before = process.memoryUsage().rss;
    if (await releaseHeap()) this.opts.log.debug({ rssBefore: before, rssAfter: process.memoryUsage().rss }, 'heap released after the first full sync');
  }

  /** One sweep, from the sync loop: logged and counted; a failure waits for the next period. */
  private async sweep(run: () => Promise<SweepResult>): Promise<void> {
    const log = this.opts.log;
    try {
      const { outcome, idle, bound } = await run();
      this.ops.metrics.drained(idle, bound);
      if (outcome.refused) log.warn({ err: errorText(outcome.refused.error) }, 'deleting drained real servers was refused; trying again next period');
      else if (idle + bound > 0) log.info({ idle, bound, requests: outcome.stats.restores }, 'deleted drained real servers');
    } catch (err) {
      log.warn({ err: errorText(err) }, 'deleting drained real servers failed; trying again next period');
    }
  }

  private requestSync(): void {
    this.ops.queued();
    this.runner.request();
  }

  /** A live config change is in force (the subscribers took it): the next sync is a full one. */
  private reconfigured(): void {
    this.ops.queued();
    this.runner.requestFull();
  }

  /** A drift watch over one family's iptables backend; `slot` is that family's place in each group's applied state. */
  private driftWatch(backend: ExecIptablesBackend, family: IPFamily, slot: number): DriftWatch {
    const log = this.opts.log.child({ family });
    let inProcess: InProcessJumps | undefined;
    let legacy: LegacyTables | undefined;
    try {
      if (backend.mode === 'nft') inProcess = nativeJumps(undefined, family);
      else legacy = nativeLegacyTables(CHAIN_PREFIX, family);
    } catch (err) {
      log.warn({ err: errorText(err) }, `drift watch: the native addon is unavailable; reading the built-in chains with ${family === 'ipv6' ? 'ip6tables' : 'iptables'}-${backend.mode} instead`);
    }
    const drift = new DriftWatch({
      // Legacy in-process: every MCS- chain (the buckets too) is fingerprinted; the exec fallback polls the dispatch chains.
      mode: backend.mode, family, reader: execChainReader(backend.mode, { lockWaitSeconds: this.config.current.iptablesLockWait, family }), ...(inProcess ? { inProcess } : {}), ...(legacy ? { legacy } : {}), backend,
      jumps: LAYOUTS[family].jumps, prefix: CHAIN_PREFIX, dispatchChains: POLLED_DISPATCH_CHAINS, expectedDispatch: () => this.appliedDispatch(slot, family), log, metrics: this.ops.metrics,
      requestRepair: () => this.runner.requestRepair(),
    });
    backend.onRestoreStarted((pid, exited) => drift.ownWrite(pid, exited));
    return drift;
  }

  /** One family's dispatch rules as last applied, by `table/chain`, sorted: what its drift watch expects to read back. */
  private appliedDispatch(slot: number, family: IPFamily): Map<string, string[]> {
    const out = new Map<string, string[]>([[`nat/${SERVICES_CHAIN}`, [...LAYOUTS[family].bucketRules]]]);
    for (const key of this.engine.groupKeys()) {
      // Each group's state holds one slot per family served, IPv4 first.
      const state = this.engine.appliedState(key);
      const f = (Array.isArray(state) ? state[slot] : slot === 0 ? state : undefined) as Fragment | undefined;
      for (const r of f?.setRules ?? []) {
        const id = `${r.table}/${r.chain}`;
        const list = out.get(id) ?? [];
        if (list.length === 0) out.set(id, list);
        list.push(r.spec);
      }
    }
    for (const list of out.values()) list.sort();
    return out;
  }

  private logSync(r: SyncResult): void {
    const fields = { full: r.full, durationMs: Math.round(r.durationMs * 10) / 10, restores: r.restores, payloadBytes: r.payloadBytes, chainsWritten: r.chainsWritten, quarantined: r.quarantined };
    if (r.full) this.opts.log.info(fields, 'full sync done');
    else this.opts.log.debug(fields, 'partial sync done');
    this.ops.synced(r);
  }
}

export { errorText } from './log.js';
