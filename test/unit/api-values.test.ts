import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  booleanProblem, clusterNameProblem, dnsLabelProblem, dnsSubdomainProblem, endpointAddressProblem, integerProblem,
  isClusterName, portNameProblem, portNumberProblem, serviceNameProblem, shown, SHOWN_MAX, stringValueProblem,
} from '../../src/model/api-values.js';
import { parseIPv4 } from '../../src/network/ipv4.js';

const PAYLOAD = 'evil"\nCOMMIT\n*filter\n-I INPUT 1 -p tcp --dport 2222 -j DROP\nCOMMIT\n';

test('shown() quotes strings and escapes quotes, backslashes, control and non-ASCII characters', () => {
  assert.equal(shown('brazil'), '"brazil"');
  assert.equal(shown('a"b\\c'), '"a\\"b\\\\c"');
  assert.equal(shown('x\ny\r\tz\u0000\u001b\u007f'), '"x\\ny\\r\\tz\\u0000\\u001b\\u007f"');
  assert.equal(shown('\u2028\u202e\u{1f600}'), '"\\u2028\\u202e\\u{1f600}"');
  assert.equal(shown(PAYLOAD), '"evil\\"\\nCOMMIT\\n*filter\\n-I INPUT 1 -p tcp --dport 2222 -j DROP\\nCOMM"... (67 chars)');
  for (const v of [PAYLOAD, '"', '\n', '\\', '\u0000']) {
    // Whatever the value, what is shown is one line of printable ASCII.
    assert.match(shown(v), /^[\x20-\x7e]+$/);
  }
});

test('shown() cuts long values to SHOWN_MAX characters and says how long they were', () => {
  const long = 'a'.repeat(65_536);
  assert.equal(shown(long), `"${'a'.repeat(SHOWN_MAX)}"... (65536 chars)`);
  assert.ok(shown(long).length < 100);
  // A cut never leaves half a surrogate pair.
  const emoji = `${'a'.repeat(SHOWN_MAX - 1)}\u{1f600}zz`;
  assert.equal(shown(emoji), `"${'a'.repeat(SHOWN_MAX - 1)}"... (${emoji.length} chars)`);
});

