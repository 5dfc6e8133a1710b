import { parseDuration, formatDuration, MAX_TIMER_MS } from './duration.js';
import { LOG_LEVELS, type LogLevel } from '../log.js';
import { isClusterName } from '../model/api-values.js';
import { cidrProblem, mustParseCidr, parseAddress, type IPFamily } from '../network/address.js';
import { parseMode, PolicySyntaxError, POLICY_MODES, type PolicyConfig, type PolicyEntry } from '../policy/policy.js';
import type { ProbeSettings } from '../health/prober.js';

export interface ClusterConfig {
  readonly name: string;
  /** Networks of the cluster, IPv4 and IPv6 alike; absent means none configured. */
  readonly podCIDRs?: readonly string[];
  readonly serviceCIDRs?: readonly string[];
  /** Only read for the local cluster (the entry named clusterName): overlap checks. */
  readonly nodeCIDRs?: readonly string[];
}

export type RouteMode = 'direct' | 'vxlan';

/** Cross-cluster routes: which node holds the tunnel and how other nodes reach it. */
export interface GatewayConfig {
  /** Labels a Node must carry (all of them) to be a gateway candidate. */
  readonly nodeSelector: Readonly<Record<string, string>>;
  /** Pins this candidate as the active gateway while it is Ready; '' = none. */
  readonly node: string;
  readonly mode: RouteMode;
  readonly vxlan: { readonly vni: number; readonly port: number; readonly mtu: number };
  readonly routeTable: number;
  readonly rulePriority: number;
}

export type BackendSetting = 'auto' | 'nft' | 'legacy';

/** Which data plane programs the kernel: config key `mode`, flag `--proxy-mode`. */
export const PROXY_MODES = ['auto', 'iptables', 'nftables', 'ipvs'] as const;
export type ProxyModeSetting = (typeof PROXY_MODES)[number];

export interface Config {
  readonly clusterName: string;
  readonly clusters: readonly ClusterConfig[];
  readonly servicePrefix: string;
  /** Milliseconds. */
  readonly minSyncInterval: number;
  /** Milliseconds. */
  readonly syncPeriod: number;
  readonly masqueradeBit: number;
  /** Pod CIDRs of this cluster (config key `clusterCIDR`: one CIDR or a list), at most one per family, canonical text. */
  readonly clusterCIDRs: readonly string[];
  /**
   * The IPv4 entry of clusterCIDRs, or '' when it has none: what the IPv4
   * rule set masquerades by. Derived; not a key of the file.
   */
  readonly clusterCIDR: string;
  /** Data plane: iptables unless set; `auto` follows kube-proxy. */
  readonly mode: ProxyModeSetting;
  readonly iptablesBackend: BackendSetting;
  /** Seconds iptables waits for the xtables lock. */
  readonly iptablesLockWait: number;
  /** Upper bound of chains declared in one restore (nft's cost grows super-linearly with it). */
  readonly maxChainsPerRestore: number;
  /** Watch the shared tables for changes by others and repair them between full syncs. */
  readonly driftWatch: boolean;
  readonly logLevel: LogLevel;
  /** host:port of /metrics (and /explain); '' disables it. */
  readonly metricsBindAddress: string;
  /** host:port of /healthz and /readyz; '' disables it. */
  readonly healthzBindAddress: string;
  /** Milliseconds a queued change may wait unapplied before /healthz fails. */
  readonly healthzTimeout: number;
  /** Milliseconds a one-shot run (--once, --dry-run, offline explain) waits for the API server. */
  readonly apiTimeout: number;
  /** Traffic policy: the default and per-service entries (`namespace/name` of the logical service). */
  readonly trafficPolicy: PolicyConfig;
  readonly healthProbe: ProbeSettings;
  readonly gateway: GatewayConfig;
}

export class ConfigError extends Error {
  constructor(readonly key: string, readonly value: unknown, reason: string) {
    super(`config key "${key}": ${reason} (got ${JSON.stringify(value)})`);
    this.name = 'ConfigError';
  }
}


/** Config properties derived from others: not keys of the file. */
type Derived = 'clusterCIDR';
type FileProperty = Exclude<keyof Config, Derived>;

