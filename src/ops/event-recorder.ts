import type { KubeConfig } from '@kubernetes/client-node';
import { KubeApiError, requestJson } from '../kube/client.js';
import type { Logger } from '../log.js';

/** The object an Event is about. */
export interface ObjectRef {
  readonly apiVersion: string;
  readonly kind: string;
  /** Unset for cluster-scoped objects (Nodes). */
  readonly namespace?: string;
  readonly name: string;
  /** Looked up when unset: `kubectl describe` matches Events by uid. */
  readonly uid?: string;
}

export type EventType = 'Normal' | 'Warning';

/** core/v1 Event, as written to the API. */
export interface CoreEvent {
  apiVersion: 'v1';
  kind: 'Event';
  metadata: { name: string; namespace: string };
  involvedObject: { apiVersion: string; kind: string; namespace?: string; name: string; uid?: string };
  reason: string;
  message: string;
  type: EventType;
  count: number;
  firstTimestamp: string;
  lastTimestamp: string;
  source: { component: string; host: string };
  reportingComponent: string;
  reportingInstance: string;
}

/** Where Events go: the API server, or a fake in unit tests. */
export interface EventSink {
  create(event: CoreEvent): Promise<void>;
  /** Rejects with a 404 KubeApiError when the Event is gone (Events expire after an hour). */
  update(event: CoreEvent): Promise<void>;
  uidOf(ref: ObjectRef): Promise<string | undefined>;
}

export interface RecorderOptions {
  readonly sink: EventSink;
  /** Reported as source.component and reportingComponent. */
  readonly component: string;
  /** This node: source.host and reportingInstance. */
  readonly host: string;
  readonly log: Logger;
  /** Wall clock, for timestamps and rate limiting. */
  readonly now?: () => number;
  /** Events per object at once, and the time to earn one more (client-go: 25, 5 min). */
  readonly burst?: number;
  readonly refillMs?: number;
  /** Distinct events remembered for counting repeats (client-go: 4096). */
  readonly cacheSize?: number;
  /** Events waiting to be written; beyond it the oldest is dropped. */
  readonly maxQueue?: number;
}

interface Pending {
  readonly ref: ObjectRef;
  readonly type: EventType;
  readonly reason: string;
  readonly message: string;
  readonly at: number;
}

const MAX_MESSAGE = 1024;

/**
 * Kubernetes Events as client-go's recorder writes them: an event identical
 * to one already written (same object, type, reason, message) increments
 * that Event's count instead of creating another; each object gets a token
 * bucket so that a flapping object cannot flood the API. record() never
 * blocks: events queue and one worker writes them, dropping the oldest if
 * the API falls behind, and failures are logged, never thrown.
 */
export class EventRecorder {
  private readonly now: () => number;
  private readonly burst: number;
  private readonly refillMs: number;
  private readonly cacheSize: number;
  private readonly maxQueue: number;
  /** Identity of an event → the Event written for it. LRU by insertion order. */
  private readonly written = new Map<string, CoreEvent>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly queue: Pending[] = [];
  private worker: Promise<void> | null = null;
  private seq = 0;
  private stopped = false;

  constructor(private readonly opts: RecorderOptions) {
    this.now = opts.now ?? Date.now;
    this.burst = opts.burst ?? 25;
    this.refillMs = opts.refillMs ?? 300_000;
    this.cacheSize = opts.cacheSize ?? 4096;
    this.maxQueue = opts.maxQueue ?? 1000;
  }

  record(ref: ObjectRef, type: EventType, reason: string, message: string): void {
    if (this.stopped) return;
    if (!this.takeToken(objectKey(ref))) {
      this.opts.log.debug({ object: `${ref.kind} ${objectKey(ref)}`, reason }, 'event rate-limited');
      return;
    }
    if (this.queue.length >= this.maxQueue) this.queue.shift();
    this.queue.push({ ref, type, reason, message: message.slice(0, MAX_MESSAGE), at: this.now() });
    this.worker ??= this.drain().finally(() => {
      this.worker = null;
    });
  }

  /** Resolves once every queued event has been written (or has failed). */
  async flush(): Promise<void> {
    while (this.worker) await this.worker;
  }

