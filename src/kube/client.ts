import http from 'node:http';
import https from 'node:https';
import { KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';

/**
 * Loads the kubeconfig at `kubeconfigPath`, or the in-cluster service account
 * config when it is undefined. Error messages name the file but never carry
 * its content: a YAML parse error would otherwise quote the lines around the
 * fault, which may hold a token.
 */
export function loadKubeConfig(kubeconfigPath?: string): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfigPath === undefined) {
    if (!process.env.KUBERNETES_SERVICE_HOST || !process.env.KUBERNETES_SERVICE_PORT) {
      throw new Error('not running in a cluster (KUBERNETES_SERVICE_HOST/PORT unset): pass a kubeconfig path');
    }
    kc.loadFromCluster();
  } else {
    try {
      kc.loadFromFile(kubeconfigPath);
    } catch (err) {
      throw new Error(`cannot load kubeconfig ${kubeconfigPath}: ${safeLoadError(err)}`);
    }
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) {
    throw new Error(`kubeconfig ${kubeconfigPath ?? '(in-cluster)'} has no current cluster with a server`);
  }
  return kc;
}

function safeLoadError(err: unknown): string {
  if (typeof err !== 'object' || err === null) return 'invalid kubeconfig';
  // js-yaml's YAMLException keeps the bare reason apart from the quoted snippet.
  if ('reason' in err && typeof err.reason === 'string') return err.reason;
  // fs errors (ENOENT, EACCES) only name the path.
  if ('code' in err && typeof err.code === 'string' && err instanceof Error) return err.message;
  return 'invalid kubeconfig';
}

/** A non-2xx answer from the API server, with the fields of its Status body. */
export class KubeApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

export interface ListOptions<T = KubernetesObject> {
  labelSelector?: string;
  fieldSelector?: string;
  /** Items per page; the whole collection is fetched page by page. */
  pageSize?: number;
  /** Per-request inactivity timeout. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Applied to each item as its page arrives (e.g. a projection), so whole pages are not kept. */
  map?: (item: T) => T;
}

/**
 * Lists every object of a collection path (e.g. /api/v1/services), following
 * `continue` tokens. Items are returned as parsed from the wire, unlike the
 * generated API clients, whose ObjectSerializer drops unknown fields, turns
 * timestamps into Dates and throws on malformed content; this keeps list items
 * identical in shape to watch event objects, which client-node never
 * deserializes. Consequently Date-typed fields of T hold strings at run time.
 */
export async function listAll<T extends KubernetesObject>(
  kc: KubeConfig,
  path: string,
  opts: ListOptions<T> = {},
): Promise<KubernetesListObject<T>> {
  const items: T[] = [];
  let cont: string | undefined;
  let resourceVersion = '';
  do {
    const query = new URLSearchParams({ limit: String(opts.pageSize ?? 500) });
    if (opts.labelSelector) query.set('labelSelector', opts.labelSelector);
    if (opts.fieldSelector) query.set('fieldSelector', opts.fieldSelector);
    if (cont) query.set('continue', cont);
    const page = await getJson(kc, `${path}?${query}`, opts);
    if (!isListPage(page)) {
      throw new Error(`GET ${path}: response is not a list`);
    }
    const map = opts.map;
    if (map) for (const item of page.items as T[]) items.push(map(item));
    else items.push(...(page.items as T[]));
    // Every page is served from the snapshot of the first, at the same resourceVersion.
    resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
    cont = page.metadata?.continue || undefined;
  } while (cont);
  return { metadata: { resourceVersion }, items };
}

interface ListPage {
  metadata?: { resourceVersion?: string; continue?: string };
  items: unknown[];
}

function isListPage(body: unknown): body is ListPage {
  // ListWatch keys items by metadata.namespace/name and would throw on an item without metadata.
  return (
    typeof body === 'object' &&
    body !== null &&
    'items' in body &&
    Array.isArray(body.items) &&
    body.items.every((item: unknown) => typeof item === 'object' && item !== null && 'metadata' in item && typeof item.metadata === 'object' && item.metadata !== null)
  );
}

async function getJson<T>(kc: KubeConfig, pathAndQuery: string, opts: ListOptions<T>): Promise<unknown> {
  return requestJson(kc, 'GET', pathAndQuery, { timeoutMs: opts.timeoutMs, signal: opts.signal });
}

export interface RequestOptions {
  /** Sent as JSON. */
  body?: unknown;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** One API request with the kubeconfig's credentials; a non-2xx answer is a KubeApiError. */
export async function requestJson(kc: KubeConfig, method: string, pathAndQuery: string, opts: RequestOptions = {}): Promise<unknown> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('kubeconfig has no current cluster');
  const url = new URL(server + pathAndQuery);
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const headers: Record<string, string> = { Accept: 'application/json', ...(payload === undefined ? {} : { 'Content-Type': 'application/json' }) };
  const reqOpts: https.RequestOptions = { method, headers };
  // Adds TLS material, the auth header (refreshing exec/file tokens) and an agent.
  await kc.applyToHTTPSOptions(reqOpts);
  const transport = url.protocol === 'https:' ? https : http;
  const what = `${method} ${url.pathname}`;
  return new Promise((resolve, reject) => {
    const req = transport.request(url, { ...reqOpts, signal: opts.signal }, (res) => {
      // Decoded chunk by chunk into one string: a list page (about 1 MB) is never copied whole
      // into a native buffer, whose memory the allocator would keep after the list.
      res.setEncoding('utf8');
      let text = '';
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('error', reject);
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          reject(new KubeApiError(status, '', `${what}: HTTP ${status}, body is not JSON`));
          return;
        }
        if (status >= 200 && status < 300) {
          resolve(body);
        } else {
          reject(statusError(what, status, body));
        }
      });
    });
    req.setTimeout(opts.timeoutMs ?? 60_000, () => req.destroy(new Error(`${what}: timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

function statusError(what: string, status: number, body: unknown): KubeApiError {
  const field = (name: string): string => {
    if (typeof body === 'object' && body !== null && name in body) {
      const value: unknown = (body as Record<string, unknown>)[name];
      if (typeof value === 'string') return value;
    }
    return '';
  };
  const message = field('message') || http.STATUS_CODES[status] || 'error';
  return new KubeApiError(status, field('reason'), `${what}: HTTP ${status}: ${message}`);
}
