import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterResolver, UNKNOWN_CLUSTER } from '../../src/model/clusters.js';
import { buildGroup, type GroupContext } from '../../src/model/group.js';
import { convertService, convertSlice, problemText, type SliceRecord } from '../../src/model/records.js';
import { ModelStore } from '../../src/model/store.js';
import { dispatchedSlice, endpoint, importedSlice, service, slice, withClustersetIPs } from '../support/fixtures.js';

const ctx: GroupContext = { servicePrefix: 'derived-', clusters: new ClusterResolver('brazil', ['brazil', 'chile', 'chile-01']) };

function storeWith(...objects: ReturnType<typeof service | typeof slice>[]): ModelStore {
  const store = new ModelStore('derived-');
  for (const o of objects) {
    if (o.kind === 'Service') store.upsertService(convertService(o as ReturnType<typeof service>).record!);
    else store.upsertSlice(convertSlice(o as ReturnType<typeof slice>).record!);
  }
  return store;
}

const sliceRecord = (name: string, managedBy: string, annotation?: string): SliceRecord => ({
  namespace: 'default', name, serviceName: 'x', managedBy, provisionCluster: annotation ?? null, addressType: 'IPv4', family: 'IPv4', ports: [], endpoints: [],
});

test('imported slice names resolve to the longest configured cluster name', () => {
  const r = new ClusterResolver('brazil', ['chile', 'chile-01']);
  assert.equal(r.originOf(sliceRecord('imported-chile-01-abc', 'endpointslice-controller.karmada.io')).cluster, 'chile-01');
  assert.equal(r.originOf(sliceRecord('imported-chile-abc', 'endpointslice-controller.karmada.io')).cluster, 'chile');
  const unknown = r.originOf(sliceRecord('imported-peru-abc', 'endpointslice-controller.karmada.io'));
  assert.deepEqual(unknown, { cluster: UNKNOWN_CLUSTER, unknownPrefix: true });
});

test('the provision-cluster annotation wins over the slice name; ordinary slices are local', () => {
  const r = new ClusterResolver('brazil', ['chile']);
  assert.equal(r.originOf(sliceRecord('chile-abc', 'endpointslice-dispatch-controller.karmada.io', 'peru')).cluster, 'peru');
  assert.equal(r.originOf(sliceRecord('chile-abc', 'endpointslice-dispatch-controller.karmada.io')).cluster, 'chile');
  assert.equal(r.originOf(sliceRecord('x-abc', 'endpointslice-controller.k8s.io')).cluster, 'brazil');
});

test('a derived Service and the local Service of the same name form one group', () => {
  const store = storeWith(
    service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]),
    service('default', 'serve', '10.96.0.40', [{ name: 'http', port: 80 }]),
    importedSlice('default', 'chile-01', 'serve-abc', 'derived-serve', [endpoint('10.2.0.10')]),
    slice('default', 'serve-xyz', 'serve', [endpoint('10.1.0.10')]),
  );
  const { group, problems } = buildGroup('default/serve', store, ctx);
  assert.deepEqual(problems, []);
  assert.equal(group!.source, 'service-import');
  assert.deepEqual(group!.frontends.map((f) => f.name), ['derived-serve']);
  assert.deepEqual(group!.frontends[0]!.ports[0]!.endpoints.map((e) => [e.cluster, e.ip, e.port]), [['chile-01', '10.2.0.10', 8080]]);
  assert.deepEqual(group!.local!.ports[0]!.endpoints.map((e) => [e.cluster, e.ip]), [['brazil', '10.1.0.10']]);
});

test('a Service with dispatched slices is a MultiClusterService group; a plain Service is left to kube-proxy', () => {
  const mcs = storeWith(
    service('default', 'web', '10.96.0.60', [{ name: 'http', port: 80 }]),
    slice('default', 'web-local', 'web', [endpoint('10.1.0.20')]),
    dispatchedSlice('default', 'chile', 'web-abc', 'web', [endpoint('10.2.0.20')], [{ name: 'http', port: 8080 }]),
  );
  const g = buildGroup('default/web', mcs, ctx).group!;
  assert.equal(g.source, 'multi-cluster-service');
  assert.deepEqual(g.frontends[0]!.ports[0]!.endpoints.map((e) => e.cluster).sort(), ['brazil', 'chile']);

  const plain = storeWith(service('default', 'web', '10.96.0.60', [{ name: 'http', port: 80 }]), slice('default', 'web-local', 'web', [endpoint('10.1.0.20')]));
  assert.equal(buildGroup('default/web', plain, ctx).group, null);

  const handedOver = storeWith(service('default', 'web', '10.96.0.60', [{ name: 'http', port: 80 }], { labels: { 'service.kubernetes.io/service-proxy-name': 'clusterset-proxy' } }));
  assert.equal(buildGroup('default/web', handedOver, ctx).group!.source, 'service-proxy-name');
});

