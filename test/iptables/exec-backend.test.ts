// The real backend inside throwaway namespaces: auto-detection against rules
// written with one tool or the other, error mapping and large payloads.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { execa } from 'execa';
import { afterEach, before, describe, test } from 'node:test';
import { LockTimeoutError, RestoreError } from '../../src/iptables/backend.js';
import { createIptablesBackend, ExecIptablesBackend } from '../../src/iptables/exec-backend.js';
import { parseSave } from '../../src/iptables/save-format.js';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';
import { largeNatPayload } from '../support/large-payload.js';
import { cleanupStale, netnsExec, Topology } from '../support/netns.js';

/** kubelet's canary and a kube-proxy service with the given number of endpoints. */
function kubePayload(endpoints: number): string {
  const seps = Array.from({ length: endpoints }, (_, i) => `KUBE-SEP-${i}`);
  return [
    '*mangle',
    ':KUBE-KUBELET-CANARY - [0:0]',
    'COMMIT',
    '*nat',
    ':KUBE-SERVICES - [0:0]',
    ':KUBE-SVC-X - [0:0]',
    ...seps.map((c) => `:${c} - [0:0]`),
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 53 -j KUBE-SVC-X',
    ...seps.map((c, i) => `-A KUBE-SVC-X -j ${c}\n-A ${c} -p tcp -j DNAT --to-destination 10.244.0.${i + 2}:53`),
    'COMMIT',
    '',
  ].join('\n');
}

/** A logger whose JSON lines land in the returned array. */
function capturingLogger(): { log: Logger; entries: Record<string, unknown>[] } {
  const entries: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) entries.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger('debug', sink), entries };
}

