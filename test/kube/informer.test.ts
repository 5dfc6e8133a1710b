import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test, type TestContext } from 'node:test';
import type { KubernetesObject, V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';
import { Backoff } from '../../src/kube/backoff.js';
import { RECONNECT_BACKOFF } from '../../src/kube/informer.js';
import { ResilientInformer, SERVICES, startClusterWatches, type InformerOptions, type ResourceSpec } from '../../src/kube/watch.js';
import { kubeConfigFor, TestApiServer, waitFor } from '../support/api-server.js';

// The real client-node informer, wrapped by ResilientInformer, against TestApiServer over HTTP.

const SERVICE = { apiVersion: 'v1', kind: 'Service' };
const FAST: InformerOptions = { backoff: { initialMs: 20, maxMs: 100 } };

function service(namespace: string, name: string, port = 80, labels?: Record<string, string>): V1Service {
  return { ...SERVICE, metadata: { namespace, name, labels }, spec: { ports: [{ port }] } };
}

interface Delivery {
  op: 'upsert' | 'delete';
  key: string;
  rv: string;
  obj: KubernetesObject;
}

/** Handlers that record every call in order. */
class Recorder<T extends KubernetesObject> {
  readonly calls: Delivery[] = [];
  onUpsert = (obj: T) => this.record('upsert', obj);
  onDelete = (obj: T) => this.record('delete', obj);
  private record(op: Delivery['op'], obj: T): void {
    this.calls.push({ op, key: `${obj.metadata?.namespace}/${obj.metadata?.name}`, rv: obj.metadata?.resourceVersion ?? '', obj });
  }
  ops(from = 0): string[] {
    return this.calls.slice(from).map((c) => `${c.op} ${c.key}`);
  }
}

/** A logger whose JSON lines are kept for assertions. */
function capturingLogger(): { log: Logger; lines: () => Record<string, unknown>[] } {
  const sink = new PassThrough();
  const chunks: string[] = [];
  sink.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
  return {
    log: createLogger('debug', sink),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

async function startServer(t: TestContext): Promise<TestApiServer> {
  const server = new TestApiServer({ bookmarkIntervalMs: 0 });
  await server.start();
  t.after(() => server.stop());
  return server;
}

function startInformer<T extends KubernetesObject>(
  t: TestContext,
  server: TestApiServer,
  opts: InformerOptions = FAST,
  log: Logger = silentLogger(),
  spec: ResourceSpec = SERVICES,
): { informer: ResilientInformer<T>; rec: Recorder<T> } {
  const rec = new Recorder<T>();
  const informer = new ResilientInformer<T>(kubeConfigFor(server.url), spec, rec, log, opts);
  t.after(() => informer.stop());
  informer.start();
  return { informer, rec };
}

/** whenSynced resolves once the list is delivered, just before the watch request is sent. */
async function syncedAndWatching<T extends KubernetesObject>(informer: ResilientInformer<T>, server: TestApiServer): Promise<void> {
  await informer.whenSynced();
  await waitFor(() => server.openWatches === 1, 'the watch to be open');
}

const watchRequests = (server: TestApiServer) => server.requests.filter((r) => r.verb === 'watch' && r.resource === 'services');

test('the initial list is delivered before whenSynced resolves, then adds, updates and deletes arrive in order with increasing resourceVersions', async (t) => {
  const server = await startServer(t);
  server.create(service('b', 'one'));
  server.create(service('a', 'one'));
  const { informer, rec } = startInformer<V1Service>(t, server);
  assert.equal(informer.synced, false);
  await syncedAndWatching(informer, server);
  assert.equal(informer.synced, true);
  assert.deepEqual(rec.ops().sort(), ['upsert a/one', 'upsert b/one']);
  assert.equal(informer.resourceVersion, server.resourceVersion);

  const added = server.create(service('a', 'two'));
  const updated = server.apply(service('b', 'one', 8080));
  const deleted = server.delete(SERVICE, 'a', 'one');
  await waitFor(() => rec.calls.length === 5, 'three watch events');
  assert.deepEqual(rec.ops(2), ['upsert a/two', 'upsert b/one', 'delete a/one']);
  assert.deepEqual(
    rec.calls.slice(2).map((c) => c.rv),
    [added, updated, deleted].map((o) => o.metadata?.resourceVersion),
  );
  const rvs = rec.calls.slice(2).map((c) => Number(c.rv));
  assert.ok(rvs[0] < rvs[1] && rvs[1] < rvs[2]);
  assert.equal((rec.calls[3].obj as V1Service).spec?.ports?.[0].port, 8080);
  assert.equal(server.countRequests({ verb: 'list', resource: 'services' }), 1);
});

test('the list is fetched page by page (limit/continue) and every object is delivered', async (t) => {
  const server = await startServer(t);
  for (let i = 0; i < 5; i++) server.create(service('default', `s${i}`));
  const { informer, rec } = startInformer<V1Service>(t, server, { ...FAST, listPageSize: 2 });
  await syncedAndWatching(informer, server);
  assert.deepEqual(rec.ops(), ['upsert default/s0', 'upsert default/s1', 'upsert default/s2', 'upsert default/s3', 'upsert default/s4']);
  const lists = server.requests.filter((r) => r.verb === 'list');
  assert.deepEqual(
    lists.map((r) => [r.query.limit, r.query.continue !== undefined]),
    [
      ['2', false],
      ['2', true],
      ['2', true],
    ],
  );
});

test('objects with odd content reach the handlers as sent, unvalidated, from both the list and the watch', async (t) => {
  const server = await startServer(t);
  const odd = { ...SERVICE, metadata: { namespace: 'default', name: 'odd' }, spec: { ports: 'not-a-list', clusterIP: 42 }, surprise: { x: [1] } };
  server.create(odd);
  // Without a trim (SERVICES' keeps spec.ports and spec.clusterIP as sent, but not the rest).
  const { informer, rec } = startInformer<V1Service>(t, server, FAST, silentLogger(), { resource: SERVICES.resource, path: SERVICES.path });
  await syncedAndWatching(informer, server);
  server.create({ ...odd, metadata: { namespace: 'default', name: 'odd2' } });
  await waitFor(() => rec.calls.length === 2, 'the watched odd object');
  for (const call of rec.calls) {
    const obj = call.obj as unknown as Record<string, unknown>;
    assert.deepEqual(obj.spec, { ports: 'not-a-list', clusterIP: 42 });
    assert.deepEqual(obj.surprise, { x: [1] });
    assert.equal(typeof (obj.metadata as Record<string, unknown>).creationTimestamp, 'string');
  }
});

const SLICE = { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice' };
const KARMADA_IMPORT = 'endpointslice-controller.karmada.io';
const ORDINARY = 'endpointslice-controller.k8s.io';
const SCOPED = { ...FAST, servicePrefix: 'derived-' };

function endpointSlice(namespace: string, name: string, serviceName: string, managedBy: string): V1EndpointSlice {
  return {
    ...SLICE,
    metadata: { namespace, name, labels: { 'kubernetes.io/service-name': serviceName, 'endpointslice.kubernetes.io/managed-by': managedBy } },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['10.0.0.1'] }],
  };
}

function watchPaths(server: TestApiServer, from = 0): string[] {
  return [...new Set(server.requests.slice(from).filter((r) => r.verb === 'watch').map((r) => `${r.path}?${r.query.labelSelector ?? ''}`))].sort();
}

test('startClusterWatches: every Service, Karmada\'s slices everywhere, other slices only of namespaces holding a group', async (t) => {
  const server = await startServer(t);
  server.create(service('shop', 'derived-web'));
  server.create(service('shop', 'web'));
  server.create(endpointSlice('shop', 'web-abc', 'web', ORDINARY));
  server.create(endpointSlice('shop', 'imported-brazil-web', 'derived-web', KARMADA_IMPORT));
  server.create(service('mcs', 'api'));
  server.create(endpointSlice('mcs', 'api-local', 'api', ORDINARY));
  server.create(endpointSlice('mcs', 'chile-api', 'api', 'endpointslice-dispatch-controller.karmada.io'));
  server.create(service('own', 'db', 80, { 'service.kubernetes.io/service-proxy-name': 'clusterset-proxy' }));
  server.create(endpointSlice('own', 'db-1', 'db', ORDINARY));
  server.create(service('other', 'cache'));
  server.create(endpointSlice('other', 'cache-1', 'cache', ORDINARY));
  // A headless Service's slice is never sent, even in a watched namespace: the agent does not serve headless Services.
  const headless = endpointSlice('shop', 'db-abc', 'db', ORDINARY);
  server.create({ ...headless, metadata: { ...headless.metadata, labels: { ...headless.metadata!.labels, 'service.kubernetes.io/headless': '' } } });
  const services = new Recorder<V1Service>();
  const slices = new Recorder<V1EndpointSlice>();
  const watches = startClusterWatches(kubeConfigFor(server.url), { services, endpointSlices: slices }, silentLogger(), SCOPED);
  t.after(() => watches.stop());
  await watches.whenSynced();
  assert.deepEqual(services.ops().sort(), ['upsert mcs/api', 'upsert other/cache', 'upsert own/db', 'upsert shop/derived-web', 'upsert shop/web']);
  assert.deepEqual(slices.ops().sort(), ['upsert mcs/api-local', 'upsert mcs/chile-api', 'upsert own/db-1', 'upsert shop/imported-brazil-web', 'upsert shop/web-abc'], 'no slice of a namespace without a group');
  await waitFor(() => server.openWatches === 5, 'the Service, Karmada and three namespace watches');
  assert.deepEqual(watchPaths(server), [
    '/api/v1/services?',
    '/apis/discovery.k8s.io/v1/endpointslices?endpointslice.kubernetes.io/managed-by in (endpointslice-controller.karmada.io,endpointslice-dispatch-controller.karmada.io),!service.kubernetes.io/headless',
    '/apis/discovery.k8s.io/v1/namespaces/mcs/endpointslices?endpointslice.kubernetes.io/managed-by notin (endpointslice-controller.karmada.io,endpointslice-dispatch-controller.karmada.io),!service.kubernetes.io/headless',
    '/apis/discovery.k8s.io/v1/namespaces/own/endpointslices?endpointslice.kubernetes.io/managed-by notin (endpointslice-controller.karmada.io,endpointslice-dispatch-controller.karmada.io),!service.kubernetes.io/headless',
    '/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?endpointslice.kubernetes.io/managed-by notin (endpointslice-controller.karmada.io,endpointslice-dispatch-controller.karmada.io),!service.kubernetes.io/headless',
  ]);

  // A namespace gaining its first group is watched from then on; updates elsewhere never arrive.
  const n = slices.calls.length;
  server.create(endpointSlice('other', 'cache-2', 'cache', ORDINARY));
  server.create(service('other', 'derived-cache'));
  await waitFor(() => slices.calls.length === n + 2, 'the namespace\'s slices listed');
  assert.deepEqual(slices.ops(n).sort(), ['upsert other/cache-1', 'upsert other/cache-2']);

  // The last group of a namespace gone: its watch stops and its slices leave as deletes.
  const m = slices.calls.length;
  server.delete(SLICE, 'mcs', 'chile-api');
  await waitFor(() => slices.calls.length === m + 2, 'the dispatched slice and the local one deleted');
  assert.deepEqual(slices.ops(m).sort(), ['delete mcs/api-local', 'delete mcs/chile-api']);
  await waitFor(() => server.openWatches === 5, 'the mcs namespace no longer watched');
  server.create(endpointSlice('mcs', 'api-local-2', 'api', ORDINARY));

  await watches.stop();
  await waitFor(() => server.openWatches === 0, 'watches closed by stop()');
  assert.equal(slices.ops(m + 2).length, 0, 'nothing from an unwatched namespace');
});

test('startClusterWatches: a new servicePrefix chooses the namespaces again; a slice moving between watches is never lost', async (t) => {
  const server = await startServer(t);
  server.create(service('a', 'derived-web'));
  server.create(endpointSlice('a', 'web-1', 'web', ORDINARY));
  server.create(service('b', 'imported-svc-web'));
  server.create(endpointSlice('b', 'web-1', 'web', ORDINARY));
  const slices = new Recorder<V1EndpointSlice>();
  const watches = startClusterWatches(kubeConfigFor(server.url), { services: new Recorder<V1Service>(), endpointSlices: slices }, silentLogger(), SCOPED);
  t.after(() => watches.stop());
  await watches.whenSynced();
  assert.deepEqual(slices.ops(), ['upsert a/web-1']);

  watches.setServicePrefix('imported-svc-');
  await waitFor(() => slices.calls.length === 3, 'b listed, a dropped');
  assert.deepEqual(slices.ops(1).sort(), ['delete a/web-1', 'upsert b/web-1']);

  // Relabelled from Karmada's to an ordinary controller: one watch reports it gone, the other added;
  // whichever comes first, the slice stays.
  server.create(endpointSlice('b', 'imported-x-web', 'imported-svc-web', KARMADA_IMPORT));
  await waitFor(() => slices.calls.length === 4, 'the Karmada slice');
  server.update({ ...server.get<V1EndpointSlice>(SLICE, 'b', 'imported-x-web')!, metadata: { ...server.get<V1EndpointSlice>(SLICE, 'b', 'imported-x-web')!.metadata, labels: { 'kubernetes.io/service-name': 'imported-svc-web', 'endpointslice.kubernetes.io/managed-by': ORDINARY } } });
  await waitFor(() => slices.calls.length >= 5, 'the move seen');
  await new Promise((resolve) => setTimeout(resolve, 200));
  const last = new Map<string, string>();
  for (const c of slices.calls) last.set(c.key, c.op);
  assert.equal(last.get('b/imported-x-web'), 'upsert', `the moved slice is kept: ${slices.ops(4).join(', ')}`);
});

test('bookmarks advance the resourceVersion without handler calls, so a re-watch after compaction resumes without relisting', async (t) => {
  const server = await startServer(t);
  server.create(service('default', 'a'));
  const { informer, rec } = startInformer<V1Service>(t, server);
  await syncedAndWatching(informer, server);
  assert.equal(watchRequests(server)[0].query.allowWatchBookmarks, 'true');
  // Writes to another resource move the global resourceVersion past the informer's.
  server.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'default', name: 'c1' } });
  server.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'default', name: 'c2' } });
  assert.notEqual(informer.resourceVersion, server.resourceVersion);
  server.sendBookmarks();
  await waitFor(() => informer.resourceVersion === server.resourceVersion, 'the bookmark resourceVersion');
  assert.equal(rec.calls.length, 1, 'a bookmark calls no handler');

  const bookmarked = informer.resourceVersion;
  server.compact();
  server.closeWatches('end');
  await waitFor(() => watchRequests(server).length === 2 && server.openWatches === 1, 'the re-watch');
  assert.equal(watchRequests(server)[1].query.resourceVersion, bookmarked);
  assert.equal(server.countRequests({ verb: 'list', resource: 'services' }), 1, 'no relist');
  server.create(service('default', 'b'));
  await waitFor(() => rec.calls.length === 2, 'the next event');
  assert.deepEqual(rec.ops(1), ['upsert default/b']);
});

