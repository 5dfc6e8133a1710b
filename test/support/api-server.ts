import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import http from 'node:http';
import { KubeConfig, type KubernetesObject } from '@kubernetes/client-node';

/*
 * An in-process kube-apiserver speaking the real JSON wire protocol, for the
 * resources the agent reads or writes. It is built for what client-node's
 * informer (ListWatch in dist/cache.js, Watch in dist/watch.js) relies on:
 * - LIST returns metadata.resourceVersion; ListWatch then watches from it.
 * - WATCH streams one JSON event per line and must flush its headers at once:
 *   ListWatch.start() only resolves when the watch response arrives.
 * - A watch from a compacted resourceVersion is answered 200 plus an ERROR
 *   event carrying a 410 Status, then closed: ListWatch clears its
 *   resourceVersion on that event and relists when the stream ends.
 * - A stream that ends cleanly is resumed from the last resourceVersion; one
 *   that is cut mid-chunk (closeWatches('abort')) or any non-200 answer makes
 *   the informer emit 'error' and stop.
 * - BOOKMARK events only advance the resourceVersion; they are sent only to
 *   watches that asked for them with allowWatchBookmarks=true.
 * Discovery (/api, /apis) is not served: neither ListWatch nor the generated
 * API clients call it.
 */

interface ResourceType {
  group: string;
  version: string;
  /** Plural path segment, e.g. 'services'. */
  resource: string;
  kind: string;
  namespaced: boolean;
}

/** Names a resource type the way objects do. */
export interface TypeRef {
  apiVersion: string;
  kind: string;
}

// core/v1 and events.k8s.io/v1 Events are stored apart here; the real server shares their storage.
const RESOURCE_TYPES: readonly ResourceType[] = [
  { group: '', version: 'v1', resource: 'services', kind: 'Service', namespaced: true },
  { group: 'discovery.k8s.io', version: 'v1', resource: 'endpointslices', kind: 'EndpointSlice', namespaced: true },
  { group: '', version: 'v1', resource: 'nodes', kind: 'Node', namespaced: false },
  { group: '', version: 'v1', resource: 'configmaps', kind: 'ConfigMap', namespaced: true },
  { group: '', version: 'v1', resource: 'events', kind: 'Event', namespaced: true },
  { group: 'events.k8s.io', version: 'v1', resource: 'events', kind: 'Event', namespaced: true },
];

export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure';
  message: string;
  reason: string;
  code: number;
  details?: { name?: string; group?: string; kind?: string };
}

/** A request refused with a Status, thrown by the test controls as the HTTP API would answer. */
export class ApiStatusError extends Error {
  constructor(readonly status: Status) {
    super(status.message);
    this.name = 'ApiStatusError';
  }
}

export type Verb = 'list' | 'watch' | 'get' | 'create' | 'update' | 'delete' | 'unknown';

export interface RequestRecord {
  method: string;
  path: string;
  verb: Verb;
  /** As kubectl spells it: 'services', 'endpointslices.discovery.k8s.io'. */
  resource?: string;
  namespace?: string;
  name?: string;
  query: Record<string, string>;
  /** The Authorization header, to check that credentials are sent. */
  authorization?: string;
  /** HTTP status sent; 0 when the connection was reset (pause('reset')). */
  status: number;
  /** Bytes of response body sent so far (a watch's grow while it is open). */
  bytes: number;
  /** Objects sent so far: list items, and a watch's ADDED, MODIFIED and DELETED events. */
  objects: number;
}

export interface TestApiServerOptions {
  /** Period of BOOKMARK events to watches that allow them; 0 disables the timer (sendBookmarks() still works). */
  bookmarkIntervalMs?: number;
  /** Watch events retained; a watch from before the oldest one gets 410. */
  historyLimit?: number;
}

export type WatchCloseMode = 'abort' | 'end';
export type PauseMode = 'unavailable' | 'reset';

interface StoredMeta {
  name: string;
  namespace?: string;
  uid: string;
  resourceVersion: string;
  creationTimestamp: string;
  generation: number;
  [field: string]: unknown;
}

