// The IPVS conformance scenarios (the client's and the Dataplane's), and the
// `ipvsadm -Sn` rendering checked against ipvsadm itself, in a real kernel: this machine's kernel has no
// IP_VS, so they run inside user-mode-linux. Fails, never skips, when the UML
// kernel cannot boot or ip_vs cannot load.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SCENARIOS } from '../ipvs/conformance.js';
import { scenarioCount } from '../support/dataplane-conformance.js';
import { runNodeTestsInUml, tapSummary } from './node-tests.js';

const guest = (name: string) => fileURLToPath(new URL(`../ipvs/${name}`, import.meta.url));
/** ipvsadm-save.guest.ts holds one test. */
const SAVE_TESTS = 1;

test('the kernel passes every IPVS client and Dataplane conformance scenario and reads back as ipvsadm prints it', async (t) => {
  const result = await runNodeTestsInUml([guest('kernel-conformance.guest.js'), guest('dataplane-conformance.guest.js'), guest('ipvsadm-save.guest.js')]);
  t.diagnostic(`uml boot ${result.bootMs} ms, modules ${result.modulesMs} ms, total ${result.totalMs} ms`);
  assert.equal(result.code, 0, `guest run failed:\n${result.stdout}\n${result.stderr}`);
  assert.deepEqual(tapSummary(result.stdout), { pass: SCENARIOS.length + scenarioCount(true) + SAVE_TESTS, fail: 0 });
});
