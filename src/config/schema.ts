import { parseDuration, formatDuration } from './duration.js';
import { LOG_LEVELS, type LogLevel } from '../log.js';
import { parseIPv4Cidr } from '../model/ipv4.js';

export interface ClusterConfig {
  readonly name: string;
}

export type BackendSetting = 'auto' | 'nft' | 'legacy';

export interface Config {
  readonly clusterName: string;
  readonly clusters: readonly ClusterConfig[];
  readonly servicePrefix: string;
  /** Milliseconds. */
  readonly minSyncInterval: number;
  /** Milliseconds. */
  readonly syncPeriod: number;
  readonly masqueradeBit: number;
  /** IPv4 CIDR of the pods of this cluster, or '' when unknown. */
  readonly clusterCIDR: string;
  readonly iptablesBackend: BackendSetting;
  /** Seconds iptables waits for the xtables lock. */
  readonly iptablesLockWait: number;
  /** Upper bound of chains declared in one restore (nft's cost grows super-linearly with it). */
  readonly maxChainsPerRestore: number;
  readonly logLevel: LogLevel;
}

export class ConfigError extends Error {
  constructor(readonly key: string, readonly value: unknown, reason: string) {
    super(`config key "${key}": ${reason} (got ${JSON.stringify(value)})`);
    this.name = 'ConfigError';
  }
}

/** A cluster name is a DNS label (dots allowed): it ends up in rule comments and slice names. */
const CLUSTER_NAME = /^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/;

interface Field<K extends keyof Config> {
  readonly key: K;
  readonly default: Config[K];
  /** Default as written in the config file, for the reference table. */
  readonly shownDefault: string;
  readonly doc: string;
  readonly parse: (value: unknown, key: string) => Config[K];
}

type Fields = { [K in keyof Config]: Field<K> };

function str(value: unknown, key: string): string {
  if (typeof value !== 'string') throw new ConfigError(key, value, 'must be a string');
  return value;
}

function duration(min: number) {
  return (value: unknown, key: string): number => {
    const ms = parseDuration(str(value, key));
    if (ms === null) throw new ConfigError(key, value, 'must be a duration such as 100ms, 30s or 1m');
    if (ms < min) throw new ConfigError(key, value, `must be at least ${formatDuration(min)}`);
    return ms;
  };
}

function integer(min: number, max: number) {
  return (value: unknown, key: string): number => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new ConfigError(key, value, `must be an integer from ${min} to ${max}`);
    }
    return value;
  };
}

function oneOf<T extends string>(choices: readonly T[]) {
  return (value: unknown, key: string): T => {
    if (!choices.includes(value as T)) throw new ConfigError(key, value, `must be one of ${choices.join(', ')}`);
    return value as T;
  };
}

function clusterName(value: unknown, key: string): string {
  const name = str(value, key);
  if (!CLUSTER_NAME.test(name)) throw new ConfigError(key, value, 'must be a lowercase DNS name');
  return name;
}