interface StoredObject {
  apiVersion: string;
  kind: string;
  metadata: StoredMeta;
  [field: string]: unknown;
}

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** One write, as etcd's history keeps it. */
interface Change {
  rv: number;
  type: ResourceType;
  eventType: EventType;
  /** The new state; for DELETED the last state, stamped with the deletion's resourceVersion. */
  object: StoredObject;
  prev?: StoredObject;
}

interface Route {
  type: ResourceType;
  namespace?: string;
  name?: string;
}

type Matcher = (obj: StoredObject) => boolean;

interface Watcher {
  record: RequestRecord;
  route: Route;
  matches: Matcher;
  res: http.ServerResponse;
  bookmarks: boolean;
  timer?: NodeJS.Timeout;
}

export class TestApiServer {
  private readonly server: http.Server;
  private readonly bookmarkIntervalMs: number;
  private readonly historyLimit: number;
  private readonly store = new Map<ResourceType, Map<string, StoredObject>>();
  private readonly history: Change[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly requestLog: RequestRecord[] = [];
  private rv = 1;
  /** Watches and continue tokens from before this resourceVersion get 410. */
  private compactedRv = 0;
  private pausedMode: PauseMode | undefined;
  private bookmarkTimer: NodeJS.Timeout | undefined;
  private listenSocketPath: string | undefined;
  private readonly snapshots = new Map<ResourceType, { rv: number; current: number; keys: string[]; items: StoredObject[] }>();

  constructor(opts: TestApiServerOptions = {}) {
    this.bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 3000;
    this.historyLimit = opts.historyLimit ?? 10_000;
    this.server = http.createServer((req, res) => void this.handle(req, res));
  }

  async start(opts: { port?: number; host?: string; socketPath?: string } = {}): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      const listening = () => {
        this.server.off('error', reject);
        resolve();
      };
      if (opts.socketPath !== undefined) {
        rmSync(opts.socketPath, { force: true });
        this.listenSocketPath = opts.socketPath;
        this.server.listen(opts.socketPath, listening);
      } else {
        this.server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', listening);
      }
    });
    if (this.bookmarkIntervalMs > 0) {
      this.bookmarkTimer = setInterval(() => this.sendBookmarks(), this.bookmarkIntervalMs);
      this.bookmarkTimer.unref();
    }
  }

  /** http://host:port; only when listening on TCP (use a relay to reach a unix socket over HTTP). */
  get url(): string {
    const addr = this.server.address();
    if (addr === null || typeof addr === 'string') {
      throw new Error(`TestApiServer is not listening on TCP${this.listenSocketPath ? ` (unix socket ${this.listenSocketPath})` : ''}`);
    }
    const { address, port, family } = addr;
    return `http://${family === 'IPv6' ? `[${address}]` : address}:${port}`;
  }

  get socketPath(): string | undefined {
    return this.listenSocketPath;
  }

  async stop(): Promise<void> {
    clearInterval(this.bookmarkTimer);
    this.closeWatches('abort');
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
    if (this.listenSocketPath) rmSync(this.listenSocketPath, { force: true });
  }

  // ---- test controls; they act directly, paused or not ----

  /** Current (global) resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  get requests(): readonly RequestRecord[] {
    return this.requestLog;
  }

  countRequests(filter: Partial<Pick<RequestRecord, 'verb' | 'resource' | 'namespace' | 'name' | 'status'>> = {}): number {
    return this.requestLog.filter((r) => Object.entries(filter).every(([k, v]) => r[k as keyof typeof filter] === v)).length;
  }

  create<T extends KubernetesObject>(obj: T): T {
    return asClientObject(this.createObject(this.typeOf(obj), undefined, obj));
  }

  /** Honours metadata.resourceVersion as a precondition, as PUT does. */
  update<T extends KubernetesObject>(obj: T): T {
    const type = this.typeOf(obj);
    return asClientObject(this.updateObject(type, undefined, nameOf(obj), obj));
  }

  /** Create, or unconditionally replace. */
  apply<T extends KubernetesObject>(obj: T): T {
    const type = this.typeOf(obj);
    const existing = this.bucket(type).get(keyOf(type, namespaceOf(type, undefined, obj), nameOf(obj)));
    if (!existing) return this.create(obj);
    const copy: KubernetesObject = structuredClone(obj);
    if (copy.metadata) delete copy.metadata.resourceVersion;
    return asClientObject(this.updateObject(type, undefined, nameOf(obj), copy));
  }

  delete(ref: TypeRef, namespace: string | undefined, name: string): KubernetesObject {
    return asClientObject(this.deleteObject(this.typeOf(ref), namespace, name));
  }

  get<T extends KubernetesObject = KubernetesObject>(ref: TypeRef, namespace: string | undefined, name: string): T | undefined {
    const type = this.typeOf(ref);
    const found = this.bucket(type).get(keyOf(type, namespace, name));
    return found ? asClientObject<T>(structuredClone(found)) : undefined;
  }

  list(ref: TypeRef, namespace?: string): KubernetesObject[] {
    const type = this.typeOf(ref);
    return this.itemsAt(type, this.rv)
      .filter((o) => namespace === undefined || o.metadata.namespace === namespace)
      .map((o) => asClientObject(structuredClone(o)));
  }

  /** Forgets the event history: watches and continue tokens from any older resourceVersion get 410. */
  compact(): void {
    this.history.length = 0;
    this.compactedRv = this.rv;
  }

  /** Ends every open watch: 'abort' cuts the connection (crash, network loss), 'end' finishes the stream cleanly. */
  closeWatches(mode: WatchCloseMode = 'abort'): void {
    for (const w of [...this.watchers]) this.endWatch(w, mode);
  }

  /** While paused, every request is answered 503 ('unavailable') or has its connection reset ('reset'). Open watches are left alone. */
  pause(mode: PauseMode = 'unavailable'): void {
    this.pausedMode = mode;
  }

  resume(): void {
    this.pausedMode = undefined;
  }

  /** Sends a BOOKMARK at the current resourceVersion to every watch that allows them. */
  sendBookmarks(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      const { type } = w.route;
      writeEvent(w.res, w.record, 'BOOKMARK', { kind: type.kind, apiVersion: apiVersionOf(type), metadata: { resourceVersion: String(this.rv) } });
    }
  }

  // ---- HTTP ----

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://apiserver');
    const route = parseRoute(url.pathname);
    const verb = route ? verbOf(req.method ?? '', route, url.searchParams) : 'unknown';
    const record: RequestRecord = {
      method: req.method ?? '',
      path: url.pathname,
      verb,
      resource: route && resourceName(route.type),
      namespace: route?.namespace,
      name: route?.name,
      query: Object.fromEntries(url.searchParams),
      authorization: req.headers.authorization,
      status: 0,
      bytes: 0,
      objects: 0,
    };
    this.requestLog.push(record);
    if (this.pausedMode === 'reset') {
      req.socket.destroy();
      return;
    }
    const send = (code: number, body: unknown) => {
      record.status = code;
      res.writeHead(code, { 'Content-Type': 'application/json' });
      const text = JSON.stringify(body);
      record.bytes += Buffer.byteLength(text);
      if (verb === 'list' && code === 200) record.objects += (body as { items: unknown[] }).items.length;
      res.end(text);
    };
    try {
      if (this.pausedMode === 'unavailable') {
        throw statusError(503, 'ServiceUnavailable', 'the server is currently unable to handle the request');
      }
      if (!route) throw statusError(404, 'NotFound', 'the server could not find the requested resource');
      const { type, namespace, name = '' } = route;
      switch (verb) {
        case 'list':
          return send(200, this.listBody(route, url.searchParams));
        case 'watch':
          return this.serveWatch(route, url.searchParams, res, record);
        case 'get': {
          const found = this.bucket(type).get(keyOf(type, namespace, name));
          if (!found) throw notFound(type, name);
          return send(200, found);
        }
        case 'create':
          return send(201, this.createObject(type, namespace, await readJson(req)));
        case 'update':
          return send(200, this.updateObject(type, namespace, name, await readJson(req)));
        case 'delete':
          return send(200, this.deleteObject(type, namespace, name));
        case 'unknown':
          throw statusError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
      }
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
      } else if (err instanceof ApiStatusError) {
        send(err.status.code, err.status);
      } else {
        send(500, statusBody(500, 'InternalError', String(err)));
      }
    }
  }

  private listBody(route: Route, params: URLSearchParams): object {
    const { type, namespace } = route;
    const matches = selectorMatcher(params);
    let rv = this.rv;
    let after = '';
    const token = params.get('continue');
    if (token) {
      ({ rv, after } = decodeContinue(token));
      if (rv < this.compactedRv) {
        throw statusError(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.');
      }
    }
    // Pages are cut from one sorted snapshot per resourceVersion, as the real server's cache serves them:
    // a paginated list costs about what one unpaginated list does, whatever the page size.
    const snapshot = this.snapshotAt(type, rv);
    const limit = Number(params.get('limit') ?? '0');
    const page: StoredObject[] = [];
    let more = false;
    for (let i = firstAfter(snapshot.keys, after); i < snapshot.items.length; i++) {
      const o = snapshot.items[i];
      if (!((namespace === undefined || o.metadata.namespace === namespace) && matches(o))) continue;
      if (limit > 0 && page.length === limit) {
        more = true;
        break;
      }
      page.push(o);
    }
    const metadata: { resourceVersion: string; continue?: string } = { resourceVersion: String(rv) };
    if (more) {
      const last = page[page.length - 1];
      metadata.continue = encodeContinue(rv, keyOf(type, last.metadata.namespace, last.metadata.name));
    }
    // List items carry no kind/apiVersion, as on the real server.
    const bare = page.map(({ kind: _kind, apiVersion: _apiVersion, ...rest }) => rest);
    return { kind: `${type.kind}List`, apiVersion: apiVersionOf(type), metadata, items: bare };
  }

  private serveWatch(route: Route, params: URLSearchParams, res: http.ServerResponse, record: RequestRecord): void {
    const matches = selectorMatcher(params);
    const rvParam = params.get('resourceVersion') ?? '';
    // Unset or "0": start with the current state as synthetic ADDED events.
    const from = rvParam === '' || rvParam === '0' ? undefined : parseResourceVersion(rvParam);
    const timeout = params.get('timeoutSeconds');
    const timeoutSeconds = timeout === null ? 0 : Number(timeout);
    if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 0) {
      throw statusError(400, 'BadRequest', `invalid timeoutSeconds: ${timeout}`);
    }
    record.status = 200;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.flushHeaders();
    if (from !== undefined && from < this.compactedRv) {
      writeEvent(res, record, 'ERROR', statusBody(410, 'Expired', `too old resource version: ${from} (${this.compactedRv})`));
      res.end();
      return;
    }
    const watcher: Watcher = { record, route, matches, res, bookmarks: params.get('allowWatchBookmarks') === 'true' };
    if (from === undefined) {
      for (const obj of this.itemsAt(route.type, this.rv)) {
        if (inRoute(route, obj) && matches(obj)) writeEvent(res, record, 'ADDED', obj);
      }
    } else {
      for (const change of this.history) {
        if (change.rv > from) this.deliver(watcher, change);
      }
    }
    this.watchers.add(watcher);
    if (timeoutSeconds > 0) watcher.timer = setTimeout(() => this.endWatch(watcher, 'end'), timeoutSeconds * 1000);
    res.on('close', () => {
      clearTimeout(watcher.timer);
      this.watchers.delete(watcher);
    });
  }

  private endWatch(watcher: Watcher, mode: WatchCloseMode): void {
    clearTimeout(watcher.timer);
    this.watchers.delete(watcher);
    if (mode === 'end') watcher.res.end();
    else watcher.res.destroy();
  }

  /** Sends a change as a selector-filtered watch sees it: entering the selection is ADDED, leaving it DELETED. */
  private deliver(watcher: Watcher, change: Change): void {
    if (change.type !== watcher.route.type || !inRoute(watcher.route, change.object)) return;
    const now = watcher.matches(change.object);
    const before = change.prev !== undefined && watcher.matches(change.prev);
    let type: EventType | undefined;
    if (change.eventType === 'ADDED') type = now ? 'ADDED' : undefined;
    else if (change.eventType === 'DELETED') type = now ? 'DELETED' : undefined;
    else if (now) type = before ? 'MODIFIED' : 'ADDED';
    else if (before) type = 'DELETED';
    if (type) writeEvent(watcher.res, watcher.record, type, change.object);
  }

  // ---- storage ----

  private typeOf(ref: KubernetesObject): ResourceType {
    const type = RESOURCE_TYPES.find((t) => apiVersionOf(t) === ref.apiVersion && t.kind === ref.kind);
    if (!type) throw new Error(`TestApiServer does not serve ${ref.apiVersion} ${ref.kind}`);
    return type;
  }

  private bucket(type: ResourceType): Map<string, StoredObject> {
    let bucket = this.store.get(type);
    if (!bucket) {
      bucket = new Map();
      this.store.set(type, bucket);
    }
    return bucket;
  }

  /** The collection as it was at resourceVersion rv (>= compactedRv), sorted as etcd keys. */
  /** itemsAt with their keys, kept until the next write. */
  private snapshotAt(type: ResourceType, rv: number): { keys: string[]; items: StoredObject[] } {
    const cached = this.snapshots.get(type);
    if (cached && cached.rv === rv && cached.current === this.rv) return cached;
    const items = this.itemsAt(type, rv);
    const keys = items.map((o) => keyOf(type, o.metadata.namespace, o.metadata.name));
    const snapshot = { rv, current: this.rv, keys, items };
    this.snapshots.set(type, snapshot);
    return snapshot;
  }

  private itemsAt(type: ResourceType, rv: number): StoredObject[] {
    const state = new Map(this.bucket(type));
    for (let i = this.history.length - 1; i >= 0 && this.history[i].rv > rv; i--) {
      const change = this.history[i];
      if (change.type !== type) continue;
      const key = keyOf(type, change.object.metadata.namespace, change.object.metadata.name);
      if (change.prev) state.set(key, change.prev);
      else state.delete(key);
    }
    return [...state.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, obj]) => obj);
  }

  private createObject(type: ResourceType, urlNamespace: string | undefined, input: unknown): StoredObject {
    const obj = checkedBody(type, input);
    const meta = metaOf(obj);
    const namespace = namespaceOf(type, urlNamespace, obj);
    let name = typeof meta.name === 'string' ? meta.name : '';
    if (!name && typeof meta.generateName === 'string' && meta.generateName) {
      name = meta.generateName + randomBytes(4).toString('hex').slice(0, 5);
    }
    if (!name) throw statusError(422, 'Invalid', `${type.kind} is invalid: metadata.name: Required value: name or generateName is required`);
    const key = keyOf(type, namespace, name);
    if (this.bucket(type).has(key)) {
      throw statusError(409, 'AlreadyExists', `${resourceName(type)} "${name}" already exists`, detailsOf(type, name));
    }
    const stored: StoredObject = {
      ...obj,
      apiVersion: apiVersionOf(type),
      kind: type.kind,
      metadata: {
        ...meta,
        name,
        ...(namespace === undefined ? {} : { namespace }),
        uid: randomUUID(),
        resourceVersion: '',
        creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        generation: 1,
      },
    };
    if (namespace === undefined) delete stored.metadata.namespace;
    return this.commit(type, 'ADDED', stored);
  }

  private updateObject(type: ResourceType, urlNamespace: string | undefined, name: string, input: unknown): StoredObject {
    const obj = checkedBody(type, input);
    const meta = metaOf(obj);
    const namespace = namespaceOf(type, urlNamespace, obj);
    if (meta.name !== undefined && meta.name !== name) {
      throw statusError(400, 'BadRequest', 'the name of the object does not match the name on the URL');
    }
    const existing = this.bucket(type).get(keyOf(type, namespace, name));
    if (!existing) throw notFound(type, name);
    if (meta.resourceVersion !== undefined && meta.resourceVersion !== '' && meta.resourceVersion !== existing.metadata.resourceVersion) {
      throw statusError(
        409,
        'Conflict',
        `Operation cannot be fulfilled on ${resourceName(type)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        detailsOf(type, name),
      );
    }
    const specChanged = canonical(desiredState(obj)) !== canonical(desiredState(existing));
    const stored: StoredObject = {
      ...obj,
      apiVersion: apiVersionOf(type),
      kind: type.kind,
      metadata: {
        ...meta,
        name,
        ...(namespace === undefined ? {} : { namespace }),
        uid: existing.metadata.uid,
        resourceVersion: existing.metadata.resourceVersion,
        creationTimestamp: existing.metadata.creationTimestamp,
        generation: existing.metadata.generation + (specChanged ? 1 : 0),
      },
    };
    // As the real server, a write that changes nothing is not stored: no new resourceVersion, no event.
    if (canonical(stored) === canonical(existing)) return structuredClone(existing);
    return this.commit(type, 'MODIFIED', stored, existing);
  }

  private deleteObject(type: ResourceType, namespace: string | undefined, name: string): StoredObject {
    const key = keyOf(type, namespace, name);
    const existing = this.bucket(type).get(key);
    if (!existing) throw notFound(type, name);
    const last = structuredClone(existing);
    return this.commit(type, 'DELETED', last, existing);
  }

  /** Stamps the next resourceVersion, stores, records history and notifies watches. */
  private commit(type: ResourceType, eventType: EventType, obj: StoredObject, prev?: StoredObject): StoredObject {
    this.rv++;
    obj.metadata.resourceVersion = String(this.rv);
    const key = keyOf(type, obj.metadata.namespace, obj.metadata.name);
    if (eventType === 'DELETED') this.bucket(type).delete(key);
    else this.bucket(type).set(key, obj);
    const change: Change = { rv: this.rv, type, eventType, object: obj, prev };
    this.history.push(change);
    while (this.history.length > this.historyLimit) {
      this.compactedRv = this.history.shift()?.rv ?? this.compactedRv;
    }
    for (const watcher of this.watchers) this.deliver(watcher, change);
    return structuredClone(obj);
  }
}

// ---- routing ----

function parseRoute(pathname: string): Route | undefined {
  let segments: string[];
  try {
    segments = pathname.split('/').filter((s) => s !== '').map(decodeURIComponent);
  } catch {
    return undefined;
  }
  let group: string;
  let version: string;
  let rest: string[];
  if (segments[0] === 'api' && segments.length >= 2) {
    [group, version, rest] = ['', segments[1], segments.slice(2)];
  } else if (segments[0] === 'apis' && segments.length >= 3) {
    [group, version, rest] = [segments[1], segments[2], segments.slice(3)];
  } else {
    return undefined;
  }
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  if (rest.length < 1 || rest.length > 2) return undefined;
  const type = RESOURCE_TYPES.find((t) => t.group === group && t.version === version && t.resource === rest[0]);
  if (!type) return undefined;
  if (namespace !== undefined && !type.namespaced) return undefined;
  // A namespaced object is only addressable under its namespace.
  if (rest.length === 2 && type.namespaced && namespace === undefined) return undefined;
  return { type, namespace, name: rest[1] };
}

function verbOf(method: string, route: Route, params: URLSearchParams): Verb {
  const named = route.name !== undefined;
  const watch = params.get('watch');
  if (method === 'GET') return named ? 'get' : watch === 'true' || watch === '1' ? 'watch' : 'list';
  if (method === 'POST' && !named && (route.namespace !== undefined || !route.type.namespaced)) return 'create';
  if (method === 'PUT' && named) return 'update';
  if (method === 'DELETE' && named) return 'delete';
  return 'unknown';
}

function inRoute(route: Route, obj: StoredObject): boolean {
  return route.namespace === undefined || obj.metadata.namespace === route.namespace;
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw statusError(400, 'BadRequest', 'the request body is not valid JSON');
  }
}

function writeEvent(res: http.ServerResponse, record: RequestRecord, type: EventType | 'BOOKMARK' | 'ERROR', object: object): void {
  if (res.writableEnded || res.destroyed) return;
  const line = `${JSON.stringify({ type, object })}\n`;
  record.bytes += Buffer.byteLength(line);
  if (type !== 'BOOKMARK' && type !== 'ERROR') record.objects++;
  res.write(line);
}

// ---- objects ----

function apiVersionOf(type: ResourceType): string {
  return type.group ? `${type.group}/${type.version}` : type.version;
}

function resourceName(type: ResourceType): string {
  return type.group ? `${type.resource}.${type.group}` : type.resource;
}

/** Index of the first key greater than `after` in sorted `keys`. */
function firstAfter(keys: readonly string[], after: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function keyOf(type: ResourceType, namespace: string | undefined, name: string): string {
  return type.namespaced ? `${namespace ?? ''}/${name}` : name;
}

function nameOf(obj: KubernetesObject): string {
  const name = obj.metadata?.name;
  if (!name) throw new Error('object has no metadata.name');
  return name;
}

type JsonObject = Record<string, unknown>;

/** Stored objects hold wire JSON: timestamps are strings where client-node's types say Date. */
function asClientObject<T extends KubernetesObject = KubernetesObject>(obj: StoredObject): T {
  return obj as unknown as T;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkedBody(type: ResourceType, input: unknown): JsonObject {
  if (!isObject(input)) throw statusError(400, 'BadRequest', 'the request body is not an object');
  if (input.kind !== undefined && input.kind !== type.kind) {
    throw statusError(400, 'BadRequest', `kind ${String(input.kind)} does not match the resource ${resourceName(type)}`);
  }
  if (input.apiVersion !== undefined && input.apiVersion !== apiVersionOf(type)) {
    throw statusError(400, 'BadRequest', `apiVersion ${String(input.apiVersion)} does not match the resource ${resourceName(type)}`);
  }
  return structuredClone(input);
}

function metaOf(obj: JsonObject): JsonObject {
  return isObject(obj.metadata) ? obj.metadata : {};
}

/** The object's namespace: the URL's, checked against the body's, else the body's, else 'default'. */
function namespaceOf(type: ResourceType, urlNamespace: string | undefined, obj: KubernetesObject | JsonObject): string | undefined {
  if (!type.namespaced) return undefined;
  const meta = isObject(obj.metadata) ? obj.metadata : {};
  const bodyNamespace = typeof meta.namespace === 'string' && meta.namespace ? meta.namespace : undefined;
  if (urlNamespace !== undefined && bodyNamespace !== undefined && urlNamespace !== bodyNamespace) {
    throw statusError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
  }
  return urlNamespace ?? bodyNamespace ?? 'default';
}

/** What metadata.generation counts changes of: everything but metadata, status and type. */
function desiredState(obj: JsonObject): JsonObject {
  const rest = { ...obj };
  for (const field of ['apiVersion', 'kind', 'metadata', 'status']) delete rest[field];
  return rest;
}

/** JSON with sorted keys, to compare objects regardless of key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (isObject(value)) {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

// ---- resourceVersions and continue tokens ----

function parseResourceVersion(value: string): number {
  if (!/^\d+$/.test(value)) throw statusError(400, 'BadRequest', `invalid resource version: ${value}`);
  return Number(value);
}

function encodeContinue(rv: number, after: string): string {
  return Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv, start: after })).toString('base64url');
}

function decodeContinue(token: string): { rv: number; after: string } {
  try {
    const decoded: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (isObject(decoded) && typeof decoded.rv === 'number' && typeof decoded.start === 'string') {
      return { rv: decoded.rv, after: decoded.start };
    }
  } catch {
    // fall through
  }
  throw statusError(400, 'BadRequest', 'invalid continue token');
}

// ---- selectors ----

type Requirement = { key: string; op: 'in' | 'notin' | 'exists' | 'notexists'; values: string[] };

const KEY = String.raw`[A-Za-z0-9][-A-Za-z0-9_./]*`;
const VALUE = String.raw`[-A-Za-z0-9_.]*`;
const NOT_EXISTS = new RegExp(String.raw`^!\s*(${KEY})$`);
const SET = new RegExp(String.raw`^(${KEY})\s+(in|notin)\s+\(([^()]*)\)$`);
const EQUALITY = new RegExp(String.raw`^(${KEY})\s*(==|!=|=)\s*(${VALUE})$`);
const EXISTS = new RegExp(String.raw`^(${KEY})$`);
const VALUE_ONLY = new RegExp(String.raw`^${VALUE}$`);

function selectorMatcher(params: URLSearchParams): Matcher {
  const labels = parseLabelSelector(params.get('labelSelector') ?? '');
  const fields = parseFieldSelector(params.get('fieldSelector') ?? '');
  return (obj) => labels(obj) && fields(obj);
}

/** Equality (=, ==, !=), existence (k, !k) and set (in, notin) requirements, comma-separated. */
function parseLabelSelector(selector: string): Matcher {
  const requirements = splitTopLevel(selector).map(parseRequirement);
  return (obj) => {
    const labels = isObject(obj.metadata.labels) ? obj.metadata.labels : {};
    return requirements.every(({ key, op, values }) => {
      const value = labels[key];
      const has = typeof value === 'string';
      switch (op) {
        case 'exists':
          return has;
        case 'notexists':
          return !has;
        case 'in':
          return has && values.includes(value);
        case 'notin':
          return !has || !values.includes(value);
      }
    });
  };
}

function splitTopLevel(selector: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of selector) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      terms.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  terms.push(current);
  return terms.map((t) => t.trim()).filter((t) => t !== '');
}

function parseRequirement(term: string): Requirement {
  let m = NOT_EXISTS.exec(term);
  if (m) return { key: m[1], op: 'notexists', values: [] };
  m = SET.exec(term);
  if (m) {
    const values = m[3].split(',').map((v) => v.trim());
    if (values.every((v) => VALUE_ONLY.test(v))) return { key: m[1], op: m[2] === 'in' ? 'in' : 'notin', values };
  }
  m = EQUALITY.exec(term);
  if (m) return { key: m[1], op: m[2] === '!=' ? 'notin' : 'in', values: [m[3]] };
  m = EXISTS.exec(term);
  if (m) return { key: m[1], op: 'exists', values: [] };
  throw statusError(400, 'BadRequest', `unable to parse requirement: ${term}`);
}

/** metadata.name and metadata.namespace, with =, == or !=. */
function parseFieldSelector(selector: string): Matcher {
  const terms = selector
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '')
    .map((term) => {
      const m = /^([^=!]+?)\s*(==|!=|=)\s*(.*)$/.exec(term);
      if (!m) throw statusError(400, 'BadRequest', `invalid field selector: ${term}`);
      const [, field, op, value] = m;
      if (field !== 'metadata.name' && field !== 'metadata.namespace') {
        throw statusError(400, 'BadRequest', `field label not supported: ${field}`);
      }
      return { field, negate: op === '!=', value };
    });
  return (obj) =>
    terms.every(({ field, negate, value }) => {
      const actual = field === 'metadata.name' ? obj.metadata.name : (obj.metadata.namespace ?? '');
      return (actual === value) !== negate;
    });
}

// ---- Status bodies ----

function statusBody(code: number, reason: string, message: string, details?: Status['details']): Status {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code, ...(details ? { details } : {}) };
}

function statusError(code: number, reason: string, message: string, details?: Status['details']): ApiStatusError {
  return new ApiStatusError(statusBody(code, reason, message, details));
}

function detailsOf(type: ResourceType, name: string): Status['details'] {
  return { name, group: type.group, kind: type.resource };
}

function notFound(type: ResourceType, name: string): ApiStatusError {
  return statusError(404, 'NotFound', `${resourceName(type)} "${name}" not found`, detailsOf(type, name));
}

// ---- helpers for tests ----

/** A kubeconfig (JSON, which is YAML) for a plain-HTTP server such as this one. */
export function kubeconfigYaml(server: string): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster: { server, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'test', user: { token: 'test-token' } }],
    contexts: [{ name: 'test', context: { cluster: 'test', user: 'test' } }],
    'current-context': 'test',
  });
}

export function kubeConfigFor(server: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfigYaml(server));
  return kc;
}

/**
 * Polls `probe` until it returns a truthy value, which is returned; fails after
 * timeoutMs. The default bound is generous: it only decides how long a broken
 * test takes to fail, never whether a working one passes on a loaded machine.
 */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  what: string,
  { timeoutMs = 30_000, intervalMs = 5 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