test('on 410 after a clean stream end, client-node relists by itself: objects deleted meanwhile are reported deleted, added ones upserted', async (t) => {
  const server = await startServer(t);
  server.create(service('default', 'stays'));
  server.create(service('default', 'goes'));
  server.create(service('default', 'changes'));
  const captured = capturingLogger();
  const { informer, rec } = startInformer<V1Service>(t, server, FAST, captured.log);
  await syncedAndWatching(informer, server);
  // Synchronously, so the informer re-watches only after all of it: it misses these events.
  server.closeWatches('end');
  const lastSeen = server.get(SERVICE, 'default', 'goes');
  server.delete(SERVICE, 'default', 'goes');
  server.create(service('ns2', 'new'));
  server.apply(service('default', 'changes', 9090));
  server.compact();

  await waitFor(() => server.countRequests({ verb: 'list', resource: 'services' }) === 2 && server.openWatches === 1, 'relist and watch');
  await waitFor(() => rec.calls.length === 6, 'relist deliveries');
  assert.deepEqual(rec.ops(3).sort(), ['delete default/goes', 'upsert default/changes', 'upsert ns2/new']);
  const deletion = rec.calls.find((c) => c.op === 'delete');
  assert.equal(deletion?.rv, lastSeen?.metadata?.resourceVersion, 'the delete carries the last state seen');
  const watches = watchRequests(server);
  assert.equal(watches.length, 3, 'initial watch, the expired one, the one after the relist');
  assert.equal(watches[1].query.resourceVersion, watches[0].query.resourceVersion);
  assert.equal(watches[2].query.resourceVersion, server.resourceVersion);
  assert.deepEqual(
    captured.lines().filter((l) => l.level === 'warn' || l.level === 'error'),
    [],
    'client-node handled it: no failure, no restart',
  );
  assert.deepEqual(captured.lines().filter((l) => /410/.test(String(l.msg))).map((l) => [l.level, l.msg]), [['info', 'resourceVersion expired (410 Gone); relisting']]);
  assert.equal(informer.synced, true);
});

