// npm run bench:api-load [-- --groups G --unrelated U --minutes M]
//
// What the API server sends one node's agent, next to a kube-proxy on the same
// node, under the churn profile of bench/api-load.ts; then for all nodes of a
// 100, 1,000 and 5,000-node cluster. No root needed: everything runs in process.

import { parseArgs } from 'node:util';
import { DEFAULT_PROFILE, measureApiLoad, type ClusterProfile } from './api-load.js';
import { formatApiLoad } from './api-load-report.js';

function profileFrom(argv: string[]): ClusterProfile {
  const { values } = parseArgs({ args: argv, options: { groups: { type: 'string' }, unrelated: { type: 'string' }, minutes: { type: 'string' } }, strict: true });
  const positive = (text: string | undefined, fallback: number, name: string) => {
    if (text === undefined) return fallback;
    const v = Number(text);
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer (got ${text})`);
    return v;
  };
  return {
    ...DEFAULT_PROFILE,
    groups: positive(values.groups, DEFAULT_PROFILE.groups, 'groups'),
    unrelated: positive(values.unrelated, DEFAULT_PROFILE.unrelated, 'unrelated'),
    minutes: positive(values.minutes, DEFAULT_PROFILE.minutes, 'minutes'),
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const profile = profileFrom(argv);
  const at = new Date();
  const result = await measureApiLoad(profile);
  process.stdout.write(formatApiLoad(result, `npm run bench:api-load${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`, at));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:api-load: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