describe('ExecIptablesBackend in a namespace', () => {
  let topology: Topology | undefined;

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'these tests create network namespaces and run iptables in them: run them as root');
    await cleanupStale();
  });
  afterEach(() => topology?.teardown());

  async function freshNamespace(): Promise<string> {
    topology = new Topology();
    return topology.namespace('exec');
  }

  const writer = (mode: 'nft' | 'legacy', netns: string) => new ExecIptablesBackend(mode, { netns, log: silentLogger() });

  test('auto picks legacy when only iptables-legacy holds kube-proxy chains', async () => {
    const netns = await freshNamespace();
    await writer('legacy', netns).restore(kubePayload(2));
    const backend = await createIptablesBackend({ mode: 'auto', netns, log: silentLogger() });
    assert.equal(backend.mode, 'legacy');
    assert.match(backend.detection!.reason, /found in iptables-legacy only/);
  });

  test('auto picks nft when only iptables-nft holds kube-proxy chains', async () => {
    const netns = await freshNamespace();
    await writer('nft', netns).restore(kubePayload(2));
    const backend = await createIptablesBackend({ mode: 'auto', netns, log: silentLogger() });
    assert.equal(backend.mode, 'nft');
    assert.match(backend.detection!.reason, /found in iptables-nft only/);
  });

  test('auto picks the backend with more KUBE- rules when both have them, and warns that the node mixes backends', async () => {
    const netns = await freshNamespace();
    await writer('nft', netns).restore(kubePayload(1));
    await writer('legacy', netns).restore(kubePayload(4));
    const { log, entries } = capturingLogger();
    const backend = await createIptablesBackend({ mode: 'auto', netns, log });
    assert.equal(backend.mode, 'legacy');
    assert.equal(backend.detection!.mixed, true);
    const warning = entries.find((e) => e.level === 'warn');
    assert.ok(warning, 'a warning was logged');
    assert.match(String(warning.msg), /mixes iptables backends/);
    assert.equal(warning.backend, 'legacy');
  });

  test('auto without kube-proxy chains picks the backend that holds rules', async () => {
    const netns = await freshNamespace();
    await writer('legacy', netns).restore('*filter\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n');
    const backend = await createIptablesBackend({ mode: 'auto', netns, log: silentLogger() });
    assert.equal(backend.mode, 'legacy');
    assert.match(backend.detection!.reason, /no kube-proxy chains/);
  });

  test('auto on an empty node picks nft, logs why, and creates no table in either backend', async () => {
    const netns = await freshNamespace();
    const { log, entries } = capturingLogger();
    const backend = await createIptablesBackend({ mode: 'auto', netns, log });
    assert.equal(backend.mode, 'nft');
    const info = entries.find((e) => e.msg === 'iptables backend detected');
    assert.ok(info);
    assert.match(String(info.reason), /no rules in either backend/);
    for (const tool of ['iptables-legacy-save', 'iptables-nft-save']) {
      assert.equal((await netnsExec(netns, tool)).stdout, '', `${tool} shows no table`);
    }
  });

  test('a legacy restore that finds the xtables lock held past -w fails as lock contention, naming the lock file and the wait, not as a refused payload', async () => {
    const ns = await freshNamespace();
    // The lock file of this process (netns.ts sets XTABLES_LOCKFILE), held as kube-proxy would hold /run/xtables.lock.
    const lockFile = process.env.XTABLES_LOCKFILE!;
    // The shell's descriptor 9 holds the lock, and sleep inherits it: killing that one process frees it.
    const holder = execa('sh', ['-c', `exec 9>'${lockFile}' && flock -x 9 && echo held && exec sleep 120`], { buffer: false, reject: false });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.once('data', () => resolve());
        holder.once('exit', () => reject(new Error('flock exited before holding the lock')));
      });
      const backend = new ExecIptablesBackend('legacy', { netns: ns, log: silentLogger(), lockWaitSeconds: 1 });
      const err = await backend.restore('*nat\nCOMMIT\n').then(() => null, (e: unknown) => e);
      assert.ok(err instanceof LockTimeoutError, String(err));
      assert.ok(!(err instanceof RestoreError));
      assert.match(err.message, new RegExp(`^iptables-legacy-restore: another writer held the xtables lock \\(${lockFile.replaceAll('.', '\\.')}\\) for longer than 1s \\(iptablesLockWait\\)`));
    } finally {
      holder.kill('SIGKILL');
      await holder;
    }
    // Free again: the same restore goes through.
    await new ExecIptablesBackend('legacy', { netns: ns, log: silentLogger(), lockWaitSeconds: 1 }).restore('*nat\nCOMMIT\n');
  });

  test('an explicit mode skips detection', async () => {
    const netns = await freshNamespace();
    const backend = await createIptablesBackend({ mode: 'legacy', netns, log: silentLogger() });
    assert.equal(backend.mode, 'legacy');
    assert.equal(backend.detection, undefined);
  });

  for (const mode of ['nft', 'legacy'] as const) {
    test(`iptables-${mode}: a refused restore becomes a RestoreError with the tool's stderr and blamed line`, async () => {
      const netns = await freshNamespace();
      const backend = writer(mode, netns);
      await assert.rejects(backend.restore('*nat\n:A - [0:0]\n-D A -j RETURN\nCOMMIT\n'), (err: unknown) => {
        assert.ok(err instanceof RestoreError);
        assert.equal(err.line, 3);
        assert.match(err.stderr, /line 3 failed/);
        assert.match(err.message, new RegExp(`^iptables-${mode}-restore failed at line 3: `));
        return true;
      });
    });

    test(`iptables-${mode}: a 2 MB payload of 20k rules applies through one restore and saves back intact`, async () => {
      const netns = await freshNamespace();
      const backend = writer(mode, netns);
      const payload = largeNatPayload();
      assert.ok(payload.length > 2e6);

      await backend.restore(payload);
      const nat = parseSave(await backend.save('nat')).get('nat')!;
      assert.equal(nat.chains.get('OUTPUT')!.rules.length, 5000);
      assert.deepEqual(nat.chains.get('MCS-SVC-4999')!.rules, [0, 1, 2].map((e) => `-p tcp -m comment --comment "ns/svc-4999:http -> 10.1.${e}.135:80" -j DNAT --to-destination 10.1.${e}.135:80`));
    });
  }
});