interface Field<K extends FileProperty> {
  /** The key as written in the file (the property's name, except for clusterCIDRs). */
  readonly key: string;
  readonly default: Config[K];
  /** Default as written in the config file, for the reference table. */
  readonly shownDefault: string;
  readonly doc: string;
  readonly parse: (value: unknown, key: string) => Config[K];
  /** Set when a change only takes effect at the next start; every other key is applied live. */
  readonly restart?: true;
}

type Fields = { [K in FileProperty]: Field<K> };

function str(value: unknown, key: string): string {
  if (typeof value !== 'string') throw new ConfigError(key, value, 'must be a string');
  return value;
}

/**
 * Every duration key (nested ones by their path) with its bounds, in
 * milliseconds. The upper bound keeps each one far below what a timer can
 * hold (MAX_TIMER_MS): Node turns a longer delay into 1 ms.
 */
export const DURATION_BOUNDS = {
  minSyncInterval: { min: 0, max: 60_000 },
  syncPeriod: { min: 1000, max: 86_400_000 },
  healthzTimeout: { min: 1000, max: 86_400_000 },
  apiTimeout: { min: 1000, max: 3_600_000 },
  'healthProbe.interval': { min: 100, max: 3_600_000 },
  'healthProbe.timeout': { min: 10, max: 60_000 },
} as const satisfies Record<string, { min: number; max: number }>;

type DurationKey = keyof typeof DURATION_BOUNDS;

function duration(path: DurationKey) {
  const { min, max } = DURATION_BOUNDS[path];
  if (max > MAX_TIMER_MS) throw new Error(`duration bound of ${path} exceeds what a timer holds`);
  return (value: unknown, key: string): number => {
    const ms = parseDuration(str(value, key));
    if (ms === null) throw new ConfigError(key, value, 'must be a duration such as 100ms, 30s or 1m');
    if (ms < min || ms > max) throw new ConfigError(key, value, `must be from ${formatDuration(min)} to ${formatDuration(max)}`);
    return ms;
  };
}

/** The bounds as the reference states them. */
function range(path: DurationKey): string {
  return `${formatDuration(DURATION_BOUNDS[path].min)} to ${formatDuration(DURATION_BOUNDS[path].max)}`;
}

function integer(min: number, max: number) {
  return (value: unknown, key: string): number => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new ConfigError(key, value, `must be an integer from ${min} to ${max}`);
    }
    return value;
  };
}

/** kube-proxy's --iptables-masquerade-bit default. */
const KUBE_PROXY_MASQUERADE_BIT = 14;

function masqueradeBit(value: unknown, key: string): number {
  const bit = integer(0, 31)(value, key);
  if (bit === KUBE_PROXY_MASQUERADE_BIT) {
    throw new ConfigError(key, value, `must not be kube-proxy's masquerade bit ${KUBE_PROXY_MASQUERADE_BIT}: kube-proxy's KUBE-POSTROUTING masquerades packets carrying it and clears it, so each agent would act on the other's marks`);
  }
  return bit;
}

function oneOf<T extends string>(choices: readonly T[]) {
  return (value: unknown, key: string): T => {
    if (!choices.includes(value as T)) throw new ConfigError(key, value, `must be one of ${choices.join(', ')}`);
    return value as T;
  };
}

function clusterName(value: unknown, key: string): string {
  const name = str(value, key);
  // A DNS label (dots allowed), the rule every cluster name from the API is held to: it ends up in rule comments and slice names.
  if (!isClusterName(name)) throw new ConfigError(key, value, 'must be a lowercase DNS name');
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
    const fields = entry as Record<string, unknown>;
    for (const k of Object.keys(entry)) {
      if (!['name', ...CLUSTER_CIDR_KEYS].includes(k)) throw new ConfigError(`${at}.${k}`, fields[k], 'is not a known key');
    }
    const name = clusterName(fields.name, `${at}.name`);
    if (seen.has(name)) throw new ConfigError(`${at}.name`, name, 'is listed twice');
    seen.add(name);
    const cidrs = CLUSTER_CIDR_KEYS.filter((k) => fields[k] !== undefined).map((k) => [k, cidrList(fields[k], `${at}.${k}`)]);
    return { name, ...Object.fromEntries(cidrs) };
  });
}

