// One list of restore scenarios, run against the fake (both modes) and the
// real iptables-nft / iptables-legacy inside a fresh network namespace per
// scenario. Every scenario states the exact outcome (the line each tool
// blames, the tables afterwards), so passing on all four backends proves the
// fake behaves like the kernel for what the agent relies on.

import assert from 'node:assert/strict';
import { afterEach, before, describe, test } from 'node:test';
import { RestoreError, type BackendMode, type IptablesBackend } from '../../src/iptables/backend.js';
import { ExecIptablesBackend } from '../../src/iptables/exec-backend.js';
import { FakeIptables } from '../../src/iptables/fake-backend.js';
import { formatSave, parseSave } from '../../src/iptables/save-format.js';
import { silentLogger } from '../../src/log.js';
import { cleanupStale, Topology } from '../support/netns.js';

/** A value, or one per mode where the two tools differ. */
type PerMode<T> = T | Readonly<Record<BackendMode, T>>;

interface Step {
  readonly payload: string;
  /** The line the tool blames when the payload must fail (null: it applies). */
  readonly fails?: PerMode<number | null>;
}

interface Scenario {
  readonly name: string;
  readonly steps: readonly Step[];
  /** iptables-save -t nat / -t filter afterwards, without comments and counters. */
  readonly nat: PerMode<string>;
  readonly filter: string;
}

function pick<T extends string | number | null>(value: PerMode<T>, mode: BackendMode): T {
  return typeof value === 'object' && value !== null ? value[mode] : (value as T);
}

const payload = (...lines: string[]): string => `${lines.join('\n')}\n`;
const saved = (table: string, ...lines: string[]): string => payload(`*${table}`, ...lines, 'COMMIT');

const NAT_BUILTINS = [':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]'];
const nat = (...lines: string[]): string => saved('nat', ...NAT_BUILTINS, ...lines);
const EMPTY_NAT = nat();
const EMPTY_FILTER = saved('filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]');

// Canonical specs, as iptables-save prints them back.
const DNAT_SPEC = '-d 10.96.0.10/32 -p tcp -m comment --comment "default/derived-serve:http cluster IP" -m tcp --dport 80 -j DNAT --to-destination 10.1.0.1:8080';
const QUOTED_COMMENT = '-m comment --comment "a \\"quoted\\" -j FAKE" -j RETURN';

/**
 * nat with user chain A holding one rule and OUTPUT jumping to it. (Its rule
 * is no MASQUERADE/SNAT: the kernel refuses those in a chain reachable from
 * OUTPUT, a check the fake does not model.)
 */
const SETUP_A = payload('*nat', ':A - [0:0]', '-A A -p tcp -j RETURN', '-A OUTPUT -j A', 'COMMIT');
const AFTER_SETUP_A = nat(':A - [0:0]', '-A OUTPUT -j A', '-A A -p tcp -j RETURN');

