import { parseArgs } from 'node:util';
import { LOG_LEVELS, type LogLevel } from '../log.js';
import type { BackendSetting } from '../config/schema.js';

export interface Flags {
  readonly kubeconfig?: string;
  readonly hostnameOverride?: string;
  readonly config?: string;
  readonly once: boolean;
  readonly dryRun: boolean;
  readonly cleanup: boolean;
  readonly logLevel?: LogLevel;
  readonly iptablesBackend?: BackendSetting;
  readonly help: boolean;
}

export const USAGE = `Usage: clusterset-proxy [flags]

Programs iptables so that ClusterIPs of Karmada multi-cluster Services reach
the right cluster's endpoints.

Flags:
  --kubeconfig FILE          kubeconfig to use (default: in-cluster config)
  --hostname-override NAME   name of this node (default: $NODE_NAME, else the hostname)
  --config FILE              YAML config, same schema as the ConfigMap key config.yaml
  --once                     one full sync, then exit (non-zero on failure)
  --dry-run                  print the full iptables-restore payload and change nothing
  --cleanup                  remove every chain, rule and jump the agent owns, then exit
  --log-level LEVEL          ${LOG_LEVELS.join('|')} (overrides the config)
  --iptables-backend MODE    auto|nft|legacy (overrides the config)
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
        once: { type: 'boolean', default: false },
        'dry-run': { type: 'boolean', default: false },
        cleanup: { type: 'boolean', default: false },
        'log-level': { type: 'string' },
        'iptables-backend': { type: 'string' },
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
  const modes = [values.once, values['dry-run'], values.cleanup].filter(Boolean).length;
  if (modes > 1) throw new UsageError('--once, --dry-run and --cleanup exclude each other');
  return {
    kubeconfig: values.kubeconfig,
    hostnameOverride: values['hostname-override'],
    config: values.config,
    once: values.once!,
    dryRun: values['dry-run']!,
    cleanup: values.cleanup!,
    logLevel: logLevel as LogLevel | undefined,
    iptablesBackend: backend as BackendSetting | undefined,
    help: values.help!,
  };
}
