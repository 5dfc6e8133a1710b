// Rewrites what is generated from code: README's configuration reference and
// metrics table, and the DaemonSet's ConfigMap with every default:
//   npm run build && node dist/test/support/write-config-reference.js
// test/unit/config.test.ts and test/unit/ops-docs.test.ts fail when they differ.
import { readFile, writeFile } from 'node:fs/promises';
import { configReferenceTable } from '../../src/config/schema.js';
import { metricsReferenceTable } from '../../src/ops/metrics.js';
import { configMapManifest, replaceSection } from './generated-docs.js';

const root = new URL('../../../', import.meta.url);

if (process.argv[1]?.endsWith('write-config-reference.js')) {
  const readmePath = new URL('README.md', root);
  let readme = await readFile(readmePath, 'utf8');
  readme = replaceSection(readme, 'config-reference', configReferenceTable());
  if (readme.includes('<!-- metrics-reference:start -->')) readme = replaceSection(readme, 'metrics-reference', metricsReferenceTable());
  await writeFile(readmePath, readme);
  await writeFile(new URL('daemonset/20-configmap.yaml', root), configMapManifest());
}
