import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PROFILES, runBenchmark, type Profile } from '../../bench/harness.js';
import { describeMachine, formatResult } from '../../bench/report.js';

// The harness at a tiny size, so it cannot rot: every figure is produced on
// both backends and lands in the table. Nothing here is timed against a target.

const tiny: Profile = {
  ...PROFILES.quick,
  name: 'smoke',
  size: { n: 20, e: 3, c: 3 },
  changes: 3,
  kubeProxyChanges: 2,
  burstChanges: 30,
  burstSpanMs: 200,
  agentStartLimitMs: 30_000,
};

test('the benchmark harness produces every figure on both backends', { timeout: 120_000 }, async () => {
  const result = await runBenchmark(tiny);
  assert.deepEqual(result.backends.map((b) => b.mode), ['nft', 'legacy']);
  for (const { mode, ours, kubeProxy, memory } of result.backends) {
    assert.ok(ours.coldStart.ms > 0 && ours.coldStart.bytes > 0 && ours.coldStart.restores >= 1, `${mode}: cold start`);
    assert.equal(ours.coldStart.chains, 20 + 4, `${mode}: one chain per service plus the skeleton`);
    assert.equal(ours.oneChange.count, 3, `${mode}: one-change samples`);
    assert.equal(ours.floor.count, 3, `${mode}: each change replayed bare`);
    assert.ok(ours.oneChangeBytes.p50 > 0, `${mode}: one-change payload`);
    assert.equal(ours.burst.changes, 30);
    assert.ok(ours.burst.syncs >= 1 && ours.burst.restores >= 1, `${mode}: burst syncs`);
    assert.ok(kubeProxy.coldStartMs !== null && kubeProxy.coldStartMs > 0, `${mode}: kube-proxy-style cold start`);
    assert.equal(kubeProxy.chains, 9 + 20 * 4, `${mode}: a SVC chain and a SEP chain per endpoint`);
    assert.equal(kubeProxy.oneChange.count, 2);
    assert.ok(kubeProxy.oneChangeBytes.p50 > ours.oneChangeBytes.p50, `${mode}: kube-proxy-style rewrites its services chain`);
    assert.ok(memory.rssBytes > 0 && memory.peakBytes >= memory.rssBytes, `${mode}: agent memory`);
    assert.equal(memory.slices, 60);
  }
  const text = formatResult(result, await describeMachine(), 'npm run bench');
  const lines = text.split('\n');
  for (const figure of ['one change, p50', 'one change, p99', 'one change, bytes written', 'cold start', 'cold start, bytes written', 'burst: 30 changes', 'burst: last change applied', 'agent overhead', 'agent memory']) {
    assert.ok(lines.filter((l) => l.startsWith(`| ${figure}`)).length >= 2, `"${figure}" row for both backends`);
  }
});
