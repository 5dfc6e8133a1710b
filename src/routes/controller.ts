import type { KubeConfig, V1Node } from '@kubernetes/client-node';
import type { Config } from '../config/schema.js';
import { ResilientInformer } from '../kube/informer.js';
import { safely, trimNode } from '../kube/projection.js';
import type { Logger } from '../log.js';
import { SyncRunner } from '../sync/runner.js';
import { RoutesDataplane } from './dataplane.js';
import { NetlinkExecutor, type RouteExecutor } from './netlink-executor.js';
import { RouteReconciler, type RouteStatus } from './reconciler.js';

export interface RouteControllerOptions {
  readonly config: Config;
  readonly nodeName: string;
  readonly kubeConfig: KubeConfig;
  readonly log: Logger;
  readonly onStatus?: (status: RouteStatus) => void;
}

/**
 * The route half of the agent: watches the gateway candidates (Nodes matching
 * gateway.nodeSelector: a node losing the label leaves the watch as a delete)
 * and keeps this node's routes pointed at the active gateway, through its own
 * rate-limited runner so that a failing route sync never delays iptables.
 */
export class RouteController {
  private readonly reconciler: RouteReconciler;
  private readonly runner: SyncRunner;
  private readonly informer: ResilientInformer<V1Node>;
  private readonly executor: RouteExecutor;
  private started = false;

  constructor(opts: RouteControllerOptions) {
    const { config, log } = opts;
    const rlog = log.child({ part: 'routes' });
    this.executor = new NetlinkExecutor();
    this.reconciler = new RouteReconciler({ config, nodeName: opts.nodeName, executor: this.executor, log: rlog, onStatus: opts.onStatus });
    this.runner = new SyncRunner({
      minInterval: config.minSyncInterval,
      period: config.syncPeriod,
      initialBackoff: 1000,
      maxBackoff: 60_000,
      run: async () => {
        await this.reconciler.sync();
      },
      onError: (err, failures, retryInMs) => {
        rlog.error({ err: err instanceof Error ? err.message : String(err), failures, retryInMs }, 'route sync failed; retrying');
      },
    });
    const request = (changed: boolean) => {
      if (changed && this.started) this.runner.request();
    };
    const labelSelector = Object.entries(config.gateway.nodeSelector).map(([k, v]) => `${k}=${v}`).join(',');
    this.informer = new ResilientInformer<V1Node>(
      opts.kubeConfig,
      { resource: 'nodes', path: '/api/v1/nodes', labelSelector, trim: safely(trimNode) },
      { onUpsert: (n) => request(this.reconciler.upsertNode(n)), onDelete: (n) => request(this.reconciler.deleteNode(n)) },
      rlog,
    );
  }

  /** Starts watching; the first sync runs once the candidates are listed, so no node routes to a wrong gateway meanwhile. */
  start(): void {
    this.informer.start();
    this.informer.whenSynced().then(
      () => {
        this.started = true;
        this.runner.start();
      },
      () => undefined, // stopped before the first list: nothing to start
    );
  }

  status(): RouteStatus {
    return this.reconciler.status();
  }

  /** Live config (clusters and their CIDRs); the gateway section needs a restart. */
  updateConfig(c: Config): void {
    this.reconciler.updateConfig(c);
    this.runner.setIntervals(c.minSyncInterval, c.syncPeriod);
    if (this.started) this.runner.request();
  }

  /** Stops watching and syncing; routes stay so traffic keeps flowing across restarts. */
  async stop(): Promise<void> {
    await this.informer.stop();
    await this.runner.stop();
    this.executor.close();
  }
}

/** --cleanup: removes the owned rules, routes and interface; returns the number of operations. */
export async function cleanupRoutes(config: Config): Promise<number> {
  const executor = new NetlinkExecutor();
  try {
    return await new RoutesDataplane(executor, config).cleanup();
  } finally {
    executor.close();
  }
}
