import type { ApiLoadResult, Received } from './api-load.js';

// The API load table: what one node's watchers receive per minute of the
// profile's churn and at their first list, then the same for every node of a
// cluster of 100, 1,000 and 5,000 nodes (each node runs one agent beside one
// kube-proxy, and each watches the same cluster-wide objects).

export const NODE_COUNTS = [100, 1000, 5000] as const;

const bytes = (v: number) => (v >= 2 ** 30 ? `${(v / 2 ** 30).toFixed(2)} GB` : v >= 2 ** 20 ? `${(v / 2 ** 20).toFixed(1)} MB` : v >= 1024 ? `${(v / 1024).toFixed(0)} KB` : `${Math.round(v)} B`);
const count = (v: number) => (v > 0 && v < 10 && !Number.isInteger(v) ? v.toFixed(1) : Math.round(v).toLocaleString('en'));
const ratio = (a: number, b: number) => (b === 0 ? '–' : `${(a / b).toFixed(2)}×`);

export function formatApiLoad(r: ApiLoadResult, command: string, at: Date): string {
  const p = r.profile;
  const m = p.perMinute;
  const rows: [string, Received][] = [['agent', r.agent], ['kube-proxy', r.kubeProxy], ['every Service and EndpointSlice', r.everything]];
  const out = [
    `clusterset-proxy API load, ${at.toISOString().replace(/\.\d+Z$/, 'Z')}: \`${command}\``,
    '',
    `- cluster: ${count(r.cluster.services)} Services, ${count(r.cluster.slices)} EndpointSlices, ${r.cluster.nodes} Nodes, ${bytes(r.cluster.bytes)} of JSON: ` +
      `${p.groups} ServiceImports (derived Service, ${p.clusters} imported slices and the local Service with its slice, ${p.endpoints} endpoints each, in 16 namespaces), ` +
      `${p.unrelated} ordinary, ${p.headless} headless and ${p.otherProxy} handed-over (another proxy's) Services with one slice each over ${p.unrelatedNamespaces} namespaces (16 of them the groups'), ${p.gateways} gateway Nodes`,
    `- churn per minute: ${m.imported} imported, ${m.local} local, ${m.unrelated} ordinary, ${m.headless} headless and ${m.otherProxy} handed-over slice updates (one endpoint replaced each), ` +
      `a status write per Node every ${(1 / m.nodeStatus).toFixed(0)} min; ${p.minutes} minutes replayed, divided back`,
    '- bytes: JSON bodies the test API server wrote (list pages, watch event lines); real kube-proxy asks for protobuf, which this server does not speak, so its byte figures are upper bounds while its object counts are exact',
    '',
    '### one node',
    '',
    '| watcher | watches | first list: objects | first list: bytes | objects / min | bytes / min |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows.map(([name, v]) => `| ${name} | ${v.watches} | ${count(v.list.objects)} | ${bytes(v.list.bytes)} | ${count(v.perMinute.objects)} | ${bytes(v.perMinute.bytes)} |`),
    `| agent / kube-proxy | | ${ratio(r.agent.list.objects, r.kubeProxy.list.objects)} | ${ratio(r.agent.list.bytes, r.kubeProxy.list.bytes)} | ${ratio(r.agent.perMinute.objects, r.kubeProxy.perMinute.objects)} | ${ratio(r.agent.perMinute.bytes, r.kubeProxy.perMinute.bytes)} |`,
    '',
    'By resource, per minute (objects, bytes):',
    '',
    ...rows.map(([name, v]) => `- ${name}: ${Object.entries(v.byResource).sort().map(([res, x]) => `${res} ${count(x.objects)}, ${bytes(x.bytes)}`).join('; ')}`),
    '',
    'Watches as sent:',
    '',
    ...(['agent', 'kubeProxy'] as const).map((who) => `- ${who === 'agent' ? 'agent' : 'kube-proxy'}: ${byNamespace(r.selectors[who]).join(', ')}`),
    '',
    '### every node',
    '',
    '| nodes | agents: objects / min | agents: bytes / min | kube-proxies: objects / min | kube-proxies: bytes / min | a rollout (every node lists once): agents / kube-proxies |',
    '| --- | --- | --- | --- | --- | --- |',
    ...NODE_COUNTS.map((n) => `| ${count(n)} | ${count(n * r.agent.perMinute.objects)} | ${bytes(n * r.agent.perMinute.bytes)} | ${count(n * r.kubeProxy.perMinute.objects)} | ${bytes(n * r.kubeProxy.perMinute.bytes)} | ${bytes(n * r.agent.list.bytes)} / ${bytes(n * r.kubeProxy.list.bytes)} |`),
    '',
  ];
  return `${out.join('\n')}\n`;
}

/** Watches of the same collection in several namespaces, shown once with their count. */
function byNamespace(paths: readonly string[]): string[] {
  const counts = new Map<string, number>();
  for (const p of paths) {
    const shape = p.replace(/\/namespaces\/[^/]+\//, '/namespaces/<ns>/');
    counts.set(shape, (counts.get(shape) ?? 0) + 1);
  }
  return [...counts].map(([shape, n]) => `\`${shape}\`${shape.includes('<ns>') ? ` (${n} namespaces)` : ''}`);
}
