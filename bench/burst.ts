// A burst of one-endpoint changes spread over one second, fed through the
// sync runner into an engine: each sync applies what arrived before it
// started, so a change's lag is the end of the first sync that started after it.

import type { SyncEngine } from '../src/sync/engine.js';
import { SyncRunner } from '../src/sync/runner.js';
import { spread, type Spread } from './stats.js';
import { changeTarget, type Workload } from './workload.js';

export const MIN_SYNC_INTERVAL = 100;

/**
 * timer-paced: the feeder awaits a timer only while it is ahead of schedule,
 *              so once each change costs more than the gap between two
 *              arrivals it runs through the rest without yielding;
 * yielding:    it yields to the event loop at every arrival, as a watch
 *              stream does between socket reads.
 */
export type Feeder = 'timer-paced' | 'yielding';

export interface BurstFigures {
  readonly feeder: Feeder;
  readonly syncs: number;
  readonly syncMs: Spread;
  /** From the first arrival to the last. */
  readonly spanMs: number;
  /** How long after its arrival the last change, and the worst one, was in the kernel. */
  readonly lastLagMs: number;
  readonly maxLagMs: number;
  /** User and system time of this process over the burst. */
  readonly cpuMs: number;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** `count` changes (targets from `offset` on) over one second; resolves once the last is applied (or after 10 minutes). */
export async function measureBurst(engine: SyncEngine, workload: Workload, count: number, feeder: Feeder, offset = 0): Promise<BurstFigures> {
  const syncs: { start: number; end: number }[] = [];
  const runner = new SyncRunner({
    minInterval: MIN_SYNC_INTERVAL, period: 3_600_000, initialBackoff: 100, maxBackoff: 1000,
    run: async (full) => {
      const start = performance.now();
      await (full ? engine.syncFull() : engine.syncPartial());
      syncs.push({ start, end: performance.now() });
    },
    onError: (err) => {
      throw err;
    },
  });
  const cpu = process.cpuUsage();
  const arrivals: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const due = t0 + (i * 1000) / count;
    while (performance.now() < due) await sleep(Math.max(0, due - performance.now()));
    if (feeder === 'yielding') await tick();
    engine.upsertSlice(workload.change(changeTarget(offset + i, workload.size.n)).slice);
    arrivals.push(performance.now());
    runner.request();
  }
  const appliedAt = (arrival: number) => syncs.find((s) => s.start >= arrival)?.end;
  const last = arrivals[arrivals.length - 1]!;
  for (let waited = 0; appliedAt(last) === undefined && waited < 600_000; waited += 10) await sleep(10);
  await runner.stop();
  const used = process.cpuUsage(cpu);
  const lags = arrivals.map((a) => (appliedAt(a) ?? NaN) - a);
  return {
    feeder, syncs: syncs.length, syncMs: spread(syncs.map((s) => s.end - s.start)), spanMs: last - arrivals[0]!,
    lastLagMs: lags[lags.length - 1]!, maxLagMs: Math.max(...lags), cpuMs: (used.user + used.system) / 1000,
  };
}
