import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubernetesObject, V1ConfigMap, V1EndpointSlice, V1Node, V1ObjectMeta, V1Service } from '@kubernetes/client-node';
import { safely, trimConfigMap, trimEndpointSlice, trimNode, trimService } from '../../src/kube/projection.js';
import { configFromConfigMap, CONFIG_KEY } from '../../src/ops/config-watch.js';
import {
  ANNOTATION_PROVISION_CLUSTER, convertService, convertSlice, KARMADA_DISPATCH_CONTROLLER, LABEL_MANAGED_BY, LABEL_SERVICE_NAME,
  LABEL_SERVICE_PROXY_NAME, PROXY_NAME,
} from '../../src/model/records.js';
import { nodeRecord, PIN_ANNOTATION } from '../../src/routes/gateway.js';

// Objects as a real API server sends them: managedFields, last-applied
// configuration, owner references, status, topology of endpoints.

const MANAGED_FIELDS = [
  { manager: 'kube-controller-manager', operation: 'Update', apiVersion: 'v1', time: '2026-11-20T10:00:00Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:labels': { '.': {}, 'f:app': {} } }, 'f:spec': { 'f:ports': {} } } },
  { manager: 'kubectl-client-side-apply', operation: 'Update', apiVersion: 'v1', time: '2026-11-20T10:00:00Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:annotations': {} } } },
];

function fullMeta(namespace: string, name: string, labels: Record<string, string>, annotations: Record<string, string>): V1ObjectMeta {
  const meta = {
    namespace, name,
    uid: `uid-${namespace}-${name}`,
    resourceVersion: '12345',
    generation: 3,
    creationTimestamp: '2026-11-20T10:00:00Z' as unknown as Date,
    labels: { app: 'web', 'app.kubernetes.io/managed-by': 'Helm', ...labels },
    annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"apiVersion":"v1","kind":"Service","metadata":{}}', 'meta.helm.sh/release-name': 'web', ...annotations },
    ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name, uid: 'owner-uid', controller: true, blockOwnerDeletion: true }],
    finalizers: ['service.kubernetes.io/load-balancer-cleanup'],
    managedFields: MANAGED_FIELDS,
  };
  // As on the wire: timestamps are strings.
  return meta as unknown as V1ObjectMeta;
}

function fullService(name: string, over: Partial<NonNullable<V1Service['spec']>> = {}, labels: Record<string, string> = {}, annotations: Record<string, string> = {}): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: fullMeta('shop', name, labels, annotations),
    spec: {
      type: 'ClusterIP',
      clusterIP: '10.96.0.10',
      clusterIPs: ['10.96.0.10'],
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      internalTrafficPolicy: 'Cluster',
      selector: { app: 'web' },
      ports: [
        { name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 as unknown as never, appProtocol: 'http' },
        { port: 53, protocol: 'UDP', targetPort: 53 as unknown as never },
        { name: 'bad', port: 70000, protocol: 'TCP' },
        { name: 'weird', port: 81, protocol: 'ICMP' },
      ],
      sessionAffinity: 'ClientIP',
      sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
      ...over,
    },
    status: { loadBalancer: {} },
  };
}

function fullSlice(name: string, serviceName: string, over: Partial<V1EndpointSlice> = {}, labels: Record<string, string> = {}, annotations: Record<string, string> = {}): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: fullMeta('shop', name, { [LABEL_SERVICE_NAME]: serviceName, [LABEL_MANAGED_BY]: KARMADA_DISPATCH_CONTROLLER, 'endpointslice.kubernetes.io/skip-mirror': 'true', ...labels }, {
      [ANNOTATION_PROVISION_CLUSTER]: 'chile', 'endpoints.kubernetes.io/last-change-trigger-time': '2026-11-20T10:00:00Z', ...annotations,
    }),
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP', appProtocol: 'http' }, { port: 0, protocol: 'TCP' }],
    endpoints: [
      {
        addresses: ['10.1.0.1'], conditions: { ready: true, serving: true, terminating: false },
        hostname: 'web-0', nodeName: 'node-a', zone: 'zone-1', hints: { forZones: [{ name: 'zone-1' }] },
        targetRef: { kind: 'Pod', namespace: 'shop', name: 'web-0', uid: 'pod-uid' },
      },
      { addresses: ['10.1.0.2'], conditions: { ready: false, serving: true, terminating: true }, nodeName: 'node-b' },
      { addresses: ['10.1.0.3'], conditions: {} },
      { addresses: ['10.1.0.4', '10.1.0.44'] },
      { addresses: ['not-an-ip'], conditions: { ready: true } },
      { addresses: [], conditions: { serving: false } },
    ],
    ...over,
  };
}

/** What ListWatch and the Events code need of every object. */
function assertIdentity(full: { metadata?: { namespace?: string; name?: string; uid?: string; resourceVersion?: string } }, trimmed: typeof full): void {
  assert.equal(trimmed.metadata?.namespace, full.metadata?.namespace);
  assert.equal(trimmed.metadata?.name, full.metadata?.name);
  assert.equal(trimmed.metadata?.uid, full.metadata?.uid);
  assert.equal(trimmed.metadata?.resourceVersion, full.metadata?.resourceVersion);
  assert.equal((trimmed.metadata as Record<string, unknown> | undefined)?.managedFields, undefined);
}

