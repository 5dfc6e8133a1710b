// The agent's IPVS mode (the data plane as startIpvs builds it, under the sync
// engine) once in a real kernel, inside user-mode-linux (this machine's kernel
// has no IP_VS).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runNodeTestsInUml, tapSummary } from './node-tests.js';

const guest = fileURLToPath(new URL('../ipvs/agent-mode.guest.js', import.meta.url));
/** The tests in agent-mode.guest.ts: all of them must run and pass. */
const GUEST_TESTS = 1;

test('the agent\'s IPVS data plane programs the table and the rules beside it in a real kernel, and cleanup removes them', async (t) => {
  const result = await runNodeTestsInUml([guest]);
  t.diagnostic(`uml boot ${result.bootMs} ms, modules ${result.modulesMs} ms, total ${result.totalMs} ms`);
  assert.equal(result.code, 0, `guest run failed:\n${result.stdout}\n${result.stderr}`);
  assert.deepEqual(tapSummary(result.stdout), { pass: GUEST_TESTS, fail: 0 });
});
