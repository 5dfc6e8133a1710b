// The scenarios every Dataplane must pass, whatever kernel interface it
// drives: the same selections planned, diffed, applied, observed and cleaned
// up through the Dataplane interface alone, against each backend's fake and,
// where the machine has it, the real kernel. A backend's conformance run is a
// few lines: a KernelUnderTest for its executor (fake or real) handed to
// dataplaneConformance().

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FrontendSelection, GroupSelection } from '../../src/selection/selection.js';
import type { Dataplane, DataplaneSettings } from '../../src/sync/dataplane.js';

/** One kernel (a fake, or a network namespace) the scenarios program. */
export interface KernelUnderTest {
  /** A new data plane over this kernel; a second call is a restarted agent finding what the first left. */
  dataplane(): Dataplane;
  /** The executor refuses its next call as the kernel refuses a transaction (nothing of that call is applied). */
  refuseNext(): void;
  /**
   * State another owner keeps in the same kernel interface (kube-proxy's
   * chains, table or virtual services); absent where the executor models only
   * what the agent owns.
   */
  readonly foreign?: {
    write(): Promise<void>;
    /** The foreign state as text, compared before and after. */
    read(): Promise<string>;
  };
  close(): Promise<void>;
}

/**
 * The executor `inner` as a data plane sees it, except that after
 * refuseNext() the next call of one of `writes` throws `refusal()` without
 * reaching the kernel, as the kernel refuses a transaction it applies none of.
 */
export function refusing<T extends object>(inner: T, writes: readonly (keyof T & string)[], refusal: () => Error): { readonly executor: T; refuseNext(): void } {
  let armed = false;
  const executor = new Proxy(inner, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      if (!(writes as readonly (string | symbol)[]).includes(prop)) return value.bind(target);
      return (...args: unknown[]) => {
        if (!armed) return value.apply(target, args);
        armed = false;
        return Promise.reject(refusal());
      };
    },
  });
  return { executor, refuseNext: () => { armed = true; } };
}

export const SETTINGS: DataplaneSettings = { clusterCIDR: '10.244.0.0/16', localCluster: 'brazil', masqueradeBit: 14, maxChainsPerRestore: 1000 };

type Endpoint = readonly [cluster: string, ip: string, weight: number];

function frontend(n: number, protocol: 'TCP' | 'UDP', endpoints: readonly Endpoint[], affinity: number | null = null): FrontendSelection {
  const clusters = [...new Set(endpoints.map(([c]) => c))];
  return {
    kind: 'cluster-ip',
    family: 'ipv4',
    ip: `10.96.0.${n}`,
    port: protocol === 'UDP' ? 53 : 80,
    protocol,
    name: { namespace: 'shop', service: `derived-svc${n}`, port: protocol === 'UDP' ? 'dns' : 'http' },
    affinity,
    endpoints: endpoints.map(([cluster, ip, weight]) => ({ cluster, ip, port: 8080, weight })),
    decision: { clusters, target: clusters.length === 0 ? 'none' : clusters.includes('brazil') ? (clusters.length > 1 ? 'mixed' : 'local') : 'remote', failOpen: false },
  };
}

function group(n: number, frontends: readonly FrontendSelection[]): GroupSelection {
  return {
    key: `shop/svc${n}`,
    settings: { mode: 'active-active', clusterWeights: {}, failoverOrder: [], unifiedName: false },
    decision: frontends[0]?.decision ?? null,
    frontends,
    problems: [],
  };
}

/** Three groups: weighted endpoints of two clusters, TCP and UDP, affinity, and a frontend with no endpoint. */
const WEB = group(1, [frontend(1, 'TCP', [['brazil', '10.1.0.1', 1], ['chile', '10.2.0.1', 3]])]);
const DNS = group(2, [frontend(2, 'UDP', [['chile', '10.2.0.2', 1]]), frontend(2, 'TCP', [['chile', '10.2.0.2', 1]], 600)]);
const EMPTY = group(3, [frontend(3, 'TCP', [])]);
/** WEB with one endpoint replaced and another added. */
const WEB_CHANGED = group(1, [frontend(1, 'TCP', [['brazil', '10.1.0.9', 2], ['chile', '10.2.0.1', 1], ['peru', '10.3.0.1', 1]])]);

