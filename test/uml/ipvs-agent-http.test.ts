// The agent binary in IPVS mode, whole (API server, watches, sync loop, the
// kernel's IPVS table, the rules beside it), with real HTTP, inside
// user-mode-linux (this machine's kernel has no IP_VS).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runNodeTestsInUml, tapSummary } from './node-tests.js';

const guest = fileURLToPath(new URL('../ipvs/agent-http.guest.js', import.meta.url));
/** The tests in agent-http.guest.ts: all of them must run and pass. */
const GUEST_TESTS = 4;

test('the agent in IPVS mode serves HTTP through the ClusterIP as endpoints change, past kube-proxy\'s untouched state, and --cleanup restores the node', async (t) => {
  // The agent, the API server's relay, four pods' servers and the clients are each a Node process.
  // Generous: on a loaded machine the guest's many Node processes start slowly under UML.
  const result = await runNodeTestsInUml([guest], { memMiB: 1024, runTimeoutMs: 1_800_000 });
  t.diagnostic(`uml boot ${result.bootMs} ms, modules ${result.modulesMs} ms, total ${result.totalMs} ms`);
  assert.equal(result.code, 0, `guest run failed:\n${result.stdout}\n${result.stderr}`);
  assert.deepEqual(tapSummary(result.stdout), { pass: GUEST_TESTS, fail: 0 });
});
