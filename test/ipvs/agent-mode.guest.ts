// The agent's IPVS mode in a real kernel, inside UML (run by
// test/uml/ipvs-agent-mode.test.ts): the data plane built exactly as the
// agent builds it (startIpvs: netlink client, the kernel's IPVS family
// resolved, the iptables backend's aux tools) under the sync engine, fed a
// Service and an imported slice, programs the fwmark service and the rules
// beside it in one full sync; the cleanup --cleanup runs removes both.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execa } from 'execa';
import { DEFAULT_CONFIG, type Config } from '../../src/config/schema.js';
import { startIpvs } from '../../src/ipvs/agent-mode.js';
import { MARK_CHAIN, ROUTE_TABLE } from '../../src/ipvs/aux.js';
import { silentLogger } from '../../src/log.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { endpoint, importedSlice, service } from '../support/fixtures.js';

const config: Config = { ...DEFAULT_CONFIG, clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16' };
const out = async (cmd: string, args: string[]) => (await execa(cmd, args)).stdout;

test('one full sync through the agent\'s IPVS data plane programs the table and the rules; cleanup removes both', async () => {
  const dp = await startIpvs('legacy');
  const engine = new SyncEngine({ config, dataplane: dp, log: silentLogger() });
  engine.upsertService(service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]));
  engine.upsertSlice(importedSlice('default', 'chile01', 'serve-abc', 'derived-serve', [endpoint('10.2.0.10'), endpoint('10.2.0.11')]));
  const result = await engine.syncFull();
  assert.ok(result.restores > 0);

  const table = await out('ipvsadm', ['-Sn']);
  const mark = /^-A -f (\d+) -s wrr/m.exec(table)?.[1];
  assert.ok(mark, table);
  assert.match(table, new RegExp(`^-a -f ${mark} -r 10\\.2\\.0\\.10:8080 -m -w 1$`, 'm'));
  assert.match(table, new RegExp(`^-a -f ${mark} -r 10\\.2\\.0\\.11:8080 -m -w 1$`, 'm'));
  const mangle = await out('iptables-legacy-save', ['-t', 'mangle']);
  assert.match(mangle, new RegExp(`-A ${MARK_CHAIN} -d 10\\.96\\.0\\.50/32 -p tcp -m tcp --dport 80 .*--set-xmark 0x${Number(mark).toString(16)}/0xffffffff`));
  assert.match(await out('iptables-legacy-save', ['-t', 'nat']), /-A POSTROUTING -m mark --mark 0x4d000000\/0xff000000 .*MASQUERADE/);
  assert.match(await out('ip', ['rule', 'show']), /fwmark 0x4d000000\/0xff000000 lookup 77/);
  assert.match(await out('ip', ['route', 'show', 'table', String(ROUTE_TABLE), 'type', 'local']), /0\.0\.0\.0\/0 dev lo|default dev lo/);

  await engine.cleanup();
  await dp.cleanupAll();
  assert.doesNotMatch(await out('ipvsadm', ['-Sn']), /-f /);
  assert.doesNotMatch(await out('iptables-legacy-save', ['-t', 'mangle']), /MCS-IPVS/);
  assert.doesNotMatch(await out('iptables-legacy-save', ['-t', 'nat']), /0x4d000000/);
  assert.doesNotMatch(await out('ip', ['rule', 'show']), /0x4d000000/);
});