/** `host:port` with an IPv4 host (or `[IPv6]`), or '' to disable the listener. */
function bindAddress(value: unknown, key: string): string {
  const text = str(value, key);
  if (text === '') return text;
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535 || (!m[1]!.startsWith('[') && parseAddress(m[1]!)?.family !== 'IPv4')) {
    throw new ConfigError(key, value, 'must be host:port such as 127.0.0.1:10265, or "" to disable');
  }
  return text;
}

const CLUSTER_CIDR_KEYS = ['podCIDRs', 'serviceCIDRs', 'nodeCIDRs'] as const;

const CIDR_EXAMPLE = 'such as 10.244.0.0/16 or fd00:10:244::/56';

function cidrList(value: unknown, key: string): string[] {
  if (!Array.isArray(value)) throw new ConfigError(key, value, `must be a list of IPv4 or IPv6 CIDRs ${CIDR_EXAMPLE}`);
  return value.map((v, i) => cidr(v, `${key}[${i}]`));
}

/** One CIDR of either family, in canonical text (IPv6 as RFC 5952 writes it). */
function cidr(value: unknown, key: string): string {
  const text = str(value, key);
  const problem = cidrProblem(text);
  if (problem !== null) throw new ConfigError(key, value, `must be an IPv4 or IPv6 CIDR ${CIDR_EXAMPLE}: ${problem}`);
  return mustParseCidr(text).text;
}

/**
 * `clusterCIDR`: one CIDR (the original form, "" for none) or a list with at
 * most one CIDR per family (dual-stack: one IPv4 and one IPv6).
 */
function clusterCIDRs(value: unknown, key: string): string[] {
  if (value === '' || value === null) return [];
  const list = Array.isArray(value) ? cidrList(value, key) : [cidr(value, key)];
  const seen = new Map<IPFamily, string>();
  list.forEach((c, i) => {
    const family = mustParseCidr(c).family;
    const other = seen.get(family);
    if (other !== undefined) throw new ConfigError(`${key}[${i}]`, c, `is a second ${family} CIDR (${other} is the first): give at most one per family`);
    seen.set(family, c);
  });
  return list;
}

/** The IPv4 entry of a clusterCIDR list, '' when it has none. */
export function ipv4ClusterCIDR(cidrs: readonly string[]): string {
  return cidrs.find((c) => mustParseCidr(c).family === 'IPv4') ?? '';
}

function mapping(value: unknown, key: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(key, value, 'must be a mapping');
  return value as Record<string, unknown>;
}

function only(obj: Record<string, unknown>, key: string, allowed: readonly string[]): void {
  for (const k of Object.keys(obj)) if (!allowed.includes(k)) throw new ConfigError(`${key}.${k}`, obj[k], 'is not a known key');
}

function weights(value: unknown, key: string): Record<string, number> {
  const obj = mapping(value, key);
  for (const [cluster, w] of Object.entries(obj)) {
    clusterName(cluster, `${key} (cluster name)`);
    integer(0, 1_000_000)(w, `${key}.${cluster}`);
  }
  return obj as Record<string, number>;
}

function order(value: unknown, key: string): string[] {
  if (!Array.isArray(value)) throw new ConfigError(key, value, 'must be a list of cluster names');
  const names = value.map((v, i) => clusterName(v, `${key}[${i}]`));
  if (new Set(names).size !== names.length) throw new ConfigError(key, value, 'lists a cluster twice');
  return names;
}

function bool(value: unknown, key: string): boolean {
  if (typeof value !== 'boolean') throw new ConfigError(key, value, 'must be true or false');
  return value;
}

function policyMode(value: unknown, key: string) {
  try {
    return parseMode(str(value, key));
  } catch (err) {
    if (err instanceof PolicySyntaxError) throw new ConfigError(key, value, err.message);
    throw err;
  }
}

const POLICY_DEFAULTS: PolicyConfig = {
  defaults: { mode: 'local-first', clusterWeights: {}, failoverOrder: [], unifiedName: true },
  services: {},
};

const ENTRY_KEYS = ['policy', 'clusterWeights', 'failoverOrder', 'unifiedName'] as const;

