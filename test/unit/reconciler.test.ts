// The reconciler against a data plane that is not iptables: a kernel that
// holds one string per group, and refuses (without naming a group) any call
// that writes a state containing "bad". It proves the reconciler knows no
// kernel interface: status per group, partial and full reconciles, bisection
// and quarantine all work through the Dataplane interface alone.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/log.js';
import type { ApplyOutcome, Dataplane, KernelState } from '../../src/sync/dataplane.js';
import { Reconciler, type QuarantineChange } from '../../src/sync/reconciler.js';

interface MapTx {
  readonly keys: readonly string[];
  readonly writes: readonly [string, string | undefined][];
}

class MapDataplane implements Dataplane<string, KernelState<string>, MapTx> {
  readonly name = 'map';
  readonly family = 'ipv4' as const;
  readonly kernel = new Map<string, string>();
  calls = 0;
  configure(): void {}
  plan(): string | undefined {
    throw new Error('the reconciler never plans');
  }
  async observe(): Promise<KernelState<string>> {
    const copy = new Map(this.kernel);
    return { group: (key) => copy.get(key) };
  }
  diff(last: KernelState<string> | null, desired: ReadonlyMap<string, string>): MapTx {
    const writes: [string, string | undefined][] = [];
    for (const [key, state] of desired) if (last?.group(key) !== state) writes.push([key, state]);
    for (const key of this.kernel.keys()) if (!desired.has(key)) writes.push([key, undefined]);
    return { keys: writes.map(([k]) => k), writes };
  }
  diffGroup(key: string, last: string | undefined, next: string | undefined): MapTx {
    return last === next ? { keys: [], writes: [] } : { keys: [key], writes: [[key, next]] };
  }
  merge(parts: readonly MapTx[]): MapTx {
    return { keys: parts.flatMap((p) => p.keys), writes: parts.flatMap((p) => p.writes) };
  }
  async apply(tx: MapTx): Promise<ApplyOutcome> {
    const stats = { restores: tx.writes.length > 0 ? 1 : 0, payloadBytes: 0, chainsWritten: tx.writes.length, units: tx.writes.length };
    if (tx.writes.length === 0) return { stats: { ...stats, restores: 0 }, refused: null };
    this.calls++;
    if (tx.writes.some(([, s]) => s?.includes('bad'))) {
      return { stats: { ...stats, restores: 0 }, refused: { kind: 'refused', error: new Error('refused'), groups: tx.keys, blamed: null, reason: 'the kernel refused its state' } };
    }
    for (const [key, state] of tx.writes) {
      if (state === undefined) this.kernel.delete(key);
      else this.kernel.set(key, state);
    }
    return { stats, refused: null };
  }
  async works(): Promise<boolean> {
    return true;
  }
  async cleanup() {
    const n = this.kernel.size;
    this.kernel.clear();
    return { restores: 1, payloadBytes: 0, chainsWritten: n, units: n };
  }
  render(tx: MapTx): string {
    return tx.writes.map(([k, s]) => `${k}=${s ?? ''}`).join('\n');
  }
  adopt(): string | undefined {
    return undefined;
  }
  owned(desired: ReadonlyMap<string, string>) {
    return { chains: desired.size, rules: desired.size };
  }
  written(tx: MapTx) {
    return tx.keys.map((group) => ({ group, name: group }));
  }
  describe() {
    return { handle: '', shares: new Map<string, number>() };
  }
}

function setup() {
  const plane = new MapDataplane();
  const changes: QuarantineChange[] = [];
  let now = 0;
  const reconciler = new Reconciler({
    dataplane: plane, log: silentLogger(), now: () => now, frontendsOf: () => [],
    quarantineBackoff: { initialMs: 1000, maxMs: 8000, random: () => 0.999 }, onQuarantine: (c) => changes.push(c),
  });
  return { plane, reconciler, changes, advance: (ms: number) => (now += ms) };
}

const states = (n: number, bad = -1) => new Map(Array.from({ length: n }, (_, i) => [`ns/g${i}`, i === bad ? 'bad' : `v1-${i}`]));

test('a full reconcile applies every group; a partial one only the changed group; status is pending until then', async () => {
  const { plane, reconciler } = setup();
  assert.deepEqual(reconciler.status('ns/g0', false), { state: 'pending' }, 'nothing is applied before the first full reconcile');
  const desired = states(4);
  await reconciler.reconcileFull(desired, new Set(), () => {});
  assert.deepEqual([...plane.kernel.values()], ['v1-0', 'v1-1', 'v1-2', 'v1-3']);
  assert.deepEqual(reconciler.status('ns/g0', false), { state: 'applied' });
  assert.deepEqual(reconciler.status('ns/g0', true), { state: 'pending' });
  const outcome = await reconciler.reconcileGroups(new Map([['ns/g2', 'v2-2']]));
  assert.equal(outcome.refused, false);
  assert.deepEqual(outcome.refused ? null : outcome.tx.keys, ['ns/g2']);
  assert.equal(plane.kernel.get('ns/g2'), 'v2-2');
});

test('a refused group is found by bisection among the others, keeps its old state with status failed, and heals when fixed', async () => {
  const { plane, reconciler, changes, advance } = setup();
  await reconciler.reconcileFull(states(6), new Set(), () => {});
  const callsBefore = plane.calls;

  // A partial reconcile holding the bad state is refused as a whole: the kernel is uncertain.
  const partial = await reconciler.reconcileGroups(new Map([['ns/g1', 'v2-1'], ['ns/g4', 'bad']]));
  assert.equal(partial.refused, true);
  assert.equal(reconciler.fullDue, true);

  const desired = states(6, 4);
  desired.set('ns/g1', 'v2-1');
  const setAside: string[] = [];
  await reconciler.reconcileFull(desired, new Set(), (key) => setAside.push(key));
  assert.deepEqual(setAside, ['ns/g4']);
  assert.equal(plane.kernel.get('ns/g4'), 'v1-4', 'the refused group keeps the state it had');
  assert.equal(plane.kernel.get('ns/g1'), 'v2-1', 'the other change went in during the same reconcile');
  const status = reconciler.status('ns/g4', false);
  assert.equal(status.state, 'failed');
  assert.ok(status.state === 'failed' && status.reason === 'the kernel refused its state' && status.failures === 1 && status.retryAt === 1000, JSON.stringify(status));
  assert.ok(plane.calls - callsBefore <= 1 + 1 + 2 * Math.ceil(Math.log2(6)) + 1, `calls: ${plane.calls - callsBefore}`);
  assert.deepEqual(changes.map((c) => [c.group, c.fault?.stage ?? null]), [['ns/g4', 'kernel']]);
  assert.equal(reconciler.isWaiting('ns/g4'), true);

  advance(1000);
  assert.deepEqual(reconciler.due(), ['ns/g4']);
  const healed = await reconciler.reconcileGroups(new Map([['ns/g4', 'v2-4']]));
  assert.equal(healed.refused, false);
  reconciler.heal(['ns/g4'], new Set(), () => new Set(desired.keys()));
  assert.deepEqual(reconciler.status('ns/g4', false), { state: 'applied' });
  assert.deepEqual(changes.map((c) => [c.group, c.fault === null ? 'healed' : 'failed']), [['ns/g4', 'failed'], ['ns/g4', 'healed']]);
  assert.equal(plane.kernel.get('ns/g4'), 'v2-4');
});