test('after an abrupt disconnect and compaction, the informer restarts, gets 410, relists and reports the missed delete, add and update', async (t) => {
  const server = await startServer(t);
  server.create(service('default', 'stays'));
  server.create(service('default', 'goes'));
  server.create(service('default', 'changes'));
  const { informer, rec } = startInformer<V1Service>(t, server);
  await syncedAndWatching(informer, server);
  server.closeWatches('abort');
  server.delete(SERVICE, 'default', 'goes');
  server.create(service('default', 'new'));
  server.apply(service('default', 'changes', 9090));
  server.compact();

  await waitFor(() => rec.calls.length === 6, 'relist deliveries');
  assert.deepEqual(rec.ops(3).sort(), ['delete default/goes', 'upsert default/changes', 'upsert default/new']);
  assert.equal(server.countRequests({ verb: 'list', resource: 'services' }), 2);
  await waitFor(() => server.openWatches === 1, 'watching again');
  server.delete(SERVICE, 'default', 'stays');
  await waitFor(() => rec.calls.length === 7, 'a live event after recovery');
  assert.deepEqual(rec.ops(6), ['delete default/stays']);
});

for (const mode of ['unavailable', 'reset'] as const) {
  test(`API server lost (${mode === 'unavailable' ? '503 answers' : 'connection resets'}): the informer retries with backoff, recovers after resume and replays every missed event in order`, async (t) => {
    const server = await startServer(t);
    server.create(service('default', 'a'));
    server.create(service('default', 'b'));
    const captured = capturingLogger();
    const { informer, rec } = startInformer<V1Service>(t, server, FAST, captured.log);
    await syncedAndWatching(informer, server);

    server.pause(mode);
    server.closeWatches('abort');
    server.create(service('default', 'c'));
    server.apply(service('default', 'a', 81));
    server.delete(SERVICE, 'default', 'b');
    server.apply(service('default', 'a', 82));
    const failedWatches = () => watchRequests(server).filter((r) => r.status !== 200).length;
    await waitFor(() => failedWatches() >= 3, 'three failed retries');
    assert.equal(rec.calls.length, 2, 'nothing delivered while the server is down');

    server.resume();
    await waitFor(() => rec.calls.length === 6, 'the missed events');
    assert.deepEqual(rec.ops(2), ['upsert default/c', 'upsert default/a', 'delete default/b', 'upsert default/a']);
    assert.equal((rec.calls[5].obj as V1Service).spec?.ports?.[0].port, 82);
    assert.equal(server.countRequests({ verb: 'list', resource: 'services' }), 1, 'resumed from the last resourceVersion, no relist');

    const warnings = captured.lines().filter((l) => l.level === 'warn');
    assert.ok(warnings.length >= 3);
    assert.equal(warnings.length, failedWatches() + 1, 'one line per failure: the cut stream and each failed retry');
    for (const w of warnings) {
      assert.equal(w.resource, 'services');
      assert.equal(typeof w.error, 'string');
      assert.ok(String(w.error).length > 0);
    }
    if (mode === 'unavailable') assert.match(String(warnings[1].error), /503/);
    const delays = warnings.map((w) => Number(w.retryInMs));
    assert.ok(delays.every((d) => d >= 10 && d <= 100), `delays within the backoff bounds: ${delays.join(',')}`);
    assert.deepEqual(
      warnings.map((w) => w.attempt),
      warnings.map((_, i) => i + 1),
    );
    await waitFor(() => captured.lines().some((l) => l.msg === 'watch recovered'), 'the recovery log line');
    assert.ok(!captured.lines().some((l) => JSON.stringify(l).includes('test-token')), 'the token is never logged');
  });
}