function policyEntry(value: unknown, key: string): PolicyEntry {
  const obj = mapping(value, key);
  only(obj, key, ENTRY_KEYS);
  return {
    ...(obj.policy !== undefined ? { mode: policyMode(obj.policy, `${key}.policy`) } : {}),
    ...(obj.clusterWeights !== undefined ? { clusterWeights: weights(obj.clusterWeights, `${key}.clusterWeights`) } : {}),
    ...(obj.failoverOrder !== undefined ? { failoverOrder: order(obj.failoverOrder, `${key}.failoverOrder`) } : {}),
    ...(obj.unifiedName !== undefined ? { unifiedName: bool(obj.unifiedName, `${key}.unifiedName`) } : {}),
  };
}

function trafficPolicy(value: unknown, key: string): PolicyConfig {
  const obj = mapping(value, key);
  only(obj, key, ['default', ...ENTRY_KEYS.slice(1), 'services']);
  const base = POLICY_DEFAULTS.defaults;
  const services: Record<string, PolicyEntry> = {};
  for (const [name, entry] of Object.entries(obj.services === undefined ? {} : mapping(obj.services, `${key}.services`))) {
    if (!/^[a-z0-9-]+\/[a-z0-9-]+$/.test(name)) throw new ConfigError(`${key}.services`, name, 'entries are keyed namespace/name');
    services[name] = policyEntry(entry, `${key}.services["${name}"]`);
  }
  return {
    defaults: {
      mode: obj.default === undefined ? base.mode : policyMode(obj.default, `${key}.default`),
      clusterWeights: obj.clusterWeights === undefined ? base.clusterWeights : weights(obj.clusterWeights, `${key}.clusterWeights`),
      failoverOrder: obj.failoverOrder === undefined ? base.failoverOrder : order(obj.failoverOrder, `${key}.failoverOrder`),
      unifiedName: obj.unifiedName === undefined ? base.unifiedName : bool(obj.unifiedName, `${key}.unifiedName`),
    },
    services,
  };
}

const PROBE_DEFAULTS: ProbeSettings = {
  interval: 2000, timeout: 1000, unhealthyThreshold: 3, healthyThreshold: 2, endpointsPerCluster: 3, concurrency: 16, probeLocal: false,
};

function healthProbe(value: unknown, key: string): ProbeSettings {
  const obj = mapping(value, key);
  only(obj, key, Object.keys(PROBE_DEFAULTS));
  const pick = <K extends keyof ProbeSettings>(k: K, parse: (v: unknown, at: string) => ProbeSettings[K]): ProbeSettings[K] =>
    obj[k] === undefined ? PROBE_DEFAULTS[k] : parse(obj[k], `${key}.${k}`);
  const probe: ProbeSettings = {
    interval: pick('interval', duration('healthProbe.interval')),
    timeout: pick('timeout', duration('healthProbe.timeout')),
    unhealthyThreshold: pick('unhealthyThreshold', integer(1, 100)),
    healthyThreshold: pick('healthyThreshold', integer(1, 100)),
    endpointsPerCluster: pick('endpointsPerCluster', integer(1, 100)),
    concurrency: pick('concurrency', integer(1, 1000)),
    probeLocal: pick('probeLocal', bool),
  };
  if (probe.timeout >= probe.interval) throw new ConfigError(`${key}.timeout`, obj.timeout, 'must be shorter than the interval');
  return probe;
}

export const GATEWAY_DEFAULTS: GatewayConfig = {
  nodeSelector: { 'submariner.io/gateway': 'true' },
  node: '',
  mode: 'vxlan',
  // Apart from Submariner's vx-submariner (VNI 100, port 4800), flannel and Cilium (VNI 1, 8472) and Calico (VNI 4096, 4789).
  vxlan: { vni: 4097, port: 4801, mtu: 1450 },
  // 0x4d43, "MC": below main (32766), apart from Submariner's tables and rules (100, 149-150).
  routeTable: 19779,
  rulePriority: 19779,
};

function labelMap(value: unknown, key: string): Record<string, string> {
  const obj = mapping(value, key);
  if (Object.keys(obj).length === 0) throw new ConfigError(key, value, 'must name at least one label');
  for (const [label, v] of Object.entries(obj)) {
    if (!/^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(label)) throw new ConfigError(`${key} (label)`, label, 'must be a label key');
    if (!/^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/.test(str(v, `${key}.${label}`))) throw new ConfigError(`${key}.${label}`, v, 'must be a label value');
  }
  return obj as Record<string, string>;
}

