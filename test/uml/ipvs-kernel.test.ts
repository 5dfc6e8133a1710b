// The IPVS conformance scenarios against a real kernel: this machine's kernel
// has no IP_VS, so they run inside user-mode-linux. Fails, never skips, when
// the UML kernel cannot boot or ip_vs cannot load.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SCENARIOS } from '../ipvs/conformance.js';
import { runNodeTestsInUml, tapSummary } from './node-tests.js';

const guest = fileURLToPath(new URL('../ipvs/kernel-conformance.guest.js', import.meta.url));

test('the kernel passes every IPVS conformance scenario', async (t) => {
  const result = await runNodeTestsInUml([guest]);
  t.diagnostic(`uml boot ${result.bootMs} ms, modules ${result.modulesMs} ms, total ${result.totalMs} ms`);
  assert.equal(result.code, 0, `guest run failed:\n${result.stdout}\n${result.stderr}`);
  assert.deepEqual(tapSummary(result.stdout), { pass: SCENARIOS.length, fail: 0 });
});
