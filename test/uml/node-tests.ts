// Runs compiled `node --test` files inside the UML kernel with the IPVS
// modules loaded: the way the suite reaches a kernel that has IP_VS.

import { runInUml, type UmlOptions, type UmlResult } from './harness.js';

/** ip_vs and the schedulers the product configures. */
export const IPVS_MODULES = ['ip_vs', 'ip_vs_wrr', 'ip_vs_rr'] as const;

export interface TapSummary {
  readonly pass: number;
  readonly fail: number;
}

/** The totals `node --test --test-reporter=tap` prints last. */
export function tapSummary(tap: string): TapSummary | null {
  const pass = /^# pass (\d+)$/m.exec(tap);
  const fail = /^# fail (\d+)$/m.exec(tap);
  return pass && fail ? { pass: Number(pass[1]), fail: Number(fail[1]) } : null;
}

export function nodeTestArgv(files: readonly string[]): string[] {
  return files.length === 0 ? [] : [process.execPath, '--test', '--test-concurrency=1', '--test-reporter=tap', ...files];
}

export function runNodeTestsInUml(files: readonly string[], opts: Omit<UmlOptions, 'argv'> = {}): Promise<UmlResult> {
  return runInUml({ modules: IPVS_MODULES, ...opts, argv: nodeTestArgv(files) });
}
