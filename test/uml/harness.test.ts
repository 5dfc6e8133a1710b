// The UML harness itself: what it reports is what happened in the guest.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runInUml } from './harness.js';

const mine = `uml-${process.pid}-`;

/** This process's UML kernels still running and run directories still present, once SIGKILL has had time to land. */
async function leftovers(): Promise<string[]> {
  let found: string[] = [];
  for (let waited = 0; waited <= 10_000; waited += 100) {
    const processes = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' }).split('\n').filter((line) => line.includes(`uml_dir=${tmpdir()}/${mine}`));
    found = [...processes, ...readdirSync(tmpdir()).filter((name) => name.startsWith(mine))];
    if (found.length === 0) break;
    await sleep(100);
  }
  return found;
}

test('the command runs in the guest with its output, status and a network of loopback only', async () => {
  const result = await runInUml({
    argv: ['sh', '-c', 'ls /sys/class/net; uname -r; touch "$PWD/.uml-probe" 2>/dev/null && echo writable || echo read-only; echo oops >&2; exit 7'],
  });
  assert.equal(result.code, 7);
  const [links, release, root] = result.stdout.trimEnd().split('\n');
  assert.equal(links, 'lo');
  assert.match(release ?? '', /^6\.1\./);
  assert.equal(root, 'read-only');
  assert.equal(result.stderr, 'oops\n');
  assert.deepEqual(await leftovers(), []);
});

test('a module that cannot load fails the run', async () => {
  await assert.rejects(runInUml({ argv: ['true'], modules: ['ip_vs', 'ip_vs_no_such_scheduler'] }), /init failed at step "modules"/);
  assert.deepEqual(await leftovers(), []);
});

test('a kernel that does not boot in time fails the run and is killed', async () => {
  await assert.rejects(runInUml({ argv: ['true'], bootTimeoutMs: 1 }), /did not boot within 1 ms/);
  assert.deepEqual(await leftovers(), []);
});

test('a command that outruns its bound fails the run and the kernel is killed', async () => {
  await assert.rejects(runInUml({ argv: ['sleep', '600'], runTimeoutMs: 3000 }), /command did not finish within 3000 ms/);
  assert.deepEqual(await leftovers(), []);
});

test('two runs at once each get their own guest', async () => {
  const runs = await Promise.all(['first', 'second'].map((word) =>
    runInUml({ argv: ['sh', '-c', 'echo "$WORD"; ip netns add probe && ip netns list'], env: { WORD: word } })));
  assert.deepEqual(runs.map((r) => [r.code, r.stdout]), [[0, 'first\nprobe\n'], [0, 'second\nprobe\n']]);
  assert.deepEqual(await leftovers(), []);
});
