import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CONFIG, type Config } from '../../src/config/schema.js';
import { FakeIptables } from '../../src/iptables/fake-backend.js';
import { renderPayload } from '../../src/iptables/render.js';
import { chainProblem, specProblem, UnsafeTokenError } from '../../src/iptables/safe-tokens.js';
import { silentLogger } from '../../src/log.js';
import { serviceChainName } from '../../src/iptables/names.js';
import { emptyTableOps, type UnitChange } from '../../src/iptables/plan-types.js';
import { SyncEngine, type QuarantineChange } from '../../src/sync/engine.js';
import { endpoint, importedSlice, service, slice } from '../support/fixtures.js';
import { KUBE_PROXY_NAT, USER_FILTER } from '../support/foreign-rules.js';

// The renderer's own guard, whatever the model holds: no name or argument
// that could end its token reaches iptables-restore.

const GOOD = [
  '-d 10.96.0.1/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j MCS-SVC-ABC',
  '-m comment --comment "default/web:http -> chile01 10.2.0.10:8080" -j DNAT --to-destination 10.2.0.10:8080',
  '-m comment --comment "clusterset-proxy: mark for masquerade" -j MARK --set-xmark 0x4000/0x4000',
  '-j MCS-SERVICES',
  '-m comment --comment "" -j ACCEPT',
  '',
];

test('rule specs as the planner writes them, and as iptables-save prints them, pass', () => {
  for (const spec of GOOD) assert.equal(specProblem(spec), null, spec);
});

