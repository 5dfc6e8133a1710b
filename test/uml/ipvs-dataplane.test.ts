// IpvsDataplane's transactions in a real kernel beside kube-proxy-style state,
// with real HTTP, inside user-mode-linux (this machine's kernel has no IP_VS).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runNodeTestsInUml, tapSummary } from './node-tests.js';

const guest = fileURLToPath(new URL('../ipvs/dataplane.guest.js', import.meta.url));
/** The tests in dataplane.guest.ts: all of them must run and pass. */
const GUEST_TESTS = 4;

test('the IPVS data plane programs the real kernel as the fake, serves HTTP by its weights and cleans up to the pristine state', async (t) => {
  const result = await runNodeTestsInUml([guest]);
  t.diagnostic(`uml boot ${result.bootMs} ms, modules ${result.modulesMs} ms, total ${result.totalMs} ms`);
  assert.equal(result.code, 0, `guest run failed:\n${result.stdout}\n${result.stderr}`);
  assert.deepEqual(tapSummary(result.stdout), { pass: GUEST_TESTS, fail: 0 });
});
