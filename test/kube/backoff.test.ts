import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff } from '../../src/kube/backoff.js';

test('backoff delays double from initialMs up to maxMs, each drawn from [base/2, base]', () => {
  const low = new Backoff({ initialMs: 200, maxMs: 30_000, random: () => 0 });
  const high = new Backoff({ initialMs: 200, maxMs: 30_000, random: () => 1 });
  const lows = Array.from({ length: 10 }, () => low.next());
  const highs = Array.from({ length: 10 }, () => high.next());
  assert.deepEqual(highs, [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
  assert.deepEqual(lows, [100, 200, 400, 800, 1600, 3200, 6400, 12800, 15000, 15000]);
  assert.equal(low.attempts, 10);
});

test('backoff jitter spreads delays and never exceeds the cap, even after many failures', () => {
  const backoff = new Backoff({ initialMs: 200, maxMs: 1000 });
  const delays = Array.from({ length: 200 }, () => backoff.next()).slice(3);
  assert.ok(delays.every((d) => d >= 500 && d <= 1000), `within [500, 1000]: ${Math.min(...delays)}..${Math.max(...delays)}`);
  assert.ok(new Set(delays).size > 10, 'jittered');
});

test('reset() starts the backoff again from initialMs', () => {
  const backoff = new Backoff({ initialMs: 50, maxMs: 1000, random: () => 1 });
  backoff.next();
  backoff.next();
  assert.equal(backoff.next(), 200);
  backoff.reset();
  assert.equal(backoff.attempts, 0);
  assert.equal(backoff.next(), 50);
});

test('backoff rejects bounds that make no sense', () => {
  assert.throws(() => new Backoff({ initialMs: 0 }), /invalid backoff/);
  assert.throws(() => new Backoff({ initialMs: 500, maxMs: 100 }), /invalid backoff/);
});

test('without jitter each delay is the doubling base, capped, and reset starts over', () => {
  const b = new Backoff({ initialMs: 1000, maxMs: 8000, jitter: false, random: () => 0 });
  assert.deepEqual([1, 2, 3, 4, 5].map(() => b.next()), [1000, 2000, 4000, 8000, 8000]);
  b.reset();
  assert.equal(b.next(), 1000);
});
