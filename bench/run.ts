// npm run bench [-- --full] [--n N] [--e E] [--c C] [--backend nft|legacy] [--readme] [--only memory]
//
// Prints the table and the machine it ran on. --readme also writes them into
// README.md's Performance section (between the bench markers). --only memory
// runs the agent binary's figures alone (start, memory after the first sync
// and after churn) and prints one line per backend; it cannot be combined
// with --readme.

import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BackendMode } from '../src/iptables/backend.js';
import { PROFILES, runBenchmark, type Profile } from './harness.js';
import { measureAgent } from './agent.js';
import { Workload } from './workload.js';
import { cleanupStale } from '../test/support/netns.js';
import { describeMachine, formatResult } from './report.js';

const README = fileURLToPath(new URL('../../README.md', import.meta.url));
const START = '<!-- bench:start -->';
const END = '<!-- bench:end -->';

function profileFrom(argv: string[]): { profile: Profile; readme: boolean; only: 'memory' | undefined } {
  const { values } = parseArgs({
    args: argv,
    options: {
      full: { type: 'boolean', default: false },
      n: { type: 'string' },
      e: { type: 'string' },
      c: { type: 'string' },
      backend: { type: 'string' },
      readme: { type: 'boolean', default: false },
      only: { type: 'string' },
    },
    strict: true,
  });
  const base: Profile = values.full ? PROFILES.full : PROFILES.quick;
  const count = (text: string | undefined, fallback: number, name: string) => {
    if (text === undefined) return fallback;
    const v = Number(text);
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer (got ${text})`);
    return v;
  };
  const size = { n: count(values.n, base.size.n, 'n'), e: count(values.e, base.size.e, 'e'), c: count(values.c, base.size.c, 'c') };
  if (size.c > size.e) throw new Error('--c must not exceed --e: every cluster needs an endpoint');
  const backend = values.backend;
  if (backend !== undefined && backend !== 'nft' && backend !== 'legacy') throw new Error(`--backend must be nft or legacy (got ${backend})`);
  const backends: readonly BackendMode[] = backend ? [backend] : base.backends;
  if (values.only !== undefined && values.only !== 'memory') throw new Error(`--only must be memory (got ${values.only})`);
  if (values.only !== undefined && values.readme) throw new Error('--only cannot be combined with --readme');
  return { profile: { ...base, size, backends }, readme: values.readme ?? false, only: values.only };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const { profile, readme, only } = profileFrom(argv);
  if (only === 'memory') {
    await cleanupStale();
    for (const mode of profile.backends) {
      const m = await measureAgent(new Workload(profile.size), mode, { timeoutMs: profile.agentStartLimitMs, churnChanges: profile.churnChanges, churnRate: profile.churnRate });
      const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;
      const s = (v: number) => `${(v / 1000).toFixed(2)} s`;
      process.stdout.write(
        `${mode}: agent binary, ${m.services} Services, ${m.slices} slices: start → first full sync applied ${s(m.startMs)} (load ${s(m.loadMs)}, list ${s(m.listMs)}, sync ${s(m.firstSyncMs)}); ` +
          `RSS after the first sync ${mb(m.rssAfterSyncBytes)}, after ${m.churn.changes} changes ${mb(m.churn.rssBytes)} (peak ${mb(m.churn.peakBytes)})\n`,
      );
    }
    return;
  }
  const command = process.env.npm_lifecycle_event === 'bench' ? `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}` : `node dist/bench/run.js ${argv.join(' ')}`.trim();
  const result = await runBenchmark(profile, (line) => process.stderr.write(`[${new Date().toISOString()}] ${line}\n`));
  const text = formatResult(result, await describeMachine(), command);
  process.stdout.write(text);
  if (readme) {
    const doc = await readFile(README, 'utf8');
    const start = doc.indexOf(START);
    const end = doc.indexOf(END);
    if (start === -1 || end < start) throw new Error(`README.md has no ${START} ... ${END} section`);
    await writeFile(README, `${doc.slice(0, start + START.length)}\n${text}${doc.slice(end)}`);
    process.stderr.write('README.md: Performance section updated\n');
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
