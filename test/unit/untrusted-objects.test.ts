import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { DEFAULT_CONFIG, type Config } from '../../src/config/schema.js';
import { FakeIptables } from '../../src/iptables/fake-backend.js';
import { silentLogger } from '../../src/log.js';
import { ANNOTATION_PROVISION_CLUSTER, convertService, convertSlice, problemText, type Problem } from '../../src/model/records.js';
import { ANNOTATION_WEIGHTS } from '../../src/policy/policy.js';
import { eventRefOf } from '../../src/ops/reporter.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { dispatchedSlice, endpoint, importedSlice, service, slice } from '../support/fixtures.js';
import { KUBE_PROXY_NAT, USER_FILTER } from '../support/foreign-rules.js';

// Values of API objects the API server may not have checked (annotation
// values are free text; a lenient server lets anything through): each is
// refused before it enters the model, reported naming the object, the field
// and the value (escaped), and only the object or the bad part is left out.

const PAYLOAD = 'evil"\nCOMMIT\n*filter\n-I INPUT 1 -p tcp --dport 2222 -j DROP\nCOMMIT\n*nat\n-A POSTROUTING -j MASQUERADE\n';
const HOSTILE: readonly [string, unknown][] = [
  ['the injection payload', PAYLOAD],
  ['a newline alone', 'chile01\n'],
  ['a quote alone', 'chile"01'],
  ['-A text', 'x -A INPUT -j DROP'],
  ['a 64 KB value', 'a'.repeat(65_536)],
  ['a number', 42],
  ['an object', { cluster: 'chile01' }],
  ['a list', ['chile01']],
  ['a boolean', true],
];

const text = (problems: readonly Problem[]) => problems.map(problemText);

/** Every report is one line of printable ASCII, however hostile the value. */
function assertPrintable(lines: readonly string[]): void {
  for (const line of lines) assert.match(line, /^[\x20-\x7e]*$/, line.slice(0, 200));
}

function hostileSlice(value: unknown): V1EndpointSlice {
  const s = dispatchedSlice('default', 'chile01', 'a-1', 'web', [endpoint('10.2.0.10')]);
  s.metadata!.annotations = { [ANNOTATION_PROVISION_CLUSTER]: value as string };
  return s;
}

test('a provision-cluster annotation that is not a cluster name skips the slice, reported with the field and the value shown', () => {
  for (const [what, value] of HOSTILE) {
    const { record, problems } = convertSlice(hostileSlice(value));
    assert.equal(record, null, what);
    const lines = text(problems);
    assert.equal(lines.length, 1, `${what}: ${lines.join('\n')}`);
    assert.ok(lines[0]!.startsWith(`EndpointSlice default/chile01-a-1 metadata.annotations[${ANNOTATION_PROVISION_CLUSTER}] `), lines[0]);
    assert.match(lines[0]!, /(is not a cluster name \(.*\)|has the wrong type: expected a string, got (a|an) \w+); slice skipped$/, what);
    assert.ok(lines[0]!.length < 400, `${what}: the value is cut (${lines[0]!.length} chars)`);
    assertPrintable(lines);
  }
  const [line] = text(convertSlice(hostileSlice(PAYLOAD)).problems);
  assert.ok(line!.includes('"evil\\"\\nCOMMIT\\n*filter\\n-I INPUT 1 -p tcp --dport 2222 -j DROP'), line);
  // A good annotation still wins over the slice name; an empty one reads as absent.
  assert.equal(convertSlice(hostileSlice('peru.south-1')).record!.provisionCluster, 'peru.south-1');
  assert.equal(convertSlice(hostileSlice('')).record!.provisionCluster, null);
});