function desired(dp: Dataplane, selections: readonly GroupSelection[]): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const s of selections) {
    const state = dp.plan(s);
    if (state !== undefined) out.set(s.key, state);
  }
  return out;
}

/** The kernel holds exactly `want`: a full diff against what it reads back changes nothing. */
async function assertHolds(dp: Dataplane, want: ReadonlyMap<string, unknown>, what: string): Promise<void> {
  const tx = dp.diff(await dp.observe(want), want);
  assert.deepEqual(tx.keys, [], `${what}: the kernel differs from the desired state in ${tx.keys.join(', ')}`);
}

async function applied(dp: Dataplane, tx: Parameters<Dataplane['apply']>[0]): Promise<void> {
  const outcome = await dp.apply(tx);
  assert.equal(outcome.refused, null, `the transaction applies: ${String((outcome.refused as { error?: unknown } | null)?.error)}`);
}

/** A full reconcile from what the kernel holds. */
async function reconcile(dp: Dataplane, want: ReadonlyMap<string, unknown>): Promise<void> {
  await applied(dp, dp.diff(await dp.observe(want), want));
}

interface Scenario {
  readonly name: string;
  /** Needs the kernel's foreign state. */
  readonly foreign?: boolean;
  run(k: KernelUnderTest): Promise<void>;
}

