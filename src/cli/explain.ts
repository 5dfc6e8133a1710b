import type { KubeConfig } from '@kubernetes/client-node';
import { planOnlyBackend } from '../iptables/backend.js';
import { iptablesDataplanes } from '../iptables/families.js';
import { IpvsDataplane } from '../ipvs/dataplane.js';
import { FakeIpvs } from '../ipvs/fake.js';
import { FakeNftables } from '../nftables/fake.js';
import { NftablesDataplane } from '../nftables/nftables-dataplane.js';
import { resolveProxyMode } from '../ops/proxy-mode.js';
import { createIptablesBackend } from '../iptables/exec-backend.js';
import { ApiDeadline } from '../kube/api-deadline.js';
import { serverOf } from '../kube/api-failure.js';
import { loadKubeConfig } from '../kube/client.js';
import { startClusterWatches } from '../kube/watch.js';
import { createLogger, type Logger } from '../log.js';
import { explain, parseServiceArg, readKernelForExplain, renderExplain, type ExplainReport } from '../ops/explain.js';
import { configMapRefOf, loadStartConfig } from '../ops/start-config.js';
import { SyncEngine } from '../sync/engine.js';
import { EXPLAIN_USAGE, parseExplainFlags, UsageError, type ExplainFlags } from './flags.js';

/** `clusterset-proxy explain NS/NAME`: prints the explanation; exits 1 when the Service is in no service group. */
export async function runExplain(argv: readonly string[]): Promise<number> {
  const flags = parseExplainFlags(argv);
  if (flags.help) {
    process.stdout.write(EXPLAIN_USAGE);
    return 0;
  }
  const query = parseServiceArg(flags.service);
  if (!query) throw new UsageError(`explain takes NAMESPACE/NAME (got "${flags.service}")`);
  const report = flags.kubeconfig ? await offline(flags, flags.kubeconfig, query) : await fromAgent(flags.agent, flags.service);
  process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : renderExplain(report));
  return report.found ? 0 : 1;
}

async function fromAgent(agent: string, service: string): Promise<ExplainReport> {
  const url = `${agent.replace(/\/$/, '')}/explain?service=${encodeURIComponent(service)}`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    throw new Error(`cannot reach the agent at ${agent} (${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}); run this on the agent's node (its metrics address is loopback by default), pass --agent, or explain offline with --kubeconfig`);
  }
  const body = (await res.json()) as ExplainReport | { error: string };
  if (!res.ok || 'error' in body) throw new Error(`the agent answered HTTP ${res.status}: ${'error' in body ? body.error : res.statusText}`);
  return body;
}

/** Reads the API itself, plans as the agent would, and reads this node's iptables, nftables or IPVS table (per `mode`) where it can. */
async function offline(flags: ExplainFlags, kubeconfig: string, query: { namespace: string; name: string }): Promise<ExplainReport> {
  const log = createLogger('warn');
  const kc = loadKubeConfig(kubeconfig);
  const overrides = flags.apiTimeout === undefined ? {} : { apiTimeout: flags.apiTimeout };
  const start = await loadStartConfig({ file: flags.config, configMap: configMapRefOf(flags.configMap ?? ''), overrides, kubeConfig: () => kc, log, bounded: true });
  await start.watch?.stop();
  // The data plane the agent would run: it plans here (writing nothing) and reads this node's kernel.
  const mode = start.config.mode === 'iptables' ? null : await resolveProxyMode(start.config.mode, { log });
  const nftables = mode?.mode === 'nftables';
  const ipvs = mode?.mode === 'ipvs';
  const dataplane = ipvs ? new IpvsDataplane(new FakeIpvs()) : nftables ? new NftablesDataplane(new FakeNftables()) : iptablesDataplanes(planOnlyBackend('ipv4'), planOnlyBackend('ipv6'));
  const engine = new SyncEngine({ config: start.config, dataplane, log });
  await snapshotInto(kc, engine, log, start.config.apiTimeout);
  let kernel: unknown;
  try {
    if (ipvs) {
      const { NetlinkIpvs } = await import('../ipvs/netlink-client.js');
      const client = new NetlinkIpvs();
      try {
        kernel = await new IpvsDataplane(client).readForExplain();
      } finally {
        client.close();
      }
    } else if (nftables) {
      const { NativeNftables } = await import('../nftables/native.js');
      const client = new NativeNftables();
      try {
        kernel = await new NftablesDataplane(client).readForExplain();
      } finally {
        client.close();
      }
    } else {
      // Both families' tables, as the agent's data planes read them for explain.
      const backend = await createIptablesBackend({ mode: start.config.iptablesBackend, lockWaitSeconds: start.config.iptablesLockWait, log });
      const plane = iptablesDataplanes(backend, backend.forFamily('ipv6'));
      kernel = await readKernelForExplain(() => plane.readForExplain!());
    }
  } catch (err) {
    kernel = `could not read the kernel's ${ipvs ? 'IPVS table' : nftables ? 'table' : 'rules'} here (${(err as Error).message.split('\n')[0]}); run as root on the node to see them`;
  }
  return explain(engine, query, kernel, () => 'not probed (offline: the agent\'s prober is not consulted)');
}

/**
 * One consistent snapshot of every Service and EndpointSlice, fed to the
 * engine; fails (ApiUnavailableError) after `timeoutMs` without one, or at
 * once on an error no retry can fix.
 */
export async function snapshotInto(kc: KubeConfig, engine: SyncEngine, log: Logger, timeoutMs: number): Promise<void> {
  const deadline = new ApiDeadline(serverOf(kc), timeoutMs);
  const watches = startClusterWatches(kc, {
    services: { onUpsert: (o) => engine.upsertService(o), onDelete: (o) => engine.deleteService(o) },
    endpointSlices: { onUpsert: (o) => engine.upsertSlice(o), onDelete: (o) => engine.deleteSlice(o) },
  }, log, { onFailure: deadline.onFailure });
  try {
    await deadline.wait('Services and EndpointSlices', watches.whenSynced());
  } finally {
    await watches.stop();
  }
}
