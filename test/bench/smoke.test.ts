import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PROFILES, runBenchmark, type Profile } from '../../bench/harness.js';
import { describeMachine, formatResult } from '../../bench/report.js';
import { BUCKETS } from '../../src/iptables/layout.js';

// The harness at a tiny size, so it cannot rot: every figure is produced on
// both backends and lands in the table. Nothing here is timed against a target;
// the limits only bound a hung run, with room for a heavily loaded machine.

const tiny: Profile = {
  ...PROFILES.quick,
  name: 'smoke',
  size: { n: 20, e: 3, c: 3 },
  changes: 3,
  kubeProxyChanges: 2,
  burstChanges: 30,
  burstSpanMs: 200,
  agentStartLimitMs: 120_000,
  churnChanges: 20,
  churnRate: 100,
};

test('the benchmark harness produces every figure on both backends', { timeout: 600_000 }, async () => {
  const result = await runBenchmark(tiny);
  assert.deepEqual(result.backends.map((b) => b.mode), ['nft', 'legacy']);
  for (const { mode, ours, kubeProxy, agent } of result.backends) {
    assert.ok(ours.coldStart.ms > 0 && ours.coldStart.bytes > 0 && ours.coldStart.restores >= 1, `${mode}: cold start`);
    assert.equal(ours.coldStart.chains, 20 + 4 + BUCKETS, `${mode}: one chain per service plus the skeleton and its dispatch buckets`);
    assert.equal(ours.oneChange.count, 3, `${mode}: one-change samples`);
    assert.equal(ours.floor.count, 3, `${mode}: each change replayed bare`);
    assert.equal(ours.runnerDelay.count, 3, `${mode}: the runner's wait of each change`);
    assert.ok(ours.oneChange.p50 >= ours.runnerDelay.p50 && ours.oneChange.p50 >= ours.engineSync.p50, `${mode}: the runner's wait and the sync are parts of event → kernel`);
    assert.ok(ours.ingestMs > 0, `${mode}: listed through the informers`);
    assert.ok(ours.oneChangeBytes.p50 > 0, `${mode}: one-change payload`);
    assert.equal(ours.burst.changes, 30);
    assert.ok(ours.burst.syncs >= 1 && ours.burst.restores >= 1, `${mode}: burst syncs`);
    assert.ok(kubeProxy.coldStartMs !== null && kubeProxy.coldStartMs > 0, `${mode}: kube-proxy-style cold start`);
    assert.equal(kubeProxy.chains, 9 + 20 * 4, `${mode}: a SVC chain and a SEP chain per endpoint`);
    assert.equal(kubeProxy.oneChange.count, 2);
    assert.ok(kubeProxy.oneChangeBytes.p50 > ours.oneChangeBytes.p50, `${mode}: kube-proxy-style rewrites its services chain`);
    assert.equal(agent.slices, 60);
    assert.ok(agent.loadMs > 0 && agent.listMs >= 0 && agent.firstSyncMs > 0, `${mode}: start split into its parts`);
    assert.ok(agent.startMs >= agent.loadMs + agent.listMs, `${mode}: start covers loading and listing`);
    assert.ok(agent.rssAfterSyncBytes > 0, `${mode}: memory after the first sync`);
    assert.equal(agent.churn.changes, 20);
    assert.ok(agent.churn.rssBytes > 0 && agent.churn.peakBytes >= agent.churn.rssBytes, `${mode}: memory after churn`);
    assert.ok(agent.churn.programmingCount >= 1, `${mode}: the agent's programming histogram saw the churn`);
  }
  const text = formatResult(result, await describeMachine(), 'npm run bench');
  const lines = text.split('\n');
  for (const figure of [
    'start: agent process start → first full sync applied', 'cold start, engine only', 'cold start, bytes written',
    'one change, watch event → kernel, p50', 'one change, watch event → kernel, p99', 'one change: of which the runner', 'one change: of which the sync',
    'one change, bytes written', 'burst: 30 changes', 'burst: last change applied', 'agent overhead',
    'agent memory (RSS) after the first full sync', 'agent memory (RSS) after 20 changes',
  ]) {
    assert.ok(lines.filter((l) => l.startsWith(`| ${figure}`)).length >= 2, `"${figure}" row for both backends`);
  }
});
