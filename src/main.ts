// bin/clusterset-proxy loads this module before the others, so signals are caught from the start.
import { releaseStopSignals, stopSignal } from './stop-signals.js';
import { hostname } from 'node:os';
import { Agent, errorText } from './agent.js';
import { iptablesDataplanes } from './iptables/families.js';
import { runExplain, snapshotInto } from './cli/explain.js';
import { EXPLAIN_USAGE, parseFlags, USAGE, UsageError, type Flags } from './cli/flags.js';
import { ConfigError, type Config } from './config/schema.js';
import type { Dataplane } from './sync/dataplane.js';
import { createIptablesBackend, ip6tablesBeside } from './iptables/exec-backend.js';
import { planOnlyBackend } from './iptables/backend.js';
import { loadKubeConfig } from './kube/client.js';
import { createLogger } from './log.js';
import { configMapRefOf, loadStartConfig } from './ops/start-config.js';
import { SyncEngine } from './sync/engine.js';
import { FakeNftables } from './nftables/fake.js';
import { NativeNftables } from './nftables/native.js';
import { NftablesDataplane } from './nftables/nftables-dataplane.js';
import { ProxyModeError, resolveProxyMode } from './ops/proxy-mode.js';
import { IpvsDataplane } from './ipvs/dataplane.js';
import { FakeIpvs } from './ipvs/fake.js';
import { IpvsUnavailableError, startIpvs, SWEEP_INTERVAL_MS } from './ipvs/agent-mode.js';
import { cleanupRoutes } from './routes/controller.js';

