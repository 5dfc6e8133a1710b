import { IptablesDataplane } from '../../src/iptables/dataplane.js';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import type { V1Service } from '@kubernetes/client-node';
import { snapshotInto } from '../../src/cli/explain.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';
import { ApiUnavailableError } from '../../src/kube/api-deadline.js';
import { ResilientInformer, SERVICES } from '../../src/kube/watch.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { kubeConfigFor, kubeconfigYaml, TestApiServer, waitFor } from '../support/api-server.js';
import { AGENT_BIN } from '../support/lab.js';
import { freePort } from '../support/free-port.js';
import { Topology } from '../support/netns.js';
import { planOnlyBackend } from '../../src/iptables/backend.js';

// One-shot runs (--once, --dry-run, offline explain) wait for the API server a
// bounded time and fail with one message naming the server and the cause; an
// error no retry can fix fails them at once. The running agent keeps retrying
// and says in its log which errors no retry can fix. All through the real
// client-node.

const run = promisify(execFile);
// Errors that no retry fixes must not wait for this; a test that does hangs until node --test's own timeout.
const HOUR = 3_600_000;
const BOUND = { timeout: 120_000 };

/** An HTTP server answering every request with `status` and a Kubernetes Status body. */
async function statusServer(t: TestContext, status: number, reason: string): Promise<string> {
  const server = http.createServer((_req, res) => {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message: reason, reason, code: status }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function apiServer(t: TestContext): Promise<TestApiServer> {
  const server = new TestApiServer({ bookmarkIntervalMs: 0 });
  await server.start();
  t.after(() => server.stop());
  return server;
}

function engine(): SyncEngine {
  return new SyncEngine({ config: DEFAULT_CONFIG, dataplane: new IptablesDataplane(planOnlyBackend('ipv4')), log: silentLogger() });
}

async function snapshotError(server: string, timeoutMs: number): Promise<ApiUnavailableError> {
  const err = await snapshotInto(kubeConfigFor(server), engine(), silentLogger(), timeoutMs).then(() => null, (e: unknown) => e);
  assert.ok(err instanceof ApiUnavailableError, `an ApiUnavailableError, got ${String(err)}`);
  return err;
}

test('a snapshot from a closed port fails after the timeout, naming the server and the refused connection', BOUND, async () => {
  const server = `http://127.0.0.1:${await freePort()}`;
  const err = await snapshotError(server, 1000);
  assert.match(err.message, new RegExp(`API server ${server}: Services and EndpointSlices not read within 1s \\(apiTimeout\\): .*ECONNREFUSED`));
});

test('a snapshot over https from a plain-HTTP server fails at once as not retryable, whatever the timeout', BOUND, async (t) => {
  const api = await apiServer(t);
  const server = api.url.replace('http:', 'https:');
  const err = await snapshotError(server, HOUR);
  assert.match(err.message, new RegExp(`API server ${server}: TLS handshake failed .*plain HTTP.*\\(not retryable\\)`));
});

for (const [status, reason, text] of [[401, 'Unauthorized', /HTTP 401 Unauthorized: the API server refused the credentials/], [403, 'Forbidden', /HTTP 403 Forbidden: RBAC denies/]] as const) {
  test(`a snapshot answered ${status} fails at once as not retryable`, BOUND, async (t) => {
    const server = await statusServer(t, status, reason);
    const err = await snapshotError(server, HOUR);
    assert.match(err.message, text);
    assert.match(err.message, /\(not retryable\)$/);
  });
}

test('a snapshot from the test API server while it answers 503 waits, and completes once it recovers', BOUND, async (t) => {
  const api = await apiServer(t);
  api.create<V1Service>({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default', name: 'a' }, spec: { clusterIP: '10.96.0.10', ports: [{ port: 80 }] } });
  api.pause('unavailable');
  const e = engine();
  const done = snapshotInto(kubeConfigFor(api.url), e, silentLogger(), HOUR);
  await waitFor(() => api.countRequests({ verb: 'list', status: 503 }) >= 4, 'retried lists', { timeoutMs: 30_000 });
  api.resume();
  await done;
  assert.equal(e.serviceCount, 1);
});

/** A running informer's log lines, kept as objects. */
function capture(): { log: ReturnType<typeof createLogger>; lines: () => Record<string, unknown>[] } {
  const sink = new PassThrough();
  const chunks: string[] = [];
  sink.on('data', (c: Buffer) => chunks.push(c.toString('utf8')));
  return { log: createLogger('debug', sink), lines: () => chunks.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** A Services informer against `server`, retrying fast, its log kept. */
function runningInformer(t: TestContext, server: string) {
  const { log, lines } = capture();
  const informer = new ResilientInformer<V1Service>(kubeConfigFor(server), SERVICES, { onUpsert: () => {}, onDelete: () => {} }, log, { backoff: { initialMs: 10, maxMs: 20 } });
  t.after(() => informer.stop());
  informer.start();
  return { informer, lines };
}

test('a running informer keeps retrying an error no retry can fix, and says so in its log with the server and the cause', BOUND, async (t) => {
  const server = await statusServer(t, 403, 'Forbidden');
  const { informer, lines } = runningInformer(t, server);
  await waitFor(() => informer.reconnectAttempts >= 3, 'three retries');
  const errors = lines().filter((l) => l.level === 'error');
  assert.ok(errors.length >= 3);
  for (const l of errors) {
    assert.equal(l.server, server);
    assert.equal(l.retryable, false);
    assert.match(String(l.error), /HTTP 403 Forbidden/);
    assert.match(String(l.msg), /no retry can fix.*retrying anyway/);
  }
});

test('a running informer logs a refused connection as retryable, at warn, with the server', BOUND, async (t) => {
  const server = `http://127.0.0.1:${await freePort()}`;
  const { informer, lines } = runningInformer(t, server);
  await waitFor(() => informer.reconnectAttempts >= 2, 'two retries');
  const warnings = lines().filter((l) => l.level === 'warn');
  assert.ok(warnings.length >= 2);
  for (const l of warnings) assert.deepEqual([l.server, l.retryable, /ECONNREFUSED/.test(String(l.error))], [server, true, true]);
});

// ---- the binary ----

async function kubeconfigFile(t: TestContext, server: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'clusterset-proxy-timeout-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'kubeconfig');
  await writeFile(file, kubeconfigYaml(server));
  return file;
}

async function agent(args: readonly string[], ns?: string): Promise<{ code: number; stderr: string; stdout: string }> {
  const argv = ns ? ['ip', ['netns', 'exec', ns, process.execPath, AGENT_BIN, ...args]] as const : [process.execPath, [AGENT_BIN, ...args]] as const;
  const env = { ...process.env, POD_NAMESPACE: '' };
  return run(argv[0], [...argv[1]], { env }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** The one line the binary prints on failure: its last stderr line. */
function lastLine(stderr: string): string {
  return stderr.trim().split('\n').at(-1) ?? '';
}

test('--dry-run against a closed port exits 1 after --api-timeout with one line naming the server and the cause', BOUND, async (t) => {
  const server = `http://127.0.0.1:${await freePort()}`;
  const r = await agent(['--dry-run', '--kubeconfig', await kubeconfigFile(t, server), '--api-timeout', '1s']);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '', 'no payload');
  assert.match(lastLine(r.stderr), new RegExp(`^clusterset-proxy: API server ${server}: Services and EndpointSlices not read within 1s \\(apiTimeout\\): .*ECONNREFUSED`));
});

test('--dry-run over https from a plain-HTTP server exits 1 at once, the error said not retryable', BOUND, async (t) => {
  const api = await apiServer(t);
  const server = api.url.replace('http:', 'https:');
  const r = await agent(['--dry-run', '--kubeconfig', await kubeconfigFile(t, server), '--api-timeout', '1h']);
  assert.equal(r.code, 1);
  assert.match(lastLine(r.stderr), new RegExp(`^clusterset-proxy: API server ${server}: TLS handshake failed.*\\(not retryable\\)$`));
});

test('offline explain answered 401 exits 1 at once, naming the server and the refused credentials', BOUND, async (t) => {
  const server = await statusServer(t, 401, 'Unauthorized');
  const r = await agent(['explain', 'default/x', '--kubeconfig', await kubeconfigFile(t, server), '--api-timeout', '1h']);
  assert.equal(r.code, 1);
  assert.match(lastLine(r.stderr), new RegExp(`^clusterset-proxy: API server ${server}: HTTP 401 Unauthorized.*\\(not retryable\\)$`));
});

test('offline explain and --once bound the ConfigMap read too: a closed port fails after the timeout naming the ConfigMap', BOUND, async (t) => {
  const server = `http://127.0.0.1:${await freePort()}`;
  const kubeconfig = await kubeconfigFile(t, server);
  const r = await agent(['explain', 'default/x', '--kubeconfig', kubeconfig, '--configmap', 'kube-system/cp', '--api-timeout', '1s']);
  assert.equal(r.code, 1);
  assert.match(lastLine(r.stderr), new RegExp(`^clusterset-proxy: API server ${server}: ConfigMap kube-system/cp not read within 1s .*ECONNREFUSED`));
});

test('--once in a fresh network namespace against a closed port exits 1 after the config\'s apiTimeout, changing nothing', BOUND, async (t) => {
  const topology = new Topology();
  t.after(() => topology.teardown());
  const ns = await topology.namespace('once');
  const dir = await mkdtemp(join(tmpdir(), 'clusterset-proxy-timeout-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'config.yaml'), 'apiTimeout: 1s\n');
  // Nothing listens inside the fresh namespace.
  const server = 'http://127.0.0.1:6443';
  const r = await agent(['--once', '--kubeconfig', await kubeconfigFile(t, server), '--config', join(dir, 'config.yaml')], ns);
  assert.equal(r.code, 1);
  assert.match(lastLine(r.stderr), new RegExp(`^clusterset-proxy: API server ${server}: Services and EndpointSlices not read within 1s \\(apiTimeout\\): .*ECONNREFUSED`));
});

test('--api-timeout is validated as the config key is', async () => {
  const r = await agent(['--once', '--api-timeout', '1000h']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--api-timeout must be from 1s to 1h \(got "1000h"\)/);
});