test('during a long outage the reconnect backoff stops growing at its cap, and the first successful reconnect resets it', async (t) => {
  const server = await startServer(t);
  const captured = capturingLogger();
  const { informer } = startInformer<V1Service>(t, server, FAST, captured.log);
  await syncedAndWatching(informer, server);
  const failures = () => captured.lines().filter((l) => l.msg === 'watch failed, restarting');
  server.pause('reset');
  server.closeWatches('abort');
  // initialMs 20 doubles past maxMs 100 by the fourth retry; eight cover several capped ones.
  await waitFor(() => informer.reconnectAttempts >= 8, 'eight failed reconnects', { timeoutMs: 20_000 });
  const outage = failures();
  assert.deepEqual(outage.map((l) => l.attempt), outage.map((_, i) => i + 1), 'attempts escalate while the server is away');
  assert.ok(outage.every((l) => Number(l.retryInMs) <= 100), `every delay within the cap: ${outage.map((l) => l.retryInMs).join(',')}`);
  assert.ok(outage.slice(4).every((l) => Number(l.retryInMs) >= 50), 'capped delays are drawn from [cap/2, cap]');

  server.resume();
  await waitFor(() => server.openWatches === 1 && informer.reconnectAttempts === 0, 'reconnected with the backoff reset');
  assert.equal(captured.lines().filter((l) => l.msg === 'watch recovered').length, 1);
  const before = failures().length;
  server.closeWatches('abort');
  await waitFor(() => failures().length > before && server.openWatches === 1, 'the next failure and reconnect');
  const next = failures()[before]!;
  assert.equal(next.attempt, 1, 'the next outage starts again from the first attempt');
  assert.ok(Number(next.retryInMs) <= 20, `first delay from initialMs: ${next.retryInMs}`);
});

