import assert from 'node:assert/strict';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { ApiException, CoreV1Api, type KubernetesObject, type V1Service } from '@kubernetes/client-node';
import { kubeConfigFor, TestApiServer, waitFor, type TestApiServerOptions } from '../support/api-server.js';

// Wire-level checks of the test API server, with plain HTTP requests.

const SERVICE = { apiVersion: 'v1', kind: 'Service' };
const CONFIGMAP = { apiVersion: 'v1', kind: 'ConfigMap' };

function service(namespace: string, name: string, labels?: Record<string, string>): V1Service {
  return { ...SERVICE, metadata: { namespace, name, labels }, spec: { ports: [{ port: 80 }] } };
}

async function startServer(t: TestContext, opts: TestApiServerOptions = { bookmarkIntervalMs: 0 }): Promise<TestApiServer> {
  const server = new TestApiServer(opts);
  await server.start();
  t.after(() => server.stop());
  return server;
}

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

async function request(server: TestApiServer, method: string, path: string, body?: unknown): Promise<Reply> {
  const res = await fetch(server.url + path, {
    method,
    headers: { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

interface WatchEvent {
  type: string;
  object: KubernetesObject & Record<string, unknown>;
}

interface WatchStream {
  status: number;
  events: WatchEvent[];
  /** 'end' when the server finished the stream cleanly, 'aborted' when the connection was cut. */
  done: Promise<'end' | 'aborted'>;
  close(): void;
}

async function openWatch(t: TestContext, server: TestApiServer, pathAndQuery: string): Promise<WatchStream> {
  const req = http.get(server.url + pathAndQuery);
  t.after(() => req.destroy());
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => req.once('response', resolve).once('error', reject));
  const events: WatchEvent[] = [];
  const lines = createInterface({ input: res });
  lines.on('line', (line) => events.push(JSON.parse(line) as WatchEvent));
  const done = new Promise<'end' | 'aborted'>((resolve) => {
    res.once('end', () => resolve('end'));
    // readline re-emits a cut connection's error on the interface.
    lines.on('error', () => resolve('aborted'));
  });
  return { status: res.statusCode ?? 0, events, done, close: () => req.destroy() };
}

const names = (items: unknown): string[] => (items as KubernetesObject[]).map((o) => `${o.metadata?.namespace ?? ''}/${o.metadata?.name}`);

test('LIST answers a typed List at the current resourceVersion, items sorted by namespace/name and without kind/apiVersion', async (t) => {
  const server = await startServer(t);
  server.create(service('b', 'one'));
  server.create(service('a', 'two'));
  server.create(service('a', 'one'));
  server.create({ ...CONFIGMAP, metadata: { namespace: 'a', name: 'cm' }, data: { k: 'v' } });

  const all = await request(server, 'GET', '/api/v1/services');
  assert.equal(all.status, 200);
  assert.equal(all.body.kind, 'ServiceList');
  assert.equal(all.body.apiVersion, 'v1');
  assert.deepEqual(all.body.metadata, { resourceVersion: server.resourceVersion });
  assert.deepEqual(names(all.body.items), ['a/one', 'a/two', 'b/one']);
  for (const item of all.body.items as Record<string, unknown>[]) {
    assert.equal(item.kind, undefined);
    assert.equal(item.apiVersion, undefined);
  }

  const inA = await request(server, 'GET', '/api/v1/namespaces/a/services');
  assert.deepEqual(names(inA.body.items), ['a/one', 'a/two']);
  const one = await request(server, 'GET', '/api/v1/namespaces/a/services/one');
  assert.equal(one.status, 200);
  assert.equal(one.body.kind, 'Service');
  assert.equal(one.body.apiVersion, 'v1');
});

test('create stamps uid, creationTimestamp, generation and one global resourceVersion that increases across resource types', async (t) => {
  const server = await startServer(t);
  const created = await request(server, 'POST', '/api/v1/namespaces/default/services', { metadata: { name: 's' }, spec: {} });
  assert.equal(created.status, 201);
  const meta = created.body.metadata as Record<string, unknown>;
  assert.match(String(meta.uid), /^[0-9a-f-]{36}$/);
  assert.match(String(meta.creationTimestamp), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(meta.generation, 1);
  assert.equal(meta.namespace, 'default');
  assert.equal(created.body.kind, 'Service');

  const cm = await request(server, 'POST', '/api/v1/namespaces/default/configmaps', { metadata: { generateName: 'cm-' } });
  const slice = await request(server, 'POST', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', {
    metadata: { name: 's-abc' },
    addressType: 'IPv4',
    endpoints: [],
  });
  const node = await request(server, 'POST', '/api/v1/nodes', { metadata: { name: 'n1' } });
  const rvs = [created, cm, slice, node].map((r) => Number((r.body.metadata as Record<string, unknown>).resourceVersion));
  assert.deepEqual(
    rvs,
    [...rvs].sort((a, b) => a - b),
  );
  assert.equal(new Set(rvs).size, 4);
  assert.match(String((cm.body.metadata as Record<string, unknown>).name), /^cm-[0-9a-f]{5}$/);
  assert.equal((node.body.metadata as Record<string, unknown>).namespace, undefined);
  assert.equal(String(rvs[3]), server.resourceVersion);
});

test('create of an existing object answers 409 AlreadyExists; get, update and delete of a missing one 404 NotFound, as Status bodies', async (t) => {
  const server = await startServer(t);
  server.create(service('default', 'taken'));
  const dup = await request(server, 'POST', '/api/v1/namespaces/default/services', { metadata: { name: 'taken' } });
  assert.deepEqual(dup, {
    status: 409,
    body: {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'services "taken" already exists',
      reason: 'AlreadyExists',
      code: 409,
      details: { name: 'taken', group: '', kind: 'services' },
    },
  });
  const notFound = {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: 'endpointslices.discovery.k8s.io "gone" not found',
    reason: 'NotFound',
    code: 404,
    details: { name: 'gone', group: 'discovery.k8s.io', kind: 'endpointslices' },
  };
  const path = '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/gone';
  assert.deepEqual(await request(server, 'GET', path), { status: 404, body: notFound });
  assert.deepEqual(await request(server, 'PUT', path, { metadata: { name: 'gone' } }), { status: 404, body: notFound });
  assert.deepEqual(await request(server, 'DELETE', path), { status: 404, body: notFound });
  const unknown = await request(server, 'GET', '/api/v1/pods');
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.reason, 'NotFound');
});

test('update with a stale resourceVersion answers 409 Conflict; a no-op write keeps the resourceVersion; a spec change bumps generation', async (t) => {
  const server = await startServer(t);
  const v1 = server.create(service('default', 's'));
  const path = '/api/v1/namespaces/default/services/s';
  const v2 = await request(server, 'PUT', path, { ...v1, spec: { ports: [{ port: 81 }] } });
  assert.equal(v2.status, 200);
  const v2meta = v2.body.metadata as Record<string, unknown>;
  assert.equal(v2meta.generation, 2);
  assert.equal(v2meta.uid, v1.metadata?.uid);
  assert.ok(Number(v2meta.resourceVersion) > Number(v1.metadata?.resourceVersion));

  const stale = await request(server, 'PUT', path, { ...v1, spec: { ports: [{ port: 82 }] } });
  assert.equal(stale.status, 409);
  assert.equal(stale.body.reason, 'Conflict');
  assert.equal(
    stale.body.message,
    'Operation cannot be fulfilled on services "s": the object has been modified; please apply your changes to the latest version and try again',
  );

  const before = server.resourceVersion;
  const same = await request(server, 'PUT', path, v2.body);
  assert.equal((same.body.metadata as Record<string, unknown>).resourceVersion, v2meta.resourceVersion);
  assert.equal(server.resourceVersion, before);

  const labelled = await request(server, 'PUT', path, { ...v2.body, metadata: { ...v2meta, labels: { a: 'b' } } });
  assert.equal((labelled.body.metadata as Record<string, unknown>).generation, 2, 'metadata changes leave generation alone');
  assert.throws(() => server.update({ ...v1, spec: {} }), { name: 'ApiStatusError', message: /the object has been modified/ });
});

test('labelSelector (=, ==, !=, k, !k, in, notin) and fieldSelector (metadata.name/namespace) filter lists; unparsable selectors answer 400', async (t) => {
  const server = await startServer(t);
  server.create(service('x', 'web', { app: 'web', tier: 'front' }));
  server.create(service('x', 'db', { app: 'db' }));
  server.create(service('y', 'web', { app: 'web', tier: 'back' }));
  server.create(service('y', 'bare'));
  const list = async (query: string) => names((await request(server, 'GET', `/api/v1/services?${query}`)).body.items);
  const sel = (s: string) => `labelSelector=${encodeURIComponent(s)}`;
  assert.deepEqual(await list(sel('app=web')), ['x/web', 'y/web']);
  assert.deepEqual(await list(sel('app==web,tier=front')), ['x/web']);
  assert.deepEqual(await list(sel('app!=web')), ['x/db', 'y/bare'], '!= also matches objects without the label');
  assert.deepEqual(await list(sel('tier')), ['x/web', 'y/web']);
  assert.deepEqual(await list(sel('!tier')), ['x/db', 'y/bare']);
  assert.deepEqual(await list(sel('tier in (back, middle)')), ['y/web']);
  assert.deepEqual(await list(sel('app notin (web),!tier')), ['x/db', 'y/bare']);
  assert.deepEqual(await list('fieldSelector=metadata.name%3Dweb'), ['x/web', 'y/web']);
  assert.deepEqual(await list('fieldSelector=metadata.namespace%3Dy,metadata.name!%3Dweb'), ['y/bare']);
  assert.deepEqual(await list(`fieldSelector=metadata.name%3Dweb&${sel('tier=back')}`), ['y/web']);
  const badLabel = await request(server, 'GET', `/api/v1/services?${sel('app=(')}`);
  assert.equal(badLabel.status, 400);
  assert.equal(badLabel.body.reason, 'BadRequest');
  const badField = await request(server, 'GET', '/api/v1/services?fieldSelector=spec.type%3DNodePort');
  assert.equal(badField.status, 400);
  assert.equal(badField.body.message, 'field label not supported: spec.type');
});

test('limit/continue pages one consistent snapshot even when objects change between pages; a continue token from before compact() answers 410 Expired', async (t) => {
  const server = await startServer(t);
  for (const name of ['a', 'b', 'c', 'd', 'e']) server.create(service('default', name));
  const first = await request(server, 'GET', '/api/v1/services?limit=2');
  const meta = first.body.metadata as { resourceVersion: string; continue: string };
  assert.deepEqual(names(first.body.items), ['default/a', 'default/b']);
  assert.ok(meta.continue);

  server.delete(SERVICE, 'default', 'c');
  server.create(service('default', 'bb'));
  const second = await request(server, 'GET', `/api/v1/services?limit=2&continue=${meta.continue}`);
  const meta2 = second.body.metadata as { resourceVersion: string; continue: string };
  assert.deepEqual(names(second.body.items), ['default/c', 'default/d'], 'served from the first page snapshot');
  assert.equal(meta2.resourceVersion, meta.resourceVersion);
  const third = await request(server, 'GET', `/api/v1/services?limit=2&continue=${meta2.continue}`);
  assert.deepEqual(names(third.body.items), ['default/e']);
  assert.equal((third.body.metadata as Record<string, unknown>).continue, undefined);

  server.compact();
  const expired = await request(server, 'GET', `/api/v1/services?limit=2&continue=${meta.continue}`);
  assert.equal(expired.status, 410);
  assert.equal(expired.body.reason, 'Expired');
  const fresh = await request(server, 'GET', '/api/v1/services');
  assert.deepEqual(names(fresh.body.items), ['default/a', 'default/b', 'default/bb', 'default/d', 'default/e']);
});

test('watch from a resourceVersion replays the later events of its resource, then streams live events with kind/apiVersion', async (t) => {
  const server = await startServer(t);
  const a = server.create(service('default', 'a'));
  const from = a.metadata?.resourceVersion;
  server.create(service('default', 'b'));
  server.create({ ...CONFIGMAP, metadata: { namespace: 'default', name: 'other-kind' } });
  server.apply({ ...service('default', 'a'), spec: { ports: [{ port: 90 }] } });

  const w = await openWatch(t, server, `/api/v1/services?watch=true&resourceVersion=${from}`);
  assert.equal(w.status, 200);
  await waitFor(() => w.events.length === 2, 'replayed events');
  server.delete(SERVICE, 'default', 'b');
  await waitFor(() => w.events.length === 3, 'live event');
  assert.deepEqual(
    w.events.map((e) => [e.type, e.object.kind, e.object.apiVersion, e.object.metadata?.name]),
    [
      ['ADDED', 'Service', 'v1', 'b'],
      ['MODIFIED', 'Service', 'v1', 'a'],
      ['DELETED', 'Service', 'v1', 'b'],
    ],
  );
  const rvs = w.events.map((e) => Number(e.object.metadata?.resourceVersion));
  assert.ok(rvs[0] < rvs[1] && rvs[1] < rvs[2], `increasing: ${rvs.join(',')}`);
  assert.equal(String(rvs[2]), server.resourceVersion, 'a DELETED event carries the deletion resourceVersion');
  assert.equal(server.openWatches, 1);
});

test('watch without resourceVersion (or 0) starts with ADDED events for the current objects of its namespace', async (t) => {
  const server = await startServer(t);
  server.create(service('one', 'a'));
  server.create(service('two', 'b'));
  const w = await openWatch(t, server, '/api/v1/namespaces/two/services?watch=1&resourceVersion=0');
  server.create(service('one', 'c'));
  server.create(service('two', 'd'));
  await waitFor(() => w.events.length === 2, 'events');
  assert.deepEqual(
    w.events.map((e) => [e.type, e.object.metadata?.name]),
    [
      ['ADDED', 'b'],
      ['ADDED', 'd'],
    ],
  );
});

test('a selector watch sees an object entering its selection as ADDED and leaving it as DELETED', async (t) => {
  const server = await startServer(t);
  const w = await openWatch(t, server, `/api/v1/services?watch=true&resourceVersion=${server.resourceVersion}&labelSelector=proxy%3Don`);
  server.create(service('default', 's', { proxy: 'off' }));
  server.apply(service('default', 's', { proxy: 'on' }));
  server.apply({ ...service('default', 's', { proxy: 'on' }), spec: { ports: [{ port: 1 }] } });
  server.apply(service('default', 's', { proxy: 'off' }));
  server.create(service('default', 't', { proxy: 'on' }));
  server.delete(SERVICE, 'default', 't');
  await waitFor(() => w.events.length === 5, 'five events');
  assert.deepEqual(
    w.events.map((e) => [e.type, e.object.metadata?.name, e.object.metadata?.labels?.proxy]),
    [
      ['ADDED', 's', 'on'],
      ['MODIFIED', 's', 'on'],
      ['DELETED', 's', 'off'],
      ['ADDED', 't', 'on'],
      ['DELETED', 't', 'on'],
    ],
  );
});

test('watch from a resourceVersion older than compact() answers 200 then one ERROR event with a 410 Expired Status, and closes', async (t) => {
  const server = await startServer(t);
  const old = server.create(service('default', 'a')).metadata?.resourceVersion;
  server.create(service('default', 'b'));
  server.compact();
  const w = await openWatch(t, server, `/api/v1/services?watch=true&resourceVersion=${old}`);
  assert.equal(w.status, 200);
  assert.equal(await w.done, 'end');
  assert.deepEqual(w.events, [
    {
      type: 'ERROR',
      object: {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: `too old resource version: ${old} (${server.resourceVersion})`,
        reason: 'Expired',
        code: 410,
      },
    },
  ]);
  const current = await openWatch(t, server, `/api/v1/services?watch=true&resourceVersion=${server.resourceVersion}`);
  server.create(service('default', 'c'));
  await waitFor(() => current.events.length === 1, 'a watch from the compaction point still works');
  assert.equal(current.events[0].type, 'ADDED');
});

test('BOOKMARK events carry the current resourceVersion and reach only watches that set allowWatchBookmarks=true', async (t) => {
  const server = await startServer(t, { bookmarkIntervalMs: 20 });
  const rv = server.resourceVersion;
  const withBookmarks = await openWatch(t, server, `/apis/discovery.k8s.io/v1/endpointslices?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`);
  const without = await openWatch(t, server, `/apis/discovery.k8s.io/v1/endpointslices?watch=true&resourceVersion=${rv}`);
  server.create({ ...CONFIGMAP, metadata: { namespace: 'default', name: 'bump' } });
  // The timer may also have fired before the create: wait for a bookmark sent after it.
  const bookmark = await waitFor(() => withBookmarks.events.find((e) => e.type === 'BOOKMARK' && Number(e.object.metadata?.resourceVersion) >= Number(server.resourceVersion)), 'a periodic bookmark after the create');
  assert.deepEqual(bookmark.object, {
    kind: 'EndpointSlice',
    apiVersion: 'discovery.k8s.io/v1',
    metadata: { resourceVersion: server.resourceVersion },
  });
  server.sendBookmarks();
  server.create({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { namespace: 'default', name: 'after' } });
  await waitFor(() => without.events.length === 1, 'the slice event');
  assert.deepEqual(
    without.events.map((e) => e.type),
    ['ADDED'],
  );
});

test('timeoutSeconds ends a watch stream cleanly after that many seconds', async (t) => {
  const server = await startServer(t);
  const started = Date.now();
  const w = await openWatch(t, server, `/api/v1/nodes?watch=true&resourceVersion=${server.resourceVersion}&timeoutSeconds=1`);
  // Not before the second is up; the upper bound only catches a timeout that never fires (a loaded machine may take seconds).
  const ended = await Promise.race([w.done, new Promise((resolve) => setTimeout(resolve, 30_000, 'still open after 30 s').unref())]);
  assert.equal(ended, 'end');
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 950, `closed after ${elapsed} ms`);
  assert.equal(server.openWatches, 0);
});

test('closeWatches cuts streams ("abort") or finishes them ("end"); stop() closes open watches too', async (t) => {
  const server = await startServer(t);
  const query = `?watch=true&resourceVersion=${server.resourceVersion}`;
  const cut = await openWatch(t, server, `/api/v1/services${query}`);
  server.closeWatches('abort');
  assert.equal(await cut.done, 'aborted');
  const ended = await openWatch(t, server, `/api/v1/services${query}`);
  server.closeWatches('end');
  assert.equal(await ended.done, 'end');
  const open = await openWatch(t, server, `/api/v1/services${query}`);
  await server.stop();
  assert.equal(await open.done, 'aborted');
});

test('pause() answers 503 ServiceUnavailable or resets connections until resume(); test controls keep working meanwhile', async (t) => {
  const server = await startServer(t);
  server.pause();
  const refused = await request(server, 'GET', '/api/v1/services');
  assert.equal(refused.status, 503);
  assert.equal(refused.body.reason, 'ServiceUnavailable');
  server.create(service('default', 'during'));
  server.pause('reset');
  await assert.rejects(fetch(`${server.url}/api/v1/services`));
  server.resume();
  const ok = await request(server, 'GET', '/api/v1/services');
  assert.deepEqual(names(ok.body.items), ['default/during']);
  assert.equal(server.countRequests({ verb: 'list', resource: 'services', status: 503 }), 1);
  assert.equal(server.countRequests({ verb: 'list', resource: 'services', status: 0 }), 1);
  assert.equal(server.countRequests({ verb: 'list', resource: 'services', status: 200 }), 1);
});

test('Events can be created in core/v1 and events.k8s.io/v1; bodies naming another namespace or kind answer 400', async (t) => {
  const server = await startServer(t);
  const core = await request(server, 'POST', '/api/v1/namespaces/kube-system/events', {
    metadata: { generateName: 'agent.' },
    involvedObject: { kind: 'Node', name: 'n1' },
    reason: 'Programmed',
  });
  assert.equal(core.status, 201);
  const grouped = await request(server, 'POST', '/apis/events.k8s.io/v1/namespaces/kube-system/events', {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    metadata: { name: 'e1' },
    reason: 'Programmed',
  });
  assert.equal(grouped.status, 201);
  assert.equal(grouped.body.apiVersion, 'events.k8s.io/v1');
  assert.equal(server.list({ apiVersion: 'v1', kind: 'Event' }, 'kube-system').length, 1);
  assert.equal(server.list({ apiVersion: 'events.k8s.io/v1', kind: 'Event' }).length, 1);
  const wrongNs = await request(server, 'POST', '/api/v1/namespaces/a/configmaps', { metadata: { name: 'x', namespace: 'b' } });
  assert.equal(wrongNs.status, 400);
  const wrongKind = await request(server, 'POST', '/api/v1/namespaces/a/configmaps', { kind: 'Secret', metadata: { name: 'x' } });
  assert.equal(wrongKind.status, 400);
  const clusterScopedInNs = await request(server, 'GET', '/api/v1/namespaces/a/nodes');
  assert.equal(clusterScopedInNs.status, 404);
});

test("client-node's generated CoreV1Api reads and writes through it and sees 409 as ApiException code 409", async (t) => {
  const server = await startServer(t);
  const api = kubeConfigFor(server.url).makeApiClient(CoreV1Api);
  const created = await api.createNamespacedService({ namespace: 'default', body: service('default', 'typed') });
  assert.equal(created.metadata?.resourceVersion, server.resourceVersion);
  const listed = await api.listServiceForAllNamespaces();
  assert.deepEqual(
    listed.items.map((s) => s.metadata?.name),
    ['typed'],
  );
  await assert.rejects(api.createNamespacedService({ namespace: 'default', body: service('default', 'typed') }), (err: unknown) => {
    assert.ok(err instanceof ApiException);
    assert.equal(err.code, 409);
    return true;
  });
  await api.deleteNamespacedService({ namespace: 'default', name: 'typed' });
  assert.equal(server.get(SERVICE, 'default', 'typed'), undefined);
});
