import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RunningConfig } from '../../src/config/running.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';

test('the running config is read through one owner; subscribers hear each change in order, after it is in force', () => {
  const running = new RunningConfig(DEFAULT_CONFIG);
  const heard: string[] = [];
  running.subscribe((next, previous) => heard.push(`a ${previous.clusterName}->${next.clusterName} now ${running.current.clusterName}`));
  const stop = running.subscribe((next) => heard.push(`b ${next.clusterName}`));
  running.set({ ...DEFAULT_CONFIG, clusterName: 'brazil' });
  stop();
  running.set({ ...DEFAULT_CONFIG, clusterName: 'chile01' });
  assert.deepEqual(heard, ['a ->brazil now brazil', 'b brazil', 'a brazil->chile01 now chile01']);
  assert.equal(running.current.clusterName, 'chile01');
});