async function run(argv: readonly string[]): Promise<number> {
  // A run that ends by itself (explain, --help, --dry-run, --cleanup, --once) is simply ended by a signal.
  if (argv[0] === 'explain') {
    releaseStopSignals();
    return runExplain(argv.slice(1));
  }
  const flags = parseFlags(argv);
  const keepWatch = !(flags.dryRun || flags.cleanup || flags.once);
  if (flags.help || !keepWatch) releaseStopSignals();
  if (flags.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const log = createLogger(flags.logLevel ?? 'info');
  let agent: Agent | undefined;
  if (keepWatch) {
    // Before the agent exists nothing has been changed (reading the config, detecting the backend), and a
    // step may wait for the API server indefinitely: a signal then ends the process at once.
    void stopSignal.then((signal) => {
      if (agent) return;
      log.info({ signal }, 'stopping before the agent started; nothing was changed');
      process.exit(0);
    });
  }
  const configMap = configMapRefOf(flags.configMap);
  // The ConfigMap, when there is one, is watched from the start: its first state is the config to start with.
  const start = await loadStartConfig({ file: flags.config, configMap, overrides: flagOverrides(flags), kubeConfig: () => loadKubeConfig(flags.kubeconfig), log, bounded: !keepWatch });
  const config = start.config;
  log.level = config.logLevel;
  if (!keepWatch) await start.watch?.stop();
  const nodeName = flags.hostnameOverride ?? process.env.NODE_NAME ?? hostname();

  // Without a mode (or with `iptables`) nothing below is consulted: iptables as always.
  const mode = config.mode === 'iptables' ? null : await resolveProxyMode(config.mode, { log });
  if (mode) log.info({ mode: mode.mode, reason: mode.reason }, 'proxy mode');
  const nftables = mode?.mode === 'nftables';
  const ipvs = mode?.mode === 'ipvs';

  if (flags.dryRun) {
    // Needs no iptables and no root: the plan alone (IPVS: the table as `ipvsadm -Sn` prints it, then the rules beside it).
    const dataplane = ipvs ? new IpvsDataplane(new FakeIpvs()) : nftables ? new NftablesDataplane(new FakeNftables()) : iptablesDataplanes(planOnlyBackend('ipv4'), planOnlyBackend('ipv6'));
    const engine = new SyncEngine({ config, dataplane, log });
    await snapshotInto(loadKubeConfig(flags.kubeconfig), engine, log, config.apiTimeout);
    process.stdout.write(engine.fullPayload());
    return 0;
  }

  const backend = await createIptablesBackend({ mode: config.iptablesBackend, lockWaitSeconds: config.iptablesLockWait, log });
  // iptables mode serves IPv6 through ip6tables wherever the kernel takes it.
  const backend6 = !nftables && !ipvs ? await ip6tablesBeside(backend, log) : null;
  // IPVS mode: the kernel's IPVS family must resolve before anything is changed.
  const ipvsDataplane = ipvs ? await startIpvs(backend.mode) : null;
  const kernelDataplane = (): Dataplane => ipvsDataplane ?? (nftables ? new NftablesDataplane(new NativeNftables()) : iptablesDataplanes(backend, backend6));
  log.info({ node: nodeName, backend: backend.mode, families: backend6 ? ['ipv4', 'ipv6'] : ['ipv4'], cluster: config.clusterName }, 'clusterset-proxy starting');

  if (flags.cleanup) {
    const engine = new SyncEngine({ config, dataplane: kernelDataplane(), log });
    const result = await engine.cleanup();
    if (ipvsDataplane) await ipvsDataplane.cleanupAll();
    const routeOperations = await cleanupRoutes(config);
    log.info({ payloadBytes: result.payloadBytes, routeOperations }, 'removed everything clusterset-proxy owned');
    return 0;
  }

  if (flags.once) {
    const engine = new SyncEngine({ config, dataplane: kernelDataplane(), log });
    await snapshotInto(loadKubeConfig(flags.kubeconfig), engine, log, config.apiTimeout);
    const result = await engine.syncFull();
    log.info({ durationMs: Math.round(result.durationMs), restores: result.restores, payloadBytes: result.payloadBytes }, 'one full sync done');
    return 0;
  }

  const running = new Agent({
    config, backend, backend6: backend6 ?? undefined,
    ...(nftables ? { dataplane: new NftablesDataplane(new NativeNftables()) } : {}),
    ...(ipvsDataplane ? { dataplane: ipvsDataplane, sweep: { run: () => ipvsDataplane.sweep(), intervalMs: SWEEP_INTERVAL_MS } } : {}),
    kubeConfig: loadKubeConfig(flags.kubeconfig), log, nodeName, configMap: start.watch ? { watch: start.watch, overrides: flagOverrides(flags) } : undefined });
  agent = running;
  let stopping = false;
  const stopped = stopSignal.then(async (signal) => {
    stopping = true;
    log.info({ signal }, 'stopping; rules stay in place (use --cleanup to remove them)');
    await running.stop();
    return 0;
  });
  // A signal during start-up stops the agent half-started; start() may then fail for that reason alone.
  const started = running.start().catch((err: unknown) => {
    if (!stopping) throw err;
  });
  await Promise.race([started, stopped]);
  return stopped;
}

function flagOverrides(flags: Flags): Pick<Partial<Config>, 'logLevel' | 'iptablesBackend' | 'apiTimeout' | 'mode'> {
  return {
    ...(flags.proxyMode ? { mode: flags.proxyMode } : {}),
    ...(flags.logLevel ? { logLevel: flags.logLevel } : {}),
    ...(flags.iptablesBackend ? { iptablesBackend: flags.iptablesBackend } : {}),
    ...(flags.apiTimeout !== undefined ? { apiTimeout: flags.apiTimeout } : {}),
  };
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const usage = err instanceof UsageError;
    const known = usage || err instanceof ConfigError || err instanceof ProxyModeError || err instanceof IpvsUnavailableError;
    const usageText = process.argv[2] === 'explain' ? EXPLAIN_USAGE : USAGE;
    process.stderr.write(`clusterset-proxy: ${known ? (err as Error).message : errorText(err)}\n${usage ? usageText : ''}`);
    process.exit(usage ? 2 : 1);
  },
);
