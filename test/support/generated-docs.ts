// Documentation generated from code, checked by tests and rewritten by
// write-config-reference.ts: README's tables and the DaemonSet's ConfigMap.
import { defaultConfigYaml } from '../../src/config/default-yaml.js';

export const MANIFEST_NAMESPACE = 'clusterset-proxy';

/** daemonset/20-configmap.yaml: the config with every key at its default, documented. */
export function configMapManifest(): string {
  const body = defaultConfigYaml().trimEnd().split('\n').map((l) => `    ${l}`).join('\n');
  return [
    '# Generated from src/config/schema.ts (node dist/test/support/write-config-reference.js):',
    '# every key at its default. Edit the values here or in the cluster; the agent',
    '# applies a change live, or logs that it needs a restart.',
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata:',
    '  name: clusterset-proxy',
    `  namespace: ${MANIFEST_NAMESPACE}`,
    '  labels:',
    '    app.kubernetes.io/name: clusterset-proxy',
    'data:',
    '  config.yaml: |',
    body,
    '',
  ].join('\n');
}

/** Replaces what stands between `<!-- NAME:start -->` and `<!-- NAME:end -->`. */
export function replaceSection(text: string, name: string, content: string): string {
  const start = `<!-- ${name}:start -->\n`;
  const end = `\n<!-- ${name}:end -->`;
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from < 0 || to < from) throw new Error(`README lacks the ${name} markers`);
  return text.slice(0, from + start.length) + content + text.slice(to);
}

/** What stands between the markers, or null. */
export function section(text: string, name: string): string | null {
  const m = new RegExp(`<!-- ${name}:start -->\\n([\\s\\S]*?)\\n<!-- ${name}:end -->`).exec(text);
  return m ? m[1]! : null;
}
