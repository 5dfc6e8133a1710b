// The agent in IPVS mode fails over from the local to the remote cluster and
// back under a steady stream of requests without failing one, inside
// user-mode-linux (this machine's kernel has no IP_VS).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runNodeTestsInUml, tapSummary } from './node-tests.js';

const guest = fileURLToPath(new URL('../ipvs/stream-failover.guest.js', import.meta.url));
/** The tests in stream-failover.guest.ts: all of them must run and pass. */
const GUEST_TESTS = 1;

test('IPVS mode: local -> remote failover and back under a steady stream fails no request', async (t) => {
  // The agent, the API server's relay, three pods' servers and the streaming client are each a Node process.
  const result = await runNodeTestsInUml([guest], { memMiB: 1024, runTimeoutMs: 1_800_000 });
  t.diagnostic(`uml boot ${result.bootMs} ms, modules ${result.modulesMs} ms, total ${result.totalMs} ms`);
  assert.equal(result.code, 0, `guest run failed:\n${result.stdout}\n${result.stderr}`);
  assert.deepEqual(tapSummary(result.stdout), { pass: GUEST_TESTS, fail: 0 });
});
