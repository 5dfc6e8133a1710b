// IPVS mode as the agent wires it, against the fake table and a recorder of
// the commands aux.ts runs: the rules beside the table follow the frontends
// (applied once per change, not per sync), --cleanup removes the owned
// services and those rules and nothing else, and a kernel without IPVS is
// refused with the cause.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AgentIpvsDataplane, auxTools, IpvsUnavailableError, requireIpvs } from '../../src/ipvs/agent-mode.js';
import { MARK_CHAIN, REJECT_CHAIN, RULE_PREF_LO, ROUTE_TABLE } from '../../src/ipvs/aux.js';
import type { IpvsGroup } from '../../src/ipvs/dataplane.js';
import { FakeIpvs } from '../../src/ipvs/fake.js';
import type { ApplyOutcome } from '../../src/sync/dataplane.js';
import type { FrontendSelection, GroupSelection } from '../../src/selection/selection.js';
import type { PolicySettings } from '../../src/policy/policy.js';

const settings: PolicySettings = { mode: 'active-active', clusterWeights: {}, failoverOrder: [], unifiedName: false };

function selection(key: string, service: string, ip: string, endpoints: readonly string[]): GroupSelection {
  const fe: FrontendSelection = {
    kind: 'cluster-ip', family: 'ipv4', ip, port: 80, protocol: 'TCP', name: { namespace: 'shop', service, port: 'http' }, affinity: null,
    endpoints: endpoints.map((e) => ({ ip: e, port: 8080, cluster: 'chile01', weight: 1 })) as unknown as FrontendSelection['endpoints'],
    decision: null as unknown as FrontendSelection['decision'],
  };
  return { key, settings, decision: null as unknown as GroupSelection['decision'], frontends: [fe], problems: [] };
}

function recorder() {
  const calls: string[] = [];
  return {
    calls,
    tools: {
      iptables: 'iptables-nft',
      exec: async (argv: readonly string[], input?: string) => {
        calls.push(argv.join(' ') + (input ? `\n${input}` : ''));
        // `-C` finds nothing and `ip rule show` prints nothing: everything is added; `-D` finds nothing left.
        if (argv.includes('-C') || argv.includes('-D')) throw new Error('no such rule');
        return '';
      },
    },
  };
}

async function sync(dp: AgentIpvsDataplane, groups: Map<string, IpvsGroup>): Promise<ApplyOutcome> {
  const kernel = await dp.observe(groups);
  return dp.apply(dp.diff(kernel, groups));
}

test('the rules beside the table are applied with the table, again only when the frontends change', async () => {
  const rec = recorder();
  const ipvs = new FakeIpvs();
  const dp = new AgentIpvsDataplane(ipvs, rec.tools);
  const a = dp.plan(selection('shop/a', 'a', '10.96.0.10', ['10.2.0.1']))!;
  const groups = new Map([[a.key, a]]);
  assert.equal((await sync(dp, groups)).refused, null);
  assert.equal((await ipvs.services()).length, 1);
  const mangle = rec.calls.find((c) => c.startsWith('iptables-nft-restore --noflush\n*mangle'));
  assert.ok(mangle, rec.calls.join('\n---\n'));
  assert.match(mangle, new RegExp(`-A ${MARK_CHAIN} -d 10\\.96\\.0\\.10/32 -p tcp -m tcp --dport 80 .*-j MARK --set-xmark 0x[0-9a-f]+/0xffffffff`));
  assert.ok(rec.calls.some((c) => c === `ip rule add pref ${RULE_PREF_LO} iif lo fwmark 0x4d000000/0xff000000 lookup main` || c.startsWith(`ip rule add pref ${RULE_PREF_LO} `)));
  assert.ok(rec.calls.some((c) => c === 'sysctl -qw net.ipv4.vs.conntrack=1'));

  // The same frontends: the table is checked, the rules are not rewritten.
  const before = rec.calls.length;
  assert.equal((await sync(dp, groups)).refused, null);
  assert.equal(rec.calls.length, before);

  // A new frontend through a partial change: its marking rule follows.
  const b = dp.plan(selection('shop/b', 'b', '10.96.0.11', ['10.2.0.2']))!;
  assert.equal((await dp.apply(dp.diffGroup(b.key, undefined, b))).refused, null);
  const next = rec.calls.slice(before).find((c) => c.includes('*mangle'));
  assert.ok(next, 'the marking chain is rewritten for the new frontend');
  assert.match(next, /-d 10\.96\.0\.11\/32/);
  assert.match(next, /-d 10\.96\.0\.10\/32/);

  // A frontend left without endpoints is rejected by the filter rules.
  const bEmpty = dp.plan(selection('shop/b', 'b', '10.96.0.11', []))!;
  assert.equal((await dp.apply(dp.diffGroup(b.key, b, bEmpty))).refused, null);
  const filter = rec.calls.filter((c) => c.includes('*filter')).at(-1)!;
  assert.match(filter, new RegExp(`-A ${REJECT_CHAIN} -d 10\\.96\\.0\\.11/32 .*-j REJECT`));
});