test('the default reconnect backoff is capped at a few seconds, so the agent is back soon after a long outage', () => {
  assert.ok(RECONNECT_BACKOFF.maxMs! <= 5000);
  const backoff = new Backoff({ ...RECONNECT_BACKOFF, random: () => 1 });
  const delays = Array.from({ length: 40 }, () => backoff.next());
  assert.equal(Math.max(...delays), RECONNECT_BACKOFF.maxMs);
});

test('the watch asks for timeoutSeconds; when the server ends it, the informer re-watches from its last resourceVersion without relisting', async (t) => {
  const server = await startServer(t);
  const captured = capturingLogger();
  const { informer, rec } = startInformer<V1Service>(t, server, { ...FAST, watchTimeoutSeconds: 1 }, captured.log);
  await syncedAndWatching(informer, server);
  const created = server.create(service('default', 'a'));
  await waitFor(() => rec.calls.length === 1, 'the event');
  assert.equal(watchRequests(server)[0].query.timeoutSeconds, '1');
  await waitFor(() => watchRequests(server).length === 2, 'the re-watch after the server-side timeout', { timeoutMs: 4000 });
  assert.equal(watchRequests(server)[1].query.resourceVersion, created.metadata?.resourceVersion);
  assert.equal(server.countRequests({ verb: 'list', resource: 'services' }), 1);
  assert.deepEqual(
    captured.lines().filter((l) => l.level === 'warn'),
    [],
  );
});

