import { test } from 'node:test';
import assert from 'node:assert/strict';
import { releaseHeap } from '../../src/ops/heap-release.js';

test('heap release: the pages garbage took are given back', async () => {
  // Grows the heap the way a large list does: many objects that live a while, then become garbage.
  let held: object[] | null = [];
  for (let i = 0; i < 400_000; i++) held.push({ name: `object-${i}`, values: [i, i + 1] });
  const grown = process.memoryUsage().heapTotal;
  held = null;
  assert.equal(await releaseHeap(), true);
  const after = process.memoryUsage().heapTotal;
  assert.ok(after < grown / 2, `heapTotal ${grown} → ${after}: expected at least half returned`);
});