test('a failing rule command makes the apply report an error, and the rules are applied again next time', async () => {
  const rec = recorder();
  let fail = true;
  const tools = { iptables: 'iptables-nft', exec: async (argv: readonly string[], input?: string) => {
    if (fail && argv[0] === 'iptables-nft-restore') throw new Error('iptables-nft-restore: lock held');
    return rec.tools.exec(argv, input);
  } };
  const dp = new AgentIpvsDataplane(new FakeIpvs(), tools);
  const a = dp.plan(selection('shop/a', 'a', '10.96.0.10', ['10.2.0.1']))!;
  const groups = new Map([[a.key, a]]);
  const failed = await sync(dp, groups);
  assert.equal(failed.refused?.kind, 'error');
  assert.match(String((failed.refused!.error as Error).message), /lock held/);
  fail = false;
  assert.equal((await sync(dp, groups)).refused, null);
  assert.ok(rec.calls.some((c) => c.includes(`-A ${MARK_CHAIN} -d 10.96.0.10/32`)));
});

test('cleanupAll deletes the owned services and the rules beside them, and leaves other services', async () => {
  const rec = recorder();
  const ipvs = new FakeIpvs();
  const foreign = { key: { kind: 'address' as const, family: 4 as const, protocol: 'tcp' as const, address: '10.96.0.10', port: 80 }, scheduler: 'rr', flags: 0, timeout: 0, netmask: 0xffffffff };
  await ipvs.addService(foreign);
  const dp = new AgentIpvsDataplane(ipvs, rec.tools);
  const a = dp.plan(selection('shop/a', 'a', '10.96.0.10', ['10.2.0.1']))!;
  await sync(dp, new Map([[a.key, a]]));
  assert.equal((await ipvs.services()).length, 2);
  rec.calls.length = 0;
  await dp.cleanupAll();
  const left = await ipvs.services();
  assert.equal(left.length, 1);
  assert.equal(left[0]!.key.kind, 'address');
  assert.ok(rec.calls.includes(`iptables-nft -w -t mangle -X ${MARK_CHAIN}`), rec.calls.join('\n'));
  assert.ok(rec.calls.includes(`iptables-nft -w -t filter -X ${REJECT_CHAIN}`));
  assert.ok(rec.calls.some((c) => c.startsWith(`iptables-nft -w -t mangle -D PREROUTING `) && c.endsWith(`-j ${MARK_CHAIN}`)));
  assert.ok(rec.calls.some((c) => c.startsWith('iptables-nft -w -t nat -D POSTROUTING ') && c.includes('MASQUERADE')));
  assert.ok(rec.calls.includes(`ip rule del pref ${RULE_PREF_LO}`));
  assert.ok(rec.calls.includes(`ip route flush table ${ROUTE_TABLE}`));
});

test('requireIpvs names the cause when the kernel has no IPVS, and passes when the table answers', async () => {
  await requireIpvs(new FakeIpvs());
  const missing = new FakeIpvs();
  missing.services = async () => {
    throw new Error('this kernel has no IPVS generic netlink family (is the ip_vs module loaded?): Request rejected: ENOENT');
  };
  await assert.rejects(requireIpvs(missing), (err: unknown) => err instanceof IpvsUnavailableError && /^proxy mode ipvs cannot start: .*ip_vs module/.test(err.message));
});

test('the aux commands run with their exit status as the verdict, also when a command exits without reading its input', async () => {
  const { exec } = auxTools('nft');
  assert.equal(auxTools('legacy').iptables, 'iptables-legacy');
  assert.equal(await exec(['echo', 'ok']), 'ok\n');
  assert.equal(await exec(['cat'], 'through stdin'), 'through stdin');
  // `true` never reads: the large input hits a closed pipe, which must not surface as an uncaught EPIPE.
  assert.equal(await exec(['true'], 'x'.repeat(4 << 20)), '');
  await assert.rejects(exec(['false']), /false/);
});
