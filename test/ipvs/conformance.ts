// IPVS behaviour the agent relies on, as scenarios run against any
// IpvsClient: the fake in the unit suite, the kernel (inside UML) through the
// same file. A difference between the two fails one of them.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IpvsError, type DestSpec, type IpvsClient, type ServiceKey, type ServiceSpec } from '../../src/ipvs/types.js';

const tcp80: ServiceKey = { kind: 'address', family: 4, protocol: 'tcp', address: '10.96.0.10', port: 80 };
const udp80: ServiceKey = { ...tcp80, protocol: 'udp' };
const mark: ServiceKey = { kind: 'fwmark', family: 4, fwmark: 0x4000 };
const v6: ServiceKey = { kind: 'address', family: 6, protocol: 'tcp', address: 'fd00:10:96::a', port: 443 };

const service = (key: ServiceKey, extra: Partial<ServiceSpec> = {}): ServiceSpec => ({
  key,
  scheduler: 'wrr',
  flags: 0,
  timeout: 0,
  netmask: key.family === 4 ? 0xffffffff : 128,
  ...extra,
});

const dest = (address: string, port: number, weight = 1, extra: Partial<DestSpec> = {}): DestSpec => ({
  address,
  port,
  weight,
  forward: 'masq',
  upperThreshold: 0,
  lowerThreshold: 0,
  ...extra,
});