  /** Stops accepting events, drops those queued (the API may be gone) and waits for the one being written. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.queue.length = 0;
    await this.flush();
  }

  private takeToken(key: string): boolean {
    const now = this.now();
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    const earned = Math.floor((now - bucket.at) / this.refillMs);
    if (earned > 0) {
      bucket.tokens = Math.min(this.burst, bucket.tokens + earned);
      bucket.at += earned * this.refillMs;
    }
    if (bucket.tokens === this.burst) bucket.at = now;
    this.remember(this.buckets, key, bucket);
    if (bucket.tokens === 0) return false;
    bucket.tokens--;
    return true;
  }

  private remember<V>(map: Map<string, V>, key: string, value: V): void {
    map.delete(key);
    map.set(key, value);
    if (map.size > this.cacheSize) map.delete(map.keys().next().value!);
  }

  private async drain(): Promise<void> {
    for (let item = this.queue.shift(); item; item = this.queue.shift()) {
      try {
        await this.write(item);
      } catch (err) {
        this.opts.log.warn({ object: `${item.ref.kind} ${objectKey(item.ref)}`, reason: item.reason, err: err instanceof Error ? err.message : String(err) }, 'could not write an Event');
      }
    }
  }

  private async write(item: Pending): Promise<void> {
    const { ref, type, reason, message } = item;
    const identity = JSON.stringify([ref.kind, ref.namespace ?? '', ref.name, type, reason, message]);
    const stamp = new Date(item.at).toISOString().replace(/\.\d+Z$/, 'Z');
    const previous = this.written.get(identity);
    if (previous) {
      const next = { ...previous, count: previous.count + 1, lastTimestamp: stamp };
      try {
        await this.opts.sink.update(next);
        this.remember(this.written, identity, next);
        return;
      } catch (err) {
        if (!(err instanceof KubeApiError && err.statusCode === 404)) throw err;
        // Expired: start a new Event.
      }
    }
    const uid = ref.uid ?? (await this.opts.sink.uidOf(ref).catch(() => undefined));
    const event: CoreEvent = {
      apiVersion: 'v1',
      kind: 'Event',
      // client-go's naming: the object's name and a unique hex suffix.
      metadata: { name: `${ref.name}.${(BigInt(item.at) * 1_000_000n + BigInt(this.seq++ % 1_000_000)).toString(16)}`, namespace: ref.namespace ?? 'default' },
      involvedObject: { apiVersion: ref.apiVersion, kind: ref.kind, ...(ref.namespace ? { namespace: ref.namespace } : {}), name: ref.name, ...(uid ? { uid } : {}) },
      reason,
      message,
      type,
      count: 1,
      firstTimestamp: stamp,
      lastTimestamp: stamp,
      source: { component: this.opts.component, host: this.opts.host },
      reportingComponent: this.opts.component,
      reportingInstance: this.opts.host,
    };
    await this.opts.sink.create(event);
    this.remember(this.written, identity, event);
  }
}

function objectKey(ref: ObjectRef): string {
  return `${ref.kind}/${ref.namespace ?? ''}/${ref.name}`;
}

/** Paths of the kinds the agent writes Events about, for the uid lookup. */
function objectPath(ref: ObjectRef): string | null {
  const ns = encodeURIComponent(ref.namespace ?? '');
  const name = encodeURIComponent(ref.name);
  switch (`${ref.apiVersion}/${ref.kind}`) {
    case 'v1/Service': return `/api/v1/namespaces/${ns}/services/${name}`;
    case 'v1/ConfigMap': return `/api/v1/namespaces/${ns}/configmaps/${name}`;
    case 'v1/Node': return `/api/v1/nodes/${name}`;
    case 'discovery.k8s.io/v1/EndpointSlice': return `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices/${name}`;
    default: return null;
  }
}

/** Events through the API server; needs create and update on events. */
export function apiEventSink(kc: KubeConfig): EventSink {
  const eventsPath = (e: CoreEvent) => `/api/v1/namespaces/${encodeURIComponent(e.metadata.namespace)}/events`;
  return {
    create: async (e) => {
      await requestJson(kc, 'POST', eventsPath(e), { body: e, timeoutMs: 10_000 });
    },
    update: async (e) => {
      await requestJson(kc, 'PUT', `${eventsPath(e)}/${encodeURIComponent(e.metadata.name)}`, { body: e, timeoutMs: 10_000 });
    },
    uidOf: async (ref) => {
      const path = objectPath(ref);
      if (path === null) return undefined;
      const obj = (await requestJson(kc, 'GET', path, { timeoutMs: 10_000 })) as { metadata?: { uid?: string } };
      return obj.metadata?.uid;
    },
  };
}