test('a trimmed Service converts to the same record and problems as the full one', () => {
  const cases: V1Service[] = [
    fullService('web'),
    fullService('derived-web', {}, { [LABEL_SERVICE_PROXY_NAME]: PROXY_NAME }, { 'clusterset-proxy.io/policy': 'failover', 'clusterset-proxy.io/failover-order': 'chile,brazil' }),
    fullService('headless', { clusterIP: 'None', clusterIPs: ['None'] }),
    fullService('v6', { clusterIP: 'fd00::1', clusterIPs: ['fd00::1'] }),
    fullService('dual', { clusterIP: 'fd00::1', clusterIPs: ['fd00::1', '10.96.0.11'] }),
    fullService('none', { clusterIP: undefined, clusterIPs: undefined, ports: undefined, sessionAffinity: 'None', sessionAffinityConfig: undefined }),
    fullService('default-affinity', { sessionAffinityConfig: undefined }),
    { metadata: { namespace: 'shop', name: 'bare' } },
  ];
  for (const full of cases) {
    const trimmed = trimService(full);
    assert.deepEqual(convertService(trimmed), convertService(full), full.metadata?.name);
    assertIdentity(full, trimmed);
    assert.equal(trimmed.metadata?.annotations?.['kubectl.kubernetes.io/last-applied-configuration'], undefined);
    assert.equal(trimmed.status, undefined);
  }
  const labelled = trimService(cases[1]!);
  assert.equal(labelled.metadata?.labels?.[LABEL_SERVICE_PROXY_NAME], PROXY_NAME);
  assert.deepEqual(labelled.metadata?.annotations, { 'clusterset-proxy.io/policy': 'failover', 'clusterset-proxy.io/failover-order': 'chile,brazil' });
  // Not read by the agent: dropped.
  assert.equal(labelled.metadata?.labels?.app, undefined);
  assert.equal(labelled.metadata?.ownerReferences, undefined);
  assert.equal(labelled.spec?.selector, undefined);
  assert.equal(labelled.spec?.ports?.[0]?.targetPort, undefined);
});

test('a trimmed Service keeps its load-balancer ingress IPs and their ipMode, nothing else of its status', () => {
  const full: V1Service = {
    ...fullService('derived-web'),
    status: {
      loadBalancer: { ingress: [{ ip: '242.1.0.10', ipMode: 'VIP', ports: [{ port: 80, protocol: 'TCP' }] }, { hostname: 'lb.example.com' }, { ip: '127.0.0.1' }] },
      conditions: [{ type: 'Ready', status: 'True', reason: 'x', message: 'y', lastTransitionTime: '2026-11-20T10:00:00Z' as never }],
    },
  };
  const trimmed = trimService(full);
  assert.deepEqual(trimmed.status, { loadBalancer: { ingress: [{ ip: '242.1.0.10', ipMode: 'VIP' }, {}, { ip: '127.0.0.1' }] } });
  assert.deepEqual(convertService(trimmed), convertService(full));
  assert.deepEqual(convertService(trimmed).record!.ingressIPs, ['242.1.0.10']);
  const odd = { ...full, status: { loadBalancer: { ingress: 'x' } } } as unknown as V1Service;
  assert.deepEqual(convertService(trimService(odd)), convertService(odd));
});

test('a trimmed EndpointSlice converts to the same record and problems as the full one', () => {
  const cases: V1EndpointSlice[] = [
    fullSlice('chile-web-abc', 'web'),
    fullSlice('imported-chile-web', 'derived-web', {}, { [LABEL_MANAGED_BY]: 'endpointslice-controller.karmada.io' }, { 'clusterset-proxy.io/note': 'x' }),
    fullSlice('v6', 'web', { addressType: 'IPv6', endpoints: [{ addresses: ['fd00::2'] }] }),
    fullSlice('no-ports', 'web', { ports: undefined }),
    fullSlice('no-endpoints', 'web', { endpoints: undefined as unknown as V1EndpointSlice['endpoints'] }),
    fullSlice('orphan', '', {}, { [LABEL_SERVICE_NAME]: '' }),
    { metadata: { namespace: 'shop', name: 'bare', labels: { [LABEL_SERVICE_NAME]: 'web' } } } as unknown as V1EndpointSlice,
  ];
  for (const full of cases) {
    const trimmed = trimEndpointSlice(full);
    assert.deepEqual(convertSlice(trimmed), convertSlice(full), full.metadata?.name);
    assertIdentity(full, trimmed);
  }
  const t = trimEndpointSlice(cases[0]!);
  assert.deepEqual(t.metadata?.labels, { [LABEL_SERVICE_NAME]: 'web', [LABEL_MANAGED_BY]: KARMADA_DISPATCH_CONTROLLER });
  assert.deepEqual(t.metadata?.annotations, { [ANNOTATION_PROVISION_CLUSTER]: 'chile' });
  assert.deepEqual(t.endpoints[0], { addresses: ['10.1.0.1'], conditions: { ready: true, serving: true, terminating: false } });
  assert.deepEqual(t.endpoints[2], { addresses: ['10.1.0.3'] });
  assert.deepEqual(t.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }, { port: 0, protocol: 'TCP' }]);
  assert.deepEqual(trimEndpointSlice(cases[1]!).metadata?.annotations, { [ANNOTATION_PROVISION_CLUSTER]: 'chile', 'clusterset-proxy.io/note': 'x' });
});

