import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CONFIG, type Config } from '../../src/config/schema.js';
import { LockTimeoutError, RestoreError, type IptablesBackend } from '../../src/iptables/backend.js';
import { FakeIptables } from '../../src/iptables/fake-backend.js';
import { renderPayload, unitAtLine } from '../../src/iptables/render.js';
import { silentLogger } from '../../src/log.js';
import type { Fragment } from '../../src/iptables/plan-types.js';
import { serviceChainName } from '../../src/iptables/names.js';
import { ALL_HEALTHY, type HealthView } from '../../src/policy/select.js';
import { MAX_ISOLATION_RESTORES, SyncEngine, type QuarantineChange } from '../../src/sync/engine.js';
import { endpoint, importedSlice, service } from '../support/fixtures.js';
import { KUBE_PROXY_NAT, USER_FILTER } from '../support/foreign-rules.js';

const config: Config = { ...DEFAULT_CONFIG, clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16' };
const POISON = '10.2.0.66';

/**
 * The fake, refusing every payload that holds a rule for the poison endpoint
 * as iptables-restore refuses a bad line: nothing of the payload applied, and
 * the line blamed ("line N failed") or, with `withLine` false, no line at all.
 */
class RefusingBackend implements IptablesBackend {
  refuse = true;
  refusals = 0;
  restores = 0;
  constructor(readonly fake: FakeIptables, private readonly withLine: boolean, private readonly marker = `${POISON}:`) {}
  get mode() {
    return this.fake.mode;
  }
  save(table: 'nat' | 'filter') {
    return this.fake.save(table);
  }
  restoreSets(payload: string) {
    return this.fake.restoreSets(payload);
  }
  saveSet(name: string) {
    return this.fake.saveSet(name);
  }
  async restore(payload: string): Promise<void> {
    this.restores++;
    const index = payload.split('\n').findIndex((l) => l.includes(this.marker));
    if (this.refuse && index !== -1) {
      this.refusals++;
      const line = this.withLine ? index + 1 : undefined;
      const text = line === undefined ? 'iptables-nft-restore: unknown error' : `iptables-nft-restore: line ${line} failed: Invalid argument`;
      throw new RestoreError(text, `${text}\n`, line);
    }
    await this.fake.restore(payload);
  }
}

/** Endpoint 10.2.0.77 makes planning throw, as a bug or an unexpected value would. */
const THROWING_HEALTH: HealthView = {
  clusterHealthy: () => true,
  endpointHealthy: (ip) => {
    if (ip === '10.2.0.77') throw new TypeError('cannot read properties of undefined (reading \'ready\')');
    return true;
  },
};

function setup(opts: { withLine?: boolean; health?: HealthView; now?: () => number } = {}) {
  const fake = new FakeIptables('nft');
  fake.load(KUBE_PROXY_NAT + USER_FILTER);
  const backend = new RefusingBackend(fake, opts.withLine ?? true);
  const changes: QuarantineChange[] = [];
  const engine = new SyncEngine({
    config, dataplane: new IptablesDataplane(backend), log: silentLogger(), health: opts.health ?? ALL_HEALTHY, now: opts.now,
    quarantineBackoff: { initialMs: 1000, maxMs: 8000, random: () => 0.999 },
    onQuarantine: (c) => changes.push(c),
  });
  return { fake, backend, engine, changes };
}

function put(engine: SyncEngine, i: number, ips: string[]): void {
  engine.upsertService(service('default', `derived-svc${i}`, `10.96.0.${i}`, [{ name: 'http', port: 80 }]));
  engine.upsertSlice(importedSlice('default', 'chile01', `svc${i}-a`, `derived-svc${i}`, ips.map((ip) => endpoint(ip))));
}

const chainOf = (i: number) => serviceChainName('default', `derived-svc${i}`, 'http', 'TCP');

/** The DNAT targets of one service's chain, as the kernel (fake) holds them. */
async function targets(fake: FakeIptables, i: number): Promise<string[]> {
  const nat = await fake.save('nat');
  return nat.split('\n').filter((l) => l.startsWith(`-A ${chainOf(i)} `)).map((l) => /--to-destination (\S+)/.exec(l)?.[1]).filter((t): t is string => !!t);
}

/** Every jump to an MCS-SVC- chain points at a chain that exists (the kernel would refuse one that does not; a check all the same). */
async function dispatchIsWhole(fake: FakeIptables): Promise<void> {
  for (const table of ['nat', 'filter'] as const) {
    const text = await fake.save(table);
    const chains = new Set(text.split('\n').filter((l) => l.startsWith(':')).map((l) => l.slice(1).split(' ')[0]));
    for (const m of text.matchAll(/-j (MCS-SVC-\w+)/g)) assert.ok(chains.has(m[1]), `${table}: jump to missing ${m[1]}`);
  }
}

test('each line of a payload maps to the unit that wrote it; headers and COMMIT to none', () => {
  const plane = new IptablesDataplane(new FakeIptables('nft'));
  const engine = new SyncEngine({ config, dataplane: plane, log: silentLogger() });
  for (let i = 1; i <= 4; i++) put(engine, i, i === 2 ? [] : ['10.2.0.10', '10.2.0.11']);
  const { units } = plane.diff(null, engine.desiredState() as ReadonlyMap<string, Fragment>);
  const lines = renderPayload(units).split('\n').slice(0, -1);
  assert.ok(lines.length > 20);
  lines.forEach((text, i) => {
    const unit = unitAtLine(units, i + 1);
    if (text.startsWith('*') || text === 'COMMIT') return assert.equal(unit, null, `line ${i + 1}: ${text}`);
    assert.ok(unit, `line ${i + 1} has a unit: ${text}`);
    assert.ok(renderPayload([unit]).split('\n').includes(text), `line ${i + 1} comes from ${unit.key}: ${text}`);
  });
  assert.equal(unitAtLine(units, lines.length + 1), null);
});

test('a fragment the kernel refuses by line is quarantined; every other change is applied in the same sync and it keeps its last rules', async () => {
  const { fake, backend, engine, changes } = setup();
  put(engine, 1, ['10.2.0.10']);
  put(engine, 2, ['10.2.0.20']);
  await engine.syncFull();
  put(engine, 1, ['10.2.0.11']);
  put(engine, 2, ['10.2.0.20', POISON]);
  const before = backend.restores;
  const result = await engine.syncPartial();
  assert.equal(result.quarantined, 1);
  assert.deepEqual(await targets(fake, 1), ['10.2.0.11:8080'], 'the good change is in');
  assert.deepEqual(await targets(fake, 2), ['10.2.0.20:8080'], 'the poison group keeps its last applied rules');
  // The refused partial payload, the refused first round of the full sync, then the rest.
  assert.equal(backend.restores - before, 3);
  assert.equal(changes.length, 1);
  assert.equal(changes[0]!.group, 'default/svc2');
  assert.equal(changes[0]!.fault!.stage, 'kernel');
  assert.match(changes[0]!.fault!.reason, /10\.2\.0\.66:8080.*Invalid argument/);
  assert.doesNotMatch(changes[0]!.fault!.reason, /line \d/, 'no line number: the same refusal reads the same');
  const status = engine.groupStatus('default/svc2');
  assert.equal(status.state, 'failed');
  assert.equal(engine.groupStatus('default/svc1').state, 'applied');
  assert.equal(engine.hasPendingChanges, false, 'the quarantined change does not count as queued (health)');
  assert.ok(result.retryInMs !== null && result.retryInMs > 0);

  // A full sync carries no poison: the group is left out of the transaction, and its old rules are not stale.
  const full = await engine.syncFull();
  assert.equal(full.quarantined, 1);
  assert.ok(fake.history.slice(-full.restores).every((r) => !r.payload.includes(POISON)));
  assert.deepEqual(await targets(fake, 2), ['10.2.0.20:8080']);
  assert.equal(changes.length, 1, 'reported once, not once per sync');
});

test('a group never applied stays out whole: no chain and no dispatch rule pointing at one', async () => {
  const { fake, engine, changes } = setup();
  put(engine, 1, ['10.2.0.10']);
  put(engine, 3, [POISON]);
  const result = await engine.syncFull();
  assert.equal(result.quarantined, 1);
  assert.equal(changes[0]!.group, 'default/svc3');
  const nat = await fake.save('nat');
  assert.ok(!nat.includes(chainOf(3)) && !nat.includes('10.96.0.3/32'), nat);
  assert.deepEqual(await targets(fake, 1), ['10.2.0.10:8080']);
  await dispatchIsWhole(fake);
});

test('a group whose planning throws is quarantined: others are applied, it keeps its rules, and a fix heals it', async () => {
  const now = { t: 0 };
  const { fake, backend, engine, changes } = setup({ health: THROWING_HEALTH, now: () => now.t });
  put(engine, 1, ['10.2.0.10']);
  put(engine, 2, ['10.2.0.20']);
  put(engine, 4, ['10.2.0.77']);
  const first = await engine.syncFull();
  assert.equal(first.quarantined, 1);
  assert.equal(backend.refusals, 0, 'nothing reached the kernel for it');
  assert.ok(!(await fake.save('nat')).includes(chainOf(4)));
  await dispatchIsWhole(fake);
  assert.deepEqual(changes.map((c) => [c.group, c.fault?.stage]), [['default/svc4', 'plan']]);
  assert.match(changes[0]!.fault!.reason, /planning its rules failed: cannot read properties of undefined/);

  // An applied group whose next plan throws keeps what it had.
  put(engine, 2, ['10.2.0.20', '10.2.0.77']);
  put(engine, 1, ['10.2.0.12']);
  await engine.syncPartial();
  assert.deepEqual(await targets(fake, 2), ['10.2.0.20:8080']);
  assert.deepEqual(await targets(fake, 1), ['10.2.0.12:8080']);
  assert.equal(engine.quarantinedCount, 2);

  // The objects are fixed: the next sync applies them and lifts the quarantine, with a report each.
  put(engine, 2, ['10.2.0.21']);
  put(engine, 4, ['10.2.0.40']);
  const healed = await engine.syncPartial();
  assert.equal(healed.quarantined, 0);
  assert.equal(healed.retryInMs, null);
  assert.deepEqual(await targets(fake, 2), ['10.2.0.21:8080']);
  assert.deepEqual(await targets(fake, 4), ['10.2.0.40:8080']);
  assert.deepEqual(changes.slice(2).map((c) => [c.group, c.fault, c.previous?.stage]).sort(), [['default/svc2', null, 'plan'], ['default/svc4', null, 'plan']]);
  assert.equal(engine.groupStatus('default/svc4').state, 'applied');
});

test('without a line number the refused group is found by bisecting, within the bound of extra restores', async () => {
  const { fake, backend, engine, changes } = setup({ withLine: false });
  for (let i = 1; i <= 16; i++) put(engine, i, [`10.2.1.${i}`]);
  await engine.syncFull();
  for (let i = 1; i <= 16; i++) put(engine, i, [i === 11 ? POISON : `10.2.2.${i}`]);
  const before = backend.restores;
  const result = await engine.syncPartial();
  assert.equal(result.quarantined, 1);
  assert.deepEqual(changes.map((c) => c.group), ['default/svc11']);
  for (let i = 1; i <= 16; i++) assert.deepEqual(await targets(fake, i), [i === 11 ? '10.2.1.11:8080' : `10.2.2.${i}:8080`], `svc${i}`);
  // The refused partial and first full attempt, log2(16) trials, then the rest.
  const spent = backend.restores - before;
  assert.ok(spent <= 2 + Math.log2(16) + 1, `${spent} restores`);
  await dispatchIsWhole(fake);
});

test('bisecting many refused groups spends a bounded number of restores per sync, and each retry gets further', async () => {
  const { fake, backend, engine } = setup({ withLine: false });
  const refused = new RefusingBackend(fake, false, '10.9.');
  Object.assign(backend, { restore: (p: string) => { backend.restores++; return refused.restore(p); } });
  for (let i = 1; i <= 64; i++) put(engine, i, [`10.2.1.${i}`]);
  await engine.syncFull();
  for (let i = 1; i <= 64; i++) put(engine, i, [i % 8 === 3 ? `10.9.0.${i}` : `10.2.2.${i}`]);
  let syncs = 0;
  for (let done = false; !done; syncs++) {
    assert.ok(syncs < 10, 'the syncs get further each time');
    const before = backend.restores;
    done = await engine.syncPartial().then(() => true, (err: unknown) => {
      assert.ok(err instanceof RestoreError);
      return false;
    });
    // A partial attempt, a first full attempt, the extra restores, and the probe of the last one at most.
    assert.ok(backend.restores - before <= 2 + MAX_ISOLATION_RESTORES + 1, `${backend.restores - before} restores`);
  }
  assert.ok(syncs > 1, 'eight refused groups without a line cost more than one sync\'s budget');
  assert.equal(engine.quarantinedCount, 8);
  for (let i = 1; i <= 64; i++) assert.deepEqual(await targets(fake, i), [i % 8 === 3 ? `10.2.1.${i}:8080` : `10.2.2.${i}:8080`], `svc${i}`);
});

test('a refusal of everything (a held lock, a broken tool) blames no group: the sync fails and is retried whole', async () => {
  const { fake, backend, engine, changes } = setup({ withLine: false });
  put(engine, 1, ['10.2.0.10']);
  await engine.syncFull();
  put(engine, 1, ['10.2.0.11']);
  // Every payload refused without a line, the empty probe included.
  const refuseAll = new RefusingBackend(fake, false, '');
  Object.assign(backend, { restore: (p: string) => refuseAll.restore(p) });
  await assert.rejects(engine.syncPartial(), RestoreError);
  assert.equal(changes.length, 0);
  assert.equal(engine.quarantinedCount, 0);
  assert.equal(engine.hasPendingChanges, true, 'the change still waits');
});

test('a restore that found the xtables lock held blames no group, even if the lock is free again for the next restore: the sync fails and the retry applies everything', async () => {
  const { fake, backend, engine, changes } = setup();
  for (let i = 1; i <= 4; i++) put(engine, i, [`10.2.1.${i}`]);
  await engine.syncFull();
  for (let i = 1; i <= 4; i++) put(engine, i, [`10.2.2.${i}`]);
  // kube-proxy holds the lock past iptablesLockWait for a few restores, then lets go. Reported as a
  // refusal without a line, this sent the engine bisecting and quarantined whichever group was tried last.
  let held = 3;
  Object.assign(backend, {
    restore: (p: string) => {
      if (held-- > 0) return Promise.reject(new LockTimeoutError('iptables-legacy-restore: another writer held the xtables lock', 'Another app is currently holding the xtables lock. Stopped waiting after 5s.\n'));
      return fake.restore(p);
    },
  });
  await assert.rejects(engine.syncPartial(), LockTimeoutError);
  assert.equal(changes.length, 0, 'no group quarantined');
  assert.equal(engine.quarantinedCount, 0);
  assert.equal(engine.hasPendingChanges, true, 'the changes still wait');
  for (let i = 1; i <= 4; i++) assert.deepEqual(await targets(fake, i), [`10.2.1.${i}:8080`], `svc${i} untouched`);
  // The runner retries a failed sync as a full one.
  await assert.rejects(engine.syncFull(), LockTimeoutError);
  await assert.rejects(engine.syncFull(), LockTimeoutError);
  assert.equal(changes.length, 0, 'still no group quarantined');
  await engine.syncFull();
  for (let i = 1; i <= 4; i++) assert.deepEqual(await targets(fake, i), [`10.2.2.${i}:8080`], `svc${i} applied by the retry`);
  assert.equal(engine.quarantinedCount, 0);
});

test('a quarantined group is retried on its own backoff, reported once, and heals when a retry succeeds', async () => {
  const now = { t: 0 };
  const { fake, backend, engine, changes } = setup({ now: () => now.t });
  put(engine, 1, ['10.2.0.10']);
  put(engine, 2, ['10.2.0.20']);
  await engine.syncFull();
  put(engine, 2, [POISON]);
  const first = await engine.syncPartial();
  // random 0.999 draws the top of [base/2, base): just under 1 s, then 2 s, 4 s, capped at 8 s.
  const delays = [first.retryInMs];
  assert.ok(delays[0]! > 900 && delays[0]! <= 1000, String(delays[0]));

  // Not due: a sync for another service leaves it alone.
  const refusals = backend.refusals;
  put(engine, 1, ['10.2.0.11']);
  await engine.syncPartial();
  assert.equal(backend.refusals, refusals, 'not retried before its time');

  for (let i = 0; i < 4; i++) {
    now.t += delays.at(-1)!;
    const r = await engine.syncPartial();
    delays.push(r.retryInMs);
  }
  assert.equal(backend.refusals, refusals + 4 * 2, 'each due retry is one refused partial and one refused full round');
  assert.deepEqual(delays.map((d) => Math.round(d! / 1000)), [1, 2, 4, 8, 8]);
  assert.equal(changes.length, 1, 'the same refusal again is no news');
  assert.deepEqual(await targets(fake, 2), ['10.2.0.20:8080']);

  // The kernel takes it now: the next due retry applies it and lifts the quarantine.
  backend.refuse = false;
  now.t += delays.at(-1)!;
  const healed = await engine.syncPartial();
  assert.equal(healed.quarantined, 0);
  assert.deepEqual(await targets(fake, 2), [`${POISON}:8080`]);
  assert.equal(changes.length, 2);
  assert.equal(changes[1]!.fault, null);
  assert.equal(changes[1]!.previous!.failures, 5);
});

test('after a restart, a group whose planning throws keeps the rules the previous run left', async () => {
  const { fake, engine } = setup();
  put(engine, 1, ['10.2.0.10']);
  put(engine, 2, ['10.2.0.77']);
  await engine.syncFull();
  const before = await fake.save('nat');
  // A new process on the same kernel, whose planning of svc2 throws.
  const changes: QuarantineChange[] = [];
  const restarted = new SyncEngine({ config, dataplane: new IptablesDataplane(fake), log: silentLogger(), health: THROWING_HEALTH, onQuarantine: (c) => changes.push(c) });
  put(restarted, 1, ['10.2.0.11']);
  put(restarted, 2, ['10.2.0.77']);
  const result = await restarted.syncFull();
  assert.equal(result.quarantined, 1);
  assert.equal(changes[0]!.group, 'default/svc2');
  const after = await fake.save('nat');
  assert.deepEqual(await targets(fake, 2), ['10.2.0.77:8080'], 'its chain stays');
  const dispatch = (text: string) => text.split('\n').filter((l) => l.includes(`-j ${chainOf(2)}`));
  assert.equal(dispatch(after).length, 1);
  assert.deepEqual(dispatch(after), dispatch(before), 'its dispatch rule stays');
  assert.deepEqual(await targets(fake, 1), ['10.2.0.11:8080']);
  // And it stays through the next full sync.
  await restarted.syncFull();
  assert.equal(await fake.save('nat'), after);
});