test('label and field selectors of the spec apply to both the list and the watch', async (t) => {
  const server = await startServer(t);
  server.create(service('default', 'in', 80, { proxy: 'yes' }));
  server.create(service('default', 'out', 80, { proxy: 'no' }));
  server.create(service('other', 'in', 80, { proxy: 'yes' }));
  const spec: ResourceSpec = { ...SERVICES, labelSelector: 'proxy=yes', fieldSelector: 'metadata.namespace=default' };
  const { informer, rec } = startInformer<V1Service>(t, server, FAST, silentLogger(), spec);
  await syncedAndWatching(informer, server);
  assert.deepEqual(rec.ops(), ['upsert default/in']);
  server.apply(service('default', 'out', 80, { proxy: 'yes' }));
  server.apply(service('default', 'in', 80, { proxy: 'no' }));
  server.create(service('other', 'late', 80, { proxy: 'yes' }));
  await waitFor(() => rec.calls.length === 3, 'selection changes');
  assert.deepEqual(rec.ops(1), ['upsert default/out', 'delete default/in']);
  for (const r of server.requests.filter((q) => q.verb === 'list' || q.verb === 'watch')) {
    assert.equal(r.query.labelSelector, 'proxy=yes');
    assert.equal(r.query.fieldSelector, 'metadata.namespace=default');
  }
});

