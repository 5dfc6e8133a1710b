import { hostname } from 'node:os';
import { Agent, errorText } from './agent.js';
import { parseFlags, USAGE, UsageError, type Flags } from './cli/flags.js';
import { loadConfigFile } from './config/load.js';
import { ConfigError, DEFAULT_CONFIG, type Config } from './config/schema.js';
import { createIptablesBackend } from './iptables/exec-backend.js';
import { loadKubeConfig } from './kube/client.js';
import { startClusterWatches } from './kube/watch.js';
import { createLogger, type Logger } from './log.js';
import { SyncEngine } from './sync/engine.js';

async function loadConfig(flags: Flags): Promise<Config> {
  const base = flags.config ? await loadConfigFile(flags.config) : DEFAULT_CONFIG;
  return {
    ...base,
    ...(flags.logLevel ? { logLevel: flags.logLevel } : {}),
    ...(flags.iptablesBackend ? { iptablesBackend: flags.iptablesBackend } : {}),
  };
}

/** --dry-run and --once: one consistent snapshot of the API, then one action. */
async function withSnapshot(flags: Flags, log: Logger, engine: SyncEngine): Promise<void> {
  const watches = startClusterWatches(loadKubeConfig(flags.kubeconfig), {
    services: { onUpsert: (o) => engine.upsertService(o), onDelete: (o) => engine.deleteService(o) },
    endpointSlices: { onUpsert: (o) => engine.upsertSlice(o), onDelete: (o) => engine.deleteSlice(o) },
  }, log);
  try {
    await watches.whenSynced();
  } finally {
    await watches.stop();
  }
}

async function run(argv: readonly string[]): Promise<number> {
  const flags = parseFlags(argv);
  if (flags.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const config = await loadConfig(flags);
  const log = createLogger(config.logLevel);
  const nodeName = flags.hostnameOverride ?? process.env.NODE_NAME ?? hostname();

  if (flags.dryRun) {
    // Needs no iptables and no root: the plan alone.
    const engine = new SyncEngine({ config, backend: { mode: 'nft', restore: async () => {}, save: async () => '' }, log });
    await withSnapshot(flags, log, engine);
    process.stdout.write(engine.fullPayload());
    return 0;
  }

  const backend = await createIptablesBackend({ mode: config.iptablesBackend, lockWaitSeconds: config.iptablesLockWait, log });
  log.info({ node: nodeName, backend: backend.mode, cluster: config.clusterName }, 'clusterset-proxy starting');

  if (flags.cleanup) {
    const engine = new SyncEngine({ config, backend, log });
    const result = await engine.cleanup();
    log.info({ payloadBytes: result.payloadBytes }, 'removed everything clusterset-proxy owned');
    return 0;
  }

  if (flags.once) {
    const engine = new SyncEngine({ config, backend, log });
    await withSnapshot(flags, log, engine);
    const result = await engine.syncFull();
    log.info({ durationMs: Math.round(result.durationMs), restores: result.restores, payloadBytes: result.payloadBytes }, 'one full sync done');
    return 0;
  }

  const agent = new Agent({ config, backend, kubeConfig: loadKubeConfig(flags.kubeconfig), log });
  const stopped = new Promise<number>((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      process.once(signal, () => {
        log.info({ signal }, 'stopping; rules stay in place (use --cleanup to remove them)');
        void agent.stop().then(() => resolve(0));
      });
    }
  });
  await agent.start();
  return stopped;
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const usage = err instanceof UsageError;
    const known = usage || err instanceof ConfigError;
    process.stderr.write(`clusterset-proxy: ${known ? (err as Error).message : errorText(err)}\n${usage ? USAGE : ''}`);
    process.exit(usage ? 2 : 1);
  },
);
