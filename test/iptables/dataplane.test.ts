// Traffic through rules written by the real backend, and the namespace
// toolkit's own promises: it cleans up after itself, after a crash and on
// signals.

import assert from 'node:assert/strict';
import { afterEach, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { ExecIptablesBackend } from '../../src/iptables/exec-backend.js';
import { silentLogger } from '../../src/log.js';
import { cleanupStale, createNetns, deleteNetns, httpRequests, startHttpServer, Topology } from '../support/netns.js';

const NETNS_MODULE = fileURLToPath(new URL('../support/netns.js', import.meta.url));

async function namespaces(): Promise<string[]> {
  const { stdout } = await execa('ip', ['netns', 'list']);
  return stdout.split('\n').map((line) => line.split(' ')[0] ?? '');
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('data plane in namespaces', () => {
  let topology: Topology | undefined;

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'these tests create network namespaces: run them as root');
    await cleanupStale();
  });
  afterEach(() => topology?.teardown());

  /** A client namespace routed to a server namespace whose http-echo answers "cluster-a". */
  async function clientAndServer(): Promise<{ client: string; server: string }> {
    topology = new Topology();
    const client = await topology.namespace('client');
    const server = await topology.namespace('server');
    await topology.link({ ns: client, ifname: 'eth0', address: '10.99.0.1/24' }, { ns: server, ifname: 'eth0', address: '10.99.0.2/24' });
    await topology.route(client, '10.96.0.0/16', '10.99.0.2');
    await startHttpServer(server, '10.99.0.2', 8080, 'cluster-a');
    return { client, server };
  }

  for (const mode of ['nft', 'legacy'] as const) {
    test(`iptables-${mode}: a DNAT rule restored in the client namespace sends every new connection to the server`, async () => {
      const { client } = await clientAndServer();
      const before = await httpRequests(client, 'http://10.96.0.10/', 1, { timeoutMs: 300 });
      assert.deepEqual(before, { ok: 0, failed: 1, bodies: {}, errors: { ETIMEDOUT: 1 } }, 'nothing answers the service IP before the rule');

      const backend = new ExecIptablesBackend(mode, { netns: client, log: silentLogger() });
      await backend.restore(
        '*nat\n:MCS-SVC - [0:0]\n-A MCS-SVC -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.99.0.2:8080\n-I OUTPUT -j MCS-SVC\nCOMMIT\n',
      );
      const after = await httpRequests(client, 'http://10.96.0.10/', 10, { concurrency: 4 });
      assert.deepEqual(after, { ok: 10, failed: 0, bodies: { 'cluster-a': 10 }, errors: {} });
    });
  }

  test('iptables-nft: a PREROUTING DNAT on a forwarding router namespace reaches a server one hop further and replies find their way back', async () => {
    topology = new Topology();
    const client = await topology.namespace('client');
    const router = await topology.namespace('router');
    const server = await topology.namespace('server');
    await topology.link({ ns: client, ifname: 'eth0', address: '10.97.1.2/24' }, { ns: router, ifname: 'to-client', address: '10.97.1.1/24' });
    await topology.link({ ns: router, ifname: 'to-server', address: '10.97.2.1/24' }, { ns: server, ifname: 'eth0', address: '10.97.2.2/24' });
    await topology.route(client, '10.96.0.0/16', '10.97.1.1');
    await topology.route(server, '10.97.1.0/24', '10.97.2.1');
    await topology.enableForwarding(router);
    await startHttpServer(server, '10.97.2.2', 8080, 'behind-router');

    await new ExecIptablesBackend('nft', { netns: router, log: silentLogger() }).restore(
      '*nat\n-A PREROUTING -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.97.2.2:8080\nCOMMIT\n',
    );
    assert.deepEqual(await httpRequests(client, 'http://10.96.0.10/', 5), { ok: 5, failed: 0, bodies: { 'behind-router': 5 }, errors: {} });
  });

  test('Topology.teardown kills what runs inside, deletes every namespace, and can run twice', async () => {
    topology = new Topology();
    const a = await topology.namespace('a');
    const b = await topology.namespace('b');
    await topology.link({ ns: a, ifname: 'veth-a', address: '10.98.0.1/30' }, { ns: b, ifname: 'veth-b', address: '10.98.0.2/30' });
    const server = await startHttpServer(b, '10.98.0.2', 80, 'b');
    assert.deepEqual((await httpRequests(a, 'http://10.98.0.2/', 2)).bodies, { b: 2 });

    await topology.teardown();
    await topology.teardown();
    const left = await namespaces();
    assert.ok(!left.includes(a) && !left.includes(b), `left: ${left.join(' ')}`);
    assert.equal(isAlive(server.pid), false, 'the server died with its namespace');
  });

  test('a stopped server refuses connections', async () => {
    topology = new Topology();
    const ns = await topology.namespace('solo');
    const server = await startHttpServer(ns, '127.0.0.1', 8080, 'solo');
    assert.deepEqual(await httpRequests(ns, 'http://127.0.0.1:8080/', 1), { ok: 1, failed: 0, bodies: { solo: 1 }, errors: {} });
    await server.stop();
    assert.deepEqual(await httpRequests(ns, 'http://127.0.0.1:8080/', 1), { ok: 0, failed: 1, bodies: {}, errors: { ECONNREFUSED: 1 } });
  });

  test('cleanupStale deletes namespaces of dead processes under its prefix root and keeps live ones', async () => {
    const exited = execa('true');
    const deadPid = exited.pid!;
    await exited;
    assert.equal(isAlive(deadPid), false);
    const root = 'mcsstaletest';
    const stale = `${root}${deadPid}-x`;
    const live = `${root}${process.pid}-x`;
    await createNetns(stale);
    await createNetns(live);
    try {
      assert.deepEqual(await cleanupStale(root), [stale]);
      const left = await namespaces();
      assert.ok(!left.includes(stale));
      assert.ok(left.includes(live));
    } finally {
      await deleteNetns(stale);
      await deleteNetns(live);
    }
  });

  for (const [how, code] of [
    ['exits without tearing down', 'process.exit(3)'],
    ['is killed by SIGTERM', 'process.kill(process.pid, "SIGTERM"); setTimeout(() => {}, 5000)'],
  ] as const) {
    test(`namespaces of a process that ${how} are deleted by its exit hooks`, async () => {
      const name = `mcsexithook${process.pid}-${code.length}`;
      const script = `const m = await import(${JSON.stringify(NETNS_MODULE)}); await m.createNetns(${JSON.stringify(name)}); ${code};`;
      const child = await execa(process.execPath, ['--input-type=module', '-e', script], { reject: false });
      assert.ok(child.exitCode === 3 || child.signal === 'SIGTERM', `child ended: ${child.exitCode ?? child.signal} ${child.stderr}`);
      const left = await namespaces();
      if (left.includes(name)) await deleteNetns(name);
      assert.ok(!left.includes(name), `${name} survived`);
    });
  }
});