const SCENARIOS: readonly Scenario[] = [
  {
    name: 'declared chains are created, -A appends in order, and save lists user chains in byte order with specs verbatim',
    steps: [
      {
        payload: payload(
          '*nat',
          ':ZETA - [0:0]',
          ':KUBE-SVC-abc - [0:0]',
          ':KUBE-SVC-ABC - [0:0]',
          ':Alpha - [0:0]',
          `-A Alpha ${DNAT_SPEC}`,
          `-A Alpha ${QUOTED_COMMENT}`,
          '-A Alpha -m comment --comment nospace -j ZETA',
          '-A PREROUTING -j Alpha',
          'COMMIT',
        ),
      },
    ],
    nat: nat(
      ':Alpha - [0:0]',
      ':KUBE-SVC-ABC - [0:0]',
      ':KUBE-SVC-abc - [0:0]',
      ':ZETA - [0:0]',
      '-A PREROUTING -j Alpha',
      `-A Alpha ${DNAT_SPEC}`,
      `-A Alpha ${QUOTED_COMMENT}`,
      '-A Alpha -m comment --comment nospace -j ZETA',
    ),
    filter: EMPTY_FILTER,
  },
  {
    name: 'redeclaring an existing user chain flushes it and keeps the jumps into it',
    steps: [{ payload: SETUP_A }, { payload: payload('*nat', ':A - [0:0]', '-A A -j DNAT --to-destination 10.1.0.1', 'COMMIT') }],
    nat: nat(':A - [0:0]', '-A OUTPUT -j A', '-A A -j DNAT --to-destination 10.1.0.1'),
    filter: EMPTY_FILTER,
  },
  {
    name: '-F empties a chain, after which -X deletes it once its jump is gone',
    steps: [{ payload: SETUP_A }, { payload: payload('*nat', '-F A', '-D OUTPUT -j A', '-X A', 'COMMIT') }],
    nat: EMPTY_NAT,
    filter: EMPTY_FILTER,
  },
  {
    name: '-D of a rule that does not exist fails at its line and leaves the whole table as it was',
    steps: [
      { payload: SETUP_A },
      { payload: payload('*nat', ':NEW - [0:0]', '-A A -j RETURN', '-D A -j SNAT --to-source 10.0.0.1', '-A OUTPUT -j NEW', 'COMMIT'), fails: 4 },
    ],
    nat: AFTER_SETUP_A,
    filter: EMPTY_FILTER,
  },
  {
    name: '-D by spec removes the first identical rule and -D by number removes that position',
    steps: [
      { payload: payload('*nat', ':A - [0:0]', '-A A -j RETURN', '-A A -j MASQUERADE', '-A A -j RETURN', '-A A -j SNAT --to-source 10.0.0.1', 'COMMIT') },
      { payload: payload('*nat', '-D A -j RETURN', '-D A 2', 'COMMIT') },
    ],
    nat: nat(':A - [0:0]', '-A A -j MASQUERADE', '-A A -j SNAT --to-source 10.0.0.1'),
    filter: EMPTY_FILTER,
  },
  {
    name: '-D by a number beyond the chain fails',
    steps: [{ payload: SETUP_A }, { payload: payload('*nat', '-D A 2', 'COMMIT'), fails: 2 }],
    nat: AFTER_SETUP_A,
    filter: EMPTY_FILTER,
  },
  {
    name: '-X of an empty chain still referenced by a jump fails at the -X line',
    steps: [{ payload: SETUP_A }, { payload: payload('*nat', '-F A', '-X A', 'COMMIT'), fails: 3 }],
    nat: AFTER_SETUP_A,
    filter: EMPTY_FILTER,
  },
  {
    name: '-X of an unreferenced chain that still has rules fails',
    steps: [{ payload: SETUP_A }, { payload: payload('*nat', '-D OUTPUT -j A', '-X A', 'COMMIT'), fails: 3 }],
    nat: AFTER_SETUP_A,
    filter: EMPTY_FILTER,
  },
  {
    name: '-X of a built-in chain or of a missing chain fails',
    steps: [
      { payload: payload('*nat', '-X PREROUTING', 'COMMIT'), fails: 2 },
      { payload: payload('*nat', '-X NOPE', 'COMMIT'), fails: 2 },
    ],
    nat: EMPTY_NAT,
    filter: EMPTY_FILTER,
  },
  {
    name: 'a jump to an unknown target fails: legacy blames the rule, nft the COMMIT line',
    steps: [{ payload: payload('*nat', ':A - [0:0]', '-A A -j NOSUCH', '-A A -j RETURN', 'COMMIT'), fails: { legacy: 3, nft: 5 } }],
    nat: EMPTY_NAT,
    filter: EMPTY_FILTER,
  },
  {
    name: 'a jump to a chain declared later in the same section fails',
    steps: [{ payload: payload('*nat', ':A - [0:0]', '-A A -j B', ':B - [0:0]', 'COMMIT'), fails: { legacy: 3, nft: 5 } }],
    nat: EMPTY_NAT,
    filter: EMPTY_FILTER,
  },
  {
    name: 'a jump to a built-in chain fails at the rule line',
    steps: [{ payload: payload('*nat', ':A - [0:0]', '-A A -j OUTPUT', 'COMMIT'), fails: 3 }],
    nat: EMPTY_NAT,
    filter: EMPTY_FILTER,
  },
  {
    name: '-A, -I and -F on a missing chain fail',
    steps: [
      { payload: payload('*nat', '-A NOPE -j RETURN', 'COMMIT'), fails: 2 },
      { payload: payload('*nat', '-I NOPE -j RETURN', 'COMMIT'), fails: 2 },
      { payload: payload('*nat', '-F NOPE', 'COMMIT'), fails: 2 },
    ],
    nat: EMPTY_NAT,
    filter: EMPTY_FILTER,
  },
  {
    name: '-I without a number inserts first and -I N inserts at N, up to one past the end',
    steps: [
      {
        payload: payload(
          '*nat',
          ':A - [0:0]',
          '-A A -j RETURN',
          '-I A 2 -j MASQUERADE',
          '-I A -j SNAT --to-source 10.0.0.1',
          '-I A 2 -j DNAT --to-destination 10.1.0.1',
          'COMMIT',
        ),
      },
    ],
    nat: nat(':A - [0:0]', '-A A -j SNAT --to-source 10.0.0.1', '-A A -j DNAT --to-destination 10.1.0.1', '-A A -j RETURN', '-A A -j MASQUERADE'),
    filter: EMPTY_FILTER,
  },
  {
    name: '-I at a position beyond one past the end fails',
    steps: [{ payload: SETUP_A }, { payload: payload('*nat', '-I A 3 -j RETURN', 'COMMIT'), fails: 2 }],
    nat: AFTER_SETUP_A,
    filter: EMPTY_FILTER,
  },
  {
    name: '--noflush leaves built-in chains alone unless declared, and declaring a built-in sets its policy without flushing it',
    steps: [
      { payload: payload('*filter', ':INPUT DROP [0:0]', ':FORWARD DROP [0:0]', ':P - [0:0]', '-A INPUT -j P', '-A P -j ACCEPT', 'COMMIT') },
      { payload: payload('*filter', '-A FORWARD -j DROP', 'COMMIT') },
      { payload: payload('*filter', ':INPUT ACCEPT [0:0]', ':FORWARD - [0:0]', 'COMMIT') },
    ],
    nat: EMPTY_NAT,
    filter: saved('filter', ':INPUT ACCEPT [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]', ':P - [0:0]', '-A INPUT -j P', '-A FORWARD -j DROP', '-A P -j ACCEPT'),
  },
  {
    name: '-P sets a built-in policy and fails on a user chain or an unknown policy',
    steps: [
      { payload: payload('*filter', ':P - [0:0]', '-P OUTPUT DROP', 'COMMIT') },
      { payload: payload('*filter', '-P P DROP', 'COMMIT'), fails: 2 },
      { payload: payload('*filter', '-P INPUT MAYBE', 'COMMIT'), fails: 2 },
      { payload: payload('*filter', ':INPUT MAYBE [0:0]', 'COMMIT'), fails: 2 },
    ],
    nat: EMPTY_NAT,
    filter: saved('filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT DROP [0:0]', ':P - [0:0]'),
  },
  {
    name: 'when the second table of a payload fails, the first, already COMMITted, stays applied',
    steps: [{ payload: payload('*filter', ':F - [0:0]', '-A F -j DROP', 'COMMIT', '*nat', ':N - [0:0]', '-D N -j RETURN', 'COMMIT'), fails: 7 }],
    nat: EMPTY_NAT,
    filter: saved('filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':F - [0:0]', '-A F -j DROP'),
  },
  {
    name: 'a syntax error in the second table leaves the first, already COMMITted, applied',
    steps: [{ payload: payload('*filter', ':F - [0:0]', 'COMMIT', '*nat', ':N - [0:0]', '*filter', 'COMMIT'), fails: 6 }],
    nat: EMPTY_NAT,
    filter: saved('filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':F - [0:0]'),
  },
  {
    name: 'when the first table of a payload fails, the tables after it are not applied',
    steps: [{ payload: payload('*nat', ':N - [0:0]', '-A NOPE -j RETURN', 'COMMIT', '*filter', ':F - [0:0]', 'COMMIT'), fails: 3 }],
    nat: EMPTY_NAT,
    filter: EMPTY_FILTER,
  },
  {
    name: 'a payload missing its COMMIT applies nothing and is blamed on the line after the last',
    steps: [{ payload: payload('*nat', ':A - [0:0]', '-A A -j RETURN'), fails: 4 }],
    nat: EMPTY_NAT,
    filter: EMPTY_FILTER,
  },
  {
    name: 'a busy -X followed by a bad -D: legacy blames the -X, nft the -D (its cache errors come before the kernel refusal)',
    steps: [{ payload: SETUP_A }, { payload: payload('*nat', ':B - [0:0]', '-X A', '-D B -j RETURN', 'COMMIT'), fails: { legacy: 3, nft: 4 } }],
    nat: AFTER_SETUP_A,
    filter: EMPTY_FILTER,
  },
  {
    name: 'a refused line followed by a syntax error: legacy blames the refused line, nft the syntax error',
    steps: [{ payload: payload('*nat', '-A NOPE -j RETURN', '*filter', 'COMMIT'), fails: { legacy: 2, nft: 3 } }],
    nat: EMPTY_NAT,
    filter: EMPTY_FILTER,
  },
  {
    name: 'a user chain declared with a policy: nft creates it, legacy refuses',
    steps: [{ payload: payload('*nat', ':U ACCEPT [0:0]', 'COMMIT'), fails: { legacy: 2, nft: null } }],
    nat: { legacy: EMPTY_NAT, nft: nat(':U - [0:0]') },
    filter: EMPTY_FILTER,
  },
  {
    name: 'DROP in the nat table is refused at its line',
    steps: [{ payload: payload('*nat', ':A - [0:0]', '-A A -j DROP', 'COMMIT'), fails: 3 }],
    nat: EMPTY_NAT,
    filter: EMPTY_FILTER,
  },
];

const normalise = (text: string): string => formatSave(parseSave(text));

async function play(backend: IptablesBackend, scenario: Scenario): Promise<void> {
  for (const [i, step] of scenario.steps.entries()) {
    const line = pick(step.fails ?? null, backend.mode);
    const attempt = backend.restore(step.payload);
    if (line === null) {
      await attempt;
      continue;
    }
    await assert.rejects(attempt, (err: unknown) => {
      assert.ok(err instanceof RestoreError, `step ${i + 1}: not a RestoreError: ${String(err)}`);
      assert.equal(err.line, line, `step ${i + 1}: blamed line; stderr: ${err.stderr}`);
      assert.ok(err.stderr.length > 0);
      return true;
    });
  }
  assert.equal(normalise(await backend.save('nat')), pick(scenario.nat, backend.mode), 'nat table afterwards');
  assert.equal(normalise(await backend.save('filter')), scenario.filter, 'filter table afterwards');
}

for (const mode of ['nft', 'legacy'] as const) {
  describe(`FakeIptables (${mode}) conformance`, () => {
    for (const scenario of SCENARIOS) {
      test(scenario.name, () => play(new FakeIptables(mode), scenario));
    }
  });

  describe(`iptables-${mode} conformance in a fresh namespace`, () => {
    let topology: Topology | undefined;

    before(async () => {
      assert.equal(process.getuid?.(), 0, 'these tests create network namespaces and run iptables in them: run them as root');
      await cleanupStale();
    });
    afterEach(() => topology?.teardown());

    for (const scenario of SCENARIOS) {
      test(scenario.name, async () => {
        topology = new Topology();
        const netns = await topology.namespace(`conf-${mode}`);
        await play(new ExecIptablesBackend(mode, { netns, log: silentLogger() }), scenario);
      });
    }
  });
}
