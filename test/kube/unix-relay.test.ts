import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { silentLogger } from '../../src/log.js';
import { startClusterWatches } from '../../src/kube/watch.js';
import { kubeConfigFor, TestApiServer, waitFor } from '../support/api-server.js';
import { startUnixRelay } from '../support/unix-relay.js';

const RELAY_SCRIPT = fileURLToPath(new URL('../support/unix-relay.js', import.meta.url));

async function serverOnSocket(t: TestContext): Promise<TestApiServer> {
  const dir = mkdtempSync(join(tmpdir(), 'kube-relay-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const server = new TestApiServer({ bookmarkIntervalMs: 0 });
  await server.start({ socketPath: join(dir, 'api.sock') });
  t.after(() => server.stop());
  return server;
}

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

test('an HTTP request to the in-process relay reaches the TestApiServer listening on a unix socket', async (t) => {
  const server = await serverOnSocket(t);
  assert.throws(() => server.url, /unix socket/);
  server.create({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default', name: 'via-relay' } });
  const relay = await startUnixRelay(server.socketPath ?? '', 0);
  t.after(() => relay.close());
  const res = await fetch(`http://127.0.0.1:${relay.port}/api/v1/services`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as { items: V1Service[] };
  assert.deepEqual(
    body.items.map((s) => s.metadata?.name),
    ['via-relay'],
  );
  assert.equal(server.countRequests({ verb: 'list', resource: 'services' }), 1);
});

test('a relay connection is closed when nothing listens on the unix socket', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kube-relay-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const relay = await startUnixRelay(join(dir, 'missing.sock'), 0);
  t.after(() => relay.close());
  await assert.rejects(fetch(`http://127.0.0.1:${relay.port}/api/v1/services`));
});

test('the relay script prints "ready" once listening, and the real informers sync and stream through it', async (t) => {
  const server = await serverOnSocket(t);
  server.create({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default', name: 'a' } });
  const port = await freePort();
  const child = spawn(process.execPath, [RELAY_SCRIPT, server.socketPath ?? '', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  });
  const firstLine = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`relay exited with ${code} before ready`)));
  });
  assert.equal(firstLine, 'ready');

  const seen: string[] = [];
  const record = { onUpsert: (o: V1Service) => seen.push(`upsert ${o.metadata?.name}`), onDelete: (o: V1Service) => seen.push(`delete ${o.metadata?.name}`) };
  const ignore = { onUpsert: (_: V1EndpointSlice) => undefined, onDelete: (_: V1EndpointSlice) => undefined };
  const watches = startClusterWatches(kubeConfigFor(`http://127.0.0.1:${port}`), { services: record, endpointSlices: ignore }, silentLogger(), { servicePrefix: 'derived-' });
  t.after(() => watches.stop());
  await watches.whenSynced();
  await waitFor(() => server.openWatches === 2, 'both watches open');
  server.delete({ apiVersion: 'v1', kind: 'Service' }, 'default', 'a');
  await waitFor(() => seen.length === 2, 'the delete through the relay');
  assert.deepEqual(seen, ['upsert a', 'delete a']);

  child.kill('SIGTERM');
  assert.equal(await exited, 0, 'exits cleanly on SIGTERM');
});
