import type { KubeConfig, V1ConfigMap } from '@kubernetes/client-node';
import { RunningConfig } from '../config/running.js';
import { ConfigError, type Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { QuarantineChange, SyncEngine, SyncResult } from '../sync/engine.js';
import { configFromConfigMap, planConfigChange, type ConfigChange, type ConfigMapWatch, type ConfigOverrides } from './config-watch.js';
import { apiEventSink, EventRecorder, type EventSink, type ObjectRef } from './event-recorder.js';
import { endpointState } from './explain.js';
import { ExplainEndpoint } from './explain-endpoint.js';
import { HealthState } from './health.js';
import { OpsServers } from './http-server.js';
import { AgentMetrics, type EndpointCount, type EndpointState } from './metrics.js';
import { OpsReporter, type DecisionView } from './reporter.js';
import type { RouteStatus } from '../routes/reconciler.js';

export const COMPONENT = 'clusterset-proxy';

export interface OperationsOptions {
  /** The config in force, or the start config when nothing else owns one. */
  readonly config: Config | RunningConfig;
  readonly kubeConfig: KubeConfig;
  readonly nodeName: string;
  readonly log: Logger;
  readonly engine: SyncEngine;
  /** Tests write Events elsewhere; the default is the API server. */
  readonly eventSink?: EventSink;
}

/**
 * Everything an operator sees of the agent: metrics, /healthz and /readyz,
 * Events, /explain, and live config from the ConfigMap. The agent calls in
 * at each step of its loop; nothing here can stop a sync.
 */
export class Operations {
  readonly metrics: AgentMetrics;
  readonly health: HealthState;
  readonly events: EventRecorder;
  readonly reporter: OpsReporter;
  private readonly servers: OpsServers;
  private readonly explainer: ExplainEndpoint;
  private configWatch: ConfigMapWatch | null = null;
  /** The config in force (the ConfigMap changes it). */
  private readonly running: RunningConfig;

  constructor(private readonly opts: OperationsOptions) {
    const { engine, log } = opts;
    this.running = opts.config instanceof RunningConfig ? opts.config : new RunningConfig(opts.config);
    const config = this.running.current;
    this.running.subscribe((next) => this.health.setBounds(next.healthzTimeout, next.syncPeriod));
    this.metrics = new AgentMetrics({
      endpointCounts: () => endpointCounts(engine),
      problemCount: () => engine.currentProblems().length,
      quarantinedCount: () => engine.quarantinedCount,
      drainingCount: () => engine.plane.draining?.() ?? 0,
    });
    this.health = new HealthState(config.healthzTimeout, config.syncPeriod);
    this.events = new EventRecorder({ sink: opts.eventSink ?? apiEventSink(opts.kubeConfig), component: COMPONENT, host: opts.nodeName, log });
    this.reporter = new OpsReporter(this.metrics, this.events, { apiVersion: 'v1', kind: 'Node', name: opts.nodeName });
    engine.onProblem = (problem, scope) => this.reporter.problem(problem, scope);
    // The engine's data plane reads its own kernel objects (iptables tables, the nftables table).
    const plane = engine.plane;
    // A data plane that shows no kernel objects has nothing to read; explain says so.
    this.explainer = new ExplainEndpoint(engine, plane.readForExplain ? () => plane.readForExplain!() : async () => null, (c) => this.healthText(c));
    this.servers = new OpsServers({
      metrics: () => this.metrics.exposition(),
      unhealthyReason: () => this.health.unhealthyReason(),
      lastSynced: () => {
        const at = this.health.lastSyncedAt;
        return at === null ? null : new Date(performance.timeOrigin + at);
      },
      ready: () => this.health.ready,
      explain: (service) => this.explainer.answer(service),
    }, log);
  }

  async start(): Promise<void> {
    await this.servers.start({ metrics: this.running.current.metricsBindAddress, healthz: this.running.current.healthzBindAddress });
  }

  /** Stops serving and watching; Events not yet written are dropped. */
  async stop(): Promise<void> {
    await this.configWatch?.stop();
    await this.events.stop();
    await this.servers.stop();
  }

  /** A change was queued for a sync. */
  queued(): void {
    this.metrics.queued();
    this.health.queued();
  }

  synced(r: SyncResult): void {
    this.explainer.synced();
    this.metrics.synced(r);
    this.health.synced(r.full, r.durationMs, this.opts.engine.hasPendingChanges);
  }

  syncFailed(err: unknown): void {
    // A sync of several restores may have applied some before failing.
    this.explainer.synced();
    this.metrics.syncFailed(err);
  }

  /** A group's traffic moved: metric and Event on the Service carrying it. */
  decisionChanged(groupKey: string, before: DecisionView | null, after: DecisionView | null): void {
    this.reporter.decisionChanged(this.serviceOf(groupKey), before, after);
  }

  /** A group was quarantined or healed: Event on the Service carrying it (the gauge is read at scrape time). */
  quarantineChanged(change: QuarantineChange): void {
    this.reporter.quarantine(this.serviceOf(change.group), change.fault?.reason ?? null, change.previous?.reason ?? null);
  }

  /** The Service carrying a group's traffic; its model may not build, so the key is the fallback. */
  private serviceOf(groupKey: string): ObjectRef {
    let fe;
    try {
      fe = this.opts.engine.groupModel(groupKey).group?.frontends[0];
    } catch {
      fe = undefined;
    }
    const slash = groupKey.indexOf('/');
    return { apiVersion: 'v1', kind: 'Service', namespace: fe?.namespace ?? groupKey.slice(0, slash), name: fe?.name ?? groupKey.slice(slash + 1) };
  }

  /**
   * What the route controller reports after each route sync: the active
   * gateway (metric, Event on the gateway Node) and the standing CIDR
   * overlaps (metric, one Event each on the ConfigMap that configures the
   * networks, else on this node).
   */
  routeStatus(status: Pick<RouteStatus, 'gateway' | 'overlaps'>): void {
    const cluster = this.running.current.clusterName;
    const gw = status.gateway;
    this.reporter.gatewayChanged(cluster, gw ? gw.node : null, gw ? { apiVersion: 'v1', kind: 'Node', name: gw.node } : undefined);
    const ref = this.configWatch?.ref;
    const object: ObjectRef = ref ? { apiVersion: 'v1', kind: 'ConfigMap', namespace: ref.namespace, name: ref.name } : { apiVersion: 'v1', kind: 'Node', name: this.opts.nodeName };
    this.reporter.overlaps(status.overlaps.map((o) => ({ object, message: o.message })));
  }

  /**
   * Applies later changes of the ConfigMap. A change that does not validate
   * is refused whole (log naming key and value, metric, Event on the
   * ConfigMap) and the agent runs on. Keys that need a restart keep their
   * running value and are reported. A live change is put in force on the
   * running config (its subscribers act on it), then `apply` is called.
   */
  watchConfig(watch: ConfigMapWatch, overrides: ConfigOverrides, apply: (change: ConfigChange) => void): void {
    this.configWatch = watch;
    const { log } = this.opts;
    const where = `${watch.ref.namespace}/${watch.ref.name}`;
    watch.subscribe((cm) => {
      if (!cm) {
        log.warn({ configMap: where }, 'ConfigMap deleted; the running config stays until the next restart');
        return;
      }
      let desired: Config;
      try {
        desired = configFromConfigMap(cm, overrides);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        log.error({ configMap: where, key: err.key, value: err.value, err: err.message }, 'ConfigMap change refused; running on the last good config');
        this.metrics.configReloaded(false, 0);
        this.events.record(configMapRef(cm), 'Warning', 'InvalidConfig', `${err.message}; the agent keeps running on its last good config`);
        return;
      }
      const change = planConfigChange(this.running.current, desired);
      this.metrics.configReloaded(true, change.restart.length);
      if (change.live.length > 0) {
        this.running.set(change.next);
        apply(change);
        log.info({ configMap: where, changed: change.live }, 'config reloaded');
        this.events.record(configMapRef(cm), 'Normal', 'ConfigReloaded', `applied without restart: ${change.live.join(', ')}`);
      }
      if (change.restart.length > 0) {
        log.warn({ configMap: where, keys: change.restart }, 'config keys changed that need a restart to take effect; running with their old values');
        this.events.record(configMapRef(cm), 'Warning', 'RestartRequired', `${change.restart.join(', ')} changed: restart the agent (roll the DaemonSet) to apply`);
      }
    });
  }

  private healthText(cluster: string): string {
    const h = this.reporter.clusterHealthOf(cluster);
    if (!h) return 'not probed (counts as healthy)';
    return `${h.healthy ? 'healthy' : 'unhealthy'} since ${new Date(h.since).toISOString()}`;
  }
}

function configMapRef(cm: V1ConfigMap): ObjectRef {
  return { apiVersion: 'v1', kind: 'ConfigMap', namespace: cm.metadata?.namespace, name: cm.metadata?.name ?? '', uid: cm.metadata?.uid };
}

/** Endpoints of every service-group port, by cluster and state (computed at scrape time). */
export function endpointCounts(engine: SyncEngine): EndpointCount[] {
  const counts = new Map<string, number>();
  for (const key of engine.groupKeys()) {
    const group = engine.groupModel(key).group;
    if (!group) continue;
    for (const fe of [...group.frontends, ...(group.local ? [group.local] : [])]) {
      for (const port of fe.ports) {
        for (const ep of port.endpoints) {
          const id = `${ep.cluster}\n${endpointState(ep)}`;
          counts.set(id, (counts.get(id) ?? 0) + 1);
        }
      }
    }
  }
  return [...counts].map(([id, count]) => {
    const [cluster, state] = id.split('\n') as [string, EndpointState];
    return { cluster, state, count };
  });
}