function gateway(value: unknown, key: string): GatewayConfig {
  const obj = mapping(value, key);
  only(obj, key, Object.keys(GATEWAY_DEFAULTS));
  const d = GATEWAY_DEFAULTS;
  const vx = obj.vxlan === undefined ? {} : mapping(obj.vxlan, `${key}.vxlan`);
  only(vx, `${key}.vxlan`, Object.keys(d.vxlan));
  const pick = <T>(v: unknown, fallback: T, parse: (v: unknown, at: string) => T, at: string): T => (v === undefined ? fallback : parse(v, at));
  const table = pick(obj.routeTable, d.routeTable, integer(1, 0xfffffffe), `${key}.routeTable`);
  // 253-255 are the kernel's default, main and local tables.
  if (table >= 253 && table <= 255) throw new ConfigError(`${key}.routeTable`, table, 'must not be a table of the kernel (253 default, 254 main, 255 local)');
  return {
    nodeSelector: pick(obj.nodeSelector, d.nodeSelector, labelMap, `${key}.nodeSelector`),
    node: pick(obj.node, d.node, str, `${key}.node`),
    mode: pick(obj.mode, d.mode, oneOf(['direct', 'vxlan'] as const), `${key}.mode`),
    vxlan: {
      vni: pick(vx.vni, d.vxlan.vni, integer(1, 0xffffff), `${key}.vxlan.vni`),
      port: pick(vx.port, d.vxlan.port, integer(1, 65535), `${key}.vxlan.port`),
      mtu: pick(vx.mtu, d.vxlan.mtu, integer(576, 65485), `${key}.vxlan.mtu`),
    },
    routeTable: table,
    // Below main's 32766 so the agent's table is consulted first.
    rulePriority: pick(obj.rulePriority, d.rulePriority, integer(1, 32765), `${key}.rulePriority`),
  };
}

