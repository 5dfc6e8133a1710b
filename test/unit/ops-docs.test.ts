import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, readFile, readdir } from 'node:fs/promises';
import * as k8s from '@kubernetes/client-node';
import { DaemonSet } from 'kubernetes-models/apps/v1';
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { ConfigMap, Namespace, ServiceAccount } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import { parseConfigText } from '../../src/config/load.js';
import { DEFAULT_CONFIG, FIELDS } from '../../src/config/schema.js';
import { splitHostPort } from '../../src/ops/http-server.js';
import { metricsReferenceTable } from '../../src/ops/metrics.js';
import { configMapManifest, section } from '../support/generated-docs.js';

const root = new URL('../../../', import.meta.url);
const read = (path: string) => readFile(new URL(path, root), 'utf8');

// Validation against the Kubernetes OpenAPI schemas (kubernetes-models: the
// official schemas compiled to validators, offline), plus what those schemas
// leave open: unknown fields, which the API server would silently drop. Field
// names come from client-node's models, generated from the same OpenAPI spec.
const MODELS: Record<string, { validate(): void } & (new (data: object) => { validate(): void })> = {
  'v1/Namespace': Namespace, 'v1/ServiceAccount': ServiceAccount, 'v1/ConfigMap': ConfigMap,
  'apps/v1/DaemonSet': DaemonSet,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole, 'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role, 'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
} as never;

function unknownFields(value: unknown, type: string, path: string, out: string[]): void {
  if (value === null || typeof value !== 'object') return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    (value as unknown[]).forEach((v, i) => unknownFields(v, array[1]!, `${path}[${i}]`, out));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    for (const [k, v] of Object.entries(value)) unknownFields(v, map[1]!, `${path}.${k}`, out);
    return;
  }
  const model = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => { baseName: string; type: string }[] }>)[type];
  if (typeof model?.getAttributeTypeMap !== 'function') return;
  const known = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    const t = known.get(k);
    if (t === undefined) out.push(`${path}.${k}`);
    else unknownFields(v, t, `${path}.${k}`, out);
  }
}

interface Manifest { file: string; doc: Record<string, any> }

async function manifests(): Promise<Manifest[]> {
  const files = (await readdir(new URL('daemonset/', root))).filter((f) => f.endsWith('.yaml')).sort();
  const out: Manifest[] = [];
  for (const file of files) {
    for (const d of parseAllDocuments(await read(`daemonset/${file}`))) {
      assert.equal(d.errors.length, 0, `${file}: ${d.errors.join('; ')}`);
      out.push({ file, doc: d.toJS() });
    }
  }
  return out;
}

const find = (all: Manifest[], kind: string) => all.filter((m) => m.doc.kind === kind).map((m) => m.doc);

test('every manifest validates against the Kubernetes schemas, with no unknown field', async () => {
  const all = await manifests();
  assert.deepEqual(all.map((m) => m.doc.kind).sort(), ['ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet', 'Namespace', 'Role', 'RoleBinding', 'ServiceAccount']);
  for (const { file, doc } of all) {
    const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
    assert.ok(Model, `${file}: ${doc.apiVersion} ${doc.kind} is not expected`);
    assert.doesNotThrow(() => new Model(doc).validate(), `${file} ${doc.kind}`);
    const unknown: string[] = [];
    unknownFields(doc, `V1${doc.kind}`, doc.kind, unknown);
    assert.deepEqual(unknown, [], `${file}: unknown fields`);
  }
  // The check itself catches what it is for.
  const bad: string[] = [];
  unknownFields({ spec: { template: { spec: { tolerations: [{ operater: 'Exists' }] } } } }, 'V1DaemonSet', 'DaemonSet', bad);
  assert.deepEqual(bad, ['DaemonSet.spec.template.spec.tolerations[0].operater']);
  assert.throws(() => new DaemonSet({ metadata: { name: 'x' }, spec: { selector: {}, template: { spec: { containers: [{ name: 'c', ports: [{ containerPort: 'x' as never }] }] } } } }).validate());
});

test('RBAC is least privilege: read Services, EndpointSlices, Nodes, its own ConfigMap; write Events', async () => {
  const all = await manifests();
  const rules = (doc: Record<string, any>) => doc.rules.flatMap((r: any) => r.resources.flatMap((res: string) => r.verbs.map((v: string) => `${r.apiGroups[0] || 'core'}/${res}${r.resourceNames ? `/${r.resourceNames.join(',')}` : ''}:${v}`))).sort();
  const [cluster] = find(all, 'ClusterRole');
  assert.deepEqual(rules(cluster!), [
    'core/events:create', 'core/events:update',
    'core/nodes:get', 'core/nodes:list', 'core/nodes:watch',
    'core/services:get', 'core/services:list', 'core/services:watch',
    'discovery.k8s.io/endpointslices:get', 'discovery.k8s.io/endpointslices:list', 'discovery.k8s.io/endpointslices:watch',
  ]);
  const [role] = find(all, 'Role');
  assert.deepEqual(rules(role!), ['core/configmaps/clusterset-proxy:get', 'core/configmaps/clusterset-proxy:list', 'core/configmaps/clusterset-proxy:watch']);
  for (const binding of [...find(all, 'ClusterRoleBinding'), ...find(all, 'RoleBinding')]) {
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'clusterset-proxy', namespace: 'clusterset-proxy' }]);
  }
});