test('a trimmed Node gives the same gateway record; a trimmed ConfigMap the same config', () => {
  const node: V1Node = {
    apiVersion: 'v1', kind: 'Node',
    metadata: { ...fullMeta('', 'gw-1', { 'clusterset-proxy.io/gateway': 'true', 'topology.kubernetes.io/zone': 'z1' }, { [PIN_ANNOTATION]: 'true' }), namespace: undefined },
    spec: { podCIDR: '10.244.1.0/24' },
    status: {
      addresses: [{ type: 'Hostname', address: 'gw-1' }, { type: 'InternalIP', address: '192.168.0.10' }],
      conditions: [{ type: 'Ready', status: 'True' }],
      images: [{ names: ['registry/app:1'], sizeBytes: 1000 }],
    },
  };
  const trimmedNode = trimNode(node);
  assert.deepEqual(nodeRecord(trimmedNode), nodeRecord(node));
  assertIdentity(node, trimmedNode);
  assert.equal(trimmedNode.status?.images, undefined);
  assert.deepEqual(trimmedNode.metadata?.labels, node.metadata?.labels);
  assert.deepEqual(trimmedNode.metadata?.annotations, node.metadata?.annotations);
  assert.equal(node.metadata?.managedFields, MANAGED_FIELDS as unknown, 'the input is not modified');

  const cm: V1ConfigMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: fullMeta('kube-system', 'clusterset-proxy', {}, {}), data: { [CONFIG_KEY]: 'clusterName: brazil\n' } };
  const trimmedCm = trimConfigMap(cm);
  assert.deepEqual(configFromConfigMap(trimmedCm, {}), configFromConfigMap(cm, {}));
  assertIdentity(cm, trimmedCm);
  assert.deepEqual(trimmedCm.data, cm.data);
});

test('a projection that throws passes the object whole', () => {
  const obj = { metadata: { namespace: 'a', name: 'b' } };
  assert.equal(safely<KubernetesObject>(() => { throw new Error('boom'); })(obj), obj);
  // Malformed shapes pass through unchanged rather than throwing.
  const odd = { metadata: { namespace: 'a', name: 'b', labels: 'x' }, spec: { ports: 'nope' }, endpoints: 7 } as unknown as V1EndpointSlice;
  assert.doesNotThrow(() => trimEndpointSlice(odd));
  assert.doesNotThrow(() => trimService(odd as unknown as V1Service));
});

test('hostile values pass the projection unchanged, so validation reports what the API sent', () => {
  const payload = 'evil"\nCOMMIT\n*filter\n-I INPUT 1 -p tcp --dport 2222 -j DROP\n';
  const slice = {
    metadata: { namespace: 'default', name: 'chile01-web-1', labels: { [LABEL_SERVICE_NAME]: 'web', [LABEL_MANAGED_BY]: KARMADA_DISPATCH_CONTROLLER }, annotations: { [ANNOTATION_PROVISION_CLUSTER]: payload } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: '8080', protocol: 'TCP' }],
    endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: 'false' } }],
  } as unknown as V1EndpointSlice;
  const trimmed = trimEndpointSlice(slice);
  assert.equal(trimmed.metadata!.annotations![ANNOTATION_PROVISION_CLUSTER], payload);
  assert.deepEqual(convertSlice(trimmed), convertSlice(slice));
  assert.equal(convertSlice(trimmed).record, null);
  const unannotated = { ...slice, metadata: { ...slice.metadata, annotations: { [ANNOTATION_PROVISION_CLUSTER]: { not: 'a string' } } } } as unknown as V1EndpointSlice;
  assert.deepEqual(trimEndpointSlice(unannotated).metadata!.annotations, { [ANNOTATION_PROVISION_CLUSTER]: { not: 'a string' } });
  const kept = { ...slice, metadata: { ...slice.metadata, annotations: {} } } as V1EndpointSlice;
  assert.deepEqual(convertSlice(trimEndpointSlice(kept)), convertSlice(kept));
  assert.deepEqual(convertSlice(trimEndpointSlice(kept)).problems.map((p) => p.message), [
    'port http: port "8080" has the wrong type: expected an integer, got a string; port skipped',
    'endpoint address "127.0.0.1" is a loopback address; endpoint skipped',
  ]);
  const svc = { metadata: { namespace: 'default', name: 'web', annotations: { 'clusterset-proxy.io/cluster-weights': 7 } }, spec: { clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 80 }], sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 1.5 } } } } as unknown as V1Service;
  assert.deepEqual(convertService(trimService(svc)), convertService(svc));
  assert.equal(convertService(trimService(svc)).problems.length, 2);
});