test('shown() prints other types by their JSON text, escaped and cut too', () => {
  assert.equal(shown(42), '42');
  assert.equal(shown(true), 'true');
  assert.equal(shown(null), 'null');
  assert.equal(shown(undefined), 'undefined');
  assert.equal(shown({ a: 'x"y' }), '{\\"a\\":\\"x\\\\\\"y\\"}');
  assert.equal(shown([1, 2]), '[1,2]');
  assert.match(shown(Array.from({ length: 100 }, (_, i) => i)), /^\[0,1,2,.*\.\.\. \(\d+ chars\)$/);
});

test('a cluster name is a DNS label with dots, as the config requires', () => {
  for (const ok of ['brazil', 'chile01', 'chile-01', 'eu.west-1', 'a', 'a'.repeat(63)]) assert.equal(clusterNameProblem(ok), null, ok);
  for (const bad of ['', 'Brazil', '-a', 'a-', 'a'.repeat(64), 'evil"', 'a b', 'a\nb', PAYLOAD, 'ünï', 'a_b']) {
    assert.match(clusterNameProblem(bad)!, /is not a cluster name/, JSON.stringify(bad));
    assert.equal(isClusterName(bad), false);
  }
  assert.equal(clusterNameProblem(7), 'has the wrong type: expected a string, got a number');
  assert.equal(clusterNameProblem({ x: 1 }), 'has the wrong type: expected a string, got an object');
  assert.equal(clusterNameProblem(['a']), 'has the wrong type: expected a string, got an array');
});

test('a namespace and a port name are DNS labels (RFC 1123); a Service name starts with a letter (RFC 1035)', () => {
  for (const ok of ['default', 'kube-system', '0ns', 'a'.repeat(63)]) assert.equal(dnsLabelProblem(ok), null, ok);
  for (const bad of ['', 'Default', 'a.b', '-a', 'a'.repeat(64), 'a"b', 'a\n']) assert.notEqual(dnsLabelProblem(bad), null, JSON.stringify(bad));
  assert.match(dnsLabelProblem('a'.repeat(64))!, /longer than 63/);
  for (const ok of ['web', 'derived-web', 'a1']) assert.equal(serviceNameProblem(ok), null, ok);
  for (const bad of ['1web', 'Web', 'web.x', 'a'.repeat(64), 'x"']) assert.notEqual(serviceNameProblem(bad), null, bad);
  // Port names: empty (unnamed) or a DNS label, as Kubernetes checks ServicePort and EndpointPort names.
  for (const ok of ['', 'http', 'grpc-web', '8080', 'metrics-port-long-name']) assert.equal(portNameProblem(ok), null, ok);
  for (const bad of ['HTTP', 'h_p', 'http"', 'a'.repeat(64), 5]) assert.notEqual(portNameProblem(bad), null, String(bad));
});

test('an EndpointSlice name is a DNS subdomain of at most 253 characters', () => {
  for (const ok of ['imported-chile01-web-abc12', 'a.b.c', 'a'.repeat(253)]) assert.equal(dnsSubdomainProblem(ok), null);
  for (const bad of ['', 'A', 'a..b', '.a', 'a.', 'a'.repeat(254), 'a"b', 'a\nb']) assert.notEqual(dnsSubdomainProblem(bad), null, JSON.stringify(bad));
});

test('numbers are numbers: a string port is a wrong type, not out of range; integers are whole', () => {
  assert.equal(portNumberProblem(80), null);
  assert.equal(portNumberProblem('80'), 'has the wrong type: expected an integer, got a string');
  assert.equal(portNumberProblem(80.5), 'is not an integer');
  assert.equal(portNumberProblem(0), 'is out of range 1-65535');
  assert.equal(portNumberProblem(65536), 'is out of range 1-65535');
  assert.equal(portNumberProblem(null), 'has the wrong type: expected an integer, got null');
  assert.equal(integerProblem(10, 1, 86_400), null);
  assert.equal(integerProblem(1.5, 1, 86_400), 'is not an integer');
  assert.equal(integerProblem('10', 1, 86_400), 'has the wrong type: expected an integer, got a string');
  assert.equal(integerProblem(86_401, 1, 86_400), 'is out of range 1-86400');
  assert.equal(integerProblem(Number.NaN, 1, 86_400), 'is not an integer');
});

test('conditions are booleans and annotation values strings', () => {
  assert.equal(booleanProblem(false), null);
  assert.equal(booleanProblem('false'), 'has the wrong type: expected a boolean, got a string');
  assert.equal(stringValueProblem('x'), null);
  assert.equal(stringValueProblem(1), 'has the wrong type: expected a string, got a number');
  assert.equal(stringValueProblem({ a: 1 }), 'has the wrong type: expected a string, got an object');
});

test('endpoint addresses: loopback, link-local, multicast, broadcast and unspecified are refused', () => {
  for (const ok of ['10.2.0.10', '192.168.1.1', '169.253.0.1', '169.255.0.1', '126.255.255.255', '128.0.0.1', '223.255.255.255', '240.0.0.1']) {
    assert.equal(endpointAddressProblem(ok), null, ok);
  }
  const refused: [string, RegExp][] = [
    ['127.0.0.1', /loopback/], ['127.255.0.9', /loopback/], ['169.254.1.1', /link-local/], ['169.254.169.254', /link-local/],
    ['224.0.0.1', /multicast/], ['239.255.255.250', /multicast/], ['255.255.255.255', /broadcast/], ['0.0.0.0', /unspecified/],
    ['10.2.0.300', /not a valid IPv4/], ['010.2.0.1', /not a valid IPv4/], ['fd00::1', /not a valid IPv4/], ['10.2.0.1"', /not a valid IPv4/],
  ];
  for (const [ip, why] of refused) assert.match(endpointAddressProblem(ip)!, why, ip);
  assert.equal(endpointAddressProblem(167772161), 'has the wrong type: expected a string, got a number');
  assert.equal(endpointAddressProblem(undefined), 'has the wrong type: expected a string, got nothing');
  // The parser under it takes whatever an API object holds without throwing.
  for (const v of [42, null, undefined, {}, ['10.0.0.1']]) assert.equal(parseIPv4(v as unknown as string), null);
});

test('parseIPv4 reads strict dotted quads only', () => {
  assert.equal(parseIPv4('0.0.0.0'), 0);
  assert.equal(parseIPv4('255.255.255.255'), 0xffffffff);
  assert.equal(parseIPv4('10.2.0.10'), 0x0a02000a);
  assert.equal(parseIPv4('100.200.250.1'), ((100 * 256 + 200) * 256 + 250) * 256 + 1);
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.04', '00.1.1.1', '1..2.3', '1.2.3.4.', '.1.2.3.4', '1.2.3.4 ', ' 1.2.3.4',
    '1.2.3.-4', '256.0.0.1', '1.2.3.256', '1000.1.1.1', '1.2.3.4\n', '1.2.3.4"', 'a.b.c.d', '1.2.3.4/32', '::1']) {
    assert.equal(parseIPv4(bad), null, JSON.stringify(bad));
  }
});
