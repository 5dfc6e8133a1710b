import { ListWatch, Watch, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import { classifyApiFailure, serverOf, type ApiFailure } from './api-failure.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import { listAll } from './client.js';

/**
 * Receives the informer's view of a collection. Objects arrive as the API
 * server sent them (see listAll), reduced by the spec's trim if it has one:
 * nothing is validated here.
 */
export interface Handlers<T> {
  onUpsert(obj: T): void;
  /**
   * Called with the last state seen, also for objects that vanished while
   * disconnected; of a spec with cacheIdentityOnly, those carry only their
   * identity (see ResourceSpec).
   */
  onDelete(obj: T): void;
}

/** A collection to watch. */
export interface ResourceSpec {
  /** Name for logs, as kubectl spells it: 'services', 'endpointslices.discovery.k8s.io'. */
  resource: string;
  /** Collection path; the cluster-wide one watches all namespaces, e.g. '/api/v1/services'. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  /**
   * Reduces each listed or watched object (ADDED, MODIFIED, DELETED) before
   * client-node caches it and the handlers see it (see projection.ts). It must
   * keep metadata.namespace, .name and .resourceVersion, and never throw.
   */
  trim?(obj: KubernetesObject): KubernetesObject;
  /**
   * Once the handlers have seen an object, the cache keeps only its identity
   * (metadata.namespace, .name, .uid, .resourceVersion): enough to tell a
   * repeat from a change and to report a delete, for handlers that keep their
   * own state. A delete found by a relist then carries only that identity.
   */
  cacheIdentityOnly?: boolean;
}

/**
 * Restarts after a failure wait 200 ms doubling up to 5 s (jittered): after a
 * long outage the informer is back within seconds of the server's return. A
 * successful reconnect resets it.
 */
export const RECONNECT_BACKOFF: Readonly<BackoffOptions> = { initialMs: 200, maxMs: 5000 };

export interface InformerOptions {
  backoff?: BackoffOptions;
  /**
   * Called with each failure, classified. A caller that passes it reports
   * failures itself (a one-shot run's deadline): they are then logged at
   * debug only.
   */
  onFailure?: (failure: ApiFailure) => void;
  /**
   * Each watch asks the server to end it after between this and twice this many
   * seconds; client-node then resumes from the last resourceVersion. This bounds
   * how long a silently dead connection (vanished NAT entry, stuck proxy) can
   * leave the agent blind, and the spread keeps agents from reconnecting together.
   */
  watchTimeoutSeconds?: number;
  listPageSize?: number;
  listTimeoutMs?: number;
}

/*
 * What client-node 1.4.0's ListWatch (dist/cache.js, dist/watch.js) does, which
 * this wrapper is built around:
 * - start(): lists (through our listFn) when it has no resourceVersion, fires
 *   'delete' for cached objects missing from the list and 'add'/'update' for the
 *   rest, then watches from the list's resourceVersion.
 * - Watch events: ADDED/MODIFIED/DELETED update the cache and fire callbacks;
 *   every event, BOOKMARK included, advances the resourceVersion. An ERROR event
 *   with code 410 clears the resourceVersion; other ERROR events are ignored.
 * - Stream ends cleanly (server timeout, graceful close): re-watches from the
 *   last resourceVersion, or relists first if a 410 cleared it. Watch answered
 *   with HTTP 410: relists too.
 * - Any other failure (list error, connection refused or reset, non-200 watch
 *   status, stream aborted mid-chunk) fires 'error' and the informer stops for
 *   good. So do stop()'s own aborts. Restarting with start() keeps the cache
 *   and the resourceVersion, so it resumes the watch, or relists via 410.
 * - It never asks for bookmarks nor sets timeoutSeconds: ManagedWatch adds both.
 * - Exceptions thrown by callbacks during a watch are swallowed along with JSON
 *   parse errors, so handlers are guarded here and failures logged.
 * - stop() while a list or watch request is in flight does not prevent the
 *   watch from starting afterwards: ManagedWatch refuses to open streams once
 *   closed and aborts those that connect late.
 */

type WatchArgs = Parameters<Watch['watch']>;

/** client-node's Watch plus bookmarks, a server-side timeout, and a hard close. */
class ManagedWatch extends Watch {
  private readonly open = new Set<AbortController>();
  private closed = false;

  constructor(
    kc: KubeConfig,
    private readonly timeoutSeconds: () => number,
    private readonly onWatchStart: () => void,
    private readonly onExpired: () => void,
    private readonly trim: ((obj: never) => unknown) | undefined,
  ) {
    super(kc);
  }

  override async watch(path: WatchArgs[0], queryParams: WatchArgs[1], callback: WatchArgs[2], done: WatchArgs[3]): Promise<AbortController> {
    if (this.closed) return new AbortController();
    this.onWatchStart();
    let controller: AbortController | undefined;
    let finished = false;
    const params = { ...queryParams, allowWatchBookmarks: true, timeoutSeconds: this.timeoutSeconds() };
    const trim = this.trim;
    // ERROR and BOOKMARK objects are no cached objects: they pass as they are.
    const deliver: WatchArgs[2] = (phase, apiObj, watchObj) => {
      if (phase === 'ERROR' && isGone(apiObj)) this.onExpired();
      return callback(phase, trim && isObjectEvent(phase, apiObj) ? trim(apiObj as never) : apiObj, watchObj);
    };
    controller = await super.watch(path, params, deliver, (err: unknown) => {
      if (isGone(err)) this.onExpired();
      finished = true;
      if (controller) this.open.delete(controller);
      done(err);
    });
    if (this.closed) controller.abort();
    else if (!finished) this.open.add(controller);
    return controller;
  }

  close(): void {
    this.closed = true;
    for (const controller of this.open) controller.abort();
    this.open.clear();
  }
}

/** A 410 Gone Status event or error: client-node relists. */
function isGone(obj: unknown): boolean {
  return typeof obj === 'object' && obj !== null && (('code' in obj && obj.code === 410) || ('statusCode' in obj && obj.statusCode === 410));
}

function isObjectEvent(phase: string, obj: unknown): boolean {
  return (phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED') && typeof obj === 'object' && obj !== null && 'metadata' in obj;
}

/**
 * A client-node informer that survives API server loss: restarted with backoff
 * after any failure, reporting upserts and deletes, including deletes of objects
 * that went away while it was disconnected.
 */
export class ResilientInformer<T extends KubernetesObject> {
  private readonly listWatch: ListWatch<T>;
  private readonly watch: ManagedWatch;
  private readonly backoff: Backoff;
  private readonly server: string;
  private readonly onFailureHook: ((failure: ApiFailure) => void) | undefined;
  /** Set when the server answered 410 Gone: the next list is client-node's relist. */
  private expired = false;
  private readonly listAbort = new AbortController();
  private readonly syncedPromise: Promise<void>;
  private resolveSynced!: () => void;
  private rejectSynced!: (err: Error) => void;
  private state: 'idle' | 'running' | 'stopped' = 'idle';
  private isSynced = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;

  constructor(
    kc: KubeConfig,
    private readonly spec: ResourceSpec,
    private readonly handlers: Handlers<T>,
    private readonly log: Logger,
    opts: InformerOptions = {},
  ) {
    this.backoff = new Backoff(opts.backoff ?? RECONNECT_BACKOFF);
    this.server = serverOf(kc);
    this.onFailureHook = opts.onFailure;
    const watchTimeout = opts.watchTimeoutSeconds ?? 300;
    this.syncedPromise = new Promise<void>((resolve, reject) => {
      this.resolveSynced = resolve;
      this.rejectSynced = reject;
    });
    // Nobody may be waiting when stop() rejects it; callers that are still see the rejection.
    this.syncedPromise.catch(() => undefined);

    this.watch = new ManagedWatch(
      kc,
      () => Math.floor(watchTimeout * (1 + Math.random())),
      // ListWatch opens its first watch right after handing every listed object to the callbacks.
      () => this.markSynced(),
      () => {
        this.expired = true;
      },
      spec.trim,
    );
    const listFn = () => {
      // Expected now and then (the server keeps a limited history): not a failure.
      if (this.expired) this.log.info({ resource: spec.resource }, 'resourceVersion expired (410 Gone); relisting');
      this.expired = false;
      return listAll<T>(kc, spec.path, {
        labelSelector: spec.labelSelector,
        fieldSelector: spec.fieldSelector,
        pageSize: opts.listPageSize,
        timeoutMs: opts.listTimeoutMs,
        signal: this.listAbort.signal,
        map: spec.trim ? (obj: T) => spec.trim!(obj) as T : undefined,
      });
    };
    this.listWatch = new ListWatch<T>(spec.path, this.watch, listFn, false, spec.labelSelector, spec.fieldSelector);
    this.listWatch.on('add', (obj) => this.deliver('upsert', obj));
    this.listWatch.on('update', (obj) => this.deliver('upsert', obj));
    this.listWatch.on('delete', (obj) => this.deliver('delete', obj));
    this.listWatch.on('error', (err: unknown) => this.onFailure(err));
    this.listWatch.on('connect', () => this.log.debug({ resource: spec.resource, resourceVersion: this.resourceVersion }, 'watch connecting'));
  }

  /** True once the first complete list has been delivered. */
  get synced(): boolean {
    return this.isSynced;
  }

  /** The last resourceVersion seen (list, event or bookmark); '' before the first list. */
  get resourceVersion(): string {
    return this.listWatch.latestResourceVersion();
  }

  /** Whether the cache holds the object: it was listed or watched and not deleted since. */
  holds(namespace: string, name: string): boolean {
    return this.listWatch.get(name, namespace) !== undefined;
  }

  /** The cached objects (only their identity, for a spec with cacheIdentityOnly). */
  cached(): readonly T[] {
    return this.listWatch.list();
  }

  /** Failed restarts since the last successful (re)connect; 0 while connected. */
  get reconnectAttempts(): number {
    return this.backoff.attempts;
  }

  /** Resolves once synced; rejects if stopped before that. */
  whenSynced(): Promise<void> {
    return this.syncedPromise;
  }

  start(): void {
    if (this.state !== 'idle') return;
    this.state = 'running';
    void this.run();
  }

  /** Stops for good: closes the watch, aborts any list, cancels a pending restart. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.listAbort.abort();
    this.watch.close();
    await this.listWatch.stop();
    if (!this.isSynced) this.rejectSynced(new Error(`informer for ${this.spec.resource} stopped before its first list completed`));
  }

  private async run(): Promise<void> {
    if (this.state !== 'running') return;
    const failuresBefore = this.failures;
    try {
      // Resolves once the watch is connected or the attempt failed (reported through 'error').
      await this.listWatch.start();
    } catch (err) {
      // Only reached for a kubeconfig without a current cluster.
      this.onFailure(err);
    }
    if (this.state === 'running' && this.failures === failuresBefore && this.backoff.attempts > 0) {
      this.log.info({ resource: this.spec.resource, failures: this.backoff.attempts, resourceVersion: this.resourceVersion }, 'watch recovered');
      this.backoff.reset();
    }
  }

  private onFailure(err: unknown): void {
    // Errors after stop() come from our own aborts; one restart pending is enough.
    if (this.state !== 'running' || this.retryTimer) return;
    this.failures++;
    const delay = this.backoff.next();
    const failure = classifyApiFailure(err, this.server);
    const gone = isGone(err);
    const fields = { resource: this.spec.resource, server: this.server, error: failure.cause, retryable: failure.retryable, attempt: this.backoff.attempts, retryInMs: delay };
    if (this.onFailureHook) {
      this.onFailureHook(failure);
      this.log.debug(fields, 'watch failed, restarting');
    } else if (gone) {
      // A list continue token expired between pages: relisting is the remedy.
      this.log.info(fields, 'list expired (410 Gone), relisting');
    } else if (failure.retryable) {
      this.log.warn(fields, 'watch failed, restarting');
    } else {
      this.log.error(fields, 'watch failed with an error no retry can fix (check the kubeconfig\'s server, certificate authority and credentials, and RBAC); retrying anyway');
    }
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.run();
    }, delay);
  }

  /**
   * Replaces the object ListWatch just cached (it fires 'add'/'update' right
   * after storing it) with its identity. ListWatch reads only the metadata of
   * cached objects: namespace and name as keys, resourceVersion to skip a
   * repeat, and hands them to 'delete' when a relist no longer has them.
   */
  private cacheIdentity(obj: T): void {
    const m = obj.metadata;
    if (!m) return;
    const byNamespace = (this.listWatch as unknown as { objects: Map<string, Map<string, KubernetesObject>> }).objects.get(m.namespace || '');
    if (byNamespace?.get(m.name || '') !== obj) return;
    const identity: NonNullable<KubernetesObject['metadata']> = {};
    if (m.namespace !== undefined) identity.namespace = m.namespace;
    if (m.name !== undefined) identity.name = m.name;
    if (m.uid !== undefined) identity.uid = m.uid;
    if (m.resourceVersion !== undefined) identity.resourceVersion = m.resourceVersion;
    byNamespace.set(m.name || '', { metadata: identity });
  }

  private markSynced(): void {
    if (this.isSynced) return;
    this.isSynced = true;
    this.log.debug({ resource: this.spec.resource, resourceVersion: this.resourceVersion }, 'informer synced');
    this.resolveSynced();
  }

  private deliver(kind: 'upsert' | 'delete', obj: T): void {
    if (this.state === 'stopped') return;
    try {
      if (kind === 'upsert') {
        if (this.spec.cacheIdentityOnly) this.cacheIdentity(obj);
        this.handlers.onUpsert(obj);
      } else {
        this.handlers.onDelete(obj);
      }
    } catch (err) {
      this.log.error(
        { resource: this.spec.resource, namespace: obj.metadata?.namespace, name: obj.metadata?.name, error: err instanceof Error ? err.message : String(err) },
        `${kind} handler threw`,
      );
    }
  }
}
