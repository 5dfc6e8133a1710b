// Inside UML: the table programmed over netlink and read back renders exactly
// as `ipvsadm -Sn` prints the kernel's state.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execa } from 'execa';
import { NetlinkIpvs } from '../../src/ipvs/netlink-client.js';
import { renderIpvsadmSave } from '../../src/ipvs/save-format.js';
import { SAVE_TABLE, SAVE_TEXT } from './save-table.js';

test('read back over netlink, the table renders byte for byte as ipvsadm -Sn prints it', async () => {
  const ipvs = new NetlinkIpvs();
  try {
    await ipvs.flush();
    for (const { service, dests } of SAVE_TABLE) {
      await ipvs.addService(service);
      for (const dest of dests) await ipvs.addDest(service.key, dest);
    }
    const table = await Promise.all((await ipvs.services()).map(async (service) => ({ service, dests: await ipvs.dests(service.key) })));
    const { stdout } = await execa('ipvsadm', ['-Sn'], { stripFinalNewline: false });
    assert.equal(stdout, SAVE_TEXT);
    assert.equal(renderIpvsadmSave(table), stdout);
  } finally {
    await ipvs.flush();
    ipvs.close();
  }
});
