import { hostname } from 'node:os';
import { Agent, errorText } from './agent.js';
import { runExplain, snapshotInto } from './cli/explain.js';
import { EXPLAIN_USAGE, parseFlags, USAGE, UsageError, type Flags } from './cli/flags.js';
import { ConfigError, type Config } from './config/schema.js';
import { IptablesDataplane } from './iptables/dataplane.js';
import { createIptablesBackend } from './iptables/exec-backend.js';
import { loadKubeConfig } from './kube/client.js';
import { createLogger } from './log.js';
import { configMapRefOf, loadStartConfig } from './ops/start-config.js';
import { SyncEngine } from './sync/engine.js';
import { cleanupRoutes } from './routes/controller.js';

async function run(argv: readonly string[]): Promise<number> {
  if (argv[0] === 'explain') return runExplain(argv.slice(1));
  const flags = parseFlags(argv);
  if (flags.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const log = createLogger(flags.logLevel ?? 'info');
  const configMap = configMapRefOf(flags.configMap);
  const keepWatch = !(flags.dryRun || flags.cleanup || flags.once);
  // The ConfigMap, when there is one, is watched from the start: its first state is the config to start with.
  const start = await loadStartConfig({ file: flags.config, configMap, overrides: flagOverrides(flags), kubeConfig: () => loadKubeConfig(flags.kubeconfig), log, bounded: !keepWatch });
  const config = start.config;
  log.level = config.logLevel;
  if (!keepWatch) await start.watch?.stop();
  const nodeName = flags.hostnameOverride ?? process.env.NODE_NAME ?? hostname();

  if (flags.dryRun) {
    // Needs no iptables and no root: the plan alone.
    const engine = new SyncEngine({ config, dataplane: new IptablesDataplane({ mode: 'nft', restore: async () => {}, save: async () => '' }), log });
    await snapshotInto(loadKubeConfig(flags.kubeconfig), engine, log, config.apiTimeout);
    process.stdout.write(engine.fullPayload());
    return 0;
  }

  const backend = await createIptablesBackend({ mode: config.iptablesBackend, lockWaitSeconds: config.iptablesLockWait, log });
  log.info({ node: nodeName, backend: backend.mode, cluster: config.clusterName }, 'clusterset-proxy starting');

  if (flags.cleanup) {
    const engine = new SyncEngine({ config, dataplane: new IptablesDataplane(backend), log });
    const result = await engine.cleanup();
    const routeOperations = await cleanupRoutes(config, log);
    log.info({ payloadBytes: result.payloadBytes, routeOperations }, 'removed everything clusterset-proxy owned');
    return 0;
  }

  if (flags.once) {
    const engine = new SyncEngine({ config, dataplane: new IptablesDataplane(backend), log });
    await snapshotInto(loadKubeConfig(flags.kubeconfig), engine, log, config.apiTimeout);
    const result = await engine.syncFull();
    log.info({ durationMs: Math.round(result.durationMs), restores: result.restores, payloadBytes: result.payloadBytes }, 'one full sync done');
    return 0;
  }

  const agent = new Agent({ config, backend, kubeConfig: loadKubeConfig(flags.kubeconfig), log, nodeName, configMap: start.watch ? { watch: start.watch, overrides: flagOverrides(flags) } : undefined });
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

function flagOverrides(flags: Flags): Pick<Partial<Config>, 'logLevel' | 'iptablesBackend' | 'apiTimeout'> {
  return {
    ...(flags.logLevel ? { logLevel: flags.logLevel } : {}),
    ...(flags.iptablesBackend ? { iptablesBackend: flags.iptablesBackend } : {}),
    ...(flags.apiTimeout !== undefined ? { apiTimeout: flags.apiTimeout } : {}),
  };
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const usage = err instanceof UsageError;
    const known = usage || err instanceof ConfigError;
    const usageText = process.argv[2] === 'explain' ? EXPLAIN_USAGE : USAGE;
    process.stderr.write(`clusterset-proxy: ${known ? (err as Error).message : errorText(err)}\n${usage ? usageText : ''}`);
    process.exit(usage ? 2 : 1);
  },
);
