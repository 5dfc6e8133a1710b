import type { KubeConfig, V1ConfigMap } from '@kubernetes/client-node';
import { parseConfigText } from '../config/load.js';
import { ConfigError, FIELDS, type Config } from '../config/schema.js';
import { ResilientInformer, type InformerOptions } from '../kube/informer.js';
import { safely, trimConfigMap } from '../kube/projection.js';
import type { Logger } from '../log.js';

/** The key of the ConfigMap holding the YAML config, same schema as --config. */
export const CONFIG_KEY = 'config.yaml';

export interface ConfigMapRef {
  readonly namespace: string;
  readonly name: string;
}

/** Flag values that win over any config source. */
export type ConfigOverrides = Partial<Pick<Config, 'logLevel' | 'iptablesBackend' | 'apiTimeout' | 'mode'>>;

/** The config a ConfigMap asks for, flags applied; throws a ConfigError naming the key and value. */
export function configFromConfigMap(cm: V1ConfigMap, overrides: ConfigOverrides): Config {
  const text = cm.data?.[CONFIG_KEY];
  if (text === undefined) {
    throw new ConfigError(CONFIG_KEY, Object.keys(cm.data ?? {}), `is missing from ConfigMap ${cm.metadata?.namespace}/${cm.metadata?.name}`);
  }
  return { ...parseConfigText(text, `ConfigMap ${cm.metadata?.namespace}/${cm.metadata?.name}`), ...overrides };
}

export interface ConfigChange {
  /** The config to run with: the desired one, except for keys that need a restart. */
  readonly next: Config;
  /** Keys applied now. */
  readonly live: readonly string[];
  /** Keys whose new value waits for a restart (their running value stays in `next`). */
  readonly restart: readonly string[];
}

/** Compares a desired config with the running one, key by key. */
export function planConfigChange(running: Config, desired: Config): ConfigChange {
  const next: Record<string, unknown> = { ...running };
  const live: string[] = [];
  const restart: string[] = [];
  for (const field of Object.values(FIELDS)) {
    const key = field.key;
    if (JSON.stringify(running[key]) === JSON.stringify(desired[key])) continue;
    if (field.restart) {
      restart.push(key);
    } else {
      live.push(key);
      next[key] = desired[key];
    }
  }
  return { next: next as unknown as Config, live, restart };
}

/**
 * Watches one ConfigMap (a field-selected list and watch, which RBAC can
 * restrict to that name). The first list tells the config to start with;
 * later changes go to the subscriber.
 */
export class ConfigMapWatch {
  private readonly informer: ResilientInformer<V1ConfigMap>;
  private current: V1ConfigMap | null = null;
  private startedWith: V1ConfigMap | null = null;
  private subscriber: ((cm: V1ConfigMap | null) => void) | null = null;

  constructor(kc: KubeConfig, readonly ref: ConfigMapRef, log: Logger, opts?: InformerOptions) {
    this.informer = new ResilientInformer<V1ConfigMap>(kc, {
      resource: 'configmaps',
      path: `/api/v1/namespaces/${encodeURIComponent(ref.namespace)}/configmaps`,
      fieldSelector: `metadata.name=${ref.name}`,
      trim: safely(trimConfigMap),
    }, {
      onUpsert: (cm) => this.deliver(cm),
      onDelete: () => this.deliver(null),
    }, log, opts);
  }

  /** Starts watching; resolves with the ConfigMap, or null when it does not exist. */
  async start(): Promise<V1ConfigMap | null> {
    this.informer.start();
    await this.informer.whenSynced();
    this.startedWith = this.current;
    return this.current;
  }

  /** Receives every later change, including one made since start(); null when the ConfigMap was deleted. */
  subscribe(fn: (cm: V1ConfigMap | null) => void): void {
    this.subscriber = fn;
    if (this.current !== this.startedWith) fn(this.current);
  }

  stop(): Promise<void> {
    return this.informer.stop();
  }

  private deliver(cm: V1ConfigMap | null): void {
    this.current = cm;
    this.subscriber?.(cm);
  }
}
