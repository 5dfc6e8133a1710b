import { IptablesDataplane } from '../src/iptables/dataplane.js';
import type { BackendMode } from '../src/iptables/backend.js';
import { createIptablesBackend } from '../src/iptables/exec-backend.js';
import { silentLogger } from '../src/log.js';
import { SyncEngine } from '../src/sync/engine.js';
import { SyncRunner } from '../src/sync/runner.js';
import { startClusterWatches, type ClusterWatches } from '../src/kube/watch.js';
import { kubeConfigFor, TestApiServer } from '../test/support/api-server.js';
import { Topology } from '../test/support/netns.js';
import {
  kubeProxyChainCount, kubeProxyFullPayload, kubeProxyJumps, kubeProxyLoadChunks, kubeProxyPartialPayload,
} from './kube-proxy-layout.js';
import { bareRestore, RecordingBackend } from './restore.js';
import { spread, type Spread } from './stats.js';
import { changeTarget, type Workload } from './workload.js';

// Figures 1-4 (our engine, in process, against real iptables) and 6 (the
// kube-proxy-style layout), each in a network namespace of its own that is
// deleted afterwards.

export interface OurFigures {
  /** Listing every object from the API server through the agent's informers into the engine, in process. */
  readonly ingestMs: number;
  /** The engine's first full sync alone (plan, read back, restores): the engine-only cold start. */
  readonly coldStart: { readonly ms: number; readonly bytes: number; readonly restores: number; readonly chains: number; readonly rules: number };
  /** From the watch event decoded (the informer's handler) to the sync that applies it resolved. */
  readonly oneChange: Spread;
  /** Of that, the wait in the runner: event decoded → its sync starting. */
  readonly runnerDelay: Spread;
  /** Of that, the sync itself: started → resolved. */
  readonly engineSync: Spread;
  readonly oneChangeBytes: Spread;
  /** A bare iptables-restore of each of those payloads, run right after the engine's own. */
  readonly floor: Spread;
  readonly burst: BurstFigure;
}
export interface BurstFigure {
  readonly changes: number;
  readonly spanMs: number;
  readonly minSyncIntervalMs: number;
  readonly syncs: number;
  readonly restores: number;
  /** From the first change entering the engine to the last change applied. */
  readonly lastAppliedMs: number;
  /** Longest time any one change waited to be applied. */
  readonly maxLagMs: number;
}

export interface KubeProxyFigures {
  readonly chains: number;
  /** null: the restore ran past the time limit and was killed. */
  readonly coldStartMs: number | null;
  readonly coldStartLimitMs: number;
  readonly coldStartBytes: number;
  /** How the table was loaded for the partial syncs when the one-restore load did not finish. */
  readonly chunkedLoadMs: number | null;
  readonly oneChange: Spread;
  readonly oneChangeBytes: Spread;
}

export interface OurOptions {
  readonly changes: number;
  readonly burstChanges: number;
  readonly burstSpanMs: number;
}

/**
 * Our engine against real iptables in a namespace of its own, fed as the agent
 * feeds it: the agent's informers list and watch the test API server (in
 * process, over TCP), the handlers upsert into the engine and request a sync
 * from a SyncRunner on real timers. A change is sent through the API server
 * and timed from the moment its watch event reaches the handler, decoded and
 * trimmed, to its sync resolved, with the runner's wait shown apart.
 */
export async function measureOurs(workload: Workload, mode: BackendMode, opts: OurOptions): Promise<OurFigures> {
  const topology = new Topology();
  const api = new TestApiServer({ bookmarkIntervalMs: 0 });
  let watches: ClusterWatches | null = null;
  let runner: SyncRunner | null = null;
  try {
    const ns = await topology.namespace('ours');
    const backend = new RecordingBackend(await createIptablesBackend({ mode, netns: ns, log: silentLogger() }));
    const config = workload.config();
    const engine = new SyncEngine({ config, dataplane: new IptablesDataplane(backend), log: silentLogger() });
    await api.start();
    for (const o of workload.objects()) api.apply(o);

    // Handler calls carrying a change not yet taken by a sync, by decode time.
    const events: number[] = [];
    let live = false;
    const request = (changed: boolean) => {
      if (!changed || !live) return;
      events.push(performance.now());
      runner!.request();
    };
    const ingestStarted = performance.now();
    watches = startClusterWatches(kubeConfigFor(api.url), {
      services: { onUpsert: (o) => request(engine.upsertService(o)), onDelete: (o) => request(engine.deleteService(o)) },
      endpointSlices: { onUpsert: (o) => request(engine.upsertSlice(o)), onDelete: (o) => request(engine.deleteSlice(o)) },
    }, silentLogger(), { servicePrefix: config.servicePrefix });
    await watches.whenSynced();
    const ingestMs = performance.now() - ingestStarted;

    const cold = await engine.syncFull();
    backend.take();
    const coldStart = { ms: cold.durationMs, bytes: cold.payloadBytes, restores: cold.restores, chains: cold.owned?.chains ?? 0, rules: cold.owned?.rules ?? 0 };

    const times: number[] = [];
    const delays: number[] = [];
    const syncs: number[] = [];
    const bytes: number[] = [];
    let appliedOne: (() => void) | null = null;
    let failure: unknown = null;
    runner = new SyncRunner({
      minInterval: config.minSyncInterval,
      period: 3_600_000,
      initialBackoff: 1000,
      maxBackoff: 60_000,
      run: async (full) => {
        // The sync takes every change handed to the engine so far, before its first await.
        const taken = events.splice(0);
        const started = performance.now();
        const result = await (full ? engine.syncFull() : engine.syncPartial());
        const done = performance.now();
        for (const at of taken) {
          times.push(done - at);
          delays.push(started - at);
          syncs.push(done - started);
          bytes.push(result.payloadBytes);
        }
        if (taken.length > 0) appliedOne?.();
      },
      onError: (err) => {
        failure = err;
        appliedOne?.();
      },
    });
    live = true;

    const floor: number[] = [];
    for (let i = 0; i < opts.changes && failure === null; i++) {
      const change = workload.change(changeTarget(i, workload.services.length));
      const applied = new Promise<void>((resolve) => (appliedOne = resolve));
      api.apply(change.slice);
      await applied;
      // Replaying the same payload rewrites the same chain to the same rules: the kernel state does not move.
      for (const payload of backend.take()) floor.push((await bareRestore(ns, mode, payload))!);
    }
    if (failure !== null) throw failure;
    live = false;
    await runner.stop();
    runner = null;

    const burst = await measureBurst(workload, engine, config.minSyncInterval, opts);
    return {
      ingestMs, coldStart, oneChange: spread(times), runnerDelay: spread(delays), engineSync: spread(syncs),
      oneChangeBytes: spread(bytes), floor: spread(floor), burst,
    };
  } finally {
    await runner?.stop();
    await watches?.stop();
    await api.stop();
    await topology.teardown();
  }
}

