import type { KubeConfig } from '@kubernetes/client-node';
import type { Config } from './config/schema.js';
import type { IptablesBackend } from './iptables/backend.js';
import { startClusterWatches } from './kube/watch.js';
import type { Logger } from './log.js';
import { SyncEngine, type SyncResult } from './sync/engine.js';
import { SyncRunner } from './sync/runner.js';

export interface AgentOptions {
  readonly config: Config;
  readonly backend: IptablesBackend;
  readonly kubeConfig: KubeConfig;
  readonly log: Logger;
  readonly onSync?: (result: SyncResult) => void;
}

/** Watches → engine → runner, running until stopped. */
export class Agent {
  readonly engine: SyncEngine;
  private readonly runner: SyncRunner;
  private started = false;
  private watches: Awaited<ReturnType<typeof startClusterWatches>> | null = null;

  constructor(private readonly opts: AgentOptions) {
    const { config, log } = opts;
    this.engine = new SyncEngine({ config, backend: opts.backend, log, onSync: (r) => this.logSync(r) });
    this.runner = new SyncRunner({
      minInterval: config.minSyncInterval,
      period: config.syncPeriod,
      initialBackoff: 1000,
      maxBackoff: 60_000,
      run: async (full) => {
        await (full ? this.engine.syncFull() : this.engine.syncPartial());
      },
      onError: (err, failures, retryInMs) => {
        log.error({ err: errorText(err), failures, retryInMs }, 'sync failed; the data plane keeps its last applied state; retrying as a full sync');
      },
    });
  }

  /** Starts the watches, waits for their first complete lists, then syncs. */
  async start(): Promise<void> {
    const request = (changed: boolean) => {
      if (changed && this.started) this.runner.request();
    };
    this.watches = startClusterWatches(this.opts.kubeConfig, {
      services: { onUpsert: (o) => request(this.engine.upsertService(o)), onDelete: (o) => request(this.engine.deleteService(o)) },
      endpointSlices: { onUpsert: (o) => request(this.engine.upsertSlice(o)), onDelete: (o) => request(this.engine.deleteSlice(o)) },
    }, this.opts.log);
    // Syncing before every list is in would delete the chains of services not yet seen.
    await this.watches.whenSynced();
    this.opts.log.info({ services: this.engine.serviceCount }, 'watches synced; starting the first full sync');
    this.started = true;
    this.runner.start();
  }

  /** Stops watching and syncing; the rules stay so traffic keeps flowing across restarts. */
  async stop(): Promise<void> {
    await this.watches?.stop();
    await this.runner.stop();
  }

  private logSync(r: SyncResult): void {
    const fields = { full: r.full, durationMs: Math.round(r.durationMs * 10) / 10, restores: r.restores, payloadBytes: r.payloadBytes, chainsWritten: r.chainsWritten };
    if (r.full) this.opts.log.info(fields, 'full sync done');
    else this.opts.log.debug(fields, 'partial sync done');
    this.opts.onSync?.(r);
  }
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
