import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

test('npm run demo\'s program runs to the end: local first, failover, scale-out, fail-back, reject, cleanup', async () => {
  const demo = fileURLToPath(new URL('./demo.js', import.meta.url));
  const r = await execa(process.execPath, [demo], { reject: false, timeout: 120_000 });
  assert.equal(r.exitCode, 0, r.stderr);
  const lines = r.stdout.split('\n');
  const answers = lines.filter((l) => l.includes('answered by'));
  assert.match(answers[0]!, /to serve .* brazil pod serve-x \(10.1.0.10\): 10$/);
  assert.match(answers[1]!, /to derived-serve .* brazil pod serve-x \(10.1.0.10\): 10$/);
  assert.match(answers[2]!, /chile01 pod serve-a \(10.2.0.10\): 10$/);
  assert.match(answers[3]!, /serve-[ab].*serve-[ab]/);
  assert.match(answers[4]!, /brazil pod serve-x \(10.1.0.10\): 10$/);
  assert.match(answers[5]!, /failed: ECONNREFUSED: 3$/);
  assert.ok(lines.includes('MCS- lines left in iptables-save: 0'), r.stdout);
});