function clusterList(value: unknown, key: string): ClusterConfig[] {
  if (!Array.isArray(value)) throw new ConfigError(key, value, 'must be a list of objects with a name');
  const seen = new Set<string>();
  return value.map((entry, i) => {
    const at = `${key}[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw new ConfigError(at, entry, 'must be an object with a name');
    }
    for (const k of Object.keys(entry)) {
      if (k !== 'name') throw new ConfigError(`${at}.${k}`, (entry as Record<string, unknown>)[k], 'is not a known key');
    }
    const name = clusterName((entry as { name?: unknown }).name, `${at}.name`);
    if (seen.has(name)) throw new ConfigError(`${at}.name`, name, 'is listed twice');
    seen.add(name);
    return { name };
  });
}

function cidr(value: unknown, key: string): string {
  const text = str(value, key);
  if (text !== '' && parseIPv4Cidr(text) === null) throw new ConfigError(key, value, 'must be an IPv4 CIDR such as 10.244.0.0/16');
  return text;
}

/** The schema: one entry per key, in the order the reference table lists them. */
export const FIELDS: Fields = {
  clusterName: {
    key: 'clusterName', default: '', shownDefault: '""', parse: (v, k) => (v === '' ? '' : clusterName(v, k)),
    doc: 'Name of the cluster this node belongs to; its own endpoints are labelled with it.',
  },
  clusters: {
    key: 'clusters', default: [], shownDefault: '[]', parse: clusterList,
    doc: 'Clusters of the clusterset, each `{name}`. Imported EndpointSlice names (`imported-<cluster>-<slice>`) are matched against these names, longest first.',
  },
  servicePrefix: {
    key: 'servicePrefix', default: 'derived-', shownDefault: 'derived-',
    parse: (v, k) => { const s = str(v, k); if (s === '') throw new ConfigError(k, v, 'must not be empty'); return s; },
    doc: 'Name prefix of the Services Karmada derives from a ServiceImport.',
  },
  minSyncInterval: {
    key: 'minSyncInterval', default: 100, shownDefault: '100ms', parse: duration(0),
    doc: 'Least time between two syncs: changes arriving within it are applied together in one restore.',
  },
  syncPeriod: {
    key: 'syncPeriod', default: 60_000, shownDefault: '1m', parse: duration(1000),
    doc: 'Interval of the full sync that reads the kernel state back and repairs drift.',
  },
  masqueradeBit: {
    key: 'masqueradeBit', default: 12, shownDefault: '12', parse: integer(0, 31),
    doc: 'Bit of the packet mark that flags traffic for masquerade (kube-proxy uses 14; keep them apart).',
  },
  clusterCIDR: {
    key: 'clusterCIDR', default: '', shownDefault: '""', parse: cidr,
    doc: 'IPv4 pod CIDR of this cluster. Traffic to a service from outside it is masqueraded; empty disables that rule.',
  },
  iptablesBackend: {
    key: 'iptablesBackend', default: 'auto', shownDefault: 'auto', parse: oneOf(['auto', 'nft', 'legacy'] as const),
    doc: '`auto` uses the backend holding kube-proxy\'s rules; `nft` or `legacy` force one. Needs a restart to change.',
  },
  iptablesLockWait: {
    key: 'iptablesLockWait', default: 5, shownDefault: '5', parse: integer(1, 600),
    doc: 'Seconds iptables waits for the xtables lock held by another writer.',
  },
  maxChainsPerRestore: {
    key: 'maxChainsPerRestore', default: 1000, shownDefault: '1000', parse: integer(10, 1_000_000),
    doc: 'Largest number of chains one restore declares; a larger change (a cold start) is split into several restores.',
  },
  logLevel: {
    key: 'logLevel', default: 'info', shownDefault: 'info', parse: oneOf(LOG_LEVELS),
    doc: 'pino log level.',
  },
};

export const DEFAULT_CONFIG: Config = Object.fromEntries(
  Object.values(FIELDS).map((f) => [f.key, f.default]),
) as unknown as Config;

/** Validates a parsed YAML document; unknown keys are errors so that typos surface. */
export function validateConfig(doc: unknown): Config {
  if (doc === null || doc === undefined) return DEFAULT_CONFIG;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError('(root)', doc, 'must be a mapping of keys');
  const out: Record<string, unknown> = { ...DEFAULT_CONFIG };
  for (const [key, value] of Object.entries(doc)) {
    const field = (FIELDS as Record<string, Field<keyof Config>>)[key];
    if (!field) throw new ConfigError(key, value, 'is not a known key');
    out[key] = field.parse(value, key);
  }
  return out as unknown as Config;
}

/** The configuration reference as a Markdown table, generated from FIELDS. */
export function configReferenceTable(): string {
  const rows = Object.values(FIELDS).map((f) => `| \`${f.key}\` | \`${f.shownDefault}\` | ${f.doc} |`);
  return ['| key | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}
