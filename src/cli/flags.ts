import { parseArgs } from 'node:util';
import { LOG_LEVELS, type LogLevel } from '../log.js';
import { ConfigError, FIELDS, PROXY_MODES, type BackendSetting, type ProxyModeSetting } from '../config/schema.js';

export interface Flags {
  readonly kubeconfig?: string;
  readonly hostnameOverride?: string;
  readonly config?: string;
  /** `namespace/name` of the ConfigMap to watch; '' disables it. Unset: $POD_NAMESPACE/clusterset-proxy. */
  readonly configMap?: string;
  readonly once: boolean;
  readonly dryRun: boolean;
  readonly cleanup: boolean;
  readonly logLevel?: LogLevel;
  readonly iptablesBackend?: BackendSetting;
  readonly proxyMode?: ProxyModeSetting;
  /** Milliseconds; overrides the config's apiTimeout. */
  readonly apiTimeout?: number;
  readonly help: boolean;
}

export const USAGE = `Usage: clusterset-proxy [flags]
       clusterset-proxy explain NAMESPACE/NAME [flags]   (see explain --help)

Programs iptables so that ClusterIPs of Karmada multi-cluster Services reach
the right cluster's endpoints.

Flags:
  --kubeconfig FILE          kubeconfig to use (default: in-cluster config)
  --hostname-override NAME   name of this node (default: $NODE_NAME, else the hostname)
  --config FILE              YAML config, same schema as the ConfigMap key config.yaml
  --configmap NS/NAME        ConfigMap to watch for live config, key config.yaml; it wins
                             over --config (default: $POD_NAMESPACE/clusterset-proxy; "" disables)
  --once                     one full sync, then exit (non-zero on failure)
  --dry-run                  print the full iptables-restore payload and change nothing
  --cleanup                  remove every chain, rule and jump the agent owns (and, last,
                             the MCS-FRONTENDS and MCS-FRONTENDS6 ipsets its iptables-mode
                             jumps match), then exit
  --log-level LEVEL          ${LOG_LEVELS.join('|')} (overrides the config)
  --iptables-backend MODE    auto|nft|legacy (overrides the config)
  --proxy-mode MODE          auto|iptables|nftables|ipvs (overrides the config's mode;
                             default iptables)
  --api-timeout DURATION     how long --once, --dry-run (and a ConfigMap read by
                             --cleanup) wait for the API server before failing
                             (overrides the config's apiTimeout, default 30s)
  -h, --help                 this text
`;

export class UsageError extends Error {}

export function parseFlags(argv: readonly string[]): Flags {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        kubeconfig: { type: 'string' },
        'hostname-override': { type: 'string' },
        config: { type: 'string' },
        configmap: { type: 'string' },
        once: { type: 'boolean', default: false },
        'dry-run': { type: 'boolean', default: false },
        cleanup: { type: 'boolean', default: false },
        'log-level': { type: 'string' },
        'iptables-backend': { type: 'string' },
        'proxy-mode': { type: 'string' },
        'api-timeout': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const logLevel = values['log-level'];
  if (logLevel !== undefined && !LOG_LEVELS.includes(logLevel as LogLevel)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);
  }
  const backend = values['iptables-backend'];
  if (backend !== undefined && !['auto', 'nft', 'legacy'].includes(backend)) {
    throw new UsageError(`--iptables-backend must be auto, nft or legacy (got "${backend}")`);
  }
  const proxyMode = values['proxy-mode'];
  if (proxyMode !== undefined && !(PROXY_MODES as readonly string[]).includes(proxyMode)) {
    throw new UsageError(`--proxy-mode must be one of ${PROXY_MODES.join(', ')} (got "${proxyMode}")`);
  }
  const configMap = values.configmap;
  if (configMap !== undefined && configMap !== '' && !CONFIGMAP_REF.test(configMap)) {
    throw new UsageError(`--configmap must be NAMESPACE/NAME (got "${configMap}")`);
  }
  const modes = [values.once, values['dry-run'], values.cleanup].filter(Boolean).length;
  if (modes > 1) throw new UsageError('--once, --dry-run and --cleanup exclude each other');
  return {
    kubeconfig: values.kubeconfig,
    hostnameOverride: values['hostname-override'],
    config: values.config,
    configMap,
    once: values.once!,
    dryRun: values['dry-run']!,
    cleanup: values.cleanup!,
    logLevel: logLevel as LogLevel | undefined,
    iptablesBackend: backend as BackendSetting | undefined,
    proxyMode: proxyMode as ProxyModeSetting | undefined,
    apiTimeout: apiTimeoutFlag(values['api-timeout']),
    help: values.help!,
  };
}

