import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  addressBytes, addressFromBytes, canonicalAddress, canonicalCidr, cidrContains, cidrProblem, cidrsOverlap, familyOf, mustParseAddress, parseAddress, parseCidr,
} from '../../src/network/address.js';

const cidr = (t: string) => {
  const c = parseCidr(t);
  assert.ok(c, t);
  return c;
};
const ip = (t: string) => mustParseAddress(t);

test('addresses: both families parse strictly, as the API writes them', () => {
  for (const good of ['0.0.0.0', '10.2.0.10', '255.255.255.255']) assert.equal(familyOf(good), 'IPv4', good);
  for (const good of ['::', '::1', 'fd00:10:244::1', 'FD00:0:0::1', '2001:db8::ffff:1.2.3.4']) assert.equal(familyOf(good), 'IPv6', good);
  for (const bad of ['010.1.1.1', '1.2.3', '1.2.3.256', '0x1.2.3.4', '1.2.3.4 ', '', 'fe80::1%eth0', '1::2::3', 'fd00::/64', '[::1]', 'gw-1']) {
    assert.equal(parseAddress(bad), null, bad);
  }
});

test('addresses: one canonical text per value (RFC 5952 for IPv6), as the kernel reports it', () => {
  assert.equal(canonicalAddress('FD00:0:0:0:0:0:0:1'), 'fd00::1');
  assert.equal(canonicalAddress('1:0:0:2:0:0:0:3'), '1:0:0:2::3', 'the longest zero run is compressed');
  assert.equal(canonicalAddress('1:0:2:3:4:5:6:7'), '1:0:2:3:4:5:6:7', 'a single zero group is not');
  assert.equal(canonicalAddress('192.168.50.11'), '192.168.50.11');
  assert.equal(canonicalCidr('FD00:10:244:0::/56'), 'fd00:10:244::/56');
});

test('addresses: netlink bytes round-trip in both families', () => {
  assert.deepEqual([...addressBytes(ip('10.2.0.10'))], [10, 2, 0, 10]);
  const v6 = addressBytes(ip('fd00:50::11'));
  assert.equal(v6.length, 16);
  assert.equal(v6.readUInt16BE(0), 0xfd00);
  assert.equal(v6.readUInt16BE(14), 0x11);
  assert.equal(addressFromBytes(v6)?.text, 'fd00:50::11');
  assert.equal(addressFromBytes(Buffer.from([192, 168, 50, 11]))?.text, '192.168.50.11');
  assert.equal(addressFromBytes(Buffer.alloc(5)), null);
  assert.equal(addressFromBytes(undefined), null);
});

test('CIDRs: a network address and a prefix length within the family; the problem is named', () => {
  assert.deepEqual({ ...cidr('10.244.0.0/16'), base: undefined }, { family: 'IPv4', bits: 16, text: '10.244.0.0/16', base: undefined });
  assert.equal(cidr('fd00:10:244::/56').family, 'IPv6');
  assert.equal(cidr('::/0').bits, 0);
  assert.equal(cidr('0.0.0.0/0').bits, 0);
  assert.match(cidrProblem('10.0.0.1/8')!, /host bits set \(the network is 10\.0\.0\.0\/8\)/);
  assert.match(cidrProblem('fd00::1/64')!, /host bits set \(the network is fd00::\/64\)/);
  assert.match(cidrProblem('10.0.0.0/33')!, /0 to 32/);
  assert.match(cidrProblem('fd00::/129')!, /0 to 128/);
  assert.match(cidrProblem('10.0.0.0/08')!, /0 to 32/, 'no leading zeros in the length');
  assert.match(cidrProblem('10.0.0.0')!, /address\/prefix-length/);
  assert.match(cidrProblem('10.0.0.0/8/8')!, /address\/prefix-length/);
  assert.match(cidrProblem('fe80::%eth0/64')!, /no valid IPv4 or IPv6 address/);
  assert.equal(cidrProblem('fd00:10:244::/56'), null);
});

test('CIDR math, IPv4: overlap and containment at the edges of the space', () => {
  assert.ok(cidrsOverlap(cidr('10.2.0.0/16'), cidr('10.2.128.0/17')));
  assert.ok(cidrsOverlap(cidr('10.2.128.0/17'), cidr('10.2.0.0/16')));
  assert.ok(!cidrsOverlap(cidr('10.2.0.0/16'), cidr('10.3.0.0/16')));
  assert.ok(cidrsOverlap(cidr('0.0.0.0/0'), cidr('255.255.255.255/32')));
  assert.ok(!cidrsOverlap(cidr('255.255.255.254/32'), cidr('255.255.255.255/32')));
  assert.ok(cidrContains(cidr('10.96.0.0/12'), ip('10.111.255.255')));
  assert.ok(!cidrContains(cidr('10.96.0.0/12'), ip('10.112.0.0')));
  assert.ok(cidrContains(cidr('0.0.0.0/0'), ip('255.255.255.255')));
});

test('CIDR math, IPv6: overlap and containment, prefixes that end inside a group', () => {
  assert.ok(cidrsOverlap(cidr('fd00:2::/56'), cidr('fd00:2:0:ff::/64')));
  assert.ok(!cidrsOverlap(cidr('fd00:2::/56'), cidr('fd00:2:0:100::/64')), 'the 56th bit is inside the fourth group');
  assert.ok(cidrsOverlap(cidr('::/0'), cidr('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128')));
  assert.ok(!cidrsOverlap(cidr('ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/128'), cidr('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128')));
  assert.ok(cidrContains(cidr('fd00:10:96::/112'), ip('fd00:10:96::ffff')));
  assert.ok(!cidrContains(cidr('fd00:10:96::/112'), ip('fd00:10:96::1:0')));
  assert.ok(cidrContains(cidr('fd00:10:96::/112'), ip('FD00:10:96:0:0:0:0:5')), 'any text of the address');
});

test('CIDR math never crosses families: ::/0 holds no IPv4 address, 0.0.0.0/0 no IPv6 one, mapped addresses included', () => {
  assert.ok(!cidrsOverlap(cidr('::/0'), cidr('10.0.0.0/8')));
  assert.ok(!cidrsOverlap(cidr('0.0.0.0/0'), cidr('fd00::/8')));
  assert.ok(!cidrContains(cidr('::/0'), ip('10.2.0.10')));
  assert.ok(!cidrContains(cidr('0.0.0.0/0'), ip('::ffff:10.2.0.10')));
  assert.ok(cidrContains(cidr('::ffff:0:0/96'), ip('::ffff:10.2.0.10')), 'an IPv4-mapped address is an IPv6 address');
});
