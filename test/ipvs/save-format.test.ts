import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderIpvsadmSave } from '../../src/ipvs/save-format.js';
import { SAVE_TABLE, SAVE_TEXT } from './save-table.js';

test('a table renders as ipvsadm -Sn prints it, sorted as ipvsadm sorts', () => {
  assert.equal(renderIpvsadmSave(SAVE_TABLE), SAVE_TEXT);
});

test('an empty table renders as nothing', () => {
  assert.equal(renderIpvsadmSave([]), '');
});

test('a real server ipvsadm cannot express is refused, not misprinted', () => {
  const service = SAVE_TABLE[1]!.service;
  assert.throws(() => renderIpvsadmSave([{ service, dests: [{ ...SAVE_TABLE[1]!.dests[0]!, forward: 'local' }] }]), /no switch for a local real server/);
});
