import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { blamedLine, decideBackend, summarizeDump } from '../../src/iptables/exec-backend.js';

const EMPTY = '';

// What kubelet and kube-proxy leave behind, in a chosen number of service chains.
function kubeDump(services: number): string {
  const chains = Array.from({ length: services }, (_, i) => `KUBE-SVC-${i}`);
  return [
    '*mangle',
    ':PREROUTING ACCEPT [0:0]',
    ':KUBE-KUBELET-CANARY - [0:0]',
    'COMMIT',
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':KUBE-SERVICES - [0:0]',
    ...chains.map((c) => `:${c} - [0:0]`),
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    ...chains.map((c) => `-A KUBE-SERVICES -m comment --comment "-j NOT-COUNTED" -j ${c}`),
    'COMMIT',
    '',
  ].join('\n');
}

const PLAIN_RULES = '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n';

describe('summarizeDump', () => {
  test('counts KUBE- chains and the rules in or jumping to them, only in nat/mangle/filter', () => {
    assert.deepEqual(summarizeDump(kubeDump(2)), { kubeChains: 4, kubeRules: 3, rules: 3 });
    const raw = '*raw\n:PREROUTING ACCEPT [0:0]\n:KUBE-RAW - [0:0]\n-A PREROUTING -j KUBE-RAW\nCOMMIT\n';
    assert.deepEqual(summarizeDump(raw), { kubeChains: 0, kubeRules: 0, rules: 1 });
  });

  test('ignores the "legacy tables present" warning nft-save prints', () => {
    assert.deepEqual(summarizeDump('# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n'), {
      kubeChains: 0,
      kubeRules: 0,
      rules: 0,
    });
  });
});

describe('decideBackend', () => {
  const cases: { name: string; nft: string; legacy: string; mode: 'nft' | 'legacy'; mixed: boolean; reason: RegExp }[] = [
    { name: 'kube-proxy chains only in legacy → legacy', nft: PLAIN_RULES, legacy: kubeDump(1), mode: 'legacy', mixed: false, reason: /found in iptables-legacy only/ },
    { name: 'kube-proxy chains only in nft → nft', nft: kubeDump(1), legacy: PLAIN_RULES, mode: 'nft', mixed: false, reason: /found in iptables-nft only/ },
    { name: 'both, legacy with more KUBE- rules → legacy, flagged mixed', nft: kubeDump(1), legacy: kubeDump(5), mode: 'legacy', mixed: true, reason: /both/ },
    { name: 'both, nft with more KUBE- rules → nft, flagged mixed', nft: kubeDump(5), legacy: kubeDump(1), mode: 'nft', mixed: true, reason: /both/ },
    { name: 'both with equal KUBE- rules → nft, flagged mixed', nft: kubeDump(2), legacy: kubeDump(2), mode: 'nft', mixed: true, reason: /both/ },
    { name: 'no kube-proxy chains, rules only in legacy → legacy', nft: EMPTY, legacy: PLAIN_RULES, mode: 'legacy', mixed: false, reason: /no kube-proxy chains/ },
    { name: 'no kube-proxy chains, rules only in nft → nft', nft: PLAIN_RULES, legacy: EMPTY, mode: 'nft', mixed: false, reason: /no kube-proxy chains/ },
    { name: 'no rules anywhere → nft, the Debian 12 default', nft: EMPTY, legacy: EMPTY, mode: 'nft', mixed: false, reason: /default/ },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const decision = decideBackend({ nft: c.nft, legacy: c.legacy });
      assert.equal(decision.mode, c.mode);
      assert.equal(decision.mixed, c.mixed);
      assert.match(decision.reason, c.reason);
    });
  }
});

describe('blamedLine', () => {
  test('reads the payload line from every error form iptables 1.8.9 prints', () => {
    const forms: [string, number | undefined][] = [
      ['iptables-nft-restore: line 5 failed: Bad rule (does a matching rule exist in that chain?).\n', 5],
      ['iptables-restore: line 7 failed\n', 7],
      ["iptables-nft-restore v1.8.9 (nf_tables): Chain 'NOSUCH' does not exist\nError occurred at line: 4\nTry `iptables-nft-restore -h'\n", 4],
      ['iptables-nft-restore: COMMIT expected at line 4\n', 4],
      ['iptables-nft-restore v1.8.9 (nf_tables): \nline 2: CHAIN_DEL failed (Device or resource busy): chain FOO\nline 3: CHAIN_DEL failed (Device or resource busy): chain BAR\n', 2],
      ["iptables-restore v1.8.9 (legacy): Can't set policy `FOO' on `INPUT' line 2: Bad policy name\n", 2],
      ['Another app is currently holding the xtables lock. Stopped waiting after 5s.\n', undefined],
    ];
    for (const [stderr, line] of forms) assert.equal(blamedLine(stderr), line, stderr);
  });
});