/** The schema: one entry per key, in the order the reference table lists them. */
export const FIELDS: Fields = {
  clusterName: {
    key: 'clusterName', default: '', shownDefault: '""', parse: (v, k) => (v === '' ? '' : clusterName(v, k)),
    doc: 'Name of the cluster this node belongs to; its own endpoints are labelled with it.',
  },
  clusters: {
    key: 'clusters', default: [], shownDefault: '[]', parse: clusterList,
    doc: 'Clusters of the clusterset, each `{name, podCIDRs, serviceCIDRs, nodeCIDRs}` (CIDR lists optional; `nodeCIDRs` is read for the local cluster). Imported EndpointSlice names (`imported-<cluster>-<slice>`) are matched against these names, longest first.',
  },
  servicePrefix: {
    key: 'servicePrefix', default: 'derived-', shownDefault: 'derived-',
    parse: (v, k) => { const s = str(v, k); if (s === '') throw new ConfigError(k, v, 'must not be empty'); return s; },
    doc: 'Name prefix of the Services Karmada derives from a ServiceImport.',
  },
  minSyncInterval: {
    key: 'minSyncInterval', default: 100, shownDefault: '100ms', parse: duration('minSyncInterval'),
    doc: `Least time between two syncs: changes arriving within it are applied together in one restore. Range: ${range('minSyncInterval')}.`,
  },
  syncPeriod: {
    key: 'syncPeriod', default: 60_000, shownDefault: '1m', parse: duration('syncPeriod'),
    doc: `Interval of the full sync that reads the kernel state back and repairs drift. Range: ${range('syncPeriod')}.`,
  },
  masqueradeBit: {
    key: 'masqueradeBit', default: 12, shownDefault: '12', parse: masqueradeBit,
    doc: `Bit of the packet mark that flags traffic for masquerade, 0 to 31 except ${KUBE_PROXY_MASQUERADE_BIT} (kube-proxy's: sharing it would mix the two agents' masquerade marks).`,
  },
  clusterCIDRs: {
    key: 'clusterCIDR', default: [], shownDefault: '""', parse: clusterCIDRs,
    doc: 'Pod CIDR of this cluster: one CIDR (`10.244.0.0/16`, `""` for none) or a list with at most one per family (dual-stack: `[10.244.0.0/16, fd00:10:244::/56]`). Traffic to a service from outside it is masqueraded (the rules of each family use the entry of that family; a family without one has no such rule). Also counts as a local pod range in the overlap checks.',
  },
  mode: {
    key: 'mode', default: 'iptables', shownDefault: 'iptables', parse: oneOf(PROXY_MODES), restart: true,
    doc: 'Data plane. `iptables` (the default): chains and rules beside kube-proxy\'s. `nftables`: the agent\'s own `table ip clusterset-proxy`, ahead of kube-proxy in both its modes (see "nftables mode"). `auto`: nftables when kube-proxy\'s `table ip kube-proxy` exists, else iptables; the choice and why are logged; auto never picks ipvs. `ipvs`: the kernel\'s IPVS table through fwmark services (see "IPVS mode"); refused at start when kube-proxy\'s `table ip kube-proxy` exists or the kernel has no IPVS.',
  },
  iptablesBackend: {
    key: 'iptablesBackend', default: 'auto', shownDefault: 'auto', parse: oneOf(['auto', 'nft', 'legacy'] as const), restart: true,
    doc: '`auto` uses the backend holding kube-proxy\'s rules; `nft` or `legacy` force one.',
  },
  iptablesLockWait: {
    key: 'iptablesLockWait', default: 5, shownDefault: '5', parse: integer(1, 600), restart: true,
    doc: 'Seconds iptables waits for the xtables lock held by another writer.',
  },
  maxChainsPerRestore: {
    key: 'maxChainsPerRestore', default: 1000, shownDefault: '1000', parse: integer(10, 1_000_000),
    doc: 'Largest number of chains one restore declares; a larger change (a cold start) is split into several restores.',
  },
  driftWatch: {
    key: 'driftWatch', default: true, shownDefault: 'true', parse: bool, restart: true,
    doc: 'Repair changes others make to our jumps and chains within `minSyncInterval` instead of at the next full sync: nft reads nf_tables\' change events in-process; legacy, which announces nothing, reads the tables holding our jumps in-process every second (getsockopt, no process). `false` leaves drift to the full sync.',
  },
  logLevel: {
    key: 'logLevel', default: 'info', shownDefault: 'info', parse: oneOf(LOG_LEVELS),
    doc: 'pino log level.',
  },
  metricsBindAddress: {
    key: 'metricsBindAddress', default: '127.0.0.1:10265', shownDefault: '127.0.0.1:10265', parse: bindAddress, restart: true,
    doc: 'Address of `/metrics` (Prometheus) and `/explain`; loopback by default. Apart from kube-proxy\'s 10249/10256 and the kubelet\'s 10248/10250. `""` disables it.',
  },
  healthzBindAddress: {
    key: 'healthzBindAddress', default: '0.0.0.0:10266', shownDefault: '0.0.0.0:10266', parse: bindAddress, restart: true,
    doc: 'Address of `/healthz` and `/readyz`, which the DaemonSet\'s probes use. `""` disables it.',
  },
  healthzTimeout: {
    key: 'healthzTimeout', default: 60_000, shownDefault: '1m', parse: duration('healthzTimeout'),
    doc: `\`/healthz\` fails when a queued change has waited this long unapplied, or when no sync has succeeded for \`syncPeriod\` plus this long. Range: ${range('healthzTimeout')}.`,
  },
  apiTimeout: {
    key: 'apiTimeout', default: 30_000, shownDefault: '30s', parse: duration('apiTimeout'),
    doc: `How long \`--once\`, \`--dry-run\` and offline \`explain\` wait for the API server (the ConfigMap and the first complete lists) before they fail, naming the server and the cause; \`--api-timeout\` overrides it. An error no retry can fix (TLS, protocol, 401/403) fails them at once. The running agent retries without limit. Range: ${range('apiTimeout')}.`,
  },
  trafficPolicy: {
    key: 'trafficPolicy', default: POLICY_DEFAULTS, shownDefault: '{default: local-first, unifiedName: true}', parse: trafficPolicy,
    doc: `Which clusters a service group uses: \`default\` (one of ${POLICY_MODES.join(', ')}), \`clusterWeights\` (active-active shares, e.g. \`{brazil: 3, chile01: 1}\`; unlisted clusters weigh 1), \`failoverOrder\` (list), \`unifiedName\` (program the local Service's ClusterIP too), and \`services\`: per \`namespace/name\` entries with \`policy\`, \`clusterWeights\`, \`failoverOrder\`, \`unifiedName\`. Service annotations override these.`,
  },
  healthProbe: {
    key: 'healthProbe', default: PROBE_DEFAULTS,
    shownDefault: '{interval: 2s, timeout: 1s, unhealthyThreshold: 3, healthyThreshold: 2, endpointsPerCluster: 3, concurrency: 16, probeLocal: false}',
    parse: healthProbe,
    doc: `TCP probes of remote clusters: every \`interval\` (${range('healthProbe.interval')}) a few endpoints per cluster (rotating) are dialled, each for at most \`timeout\` (${range('healthProbe.timeout')}, shorter than \`interval\`); \`unhealthyThreshold\` failed rounds in a row take the cluster out of every selection, \`healthyThreshold\` good rounds bring it back. \`probeLocal\` also probes each local endpoint.`,
  },
  gateway: {
    key: 'gateway', default: GATEWAY_DEFAULTS,
    shownDefault: '{nodeSelector: {submariner.io/gateway: "true"}, node: "", mode: vxlan, vxlan: {vni: 4097, port: 4801, mtu: 1450}, routeTable: 19779, rulePriority: 19779}',
    parse: gateway, restart: true,
    doc: 'Cross-cluster routes (see that section): the active gateway is a Ready Node carrying every `nodeSelector` label; `node` pins one. Other nodes route remote `podCIDRs`/`serviceCIDRs` to it in table `routeTable`, selected by rules at `rulePriority`, `direct`ly (gateway on a local subnet) or over the `vxlan` interface `mcs-vx0`.',
  },
};

