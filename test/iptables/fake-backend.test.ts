// What the fake offers beyond the conformance scenarios: seeding, the save
// layout of every table, and the history tests assert payloads against.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RestoreError } from '../../src/iptables/backend.js';
import { FakeIptables } from '../../src/iptables/fake-backend.js';
import { largeNatPayload } from '../support/large-payload.js';

describe('FakeIptables', () => {
  test('starts with every table holding only its built-in chains with ACCEPT policies', async () => {
    const fake = new FakeIptables();
    assert.equal(fake.mode, 'nft');
    assert.equal(await fake.save('raw'), '*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n');
    assert.equal(
      await fake.save('mangle'),
      '*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n',
    );
  });

  test('load seeds the tables in the text, and save prints them in iptables-save order whatever the input order', async () => {
    const fake = new FakeIptables('legacy');
    fake.load('*nat\n:b - [0:0]\n:OUTPUT ACCEPT [5:300]\n:B - [0:0]\n-A b -j RETURN\n-A OUTPUT -j b\nCOMMIT\n');
    assert.equal(
      await fake.save('nat'),
      '*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:B - [0:0]\n:b - [0:0]\n-A OUTPUT -j b\n-A b -j RETURN\nCOMMIT\n',
    );
  });

  test('load replaces only the tables present in the text', async () => {
    const fake = new FakeIptables();
    fake.load('*filter\n:INPUT DROP [0:0]\n:F - [0:0]\nCOMMIT\n*nat\n:N - [0:0]\nCOMMIT\n');
    fake.load('*nat\n:M - [0:0]\nCOMMIT\n');
    assert.match(await fake.save('filter'), /:INPUT DROP \[0:0\]\n[^]*:F - \[0:0\]/);
    assert.doesNotMatch(await fake.save('nat'), /:N /);
    assert.match(await fake.save('nat'), /:M - \[0:0\]/);
  });

  test('load rejects a table the fake does not hold', () => {
    assert.throws(() => new FakeIptables().load('*security\n:INPUT ACCEPT [0:0]\nCOMMIT\n'), /no table security/);
  });

  test('jumps in loaded rules count as references: -X of their target fails', async () => {
    const fake = new FakeIptables('legacy');
    fake.load('*nat\n:OUTPUT ACCEPT [0:0]\n:A - [0:0]\n-A OUTPUT -j A\nCOMMIT\n');
    await assert.rejects(fake.restore('*nat\n-X A\nCOMMIT\n'), (err: unknown) => err instanceof RestoreError && err.line === 2);
    await fake.restore('*nat\n-D OUTPUT -j A\n-X A\nCOMMIT\n');
    assert.doesNotMatch(await fake.save('nat'), /:A /);
  });

  test('history records every payload in order with its outcome', async () => {
    const fake = new FakeIptables();
    const good = '*nat\n:A - [0:0]\nCOMMIT\n';
    const bad = '*nat\n-A NOPE -j RETURN\nCOMMIT\n';
    await fake.restore(good);
    await assert.rejects(fake.restore(bad), RestoreError);
    assert.deepEqual(
      fake.history.map((h) => [h.payload, h.error?.line ?? null]),
      [
        [good, null],
        [bad, 2],
      ],
    );
  });

  test('a RestoreError names the tool and carries stderr and the blamed line', async () => {
    const fake = new FakeIptables('nft');
    await assert.rejects(fake.restore('*nat\n:A - [0:0]\n-D A -j RETURN\nCOMMIT\n'), (err: unknown) => {
      assert.ok(err instanceof RestoreError);
      assert.equal(err.line, 3);
      assert.match(err.message, /^iptables-nft-restore: line 3 failed: Bad rule/);
      assert.equal(err.stderr, `${err.message}\n`);
      return true;
    });
  });

  test('a 20k-rule payload applies whole and saves back every chain and rule', async () => {
    const fake = new FakeIptables();
    await fake.restore(largeNatPayload());
    assert.equal((await fake.save('nat')).split('\n').length, 4 + 5000 + 20000 + 3);
  });
});
