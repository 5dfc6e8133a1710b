import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { kubeProxyRewrite } from '../support/kube-proxy-storm.js';
import { createNetns, deleteNetns, netnsExec, processPrefix } from '../support/netns.js';

assert.equal(process.getuid?.(), 0, 'data-plane tests need root: run them as root (CI does)');

// The nf_tables monitor in a real kernel when a burst overflows its socket:
// the kernel drops notifications and flags the socket (POLLERR), which must
// come out as "events lost" while the monitor keeps reading, never as a
// crash of the agent or a socket that silently stops.

const ns = `${processPrefix()}nfmon`;
const dir = mkdtempSync(join(tmpdir(), 'nf-monitor-'));
let probe: ChildProcess | null = null;
const lines: Record<string, unknown>[] = [];
const waiters: (() => void)[] = [];

before(() => createNetns(ns));
after(async () => {
  probe?.kill('SIGKILL');
  await deleteNetns(ns);
  rmSync(dir, { recursive: true, force: true });
});

/** Resolves with the first line from index `from` on that satisfies `pred`. */
async function line(from: number, pred: (l: Record<string, unknown>) => boolean, what: string): Promise<number> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const index = lines.findIndex((l, i) => i >= from && pred(l));
    if (index !== -1) return index;
    assert.ok(probe?.exitCode === null && probe.signalCode === null, `the monitor died (exit ${probe?.exitCode}, signal ${probe?.signalCode}) while waiting for ${what}`);
    assert.ok(Date.now() < deadline, `no ${what} within 2 minutes: ${JSON.stringify(lines.slice(from))}`);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 500);
      waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

test('a storm that overflows the monitor\'s socket is reported as lost events; the monitor lives and sees the next change', async () => {
  const script = fileURLToPath(new URL('../support/nft-generations.js', import.meta.url));
  probe = spawn('ip', ['netns', 'exec', ns, process.execPath, script], { stdio: ['pipe', 'pipe', 'inherit'] });
  createInterface({ input: probe.stdout! }).on('line', (l) => {
    lines.push(JSON.parse(l) as Record<string, unknown>);
    for (const w of waiters.splice(0)) w();
  });
  await line(0, (l) => l.ready === true, 'ready');
  // The rewrite's last rule jumps to kube-proxy's node-port chain.
  await netnsExec(ns, 'iptables-nft', ['-t', 'nat', '-N', 'KUBE-NODEPORTS']);

  // The event loop is busy while kube-proxy-style rewrites of 2,000 services
  // (tens of thousands of notifications) are committed.
  const flag = join(dir, 'go');
  probe.stdin!.write(`stall ${flag}\n`);
  const stalling = await line(0, (l) => l.stalling === true, 'stall');
  for (let round = 0; round < 4; round++) await netnsExec(ns, 'iptables-nft-restore', ['--noflush'], { input: kubeProxyRewrite(2000, round) });
  writeFileSync(flag, '');
  const lost = await line(stalling, (l) => l.lost !== undefined, 'report of lost events');
  assert.equal(lines[lost]!.lost, 'the receive buffer overflowed');

  // Reading goes on: a change to one of our chains after the overflow is seen.
  await netnsExec(ns, 'iptables-nft', ['-t', 'nat', '-N', 'MCS-SVC-AFTERSTORM']);
  await line(lost, (l) => Array.isArray(l.touches) && (l.touches as string[]).includes('nat/MCS-SVC-AFTERSTORM'), 'the change after the storm');
  assert.equal(probe.exitCode, null, 'the monitor is still running');
});