test("the spec's trim reduces listed and watched objects alike, keeping uid and resourceVersion", async (t) => {
  const server = await startServer(t);
  const full = (name: string, port: number): V1Service => {
    const svc = service('default', name, port, { app: 'x' });
    return {
      ...svc,
      metadata: { ...svc.metadata, annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}', 'clusterset-proxy.io/policy': 'failover' }, managedFields: [{ manager: 'kubectl', operation: 'Update' }] },
      spec: { ...svc.spec, clusterIP: '10.96.0.1', selector: { app: 'x' } },
      status: { loadBalancer: {} },
    };
  };
  server.create(full('listed', 80));
  const { informer, rec } = startInformer<V1Service>(t, server);
  await syncedAndWatching(informer, server);
  server.create(full('watched', 81));
  server.apply(full('watched', 82));
  server.delete(SERVICE, 'default', 'watched');
  await waitFor(() => rec.calls.length === 4, 'three watch events');
  assert.deepEqual(rec.ops(), ['upsert default/listed', 'upsert default/watched', 'upsert default/watched', 'delete default/watched']);
  for (const { obj, rv } of rec.calls) {
    const svc = obj as V1Service;
    assert.equal(svc.metadata?.managedFields, undefined);
    assert.equal(svc.metadata?.labels, undefined);
    assert.deepEqual(svc.metadata?.annotations, { 'clusterset-proxy.io/policy': 'failover' });
    assert.equal(svc.status, undefined);
    assert.equal(svc.spec?.selector, undefined);
    assert.equal(svc.spec?.clusterIP, '10.96.0.1');
    assert.match(svc.metadata?.uid ?? '', /./);
    assert.match(rv, /^\d+$/);
  }
  assert.equal((rec.calls[2]!.obj as V1Service).spec?.ports?.[0]?.port, 82);
  assert.equal(informer.resourceVersion, server.resourceVersion);
});

test('a throwing handler is logged and does not stop later deliveries', async (t) => {
  const server = await startServer(t);
  server.create(service('default', 'boom'));
  const captured = capturingLogger();
  const seen: string[] = [];
  const informer = new ResilientInformer<V1Service>(
    kubeConfigFor(server.url),
    SERVICES,
    {
      onUpsert: (s) => {
        seen.push(`upsert ${s.metadata?.name}`);
        if (s.metadata?.name === 'boom') throw new Error('model rejected it');
      },
      onDelete: (s) => seen.push(`delete ${s.metadata?.name}`),
    },
    captured.log,
    FAST,
  );
  t.after(() => informer.stop());
  informer.start();
  await syncedAndWatching(informer, server);
  server.create(service('default', 'boom2'));
  server.apply(service('default', 'boom', 1));
  server.delete(SERVICE, 'default', 'boom2');
  await waitFor(() => seen.length === 4, 'later deliveries');
  assert.deepEqual(seen, ['upsert boom', 'upsert boom2', 'upsert boom', 'delete boom2']);
  const errors = captured.lines().filter((l) => l.level === 'error');
  assert.equal(errors.length, 2);
  assert.deepEqual(
    errors.map((e) => [e.resource, e.namespace, e.name, e.error, e.msg]),
    [
      ['services', 'default', 'boom', 'model rejected it', 'upsert handler threw'],
      ['services', 'default', 'boom', 'model rejected it', 'upsert handler threw'],
    ],
  );
});