/**
 * `changes` endpoint changes entering the engine evenly over `spanMs`, each
 * requesting a sync from a SyncRunner on real timers, as the informers do.
 */
async function measureBurst(workload: Workload, engine: SyncEngine, minInterval: number, opts: OurOptions): Promise<BurstFigure> {
  const count = opts.burstChanges;
  const arrived: number[] = [];
  const applied: number[] = [];
  let syncs = 0;
  let restores = 0;
  let failure: unknown = null;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const runner = new SyncRunner({
    minInterval,
    period: 3_600_000,
    initialBackoff: 1000,
    maxBackoff: 60_000,
    run: async (full) => {
      // The sync takes every change entered so far, synchronously, before its first await.
      const upTo = arrived.length;
      const result = await (full ? engine.syncFull() : engine.syncPartial());
      const now = performance.now();
      syncs++;
      restores += result.restores;
      while (applied.length < upTo) applied.push(now);
      if (applied.length === count) finish();
    },
    onError: (err) => {
      failure = err;
      finish();
    },
  });

  const offset = opts.changes;
  const started = performance.now();
  while (arrived.length < count && failure === null) {
    const due = Math.min(count, Math.floor(((performance.now() - started) / opts.burstSpanMs) * count) + 1);
    while (arrived.length < due) {
      const change = workload.change(changeTarget(offset + arrived.length, workload.services.length));
      engine.upsertSlice(change.slice);
      arrived.push(performance.now());
      runner.request();
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await finished;
  await runner.stop();
  if (failure !== null) throw failure;
  return {
    changes: count,
    spanMs: arrived.at(-1)! - started,
    minSyncIntervalMs: minInterval,
    syncs,
    restores,
    lastAppliedMs: applied.at(-1)! - started,
    maxLagMs: Math.max(...applied.map((t, i) => t - arrived[i]!)),
  };
}

export interface KubeProxyOptions {
  readonly changes: number;
  readonly coldStartLimitMs: number;
  /** Chains per restore when the table must be loaded in parts. */
  readonly loadChunkChains: number;
}

export async function measureKubeProxy(workload: Workload, mode: BackendMode, opts: KubeProxyOptions): Promise<KubeProxyFigures> {
  const full = kubeProxyFullPayload(workload.services);
  const topology = new Topology();
  try {
    let ns = await topology.namespace('kp');
    await bareRestore(ns, mode, kubeProxyJumps());
    const coldStartMs = await bareRestore(ns, mode, full, opts.coldStartLimitMs);
    let chunkedLoadMs: number | null = null;
    if (coldStartMs === null) {
      // Start over in a clean namespace and load the same table in parts.
      await topology.teardown();
      ns = await topology.namespace('kp-chunked');
      await bareRestore(ns, mode, kubeProxyJumps());
      const started = performance.now();
      for (const chunk of kubeProxyLoadChunks(workload.services, opts.loadChunkChains)) await bareRestore(ns, mode, chunk);
      chunkedLoadMs = performance.now() - started;
    }

    const times: number[] = [];
    const bytes: number[] = [];
    for (let i = 0; i < opts.changes; i++) {
      const change = workload.change(changeTarget(i, workload.services.length));
      const payload = kubeProxyPartialPayload(workload.services, change.service, change.removed);
      times.push((await bareRestore(ns, mode, payload))!);
      bytes.push(payload.length);
    }
    return {
      chains: kubeProxyChainCount(workload.services),
      coldStartMs,
      coldStartLimitMs: opts.coldStartLimitMs,
      coldStartBytes: full.length,
      chunkedLoadMs,
      oneChange: spread(times),
      oneChangeBytes: spread(bytes),
    };
  } finally {
    await topology.teardown();
  }
}
