// Admission of requests on one netlink socket: bounded, ordered, dumps alone.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Admission } from '../../src/ipvs/admission.js';

/** Work that records what ran alongside it and finishes when released. */
function recorder() {
  const running = new Set<string>();
  const log: string[] = [];
  let peak = 0;
  const releases = new Map<string, () => void>();
  const work = (name: string) => async () => {
    running.add(name);
    peak = Math.max(peak, running.size);
    log.push(`${name} with [${[...running].filter((n) => n !== name).sort().join(',')}]`);
    await new Promise<void>((resolve) => releases.set(name, resolve));
    running.delete(name);
    return name;
  };
  const release = async (name: string) => {
    for (let i = 0; i < 10 && !releases.has(name); i++) await new Promise((r) => setImmediate(r));
    const done = releases.get(name);
    assert.ok(done, `${name} never started`);
    done();
  };
  return { work, release, log, peak: () => peak };
}

test('no more than the bound run at once, and the rest start in order as slots free', async () => {
  const r = recorder();
  const admission = new Admission(2);
  const all = ['a', 'b', 'c', 'd'].map((n) => admission.run(false, r.work(n)));
  await r.release('a');
  await r.release('b');
  await r.release('c');
  await r.release('d');
  assert.deepEqual(await Promise.all(all), ['a', 'b', 'c', 'd']);
  assert.equal(r.peak(), 2);
  assert.deepEqual(r.log.map((line) => line[0]), ['a', 'b', 'c', 'd']);
});

test('a dump waits for the requests before it and runs alone; later requests wait for it', async () => {
  const r = recorder();
  const admission = new Admission(8);
  const all = [admission.run(false, r.work('a')), admission.run(true, r.work('dump')), admission.run(false, r.work('b'))];
  await r.release('a');
  await r.release('dump');
  await r.release('b');
  await Promise.all(all);
  assert.deepEqual(r.log, ['a with []', 'dump with []', 'b with []']);
});

test('a failed request frees its slot', async () => {
  const admission = new Admission(1);
  await assert.rejects(admission.run(false, async () => { throw new Error('refused'); }), /refused/);
  assert.equal(await admission.run(true, async () => 'next'), 'next');
});
