// The IPVS generic netlink layout, checked byte for byte against the kernel
// header's layout (attribute numbers, byte orders, 16-byte address unions).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inetAddrBytes, inetAddrText } from '../../src/ipvs/address.js';
import { destPayload, parseDest, parseService, servicePayload } from '../../src/ipvs/codec.js';

const hex = (bufs: Uint8Array[]) => Buffer.concat(bufs).toString('hex');
const bytes = (text: string) => Buffer.from(text.replace(/\s+/g, ''), 'hex');

const tcp80 = { kind: 'address', family: 4, protocol: 'tcp', address: '10.96.0.10', port: 80 } as const;

// Nested service attribute (type 1) of a full address-service entry.
const TCP80_FULL = `
  5400 0100
    0600 0100 0200 0000
    0600 0200 0600 0000
    1400 0300 0a60000a 000000000000000000000000
    0600 0400 0050 0000
    0800 0600 77727200
    0c00 0700 00000000 ffffffff
    0800 0800 2c010000
    0800 0900 ffffffff`;

test('a full address service encodes family, protocol, address, port (network order) and settings', () => {
  const payload = servicePayload({ key: tcp80, scheduler: 'wrr', flags: 0, timeout: 300, netmask: 0xffffffff });
  assert.equal(hex(payload), bytes(TCP80_FULL).toString('hex'));
});

test('an IPv4 persistence netmask travels in network order, an IPv6 one as a prefix length', () => {
  const v4 = hex(servicePayload({ key: tcp80, scheduler: 'wrr', flags: 1, timeout: 300, netmask: 0xffffff00 }));
  assert.ok(v4.endsWith('08000900ffffff00'), v4);
  const v6 = hex(servicePayload({ key: { kind: 'fwmark', family: 6, fwmark: 1 }, scheduler: 'wrr', flags: 1, timeout: 300, netmask: 64 }));
  assert.ok(v6.endsWith('0800090040000000'), v6);
});

test('a fwmark service is named by family and mark alone', () => {
  assert.equal(hex(servicePayload({ kind: 'fwmark', family: 4, fwmark: 0x4000 })), bytes('1400 0100  0600 0100 0200 0000  0800 0500 00400000').toString('hex'));
});

test('a real server follows its service, with its own nested attribute (type 2)', () => {
  const payload = destPayload({ kind: 'fwmark', family: 4, fwmark: 1 }, { address: '10.1.0.2', port: 8080, weight: 3, forward: 'masq', upperThreshold: 0, lowerThreshold: 0 });
  assert.equal(hex(payload), bytes(`
    1400 0100  0600 0100 0200 0000  0800 0500 01000000
    4800 0200
      1400 0100 0a010002 000000000000000000000000
      0600 0200 1f90 0000
      0600 0b00 0200 0000
      0800 0300 00000000
      0800 0400 03000000
      0800 0500 00000000
      0800 0600 00000000`).toString('hex'));
});

test('a dumped service drops the kernel-internal hashed flag and ignores attributes it does not use', () => {
  // As the kernel dumps it: flags with the hashed bit (2), plus a stats attribute (10).
  const reply = bytes(`
    5c00 0100
      0600 0100 0200 0000
      0600 0200 1100 0000
      1400 0300 0a60000a 000000000000000000000000
      0600 0400 0035 0000
      0800 0600 72720000
      0c00 0700 03000000 ffffffff
      0800 0800 3c000000
      0800 0900 ffffff00
      0800 0a00 00000000`);
  assert.deepEqual(parseService(reply), {
    key: { kind: 'address', family: 4, protocol: 'udp', address: '10.96.0.10', port: 53 },
    scheduler: 'rr', flags: 1, timeout: 60, netmask: 0xffffff00,
  });
});

test('a dumped fwmark service has no protocol, address or port', () => {
  const reply = bytes(`
    3800 0100
      0600 0100 0a00 0000
      0800 0500 00400000
      0800 0600 77727200
      0c00 0700 02000000 ffffffff
      0800 0800 00000000
      0800 0900 80000000`);
  assert.deepEqual(parseService(reply), { key: { kind: 'fwmark', family: 6, fwmark: 0x4000 }, scheduler: 'wrr', flags: 0, timeout: 0, netmask: 128 });
});

test('a dumped real server carries its counters', () => {
  const reply = bytes(`
    5800 0200
      1400 0100 0a010002 000000000000000000000000
      0600 0200 1f90 0000
      0800 0300 00000000
      0800 0400 05000000
      0800 0500 00000000
      0800 0600 00000000
      0800 0700 02000000
      0800 0800 07000000
      0800 0900 00000000`);
  assert.deepEqual(parseDest(reply, 4), {
    address: '10.1.0.2', port: 8080, weight: 5, forward: 'masq', upperThreshold: 0, lowerThreshold: 0,
    activeConns: 2, inactiveConns: 7, persistentConns: 0,
  });
});

test('a reply without the nested attribute is an error, not an empty object', () => {
  assert.throws(() => parseService(bytes('0800 0200 00000000')), /without a service/);
  assert.throws(() => parseDest(bytes('0c00 0200 0600 0100 0200 0000'), 4), /IPVS reply without a forwarding method/);
});

test('IPv6 addresses read back in RFC 5952 text', () => {
  for (const [input, canonical] of [
    ['::', '::'],
    ['::1', '::1'],
    ['fd00::', 'fd00::'],
    ['2001:DB8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
  ] as const) {
    assert.equal(inetAddrText(6, inetAddrBytes(6, input)), canonical, input);
  }
  assert.equal(inetAddrBytes(6, 'fd00::a').toString('hex'), 'fd00000000000000000000000000000a');
});

test('an address of the other family is refused', () => {
  assert.throws(() => inetAddrBytes(4, 'fd00::1'), /not an IPv4 address/);
  assert.throws(() => inetAddrBytes(6, '10.0.0.1'), /not an IPv6 address/);
  assert.throws(() => inetAddrBytes(6, '::ffff:10.0.0.1'), /not an IPv6 address/);
});