/** --api-timeout, validated as the config key is. */
function apiTimeoutFlag(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  try {
    return FIELDS.apiTimeout.parse(text, 'apiTimeout');
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`--api-timeout ${err.message.replace(/^config key "apiTimeout": /, '')}`);
    throw err;
  }
}

const CONFIGMAP_REF = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

export interface ExplainFlags {
  /** `namespace/name` of either Service of the group. */
  readonly service: string;
  /** Offline: read the API with this kubeconfig instead of asking the agent. */
  readonly kubeconfig?: string;
  readonly config?: string;
  readonly configMap?: string;
  /** The running agent's metrics address. */
  readonly agent: string;
  /** Offline: milliseconds to wait for the API server; overrides the config's apiTimeout. */
  readonly apiTimeout?: number;
  readonly json: boolean;
  readonly help: boolean;
}

export const DEFAULT_AGENT_URL = 'http://127.0.0.1:10265';

export const EXPLAIN_USAGE = `Usage: clusterset-proxy explain NAMESPACE/NAME [flags]

Where does the traffic of a Service go, and why: its service group, ClusterIPs
and ports, each cluster's endpoints, health and weight, the policy and its
decision, the chains and the rules in the kernel. NAME may be either Service of
the group (derived-<name> or <name>).

Asks the agent running on this node, unless --kubeconfig is given: then it
reads the API itself (offline) and this node's iptables where it can.

Flags:
  --agent URL          the agent's metrics address (default: ${DEFAULT_AGENT_URL})
  --kubeconfig FILE    offline: read Services and EndpointSlices with this kubeconfig
  --config FILE        offline: the agent's config file
  --configmap NS/NAME  offline: read the config from this ConfigMap (wins over --config)
  --api-timeout DURATION
                       offline: how long to wait for the API server
                       (default: the config's apiTimeout, 30s)
  --json               print the explanation as JSON
  -h, --help           this text
`;

export function parseExplainFlags(argv: readonly string[]): ExplainFlags {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: true,
      options: {
        agent: { type: 'string' },
        kubeconfig: { type: 'string' },
        config: { type: 'string' },
        configmap: { type: 'string' },
        'api-timeout': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { service: '', agent: DEFAULT_AGENT_URL, json: false, help: true };
  if (positionals.length !== 1) throw new UsageError('explain takes one NAMESPACE/NAME');
  if (values.configmap !== undefined && !CONFIGMAP_REF.test(values.configmap)) {
    throw new UsageError(`--configmap must be NAMESPACE/NAME (got "${values.configmap}")`);
  }
  if (values.agent !== undefined && values.kubeconfig !== undefined) throw new UsageError('--agent and --kubeconfig exclude each other');
  if (values['api-timeout'] !== undefined && values.kubeconfig === undefined) throw new UsageError('--api-timeout needs --kubeconfig (it bounds the offline API reads)');
  return {
    service: positionals[0]!,
    kubeconfig: values.kubeconfig,
    config: values.config,
    configMap: values.configmap,
    agent: values.agent ?? DEFAULT_AGENT_URL,
    apiTimeout: apiTimeoutFlag(values['api-timeout']),
    json: values.json!,
    help: false,
  };
}