test('a quote, a backslash, a newline, any control or non-ASCII character, or a quote inside a token is refused', () => {
  const refused: [string, RegExp][] = [
    ['-m comment --comment "default/web -> evil"\nCOMMIT\n*filter\n-I INPUT 1 -p tcp --dport 2222 -j DROP" -j ACCEPT', /not printable ASCII/],
    ['-m comment --comment "a\nb" -j ACCEPT', /"\\n" \(not printable ASCII\) at 23/],
    ['-m comment --comment "a\rb"', /not printable ASCII/],
    ['-m comment --comment "a\u0000b"', /not printable ASCII/],
    ['-m comment --comment "a\tb"', /not printable ASCII/],
    ['-m comment --comment "a\u007fb"', /not printable ASCII/],
    ['-m comment --comment "a\u2028b"', /not printable ASCII/],
    ['-m comment --comment "évil"', /not printable ASCII/],
    ['-m comment --comment "a\\"b"', /a backslash at 23/],
    // A value that closes its comment and quotes the rest: each way it can end is refused.
    ['-m comment --comment "evil" -A INPUT -j DROP "x"', /a quote at 45 that does not open a --comment's argument/],
    ['-m comment --comment "evil" -j DROP -m comment --comment "x" -j ACCEPT', /more than one quoted argument/],
    ['-m comment --comment "evil" -j DROP -m comment --comment x" -j ACCEPT', /a quote at 58 that does not open/],
    ['-m comment --comment "evil" -j DROP x"', /a quote at 37 that does not open/],
    ['-m comment --comment ""evil"', /a quote at 22 inside a token/],
    ['-m comment --comment "default/web -> evil"" -j ACCEPT', /a quote at 41 inside a token/],
    ['-m comment --comment "never closed', /a quote opened at 21 and never closed/],
    ['-m comment --comment ab"c', /a quote at 23 that does not open/],
    ['-j DNAT --to-destination 10.2.0.1"', /a quote at 33 that does not open/],
    ['-j DNAT --to-destination "10.2.0.1"', /a quote at 25 that does not open/],
    ['-m comment x--comment "a"', /a quote at 22 that does not open/],
    [`-m comment --comment "${'a'.repeat(2000)}"`, /a quoted argument of 2000 characters/],
  ];
  for (const [spec, why] of refused) assert.match(specProblem(spec) ?? 'passed', why, JSON.stringify(spec));
});

test('chain names are one token of [A-Za-z0-9_.-], at most 28 characters', () => {
  for (const ok of ['MCS-SVC-ABCDEFGHIJKLMNOP', 'PREROUTING', 'KUBE-SERVICES', 'a_b.c']) assert.equal(chainProblem(ok), null, ok);
  for (const bad of ['', 'MCS SVC', 'MCS"', 'MCS\n', 'A'.repeat(29), 'MCS\\x']) assert.notEqual(chainProblem(bad), null, JSON.stringify(bad));
});

function unitWith(key: string, spec: string, chain = 'MCS-SVC-TEST'): UnitChange {
  const nat = emptyTableOps();
  nat.declare.push(chain);
  nat.appendRules.push({ chain, spec });
  return { key, ops: { nat, filter: emptyTableOps() }, chainCount: 1 };
}

test('renderPayload throws UnsafeTokenError naming the unit and emits nothing, whichever list holds the bad text', () => {
  const good = unitWith('default/good', GOOD[1]!);
  const bad = unitWith('default/bad', '-m comment --comment "x"\nCOMMIT\n*filter\n-I INPUT 1 -j DROP\n" -j ACCEPT');
  assert.match(renderPayload([good]), /^\*nat\n:MCS-SVC-TEST - \[0:0\]\n-A MCS-SVC-TEST .*\nCOMMIT\n$/);
  assert.throws(() => renderPayload([good, bad]), (err: unknown) => {
    assert.ok(err instanceof UnsafeTokenError);
    assert.equal(err.unit, 'default/bad');
    assert.match(err.message, /^unsafe iptables-restore token in unit default\/bad: character "\\n" \(not printable ASCII\) at 24 in "-m comment --comment \\"x\\"\\nCOMMIT\\n\*filter\\n-I INPUT 1 -j DROP\\n\\" -j "\.\.\. \(70 chars\); nothing was emitted$/);
    return true;
  });
  // A bad chain name, in any of the places one is written.
  for (const place of ['declare', 'deleteChains', 'deleteRules', 'insertFirst'] as const) {
    const nat = emptyTableOps();
    if (place === 'declare' || place === 'deleteChains') nat[place].push('MCS-"X');
    else nat[place].push({ chain: 'MCS-"X', spec: '-j ACCEPT' });
    assert.throws(() => renderPayload([{ key: 'default/c', ops: { nat, filter: emptyTableOps() }, chainCount: 1 }]), UnsafeTokenError, place);
  }
  const filter = emptyTableOps();
  filter.deleteRules.push({ chain: 'MCS-SERVICES', spec: '-m comment --comment "a\\" b"' });
  assert.throws(() => renderPayload([{ key: '', ops: { nat: emptyTableOps(), filter }, chainCount: 0 }]), /in the skeleton: a backslash/);
});

test('a group whose rules the renderer refuses is quarantined alone: the others are applied in the same sync', async () => {
  // The model holds what validation would refuse: a local cluster name taken from a config that skipped
  // the schema. Only the group with local endpoints writes it into a comment.
  const fake = new FakeIptables('nft');
  fake.load(KUBE_PROXY_NAT + USER_FILTER);
  const config: Config = { ...DEFAULT_CONFIG, clusterName: 'brazil"\n-A INPUT -j DROP', clusters: [{ name: 'chile01' }], clusterCIDR: '10.244.0.0/16' };
  const changes: QuarantineChange[] = [];
  const payloads: string[] = [];
  const backend = { get mode() { return fake.mode; }, save: (t: 'nat' | 'filter') => fake.save(t), restoreSets: (p: string) => fake.restoreSets(p), saveSet: (n: string) => fake.saveSet(n), restore: (p: string) => { payloads.push(p); return fake.restore(p); } };
  const engine = new SyncEngine({ config, dataplane: new IptablesDataplane(backend), log: silentLogger(), onQuarantine: (c) => changes.push(c) });
  // Group default/mixed: a ServiceImport with a local Service whose endpoints are this cluster's.
  engine.upsertService(service('default', 'derived-mixed', '10.96.0.1', [{ name: 'http', port: 80 }]));
  engine.upsertService(service('default', 'mixed', '10.96.0.11', [{ name: 'http', port: 80 }]));
  engine.upsertSlice(importedSlice('default', 'chile01', 'mixed-1', 'derived-mixed', [endpoint('10.2.0.10')]));
  engine.upsertSlice(slice('default', 'mixed-local', 'mixed', [endpoint('10.1.0.10')]));
  // Group default/remote: remote endpoints only.
  engine.upsertService(service('default', 'derived-remote', '10.96.0.2', [{ name: 'http', port: 80 }]));
  engine.upsertSlice(importedSlice('default', 'chile01', 'remote-1', 'derived-remote', [endpoint('10.2.0.20')]));

  const result = await engine.syncFull();
  assert.equal(result.quarantined, 1);
  assert.deepEqual(changes.map((c) => [c.group, c.fault?.stage]), [['default/mixed', 'plan']]);
  assert.match(changes[0]!.fault!.reason, /^rendering its rules failed: .*unsafe iptables-restore token in unit default\/mixed: character "\\n"/);
  const nat = await fake.save('nat');
  assert.match(nat, /--to-destination 10\.2\.0\.20:8080/);
  assert.ok(!nat.includes(serviceChainName('default', 'derived-mixed', 'http', 'TCP')), 'the refused group has no rules');
  for (const p of payloads) assert.ok(!p.includes('brazil') && !p.includes('-A INPUT'), p);
  assert.equal(engine.groupStatus('default/mixed').state, 'failed');
  assert.equal(engine.groupStatus('default/remote').state, 'applied');
});
