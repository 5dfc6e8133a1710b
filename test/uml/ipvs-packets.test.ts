// Real HTTP through an IPVS firewall-mark service with two weighted real
// servers, inside user-mode-linux (this machine's kernel has no IP_VS).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runNodeTestsInUml, tapSummary } from './node-tests.js';

const guest = fileURLToPath(new URL('../ipvs/packets.guest.js', import.meta.url));
/** The tests in packets.guest.ts: all of them must run and pass. */
const GUEST_TESTS = 5;

test('HTTP through an IPVS fwmark service follows its weights in a real kernel', async (t) => {
  const result = await runNodeTestsInUml([guest]);
  t.diagnostic(`uml boot ${result.bootMs} ms, modules ${result.modulesMs} ms, total ${result.totalMs} ms`);
  assert.equal(result.code, 0, `guest run failed:\n${result.stdout}\n${result.stderr}`);
  assert.deepEqual(tapSummary(result.stdout), { pass: GUEST_TESTS, fail: 0 });
});