test('headless derived Services are skipped without a problem', () => {
  const store = storeWith(service('default', 'derived-h', 'None', [{ name: 'http', port: 80 }]));
  assert.deepEqual(buildGroup('default/h', store, ctx), { group: null, problems: [] });
});

test('bad objects are reported by name and contribute nothing, while good parts still count', () => {
  const noIP = convertService(service('default', 'derived-a', '', [{ port: 80 }]));
  assert.equal(noIP.record!.clusterIP, null);
  assert.deepEqual(noIP.problems.map(problemText), ['Service default/derived-a has no ClusterIP']);

  const badPort = convertService(service('default', 'derived-a', '10.96.0.1', [{ name: 'big', port: 70000 }, { name: 'ok', port: 80 }]));
  assert.deepEqual(badPort.record!.ports.map((p) => p.name), ['ok']);
  assert.match(badPort.problems[0]!.message, /port big: port 70000 is out of range/);

  const s = convertSlice(importedSlice('default', 'chile', 'x', 'derived-a', [endpoint('10.2.0.300'), endpoint('10.2.0.3')], [{ name: 'http', port: 0 }]));
  assert.deepEqual(s.record!.endpoints.map((e) => e.ip), ['10.2.0.3']);
  assert.deepEqual(s.problems.map((p) => p.message), [
    'port http: port 0 is out of range 1-65535; port skipped',
    'endpoint address "10.2.0.300" is not a valid IPv4 address; endpoint skipped',
  ]);

  const noPorts = convertSlice(importedSlice('default', 'chile', 'x', 'derived-a', [endpoint('10.2.0.3')], null));
  assert.match(noPorts.problems[0]!.message, /has no ports/);

  const v6 = convertSlice(slice('default', 'v6', 'derived-a', [endpoint('fd00::1')], { addressType: 'IPv6' }));
  assert.deepEqual(v6.problems, [], 'an IPv6 slice is served like an IPv4 one');

  assert.equal(convertSlice({ metadata: { name: 'orphan', namespace: 'default' }, addressType: 'IPv4', endpoints: [] }).record, null);
});

test('a slice without the service port, an unknown cluster prefix and a missing Service are each reported by name', () => {
  const store = storeWith(
    service('default', 'derived-a', '10.96.0.1', [{ name: 'http', port: 80 }]),
    importedSlice('default', 'chile', 's1', 'derived-a', [endpoint('10.2.0.1')], [{ name: 'grpc', port: 9000 }]),
    importedSlice('default', 'peru', 's2', 'derived-a', [endpoint('10.3.0.1')]),
    importedSlice('default', 'chile', 's3', 'derived-missing', [endpoint('10.2.0.9')]),
  );
  const a = buildGroup('default/a', store, ctx);
  assert.deepEqual(a.group!.frontends[0]!.ports[0]!.endpoints.map((e) => [e.cluster, e.ip]), [['unknown', '10.3.0.1']]);
  const text = a.problems.map(problemText);
  assert.ok(text.includes('Service default/derived-a port http/TCP: EndpointSlice imported-chile-s1 has no such port; it contributes no endpoints to it'), text.join('\n'));
  assert.ok(text.some((t) => t.startsWith('EndpointSlice default/imported-peru-s2 name matches no configured cluster')), text.join('\n'));
  const missing = buildGroup('default/missing', store, ctx);
  assert.equal(missing.group, null);
  assert.match(problemText(missing.problems[0]!), /EndpointSlice default\/imported-chile-s3 references Service default\/derived-missing, which does not exist/);
});

test('store mutations name the groups they affect, including a slice moving between Services', () => {
  const store = new ModelStore('derived-');
  const s1 = convertSlice(slice('ns', 's', 'derived-a', [endpoint('10.0.0.1')])).record!;
  assert.deepEqual(store.upsertSlice(s1), ['ns/a']);
  const moved = convertSlice(slice('ns', 's', 'b', [endpoint('10.0.0.1')])).record!;
  assert.deepEqual(store.upsertSlice(moved).sort(), ['ns/a', 'ns/b']);
  assert.deepEqual([...store.slicesOf('ns', 'derived-a')], []);
  assert.deepEqual(store.deleteSlice('ns', 's'), ['ns/b']);
  assert.deepEqual(store.deleteSlice('ns', 's'), []);
});

