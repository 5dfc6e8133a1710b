import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { V1Service } from '@kubernetes/client-node';
import { KubeApiError, listAll, loadKubeConfig } from '../../src/kube/client.js';
import { kubeConfigFor, kubeconfigYaml, TestApiServer } from '../support/api-server.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'kube-client-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function startServer(t: TestContext): Promise<TestApiServer> {
  const server = new TestApiServer({ bookmarkIntervalMs: 0 });
  await server.start();
  t.after(() => server.stop());
  return server;
}

test('loadKubeConfig(path) loads the file, and a list through it reaches the server with the bearer token', async (t) => {
  const server = await startServer(t);
  const file = join(tempDir(t), 'kubeconfig');
  writeFileSync(file, kubeconfigYaml(server.url));
  const kc = loadKubeConfig(file);
  assert.equal(kc.getCurrentCluster()?.server, server.url);
  server.create({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default', name: 's' } });
  const list = await listAll<V1Service>(kc, '/api/v1/services');
  assert.deepEqual(
    list.items.map((s) => s.metadata?.name),
    ['s'],
  );
  assert.equal(list.metadata?.resourceVersion, server.resourceVersion);
  assert.equal(server.requests[0].authorization, 'Bearer test-token');
});

test('loadKubeConfig errors name the file but never quote its content', (t) => {
  const dir = tempDir(t);
  const broken = join(dir, 'broken');
  writeFileSync(broken, 'users:\n- name: u\n  user:\n    token: s3cr3t-t0ken\n   bad: [indent\n');
  assert.throws(
    () => loadKubeConfig(broken),
    (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.match(err.message, new RegExp(`cannot load kubeconfig ${broken}: `));
      assert.doesNotMatch(err.message, /s3cr3t/);
      return true;
    },
  );
  assert.throws(() => loadKubeConfig(join(dir, 'absent')), /cannot load kubeconfig .*absent: ENOENT/);
  const empty = join(dir, 'empty');
  writeFileSync(empty, '{}');
  assert.throws(() => loadKubeConfig(empty), /has no current cluster/);
});

test('loadKubeConfig() outside a cluster fails with a hint instead of targeting https://undefined', (t) => {
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  t.after(() => {
    for (const [key, value] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });
  delete process.env.KUBERNETES_SERVICE_HOST;
  delete process.env.KUBERNETES_SERVICE_PORT;
  assert.throws(() => loadKubeConfig(), /not running in a cluster .*pass a kubeconfig path/);
});

test('listAll surfaces a failed page as KubeApiError with the Status code, reason and message', async (t) => {
  const server = await startServer(t);
  server.pause();
  await assert.rejects(listAll(kubeConfigFor(server.url), '/api/v1/services'), (err: unknown) => {
    assert.ok(err instanceof KubeApiError);
    assert.equal(err.statusCode, 503);
    assert.equal(err.reason, 'ServiceUnavailable');
    assert.equal(err.message, 'GET /api/v1/services: HTTP 503: the server is currently unable to handle the request');
    return true;
  });
  server.resume();
  await assert.rejects(listAll(kubeConfigFor(server.url), '/api/v1/pods'), { name: 'KubeApiError', statusCode: 404 });
});

test('listAll follows continue tokens and keeps the resourceVersion of the snapshot', async (t) => {
  const server = await startServer(t);
  for (const name of ['a', 'b', 'c']) server.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'default', name } });
  const snapshot = server.resourceVersion;
  const list = await listAll(kubeConfigFor(server.url), '/api/v1/configmaps', { pageSize: 1 });
  assert.deepEqual(
    list.items.map((o) => o.metadata?.name),
    ['a', 'b', 'c'],
  );
  assert.equal(list.metadata?.resourceVersion, snapshot);
  assert.equal(server.countRequests({ verb: 'list' }), 3);
});
