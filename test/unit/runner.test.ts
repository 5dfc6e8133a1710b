import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SyncRunner, type Clock } from '../../src/sync/runner.js';

/** A manual clock: timers fire only when the test advances time. */
class FakeClock implements Clock {
  private t = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private nextId = 1;
  now(): number { return this.t; }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void { this.timers.delete(handle as number); }
  /** Advances time, firing due timers in order and letting their promises settle. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
      await settle();
    }
    this.t = end;
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}

function makeRunner(clock: FakeClock, outcome: (n: number) => boolean = () => true) {
  const runs: { at: number; full: boolean }[] = [];
  const errors: number[] = [];
  const runner = new SyncRunner({
    minInterval: 100, period: 60_000, initialBackoff: 1000, maxBackoff: 8000, clock,
    run: async (full) => {
      runs.push({ at: clock.now(), full });
      if (!outcome(runs.length)) throw new Error('restore failed');
    },
    onError: (_e, _n, retryIn) => errors.push(retryIn),
  });
  return { runner, runs, errors };
}

test('a burst of requests after the first one collapses into one sync per interval', async () => {
  const clock = new FakeClock();
  const { runner, runs } = makeRunner(clock);
  runner.start();
  await clock.advance(0);
  assert.deepEqual(runs, [{ at: 0, full: true }]);
  for (let i = 0; i < 50; i++) {
    runner.request();
    await clock.advance(1);
  }
  await clock.advance(200);
  // t=0: the full sync; the fifty requests of t=0..49 all wait for t=100.
  assert.deepEqual(runs.map((r) => r.at), [0, 100]);
  assert.equal(runs[1]!.full, false);
});

test('a request long after the last sync runs at once', async () => {
  const clock = new FakeClock();
  const { runner, runs } = makeRunner(clock);
  runner.start();
  await clock.advance(5000);
  runner.request();
  await clock.advance(0);
  assert.deepEqual(runs.map((r) => r.at), [0, 5000]);
});

test('a failed sync is retried as a full sync with exponential backoff, then resets', async () => {
  const clock = new FakeClock();
  const { runner, runs, errors } = makeRunner(clock, (n) => n === 1 || n >= 5);
  runner.start();
  await clock.advance(0);
  runner.request();
  await clock.advance(20_000);
  assert.deepEqual(errors, [1000, 2000, 4000]);
  assert.deepEqual(runs.map((r) => [r.at, r.full]), [[0, true], [100, false], [1100, true], [3100, true], [7100, true]]);
  runner.request();
  await clock.advance(1000);
  assert.equal(runs.length, 6);
});

test('a full sync repeats every period', async () => {
  const clock = new FakeClock();
  const { runner, runs } = makeRunner(clock);
  runner.start();
  await clock.advance(180_000);
  assert.deepEqual(runs.map((r) => [r.at, r.full]), [[0, true], [60_000, true], [120_000, true], [180_000, true]]);
  await runner.stop();
  await clock.advance(120_000);
  assert.equal(runs.length, 4);
});

test('a sync that set groups aside asks for a partial sync when the first retry falls due', async () => {
  const clock = new FakeClock();
  const runs: { at: number; full: boolean }[] = [];
  const retries = [2500, null];
  const runner = new SyncRunner({
    minInterval: 100, period: 60_000, initialBackoff: 1000, maxBackoff: 8000, clock,
    run: async (full) => {
      runs.push({ at: clock.now(), full });
      return { retryInMs: retries.shift() ?? null };
    },
    onError: () => assert.fail('no sync fails'),
  });
  runner.start();
  await clock.advance(10_000);
  assert.deepEqual(runs.map((r) => [r.at, r.full]), [[0, true], [2500, false]]);
  await runner.stop();
});

test('repair requests run in a sync slot, collapse within an interval, and run no sync of their own', async () => {
  const clock = new FakeClock();
  const runs: { at: number; full: boolean }[] = [];
  const repairs: number[] = [];
  const runner = new SyncRunner({
    minInterval: 100, period: 60_000, initialBackoff: 1000, maxBackoff: 8000, clock,
    run: async (full) => {
      runs.push({ at: clock.now(), full });
    },
    repair: async () => {
      repairs.push(clock.now());
    },
    onError: () => assert.fail('nothing fails'),
  });
  runner.start();
  await clock.advance(0);
  // A storm of kernel changes right after the first sync: one repair when the interval allows.
  for (let i = 0; i < 1000; i++) runner.requestRepair();
  await clock.advance(50);
  for (let i = 0; i < 1000; i++) runner.requestRepair();
  await clock.advance(500);
  assert.deepEqual(repairs, [100]);
  assert.deepEqual(runs.map((r) => [r.at, r.full]), [[0, true]]);
  // Both due at once: the repair goes first, in the same slot as the sync.
  runner.requestRepair();
  runner.request();
  await clock.advance(0);
  assert.deepEqual(repairs, [100, 550]);
  assert.deepEqual(runs.map((r) => [r.at, r.full]), [[0, true], [550, false]]);
  await runner.stop();
});

test('a failed repair is retried as a full sync with backoff', async () => {
  const clock = new FakeClock();
  const runs: { at: number; full: boolean }[] = [];
  const errors: number[] = [];
  const runner = new SyncRunner({
    minInterval: 100, period: 60_000, initialBackoff: 1000, maxBackoff: 8000, clock,
    run: async (full) => {
      runs.push({ at: clock.now(), full });
    },
    repair: async () => {
      throw new Error('iptables -S failed');
    },
    onError: (_e, _n, retryIn) => errors.push(retryIn),
  });
  runner.start();
  await clock.advance(1000);
  runner.requestRepair();
  await clock.advance(5000);
  assert.deepEqual(errors, [1000]);
  assert.deepEqual(runs.map((r) => [r.at, r.full]), [[0, true], [2000, true]]);
  await runner.stop();
});

test('sweeps fall due every period and run in the sync loop\'s slots, after a sync due with them, never beside one', async () => {
  const clock = new FakeClock();
  const log: string[] = [];
  let inFlight = 0;
  let most = 0;
  const step = async (what: string) => {
    inFlight++;
    most = Math.max(most, inFlight);
    log.push(`${what}@${clock.now()}`);
    await new Promise((r) => setImmediate(r));
    inFlight--;
  };
  let failSync = false;
  const errors: number[] = [];
  const runner = new SyncRunner({
    minInterval: 100, period: 60_000, initialBackoff: 1000, maxBackoff: 8000, clock,
    run: async (full) => {
      await step(full ? 'full' : 'partial');
      if (failSync) throw new Error('restore failed');
    },
    sweep: { intervalMs: 10_000, run: () => step('sweep') },
    onError: (_e, _n, retryIn) => errors.push(retryIn),
  });
  runner.start();
  await clock.advance(0);
  await clock.advance(25_000);
  assert.deepEqual(log, ['full@0', 'sweep@10000', 'sweep@20000']);
  // A change and the sweep waiting for the same slot: the sync first, then the sweep.
  await clock.advance(4_950);
  runner.request();
  await clock.advance(50);
  runner.request();
  await clock.advance(120);
  assert.deepEqual(log.slice(3), ['partial@29950', 'partial@30050', 'sweep@30050']);
  // While syncs fail and back off, the sweep (due at 40050) waits for the retried sync's slot.
  failSync = true;
  runner.request();
  await clock.advance(10_880);
  failSync = false;
  await clock.advance(5_000);
  assert.deepEqual(log.slice(6), ['partial@30150', 'full@31150', 'full@33150', 'full@37150', 'full@45150', 'sweep@45150']);
  assert.deepEqual(errors, [1000, 2000, 4000, 8000]);
  assert.equal(most, 1, 'never two kernel writers at once');
  await runner.stop();
  const before = log.length;
  await clock.advance(60_000);
  assert.equal(log.length, before, 'nothing after stop');
});

test('a sweep that throws is tried again next period; syncs go on', async () => {
  const clock = new FakeClock();
  const sweeps: number[] = [];
  const runs: number[] = [];
  const runner = new SyncRunner({
    minInterval: 100, period: 60_000, initialBackoff: 1000, maxBackoff: 8000, clock,
    run: async () => {
      runs.push(clock.now());
    },
    sweep: {
      intervalMs: 1000,
      run: async () => {
        sweeps.push(clock.now());
        throw new Error('netlink socket closed');
      },
    },
    onError: () => assert.fail('a sweep failure is not a sync failure'),
  });
  runner.start();
  await clock.advance(2500);
  runner.request();
  await clock.advance(100);
  assert.deepEqual(sweeps, [1000, 2000]);
  assert.deepEqual(runs, [0, 2500]);
  await runner.stop();
});