test('IPv6 slices are kept in the model with their family and canonical endpoint addresses; each address must be of the slice\'s family', () => {
  const v6 = convertSlice(slice('default', 'v6', 'derived-a', [endpoint('FD00:0::1'), endpoint('10.2.0.1'), endpoint('fd00::2', { ready: false })], { addressType: 'IPv6' }));
  assert.equal(v6.record!.family, 'IPv6');
  assert.deepEqual(v6.record!.endpoints.map((e) => `${e.ip} ${e.ready}`), ['fd00::1 true', 'fd00::2 false']);
  assert.deepEqual(v6.record!.ports.map((p) => p.port), [8080]);
  assert.deepEqual(v6.problems.map((p) => p.message), ['endpoint address "10.2.0.1" is not a valid IPv6 address; endpoint skipped']);
  const v4 = convertSlice(slice('default', 'v4', 'derived-a', [endpoint('fd00::1'), endpoint('10.2.0.1')]));
  assert.equal(v4.record!.family, 'IPv4');
  assert.deepEqual(v4.record!.endpoints.map((e) => e.ip), ['10.2.0.1']);
  const fqdn = convertSlice(slice('default', 'f', 'derived-a', [endpoint('example.com')], { addressType: 'FQDN' }));
  assert.equal(fqdn.record!.family, null);
  assert.deepEqual(fqdn.record!.endpoints, []);
  assert.match(fqdn.problems[0]!.message, /addressType FQDN is not served/);
});

test('a group keeps the endpoints of both families and every ClusterIP of its Service, IPv4 first', () => {
  const store = storeWith(
    service('default', 'derived-a', 'fd00:96::5', [{ name: 'http', port: 80 }], { clusterIPs: ['fd00:96::5', '10.96.0.5'] }),
    importedSlice('default', 'chile', 'v4', 'derived-a', [endpoint('10.2.0.1')]),
    { ...importedSlice('default', 'chile', 'v6', 'derived-a', [endpoint('fd00:2::1')]), addressType: 'IPv6' },
  );
  const { group } = buildGroup('default/a', store, ctx);
  assert.deepEqual(group!.frontends[0]!.clusterIPs, ['10.96.0.5', 'fd00:96::5']);
  assert.deepEqual(group!.frontends[0]!.ports[0]!.endpoints.map((e) => `${e.cluster} ${e.ip}`), ['chile 10.2.0.1', 'chile fd00:2::1']);
});

test('an IPv6-only Service is a group of its own family; a Service without any ClusterIP is reported', () => {
  const store = storeWith(
    service('default', 'derived-a', 'fd00:96::5', [{ name: 'http', port: 80 }], { clusterIPs: ['fd00:96::5'] }),
    slice('default', 'imported-chile-v6', 'derived-a', [endpoint('fd00:2::1')], { addressType: 'IPv6' }),
  );
  assert.deepEqual(buildGroup('default/a', store, ctx).group!.frontends[0]!.clusterIPs, ['fd00:96::5']);
  const none = convertService(service('default', 'derived-b', '', [{ name: 'http', port: 80 }], { clusterIPs: ['not-an-ip'] }));
  assert.deepEqual(none.problems.map((p) => p.message), ['has no IPv4 or IPv6 ClusterIP (not-an-ip)']);
});

test('a dual-stack Service keeps its IPv6 ClusterIP beside the IPv4 one, in canonical text', () => {
  const dual = convertService(service('default', 'derived-a', 'FD00:10:96:0::1', [{ name: 'http', port: 80 }], { clusterIPs: ['FD00:10:96:0::1', '10.96.0.5'] }));
  assert.deepEqual([dual.record!.clusterIP, dual.record!.clusterIPv6], ['10.96.0.5', 'fd00:10:96::1']);
  const v4 = convertService(service('default', 'derived-b', '10.96.0.6', [{ name: 'http', port: 80 }]));
  assert.deepEqual([v4.record!.clusterIP, v4.record!.clusterIPv6], ['10.96.0.6', null]);
});