test('an object whose namespace or name is not a Kubernetes name is skipped whole and reported escaped; no Event names it', () => {
  const badName = slice('default', 'web-"x\n', 'web', [endpoint('10.2.0.10')]);
  const s = convertSlice(badName);
  assert.equal(s.record, null);
  assert.deepEqual(text(s.problems), [
    'EndpointSlice default/"web-\\"x\\n" metadata.name "web-\\"x\\n" is not a DNS subdomain (dot-separated DNS labels); slice skipped',
  ]);
  assert.equal(eventRefOf(s.problems[0]!.object), null);

  const badNs = convertService(service('Evil"ns', 'derived-web', '10.96.0.1', [{ name: 'http', port: 80 }]));
  assert.equal(badNs.record, null);
  assert.deepEqual(text(badNs.problems), [
    'Service "Evil\\"ns"/derived-web metadata.namespace "Evil\\"ns" is not a DNS label (lower-case letters, digits and "-", alphanumeric at both ends); Service skipped',
  ]);
  const numeric = convertService({ metadata: { namespace: 'default', name: 7 as unknown as string }, spec: {} });
  assert.equal(numeric.record, null);
  assert.match(text(numeric.problems)[0]!, /^Service default\/7 metadata.name 7 has the wrong type: expected a string, got a number; Service skipped$/);

  const badLabel = slice('default', 'web-1', 'web"; -A', [endpoint('10.2.0.10')]);
  assert.equal(convertSlice(badLabel).record, null);
  assert.match(text(convertSlice(badLabel).problems)[0]!, /metadata.labels\[kubernetes.io\/service-name\] "web\\"; -A" is not a Service name/);
});

test('a bad port name or a string port skips that port only, reported as what it is', () => {
  const svc = service('default', 'derived-web', '10.96.0.1', [{ name: 'http', port: 80 }, { name: 'ok', port: 81 }]);
  svc.spec!.ports![0]!.name = 'ht"tp\n-A';
  (svc.spec!.ports![1] as { port: unknown }).port = '81';
  svc.spec!.ports!.push({ name: 'fine', port: 82, protocol: 'TCP' });
  const r = convertService(svc);
  assert.deepEqual(r.record!.ports.map((p) => p.name), ['fine']);
  assert.deepEqual(r.problems.map((p) => p.message), [
    'spec.ports[0].name "ht\\"tp\\n-A" is not a DNS label (lower-case letters, digits and "-", alphanumeric at both ends); port skipped',
    'port ok: port "81" has the wrong type: expected an integer, got a string; port skipped',
  ]);

  const s = importedSlice('default', 'chile01', 'a-1', 'derived-web', [endpoint('10.2.0.10')], [{ name: 'http', port: 8080 }, { name: 'grpc', port: 9090 }]);
  (s.ports![0] as { port: unknown }).port = '8080';
  (s.ports![1] as { port: unknown }).port = 9090.5;
  const sr = convertSlice(s);
  assert.deepEqual(sr.record!.ports, []);
  assert.deepEqual(sr.problems.map((p) => p.message), [
    'port http: port "8080" has the wrong type: expected an integer, got a string; port skipped',
    'port grpc: port 9090.5 is not an integer; port skipped',
  ]);
});

test('endpoint addresses a proxy must not send to are refused one by one; the rest of the slice counts', () => {
  const ips = ['127.0.0.1', '169.254.169.254', '224.0.0.251', '255.255.255.255', '0.0.0.0', '10.2.0.10'];
  const r = convertSlice(importedSlice('default', 'chile01', 'a-1', 'derived-web', ips.map((ip) => endpoint(ip))));
  assert.deepEqual(r.record!.endpoints.map((e) => e.ip), ['10.2.0.10']);
  assert.deepEqual(r.problems.map((p) => p.message), [
    'endpoint address "127.0.0.1" is a loopback address; endpoint skipped',
    'endpoint address "169.254.169.254" is a link-local address; endpoint skipped',
    'endpoint address "224.0.0.251" is a multicast address; endpoint skipped',
    'endpoint address "255.255.255.255" is the broadcast address; endpoint skipped',
    'endpoint address "0.0.0.0" is the unspecified address; endpoint skipped',
  ]);
  const weird = importedSlice('default', 'chile01', 'a-2', 'derived-web', [endpoint('10.2.0.11')]);
  weird.endpoints.push({ addresses: [167772172 as unknown as string] }, { addresses: ['10.2.0.12"\n'] }, 'junk' as never);
  assert.deepEqual(convertSlice(weird).record!.endpoints.map((e) => e.ip), ['10.2.0.11']);
  assert.deepEqual(convertSlice(weird).problems.map((p) => p.message), [
    'endpoint address 167772172 has the wrong type: expected a string, got a number; endpoint skipped',
    'endpoint address "10.2.0.12\\"\\n" is not a valid IPv4 address; endpoint skipped',
    'endpoints[3] "junk" has the wrong type: expected an endpoint, got a string; endpoint skipped',
  ]);
});

test('ready: "false" (a string) is not ready; a wrong-typed condition reads the safe way and is reported', () => {
  const s = importedSlice('default', 'chile01', 'a-1', 'derived-web', [endpoint('10.2.0.10'), endpoint('10.2.0.11'), endpoint('10.2.0.12')]);
  s.endpoints[0]!.conditions = { ready: 'false' as unknown as boolean };
  s.endpoints[1]!.conditions = { ready: 'true' as unknown as boolean, terminating: 0 as unknown as boolean };
  const r = convertSlice(s);
  assert.deepEqual(r.record!.endpoints.map((e) => [e.ip, e.ready, e.serving, e.terminating]), [
    ['10.2.0.10', false, false, false],
    ['10.2.0.11', false, false, true],
    ['10.2.0.12', true, true, false],
  ]);
  assert.deepEqual(r.problems.map((p) => p.message), [
    'endpoints[0].conditions.ready "false" has the wrong type: expected a boolean, got a string; read as false',
    'endpoints[1].conditions.ready "true" has the wrong type: expected a boolean, got a string; read as false',
    'endpoints[1].conditions.terminating 0 has the wrong type: expected a boolean, got a number; read as true',
  ]);
});

test('a sessionAffinity timeout that is not an integer in 1-86400 is reported and the default applies', () => {
  for (const [timeout, why] of [[1.5, 'is not an integer'], ['60', 'has the wrong type: expected an integer, got a string'], [0, 'is out of range 1-86400'], [1e9, 'is out of range 1-86400']] as const) {
    const svc = service('default', 'derived-web', '10.96.0.1', [{ name: 'http', port: 80 }], { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: timeout as number } } });
    const r = convertService(svc);
    assert.equal(r.record!.affinitySeconds, 10_800, String(timeout));
    assert.deepEqual(r.problems.map((p) => p.message), [`spec.sessionAffinityConfig.clientIP.timeoutSeconds ${typeof timeout === 'string' ? `"${timeout}"` : timeout} ${why}; the default of 10800 s applies`]);
  }
  const good = service('default', 'derived-web', '10.96.0.1', [{ port: 80 }], { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } });
  assert.equal(convertService(good).record!.affinitySeconds, 60);
});

