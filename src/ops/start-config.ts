import type { KubeConfig } from '@kubernetes/client-node';
import { loadConfigFile } from '../config/load.js';
import { DEFAULT_CONFIG, type Config } from '../config/schema.js';
import { ApiDeadline } from '../kube/api-deadline.js';
import { serverOf } from '../kube/api-failure.js';
import type { Logger } from '../log.js';
import { ConfigMapWatch, configFromConfigMap, type ConfigMapRef, type ConfigOverrides } from './config-watch.js';

export const DEFAULT_CONFIGMAP_NAME = 'clusterset-proxy';

/** --configmap NS/NAME; unset: $POD_NAMESPACE/clusterset-proxy (the DaemonSet sets it); '' or neither: none. */
export function configMapRefOf(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): ConfigMapRef | null {
  const text = flag ?? (env.POD_NAMESPACE ? `${env.POD_NAMESPACE}/${DEFAULT_CONFIGMAP_NAME}` : '');
  if (text === '') return null;
  const slash = text.indexOf('/');
  return { namespace: text.slice(0, slash), name: text.slice(slash + 1) };
}

export interface StartConfig {
  readonly config: Config;
  /** Watching the ConfigMap, when one is configured; the caller stops it. */
  readonly watch: ConfigMapWatch | null;
}

/**
 * The config to start with: the ConfigMap's when it exists, else the file's,
 * else the defaults; flags win over all. An invalid ConfigMap at start is an
 * error (there is no last good config to fall back on), as in kube-proxy.
 * A one-shot run (`bounded`) waits for the ConfigMap at most `apiTimeout`
 * (the flag's, else the file's); the agent waits as long as it takes.
 */
export async function loadStartConfig(opts: {
  file?: string;
  configMap: ConfigMapRef | null;
  overrides: ConfigOverrides;
  kubeConfig: () => KubeConfig;
  log: Logger;
  bounded?: boolean;
}): Promise<StartConfig> {
  const base = { ...(opts.file ? await loadConfigFile(opts.file) : DEFAULT_CONFIG), ...opts.overrides };
  if (!opts.configMap) return { config: base, watch: null };
  const kc = opts.kubeConfig();
  const deadline = opts.bounded ? new ApiDeadline(serverOf(kc), base.apiTimeout) : null;
  const watch = new ConfigMapWatch(kc, opts.configMap, opts.log, deadline ? { onFailure: deadline.onFailure } : undefined);
  const where = `${opts.configMap.namespace}/${opts.configMap.name}`;
  try {
    const cm = await (deadline ? deadline.wait(`ConfigMap ${where}`, watch.start()) : watch.start());
    if (!cm) {
      opts.log.info({ configMap: where }, `ConfigMap not found; using ${opts.file ? `--config ${opts.file}` : 'the defaults'} until it appears`);
      return { config: base, watch };
    }
    opts.log.info({ configMap: where }, 'config read from the ConfigMap');
    return { config: configFromConfigMap(cm, opts.overrides), watch };
  } catch (err) {
    await watch.stop();
    throw err;
  }
}