test('an IPv6 slice refuses the endpoint addresses a proxy must not use, as for IPv4', () => {
  const v6 = convertSlice(slice('default', 'v6', 'derived-a', ['::', '::1', 'fe80::1', 'ff02::1', 'fd00:2::1'].map((ip) => endpoint(ip)), { addressType: 'IPv6' }));
  assert.deepEqual(v6.record!.endpoints.map((e) => e.ip), ['fd00:2::1']);
  assert.deepEqual(v6.problems.map((p) => p.message.replace(/^endpoint address (\S+) /, '$1 ')), [
    '"::" is the unspecified address; endpoint skipped',
    '"::1" is a loopback address; endpoint skipped',
    '"fe80::1" is a link-local address; endpoint skipped',
    '"ff02::1" is a multicast address; endpoint skipped',
  ]);
});

test('a Service\'s load-balancer ingress IPs are checked like endpoint addresses, kept once in canonical text; hostname-only and Proxy-mode entries are skipped', () => {
  const svc = withClustersetIPs(service('default', 'derived-a', '10.96.0.5', [{ name: 'http', port: 80 }]), ['242.1.0.5', 'FD00:242:0::5', '242.1.0.5'], [
    { hostname: 'lb.example.com' }, { ip: '242.1.0.6', ipMode: 'Proxy' }, { ip: '127.0.0.1' }, { ip: 'fe80::1' }, { ip: '242.1.0.300' }, { ip: 5 as never }, 'junk' as never,
  ]);
  const { record, problems } = convertService(svc);
  assert.deepEqual(record!.ingressIPs, ['242.1.0.5', 'fd00:242::5']);
  assert.deepEqual(problems.map((p) => p.message), [
    'status.loadBalancer.ingress[5].ip "127.0.0.1" is a loopback address; not served',
    'status.loadBalancer.ingress[6].ip "fe80::1" is a link-local address; not served',
    'status.loadBalancer.ingress[7].ip "242.1.0.300" is not a valid IP address; not served',
    'status.loadBalancer.ingress[8].ip 5 has the wrong type: expected a string, got a number; not served',
    'status.loadBalancer.ingress[9] "junk" has the wrong type: expected an ingress point, got a string; ignored',
  ]);
  assert.deepEqual(convertService({ ...svc, status: { loadBalancer: { ingress: 'x' as never } } }).problems.map((p) => p.message), [
    'status.loadBalancer.ingress "x" has the wrong type: expected a list, got a string; ignored',
  ]);
  assert.deepEqual(convertService(service('default', 'b', '10.96.0.6', [])).record!.ingressIPs, []);
});

test('the derived Service\'s ingress IPs are its ClusterSet IPs; the local Service\'s and a MultiClusterService\'s are not; another family is reported', () => {
  const store = storeWith(
    withClustersetIPs(service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]), ['242.1.0.50', 'fd00:242::50']),
    withClustersetIPs(service('default', 'serve', '10.96.0.40', [{ name: 'http', port: 80 }]), ['192.0.2.40']),
    withClustersetIPs(service('default', 'web', '10.96.0.60', [{ name: 'http', port: 80 }]), ['192.0.2.60']),
    dispatchedSlice('default', 'chile', 'web-abc', 'web', [endpoint('10.2.0.20')], [{ name: 'http', port: 8080 }]),
  );
  const { group, problems } = buildGroup('default/serve', store, ctx);
  assert.deepEqual(group!.frontends[0]!.clustersetIPs, ['242.1.0.50', 'fd00:242::50']);
  assert.deepEqual(group!.local!.clustersetIPs, []);
  assert.deepEqual(problems.map(problemText), [
    'Service default/derived-serve ClusterSet IP fd00:242::50 (status.loadBalancer.ingress) is of a family the Service has no ClusterIP of (ClusterIPs 10.96.0.50); not served',
  ]);
  assert.deepEqual(buildGroup('default/web', store, ctx).group!.frontends[0]!.clustersetIPs, []);
  // A dual-stack Service serves a ClusterSet IP of each family: nothing to report.
  const dual = storeWith(withClustersetIPs(service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }], { clusterIPs: ['10.96.0.50', 'fd00:96::50'] }), ['242.1.0.50', 'fd00:242::50']));
  const dualBuilt = buildGroup('default/serve', dual, ctx);
  assert.deepEqual(dualBuilt.group!.frontends[0]!.clusterIPs, ['10.96.0.50', 'fd00:96::50']);
  assert.deepEqual(dualBuilt.problems.map(problemText), []);
});