async function refused(work: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(work, (err: unknown) => {
    assert.ok(err instanceof IpvsError, `expected an IpvsError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

const byText = <T>(items: T[]): T[] => [...items].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));

async function weights(client: IpvsClient, key: ServiceKey): Promise<Record<string, number>> {
  return Object.fromEntries((await client.dests(key)).map((d) => [`${d.address}:${d.port}`, d.weight]));
}

type Scenario = (client: IpvsClient) => Promise<void>;

export const SCENARIOS: ReadonlyArray<readonly [string, Scenario]> = [
  ['an emptied table lists no services', async (c) => {
    await c.addService(service(tcp80));
    await c.flush();
    assert.deepEqual(await c.services(), []);
  }],
  ['address and fwmark services read back as configured', async (c) => {
    await c.addService(service(tcp80));
    await c.addService(service(mark, { scheduler: 'rr' }));
    await c.addService(service(udp80, { flags: 1, timeout: 300 }));
    assert.deepEqual(byText(await c.services()), byText([
      service(tcp80), service(mark, { scheduler: 'rr' }), service(udp80, { flags: 1, timeout: 300 }),
    ]));
  }],
  ['adding an existing service is EEXIST, for both kinds', async (c) => {
    await c.addService(service(tcp80));
    await c.addService(service(mark));
    await refused(c.addService(service(tcp80, { scheduler: 'rr' })), 'EEXIST');
    await refused(c.addService(service(mark)), 'EEXIST');
  }],
  ['a missing service is ESRCH for every request that names it', async (c) => {
    await refused(c.updateService(service(tcp80)), 'ESRCH');
    await refused(c.deleteService(mark), 'ESRCH');
    await refused(c.addDest(tcp80, dest('10.0.0.1', 8080)), 'ESRCH');
    await refused(c.updateDest(mark, dest('10.0.0.1', 0)), 'ESRCH');
    await refused(c.deleteDest(tcp80, dest('10.0.0.1', 8080)), 'ESRCH');
  }],
  ['a missing service lists no real servers', async (c) => {
    assert.deepEqual(await c.dests(tcp80), []);
  }],
  ['real servers read back with their weights', async (c) => {
    await c.addService(service(tcp80));
    await c.addDest(tcp80, dest('10.1.0.1', 8080, 3));
    await c.addDest(tcp80, dest('10.1.0.2', 8080, 1));
    const got = await c.dests(tcp80);
    assert.deepEqual(byText(got.map(({ activeConns, inactiveConns, persistentConns, ...spec }) => spec)), byText([dest('10.1.0.1', 8080, 3), dest('10.1.0.2', 8080, 1)]));
    assert.ok(got.every((d) => d.activeConns === 0 && d.inactiveConns === 0 && d.persistentConns === 0));
  }],
  ['adding an existing real server is EEXIST; a missing one is ENOENT', async (c) => {
    await c.addService(service(mark));
    await c.addDest(mark, dest('10.1.0.1', 0));
    await refused(c.addDest(mark, dest('10.1.0.1', 0, 5)), 'EEXIST');
    await refused(c.updateDest(mark, dest('10.1.0.2', 0)), 'ENOENT');
    await refused(c.deleteDest(mark, dest('10.1.0.2', 0)), 'ENOENT');
    // Same address, other port: another real server.
    await c.addDest(mark, dest('10.1.0.1', 8080));
    assert.deepEqual(await weights(c, mark), { '10.1.0.1:0': 1, '10.1.0.1:8080': 1 });
  }],
  ['a weight changes in place, and 0 keeps the real server', async (c) => {
    await c.addService(service(mark));
    await c.addDest(mark, dest('10.1.0.1', 0, 3));
    await c.addDest(mark, dest('10.1.0.2', 0, 1));
    await c.updateDest(mark, dest('10.1.0.1', 0, 0));
    assert.deepEqual(await weights(c, mark), { '10.1.0.1:0': 0, '10.1.0.2:0': 1 });
    await c.deleteDest(mark, dest('10.1.0.1', 0));
    assert.deepEqual(await weights(c, mark), { '10.1.0.2:0': 1 });
  }],
  ['a service update changes its scheduler and persistence', async (c) => {
    await c.addService(service(tcp80));
    await c.updateService(service(tcp80, { scheduler: 'rr', flags: 1, timeout: 60 }));
    assert.deepEqual(await c.services(), [service(tcp80, { scheduler: 'rr', flags: 1, timeout: 60 })]);
  }],
  ['an unknown scheduler is ENOENT', async (c) => {
    await refused(c.addService(service(tcp80, { scheduler: 'nosuch' })), 'ENOENT');
    await c.addService(service(tcp80));
    await refused(c.updateService(service(tcp80, { scheduler: 'nosuch' })), 'ENOENT');
    assert.deepEqual(await c.services(), [service(tcp80)]);
  }],
  ['a lower threshold above the upper one is ERANGE', async (c) => {
    await c.addService(service(tcp80));
    await refused(c.addDest(tcp80, dest('10.1.0.1', 80, 1, { lowerThreshold: 10, upperThreshold: 5 })), 'ERANGE');
    await c.addDest(tcp80, dest('10.1.0.1', 80, 1, { lowerThreshold: 5, upperThreshold: 10 }));
    assert.deepEqual((await c.dests(tcp80)).map((d) => [d.lowerThreshold, d.upperThreshold]), [[5, 10]]);
  }],
  ['a zero, multicast or broadcast real server is EINVAL', async (c) => {
    await c.addService(service(tcp80));
    await c.addService(service(v6));
    for (const address of ['0.0.0.0', '224.0.0.1', '255.255.255.255']) await refused(c.addDest(tcp80, dest(address, 80)), 'EINVAL');
    for (const address of ['::', 'ff02::1']) await refused(c.addDest(v6, dest(address, 80)), 'EINVAL');
    await c.addDest(tcp80, dest('192.0.2.1', 80));
    assert.deepEqual(await weights(c, tcp80), { '192.0.2.1:80': 1 });
  }],
  ['deleting a service deletes its real servers', async (c) => {
    await c.addService(service(tcp80));
    await c.addDest(tcp80, dest('10.1.0.1', 80));
    await c.deleteService(tcp80);
    assert.deepEqual(await c.services(), []);
    await c.addService(service(tcp80));
    assert.deepEqual(await c.dests(tcp80), []);
  }],
  ['IPv6 services and real servers read back in canonical text', async (c) => {
    await c.addService(service({ ...v6, address: 'fd00:10:96:0:0:0:0:a' }));
    await c.addDest(v6, dest('fd00:1::1', 8443, 2));
    assert.deepEqual(await c.services(), [service(v6)]);
    assert.deepEqual(await weights(c, v6), { 'fd00:1::1:8443': 2 });
    await refused(c.addService(service({ ...v6, port: 8443 }, { netmask: 0 })), 'EINVAL');
  }],
  ['many concurrent requests all land', async (c) => {
    await c.addService(service(mark));
    const count = 300;
    await Promise.all(Array.from({ length: count }, (_, i) => c.addDest(mark, dest(`10.2.${i >> 8}.${i & 255}`, 0, 1 + (i % 7)))));
    const got = await c.dests(mark);
    assert.equal(got.length, count);
    assert.equal(got.reduce((sum, d) => sum + d.weight, 0), Array.from({ length: count }, (_, i) => 1 + (i % 7)).reduce((a, b) => a + b, 0));
  }],
  ['read-backs issued amid concurrent changes each see a whole table', async (c) => {
    const marks = Array.from({ length: 20 }, (_, i): ServiceKey => ({ kind: 'fwmark', family: 4, fwmark: 0x100 + i }));
    for (const key of marks) await c.addService(service(key));
    await Promise.all(marks.map((key) => c.addDest(key, dest('10.3.0.1', 0))));
    // Each service's list is read while the others gain a second real server.
    const [lists] = await Promise.all([
      Promise.all(marks.map((key) => c.dests(key))),
      Promise.all(marks.map((key) => c.addDest(key, dest('10.3.0.2', 0)))),
      c.services().then((all) => assert.equal(all.length, marks.length)),
    ]);
    for (const list of lists) assert.ok(list.length === 1 || list.length === 2, `a list of ${list.length}`);
    for (const key of marks) assert.equal((await c.dests(key)).length, 2);
  }],
];

/** Registers every scenario, each on an emptied table. */
export function ipvsConformance(open: () => IpvsClient): void {
  for (const [name, scenario] of SCENARIOS) {
    test(name, async () => {
      const client = open();
      try {
        await client.flush();
        await scenario(client);
      } finally {
        await client.flush();
        client.close();
      }
    });
  }
}
