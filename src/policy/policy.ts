// Traffic policies: which clusters' endpoints a service group uses. Resolved
// from the config default, the config's per-service entry, then the Services'
// annotations (the local Service's win over derived-<name>'s, which Karmada
// may overwrite). A malformed annotation is reported and ignored.

import { isClusterName, shown } from '../model/api-values.js';

export const POLICY_MODES = ['local-first', 'active-active', 'failover', 'off'] as const;
export type PolicyMode = (typeof POLICY_MODES)[number];

export const ANNOTATION_POLICY = 'clusterset-proxy.io/traffic-policy';
export const ANNOTATION_WEIGHTS = 'clusterset-proxy.io/cluster-weights';
export const ANNOTATION_ORDER = 'clusterset-proxy.io/failover-order';
export const ANNOTATION_UNIFIED = 'clusterset-proxy.io/unified-name';

export interface PolicySettings {
  readonly mode: PolicyMode;
  /** active-active: relative share per cluster; a cluster not listed weighs 1. */
  readonly clusterWeights: Readonly<Record<string, number>>;
  /** failover: clusters in order of preference; unlisted ones follow, local first. */
  readonly failoverOrder: readonly string[];
  /** Whether the local Service's own ClusterIP gets the same selection. */
  readonly unifiedName: boolean;
}

export interface PolicyEntry {
  readonly mode?: PolicyMode;
  readonly clusterWeights?: Readonly<Record<string, number>>;
  readonly failoverOrder?: readonly string[];
  readonly unifiedName?: boolean;
}

export interface PolicyConfig {
  readonly defaults: PolicySettings;
  /** Keyed by `namespace/name` (the logical name, without the derived- prefix). */
  readonly services: Readonly<Record<string, PolicyEntry>>;
}

export class PolicySyntaxError extends Error {}

export function parseMode(text: string): PolicyMode {
  if (!POLICY_MODES.includes(text as PolicyMode)) throw new PolicySyntaxError(`must be one of ${POLICY_MODES.join(', ')}`);
  return text as PolicyMode;
}

/** `brazil=3,chile01=1` → weights; non-negative integers, each cluster once. */
export function parseWeights(text: string): Record<string, number> {
  const weights: Record<string, number> = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([^=\s]+)=(\d{1,6})$/.exec(part);
    if (!m || !isClusterName(m[1]!)) throw new PolicySyntaxError(`"${part}" is not cluster=weight with a whole number weight`);
    if (m[1]! in weights) throw new PolicySyntaxError(`cluster ${m[1]} is listed twice`);
    weights[m[1]!] = Number(m[2]);
  }
  if (Object.keys(weights).length === 0) throw new PolicySyntaxError('names no cluster');
  return weights;
}

/** `chile01,brazil` → order; each cluster once. */
export function parseOrder(text: string): string[] {
  const order = text.split(',').map((p) => p.trim()).filter(Boolean);
  if (order.length === 0) throw new PolicySyntaxError('names no cluster');
  for (const name of order) if (!isClusterName(name)) throw new PolicySyntaxError(`"${name}" is not a cluster name`);
  if (new Set(order).size !== order.length) throw new PolicySyntaxError('lists a cluster twice');
  return order;
}

export function parseBool(text: string): boolean {
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new PolicySyntaxError('must be "true" or "false"');
}

export interface ResolvedPolicy {
  readonly settings: PolicySettings;
  /** One message per annotation that was ignored, naming it and its value. */
  readonly problems: readonly { readonly service: string; readonly message: string }[];
}

export interface AnnotatedService {
  readonly name: string;
  readonly annotations: Readonly<Record<string, string>>;
}

/**
 * The policy of group `key`: config default, then the config's entry for the
 * group, then annotations of `services` in increasing precedence (pass the
 * derived Service first, the local one last).
 */
export function resolvePolicy(key: string, config: PolicyConfig, services: readonly AnnotatedService[]): ResolvedPolicy {
  let s: PolicySettings = { ...config.defaults, ...config.services[key] };
  const problems: { service: string; message: string }[] = [];
  const fields: [string, (v: string) => Partial<PolicySettings>][] = [
    [ANNOTATION_POLICY, (v) => ({ mode: parseMode(v) })],
    [ANNOTATION_WEIGHTS, (v) => ({ clusterWeights: parseWeights(v) })],
    [ANNOTATION_ORDER, (v) => ({ failoverOrder: parseOrder(v) })],
    [ANNOTATION_UNIFIED, (v) => ({ unifiedName: parseBool(v) })],
  ];
  for (const svc of services) {
    for (const [annotation, parse] of fields) {
      const value = svc.annotations[annotation];
      if (value === undefined) continue;
      try {
        s = { ...s, ...parse(value) };
      } catch (err) {
        if (!(err instanceof PolicySyntaxError)) throw err;
        problems.push({ service: svc.name, message: `annotation ${annotation}: ${shown(value)} ${err.message}; the configured policy applies` });
      }
    }
  }
  return { settings: s, problems };
}
