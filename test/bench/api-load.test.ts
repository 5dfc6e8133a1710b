import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_PROFILE, measureApiLoad, type ClusterProfile } from '../../bench/api-load.js';
import { formatApiLoad, NODE_COUNTS } from '../../bench/api-load-report.js';

// The API load bench at a tiny size, so it cannot rot. The counts are exact
// (the server counts what it writes), so they are checked against the profile.

const tiny: ClusterProfile = {
  ...DEFAULT_PROFILE,
  groups: 4,
  unrelated: 40,
  unrelatedNamespaces: 20,
  headless: 10,
  otherProxy: 5,
  perMinute: { imported: 6, local: 6, unrelated: 20, headless: 4, otherProxy: 2, nodeStatus: 0.2 },
  minutes: 5,
};

test('the API load bench counts what each watcher receives', { timeout: 300_000 }, async () => {
  const r = await measureApiLoad(tiny);
  const slices = r.everything.byResource['endpointslices.discovery.k8s.io']!.objects;
  assert.equal(slices, 6 + 6 + 20 + 4 + 2, 'every slice update reaches a watcher of every slice');
  const kpSlices = r.kubeProxy.byResource['endpointslices.discovery.k8s.io']!.objects;
  assert.equal(kpSlices, 6 + 6 + 20, 'kube-proxy receives neither headless nor handed-over slices');
  assert.equal(r.kubeProxy.byResource.nodes!.objects, 0.2, 'kube-proxy receives its own Node once in 5 minutes');
  assert.equal(r.agent.byResource.nodes!.objects, 0.4, 'the agent receives the 2 gateway Nodes once in 5 minutes each');
  // Groups: derived and local Services, 3 imported and 1 local slice; headless Services carry no headless label, their slices do.
  assert.equal(r.kubeProxy.list.objects, 4 * (2 + 3 + 1) + 40 * 2 + 10 + 1, 'kube-proxy lists the groups\' and the ordinary Services and slices, headless Services and its Node');
  const agentSlices = r.agent.byResource['endpointslices.discovery.k8s.io']!.objects;
  assert.ok(agentSlices >= 6 + 6 && agentSlices < slices, `the agent receives every imported and local update, and not those of namespaces without a group (${agentSlices} of ${slices})`);
  assert.equal(r.agent.watches, 3 + 4, 'Services, Karmada\'s slices, gateway Nodes, and the 4 namespaces holding groups');
  assert.ok(r.agent.perMinute.bytes > 0 && r.kubeProxy.perMinute.bytes > 0);
  const text = formatApiLoad(r, 'npm run bench:api-load', new Date());
  for (const n of NODE_COUNTS) assert.match(text, new RegExp(`^\\| ${n.toLocaleString('en')} \\|`, 'm'));
  assert.match(text, /^\| agent \/ kube-proxy \|/m);
});