test('the DaemonSet runs unprivileged with NET_ADMIN and NET_RAW on the host network, everywhere, with a memory request and limit, sharing the xtables lock, probed on the health port', async () => {
  const [ds] = find(await manifests(), 'DaemonSet');
  const pod = ds!.spec.template.spec;
  const [c] = pod.containers;
  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.priorityClassName, 'system-node-critical');
  assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
  assert.equal(pod.serviceAccountName, 'clusterset-proxy');
  assert.equal(c.securityContext.privileged, false);
  assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] });
  assert.ok(c.resources.requests.cpu);
  const mebibytes = (q: string) => Number(/^(\d+)Mi$/.exec(q)![1]);
  assert.ok(mebibytes(c.resources.limits.memory) > mebibytes(c.resources.requests.memory), 'a memory limit above the request');
  const lock = pod.volumes.find((v: any) => v.hostPath?.path === '/run/xtables.lock');
  assert.deepEqual(lock.hostPath, { path: '/run/xtables.lock', type: 'FileOrCreate' });
  assert.ok(c.volumeMounts.some((m: any) => m.name === lock.name && m.mountPath === '/run/xtables.lock'));
  assert.deepEqual(c.env.find((e: any) => e.name === 'NODE_NAME').valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
  assert.deepEqual(c.env.find((e: any) => e.name === 'POD_NAMESPACE').valueFrom, { fieldRef: { fieldPath: 'metadata.namespace' } });
  const healthPort = splitHostPort(FIELDS.healthzBindAddress.default).port;
  assert.deepEqual([c.livenessProbe.httpGet.path, c.livenessProbe.httpGet.port], ['/healthz', healthPort]);
  assert.deepEqual([c.readinessProbe.httpGet.path, c.readinessProbe.httpGet.port], ['/readyz', healthPort]);
  // Apart from kube-proxy's (10249 metrics, 10256 health) and the kubelet's (10248, 10250, 10255).
  const ports = [FIELDS.metricsBindAddress.default, FIELDS.healthzBindAddress.default].map((a) => splitHostPort(a).port);
  for (const taken of [10248, 10249, 10250, 10255, 10256]) assert.ok(!ports.includes(taken), `port ${taken}`);
  assert.equal(splitHostPort(FIELDS.metricsBindAddress.default).host, '127.0.0.1', 'metrics on loopback by default');
});

test('the ConfigMap holds every key at its documented default, generated from the schema', async () => {
  assert.equal(await read('daemonset/20-configmap.yaml'), configMapManifest(), 'run node dist/test/support/write-config-reference.js');
  const [cm] = find(await manifests(), 'ConfigMap');
  const text: string = cm!.data['config.yaml'];
  assert.deepEqual(parseConfigText(text, 'configmap'), DEFAULT_CONFIG);
  for (const { key } of Object.values(FIELDS)) assert.match(text, new RegExp(`^${key}: `, 'm'), key);
});

test('README carries the generated metrics table, unchanged', async () => {
  assert.equal(section(await read('README.md'), 'metrics-reference'), metricsReferenceTable());
});

test('the Dockerfile builds from the repository layout: Debian slim with the kernel tools, entrypoint bin/clusterset-proxy', async () => {
  const docker = await read('daemonset/Dockerfile');
  assert.match(docker, /^FROM node:20-bookworm-slim/m);
  assert.match(docker, /apt-get install -y --no-install-recommends iptables ipset iproute2 conntrack/);
  assert.match(docker, /ENTRYPOINT \["\/opt\/clusterset-proxy\/bin\/clusterset-proxy"\]/);
  for (const copied of [...docker.matchAll(/^COPY (?!--from)(\S+(?: \S+)*) \S+$/gm)].flatMap((m) => m[1]!.split(' '))) {
    await access(new URL(copied, root));
  }
  assert.match(await read('bin/clusterset-proxy'), /import\('\.\.\/dist\/agent\/clusterset-proxy\.mjs'\)/, 'the entrypoint runs the bundle, which the build stage produces');
  assert.match(docker, /node scripts\/bundle-agent\.mjs/, 'the build stage bundles the agent');
  assert.match(docker, /COPY --from=build \/src\/dist\/agent \.\/dist\/agent/, 'the image carries the bundle');
});
