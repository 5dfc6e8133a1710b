import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { access, chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { waitFor } from '../support/api-server.js';
import { endpoint, importedSlice, service } from '../support/fixtures.js';
import { AGENT_WAIT_MS, Lab } from '../support/lab.js';

assert.equal(process.getuid?.(), 0, 'data-plane tests need root: run them as root (CI does)');

// SIGTERM is how the kubelet stops the agent: it must end with status 0 and leave
// every rule in place, whatever the agent is doing when the signal arrives.

const exists = (path: string) => access(path).then(() => true, () => false);

describe('SIGTERM stops the agent with status 0 whatever it is doing', () => {
  const lab = new Lab('nft');
  let config = '';

  before(async () => {
    await lab.start();
    await lab.addPod({ ip: '10.2.0.10', body: 'chile01/serve-a' });
    await lab.routeServiceRange('10.96.0.0/12');
    lab.apply(
      service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]),
      importedSlice('default', 'chile01', 'serve-abc', 'derived-serve', [endpoint('10.2.0.10')]),
    );
    config = await lab.writeConfig({ clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], minSyncInterval: '50ms' });
  });
  after(() => lab.stop());

  it('while an iptables-restore runs: the restore completes, its rules stay, the exit status is 0', async () => {
    // An iptables-nft-restore that says when it starts and waits to be released: the
    // signal is sent while the agent has a child process running (which is when a
    // signal listener of execa's child clean-up is installed next to the agent's).
    const bin = join(lab.directory, 'bin');
    await execa('mkdir', ['-p', bin]);
    const real = (await execa('sh', ['-c', 'command -v iptables-nft-restore'])).stdout.trim();
    const started = join(lab.directory, 'restore-started');
    const release = join(lab.directory, 'restore-release');
    await writeFile(join(bin, 'iptables-nft-restore'), `#!/bin/sh
touch '${started}'
i=0
while [ ! -e '${release}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
exec '${real}' "$@"
`);
    await chmod(join(bin, 'iptables-nft-restore'), 0o755);
    const agent = await lab.startAgent(['--config', config], undefined, { ...process.env, PATH: `${bin}:${process.env.PATH}` });
    await waitFor(() => exists(started), 'the first restore to start', { timeoutMs: AGENT_WAIT_MS, intervalMs: 20 });
    const stopped = agent.stop('SIGTERM');
    await waitFor(async () => (await agent.logs()).includes('"msg":"stopping'), 'the agent to take the signal', { timeoutMs: AGENT_WAIT_MS, intervalMs: 20 });
    await writeFile(release, '');
    assert.equal(await stopped, 0, await agent.logs());
    assert.match(await lab.save('nat'), /--to-destination 10\.2\.0\.10:8080/, 'the restore in flight completed');
  });

  it('while it waits for its ConfigMap, before the agent exists: the exit status is 0 and nothing was changed', async () => {
    lab.api.pause('unavailable');
    try {
      const before = await lab.saveAll();
      const gets = lab.api.countRequests({ verb: 'get', status: 503 }) + lab.api.countRequests({ verb: 'list', status: 503 });
      const agent = await lab.startAgent(['--configmap', 'ops/clusterset-proxy']);
      await waitFor(() => lab.api.countRequests({ verb: 'get', status: 503 }) + lab.api.countRequests({ verb: 'list', status: 503 }) > gets, 'a refused ConfigMap read', { timeoutMs: AGENT_WAIT_MS, intervalMs: 20 });
      assert.equal(await agent.stop('SIGTERM'), 0, await agent.logs());
      assert.match(await agent.logs(), /"msg":"stopping before the agent started; nothing was changed"/);
      assert.equal(await lab.saveAll(), before);
    } finally {
      lab.api.resume();
    }
  });

  it('while it waits for its first list from an unavailable API server: the exit status is 0', async () => {
    lab.api.pause('unavailable');
    try {
      const lists = lab.api.countRequests({ verb: 'list', status: 503 });
      const agent = await lab.startAgent(['--config', config]);
      await waitFor(() => lab.api.countRequests({ verb: 'list', status: 503 }) > lists, 'a refused list', { timeoutMs: AGENT_WAIT_MS, intervalMs: 20 });
      assert.equal(await agent.stop('SIGTERM'), 0, await agent.logs());
    } finally {
      lab.api.resume();
    }
  });
});