test("a non-string value of one of the agent's annotations is ignored and reported; planning does not throw", async () => {
  const fake = new FakeIptables('nft');
  fake.load(KUBE_PROXY_NAT + USER_FILTER);
  const config: Config = { ...DEFAULT_CONFIG, clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16' };
  const engine = new SyncEngine({ config, dataplane: new IptablesDataplane(fake), log: silentLogger() });
  const svc: V1Service = service('default', 'derived-web', '10.96.0.1', [{ name: 'http', port: 80 }], { annotations: { [ANNOTATION_WEIGHTS]: { chile01: 3 } as unknown as string } });
  engine.upsertService(svc);
  engine.upsertSlice(importedSlice('default', 'chile01', 'web-1', 'derived-web', [endpoint('10.2.0.10')]));
  const result = await engine.syncFull();
  assert.equal(result.quarantined, 0);
  assert.match(await fake.save('nat'), /--to-destination 10\.2\.0\.10:8080/);
  assert.ok(engine.currentProblems().includes(
    `Service default/derived-web metadata.annotations[${ANNOTATION_WEIGHTS}] {\\"chile01\\":3} has the wrong type: expected a string, got an object; annotation ignored`,
  ), engine.currentProblems().join('\n'));
});

test('the exact injection through the engine: the hostile slice is left out by name and nothing of it reaches a payload', async () => {
  const fake = new FakeIptables('nft');
  fake.load(KUBE_PROXY_NAT + USER_FILTER);
  const before = { filter: await fake.save('filter') };
  const payloads: string[] = [];
  const backend = { get mode() { return fake.mode; }, save: (t: 'nat' | 'filter') => fake.save(t), restoreSets: (p: string) => fake.restoreSets(p), saveSet: (n: string) => fake.saveSet(n), restore: (p: string) => { payloads.push(p); return fake.restore(p); } };
  const config: Config = { ...DEFAULT_CONFIG, clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16' };
  const engine = new SyncEngine({ config, dataplane: new IptablesDataplane(backend), log: silentLogger() });
  engine.upsertService(service('default', 'web', '10.96.0.1', [{ name: 'http', port: 80 }]));
  engine.upsertSlice(dispatchedSlice('default', 'chile01', 'web-1', 'web', [endpoint('10.2.0.10')], [{ name: 'http', port: 8080 }]));
  engine.upsertSlice(hostileSlice(PAYLOAD));
  for (const [, value] of HOSTILE) {
    const s = hostileSlice(value);
    s.metadata!.name = `chile01-h${HOSTILE.findIndex(([, v]) => v === value)}`;
    engine.upsertSlice(s);
  }
  await engine.syncFull();
  assert.ok(payloads.length > 0);
  for (const p of payloads) {
    assert.ok(!p.includes('evil') && !p.includes('2222') && !p.includes('aaaa'), p);
    assert.equal(p.split('\n').filter((l) => l === 'COMMIT').length, p.split('\n').filter((l) => l.startsWith('*')).length);
  }
  const foreign = (t: string) => t.split('\n').filter((l) => !l.includes('MCS-') && !l.includes('clusterset-proxy')).join('\n');
  assert.equal(foreign(await fake.save('filter')), foreign(before.filter), 'filter table: nothing added but the agent\'s own chains');
  const problems = engine.currentProblems();
  assert.equal(problems.filter((l) => l.includes(ANNOTATION_PROVISION_CLUSTER)).length, HOSTILE.length + 1, problems.join('\n'));
  assert.match(await fake.save('nat'), /default\/web:http -> chile01 10\.2\.0\.10:8080/);
});