const SCENARIOS: readonly Scenario[] = [
  {
    name: 'adding groups to an empty kernel: one transaction, read back exactly as planned',
    async run(k) {
      const dp = k.dataplane();
      const want = desired(dp, [WEB, DNS, EMPTY]);
      const empty = await dp.observe(want);
      const tx = dp.diff(empty, want);
      assert.deepEqual(tx.keys, dp.diff(null, want).keys, 'an empty kernel reads back as nothing');
      // Every group that programs anything (a frontend without endpoints may need nothing in the kernel) is in it.
      for (const key of [WEB.key, DNS.key]) assert.ok(tx.keys.includes(key), `the transaction holds ${key}: ${tx.keys.join(', ')}`);
      await applied(dp, tx);
      await assertHolds(dp, want, 'after adding');
    },
  },
  {
    name: "changing one group's endpoints: its own change applies, the kernel holds the new endpoints and the other groups as they were",
    async run(k) {
      const dp = k.dataplane();
      const before = desired(dp, [WEB, DNS]);
      await reconcile(dp, before);
      const after = desired(dp, [WEB_CHANGED, DNS]);
      const change = dp.diffGroup(WEB.key, before.get(WEB.key), after.get(WEB.key));
      assert.deepEqual(change.keys, [WEB.key]);
      assert.notDeepEqual(dp.diff(await dp.observe(after), after).keys, [], 'the kernel still holds the old endpoints before the change');
      await applied(dp, change);
      await assertHolds(dp, after, 'after the change');
    },
  },
  {
    name: "removing a group: its own change removes it, and a full diff removes a group nobody wants any more",
    async run(k) {
      const dp = k.dataplane();
      const all = desired(dp, [WEB, DNS, EMPTY]);
      await reconcile(dp, all);
      await applied(dp, dp.diffGroup(DNS.key, all.get(DNS.key), undefined));
      const withoutDns = desired(dp, [WEB, EMPTY]);
      await assertHolds(dp, withoutDns, 'after removing one group');
      const emptyOnly = desired(dp, [EMPTY]);
      const full = dp.diff(await dp.observe(emptyOnly), emptyOnly);
      assert.notDeepEqual(full.keys, [], 'a full diff finds the group nobody wants');
      await applied(dp, full);
      await assertHolds(dp, emptyOnly, 'after the full diff');
    },
  },
  {
    name: 'a restarted data plane adopts what the previous one left: nothing to write, and a held-back group keeps its state',
    async run(k) {
      const first = k.dataplane();
      await reconcile(first, desired(first, [WEB, DNS]));
      const second = k.dataplane();
      const want = desired(second, [WEB, DNS]);
      const kernel = await second.observe(want);
      assert.deepEqual(second.diff(kernel, want).keys, [], 'the restart finds every group as desired');
      // A group the restarted agent cannot plan yet keeps what the kernel holds for its frontends.
      const webOnly = desired(second, [WEB]);
      const adopted = second.adopt(DNS.key, DNS.frontends, await second.observe(webOnly));
      assert.ok(adopted !== undefined, 'the held-back group is found under its frontends');
      const kept = new Map([...webOnly, [DNS.key, adopted]]);
      await reconcile(second, kept);
      await assertHolds(second, want, 'after a full reconcile keeping the adopted group');
    },
  },
  {
    name: "another owner's state survives applies, a full diff and cleanup untouched",
    foreign: true,
    async run(k) {
      await k.foreign!.write();
      const theirs = await k.foreign!.read();
      const dp = k.dataplane();
      await reconcile(dp, desired(dp, [WEB, DNS]));
      const webOnly = desired(dp, [WEB_CHANGED]);
      await reconcile(dp, webOnly);
      assert.equal(await k.foreign!.read(), theirs, 'after applies and a full diff');
      await dp.cleanup();
      assert.equal(await k.foreign!.read(), theirs, 'after cleanup');
    },
  },
  {
    name: 'a refused transaction is reported as refused and the kernel keeps the last good state; the next apply succeeds',
    async run(k) {
      const dp = k.dataplane();
      const good = desired(dp, [WEB, DNS]);
      await reconcile(dp, good);
      const next = desired(dp, [WEB_CHANGED, DNS]);
      const change = dp.diffGroup(WEB.key, good.get(WEB.key), next.get(WEB.key));
      k.refuseNext();
      const outcome = await dp.apply(change);
      assert.ok(outcome.refused !== null, 'the refusal is reported');
      assert.notEqual(outcome.refused.kind, 'render');
      await assertHolds(dp, good, 'after the refusal');
      await reconcile(dp, next);
      await assertHolds(dp, next, 'after the retry');
    },
  },
  {
    name: 'cleanup removes everything the data plane owns: a new instance reads the kernel back as empty',
    async run(k) {
      const dp = k.dataplane();
      await reconcile(dp, desired(dp, [WEB, DNS, EMPTY]));
      await dp.cleanup();
      const fresh = k.dataplane();
      const want = desired(fresh, [WEB, DNS, EMPTY]);
      assert.deepEqual(fresh.diff(await fresh.observe(want), want).keys, fresh.diff(null, want).keys, 'the kernel reads back as nothing');
      await reconcile(fresh, want);
      await assertHolds(fresh, want, 'after programming again from nothing');
    },
  },
];

/**
 * Registers every scenario as a test named `<label>: <scenario>`, each on a
 * fresh kernel from `open` (closed afterwards, also on failure). `foreign`:
 * the kernels it opens hold others' state (KernelUnderTest.foreign).
 */
export function dataplaneConformance(label: string, foreign: boolean, open: () => Promise<KernelUnderTest>): void {
  for (const s of SCENARIOS) {
    if (s.foreign && !foreign) continue;
    test(`${label}: ${s.name}`, async () => {
      const kernel = await open();
      try {
        if (s.foreign && !kernel.foreign) throw new Error(`${label} opened a kernel without foreign state`);
        await s.run(kernel);
      } finally {
        await kernel.close();
      }
    });
  }
}

/** How many tests dataplaneConformance registers, for runners that count them (UML). */
export function scenarioCount(withForeign: boolean): number {
  return SCENARIOS.filter((s) => withForeign || !s.foreign).length;
}