/** Fills the derived properties from the file's. */
export function withDerived(config: Omit<Config, Derived>): Config {
  return { ...config, clusterCIDR: ipv4ClusterCIDR(config.clusterCIDRs) };
}

export const DEFAULT_CONFIG: Config = withDerived(Object.fromEntries(
  Object.entries(FIELDS).map(([property, f]) => [property, f.default]),
) as unknown as Omit<Config, Derived>);

/** File key → property and field. */
const BY_FILE_KEY = new Map<string, [FileProperty, Field<FileProperty>]>(
  Object.entries(FIELDS).map(([property, f]) => [f.key, [property as FileProperty, f as Field<FileProperty>]]),
);

/** The fields with the property each fills, in reference order. */
export function fieldEntries(): [FileProperty, Field<FileProperty>][] {
  return [...BY_FILE_KEY.values()];
}

/** Validates a parsed YAML document; unknown keys are errors so that typos surface. */
export function validateConfig(doc: unknown): Config {
  if (doc === null || doc === undefined) return DEFAULT_CONFIG;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError('(root)', doc, 'must be a mapping of keys');
  const out: Record<string, unknown> = { ...DEFAULT_CONFIG };
  for (const [key, value] of Object.entries(doc)) {
    const entry = BY_FILE_KEY.get(key);
    if (!entry) throw new ConfigError(key, value, 'is not a known key');
    out[entry[0]] = entry[1].parse(value, key);
  }
  const config = withDerived(out as unknown as Config);
  checkListeners(config.metricsBindAddress, config.healthzBindAddress);
  return config;
}

/**
 * The two listeners must not want the same port on overlapping addresses
 * (equal, or one a wildcard); the very same address makes one listener.
 */
function checkListeners(metrics: string, healthz: string): void {
  if (metrics === '' || healthz === '' || metrics === healthz) return;
  const split = (a: string) => /^(.*):(\d+)$/.exec(a)!.slice(1) as [string, string];
  const [mHost, mPort] = split(metrics);
  const [hHost, hPort] = split(healthz);
  const wildcard = (host: string) => host === '0.0.0.0' || /^\[(::|0*:)*0*\]$/.test(host);
  if (mPort === hPort && (mHost === hHost || wildcard(mHost) || wildcard(hHost))) {
    throw new ConfigError('healthzBindAddress', healthz, `port ${hPort} clashes with metricsBindAddress ${metrics}: use another port, or the same address for both (one listener serves all paths)`);
  }
}

/** The configuration reference as a Markdown table, generated from FIELDS. */
export function configReferenceTable(): string {
  const rows = Object.values(FIELDS).map((f) => `| \`${f.key}\` | \`${f.shownDefault}\` | ${f.doc}${f.restart ? ' Needs a restart to change.' : ''} |`);
  return ['| key | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}