test('stop() while retrying cancels the pending restart: no request reaches the server afterwards', async (t) => {
  const server = await startServer(t);
  const { informer } = startInformer<V1Service>(t, server);
  await syncedAndWatching(informer, server);
  server.pause();
  server.closeWatches('abort');
  await waitFor(() => watchRequests(server).some((r) => r.status === 503), 'a failed retry');
  await informer.stop();
  const count = server.requests.length;
  server.resume();
  // Longer than the largest backoff delay (100 ms): a pending restart would have fired.
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(server.requests.length, count);
  assert.equal(server.openWatches, 0);
});

test('whenSynced rejects when the informer is stopped before its first list completes', async (t) => {
  const server = await startServer(t);
  server.pause();
  const { informer } = startInformer<V1Service>(t, server);
  await waitFor(() => server.countRequests({ verb: 'list', status: 503 }) >= 1, 'a failed list');
  assert.equal(informer.synced, false);
  await informer.stop();
  await assert.rejects(informer.whenSynced(), /stopped before its first list completed/);
});

test('stop() from a handler during the initial list: client-node would still open the watch, ManagedWatch refuses it', async (t) => {
  const server = await startServer(t);
  server.create(service('default', 'a'));
  let informer: ResilientInformer<V1Service> | undefined;
  const stopped: Promise<void>[] = [];
  informer = new ResilientInformer<V1Service>(
    kubeConfigFor(server.url),
    SERVICES,
    { onUpsert: () => stopped.push(informer?.stop() ?? Promise.resolve()), onDelete: () => undefined },
    silentLogger(),
    FAST,
  );
  t.after(() => informer?.stop());
  informer.start();
  await waitFor(() => stopped.length === 1, 'the handler call');
  await Promise.all(stopped);
  await assert.rejects(informer.whenSynced(), /stopped before its first list completed/);
  // A watch request would follow the list within a few milliseconds.
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(server.countRequests({ verb: 'watch' }), 0);
  assert.equal(server.countRequests({ verb: 'list' }), 1);
});

test('a spec caching identities only: upserts carry the object, a delete found by a relist carries its identity, an unchanged object is not delivered again', async (t) => {
  const server = await startServer(t);
  server.create(service('default', 'stays', 80, { app: 'a' }));
  server.create(service('default', 'goes', 81, { app: 'b' }));
  const spec: ResourceSpec = { resource: 'services', path: '/api/v1/services', cacheIdentityOnly: true };
  const { informer, rec } = startInformer<V1Service>(t, server, FAST, silentLogger(), spec);
  await syncedAndWatching(informer, server);
  assert.deepEqual(rec.calls.map((c) => (c.obj as V1Service).spec?.ports?.[0]?.port).sort(), [80, 81], 'the handlers see whole objects');
  server.closeWatches('end');
  const lastSeen = server.get(SERVICE, 'default', 'goes');
  server.delete(SERVICE, 'default', 'goes');
  server.compact();

  await waitFor(() => server.countRequests({ verb: 'list', resource: 'services' }) === 2 && server.openWatches === 1, 'relist and watch');
  await waitFor(() => rec.calls.length === 3, 'the missed delete');
  assert.deepEqual(rec.ops(2), ['delete default/goes'], 'the unchanged object is not delivered again');
  assert.deepEqual(rec.calls[2]!.obj, { metadata: { namespace: 'default', name: 'goes', uid: lastSeen?.metadata?.uid, resourceVersion: lastSeen?.metadata?.resourceVersion } });
  server.apply(service('default', 'stays', 90));
  await waitFor(() => rec.calls.length === 4, 'a change after the relist');
  assert.equal((rec.calls[3]!.obj as V1Service).spec?.ports?.[0]?.port, 90);
});
