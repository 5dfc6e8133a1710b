import { test } from 'node:test';
import { FakeNftables } from '../../src/nftables/fake.js';
import { CASES } from './conformance.js';

for (const c of CASES) {
  test(`fake nf_tables: ${c.name}`, async () => {
    await c.run(new FakeNftables());
  });
}
