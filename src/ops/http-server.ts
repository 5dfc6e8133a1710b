import http from 'node:http';
import type { Logger } from '../log.js';

/** What the agent's HTTP endpoints answer from. */
export interface OpsHandlers {
  metrics(): Promise<{ contentType: string; body: string }>;
  /** null when healthy, else the reason. */
  unhealthyReason(): string | null;
  /** Wall-clock time of the last successful sync, or null. */
  lastSynced(): Date | null;
  ready(): boolean;
  /** JSON for GET /explain?service=namespace/name. */
  explain(service: string): Promise<{ status: number; body: unknown }>;
}

type Route = '/metrics' | '/healthz' | '/readyz' | '/explain';

/**
 * Two listeners: metrics (with /explain, which reveals the cluster's layout)
 * on loopback by default, health on every address so the kubelet's probes
 * reach it. The metrics listener answers the health paths too, as
 * kube-proxy's does; one address given for both makes one listener.
 */
export class OpsServers {
  private readonly servers: http.Server[] = [];

  constructor(
    private readonly handlers: OpsHandlers,
    private readonly log: Logger,
  ) {}

  async start(addresses: { metrics: string; healthz: string }): Promise<void> {
    const health: Route[] = ['/healthz', '/readyz'];
    const all: Route[] = ['/metrics', '/explain', ...health];
    const plan = addresses.metrics === addresses.healthz
      ? [{ key: 'metricsBindAddress', address: addresses.metrics, routes: all }]
      : [{ key: 'metricsBindAddress', address: addresses.metrics, routes: all }, { key: 'healthzBindAddress', address: addresses.healthz, routes: health }];
    try {
      for (const { key, address, routes } of plan) await this.listen(key, address, routes);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private async listen(key: string, address: string, routes: Route[]): Promise<void> {
    if (address === '') return;
    const server = http.createServer((req, res) => void this.handle(new Set(routes), req, res));
    const { host, port } = splitHostPort(address);
    await new Promise<void>((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException) => {
        const why = err.code === 'EADDRINUSE' ? `port ${port} is already in use on ${host}` : err.message;
        reject(new Error(`cannot serve ${routes.join(', ')} on ${address} (${key}): ${why}`));
      };
      server.once('error', failed);
      server.listen(port, host, () => {
        server.off('error', failed);
        resolve();
      });
    });
    this.servers.push(server);
    this.log.info({ address, paths: routes }, 'serving');
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    })));
    this.servers.length = 0;
  }

  private async handle(routes: ReadonlySet<Route>, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://agent');
    const path = url.pathname as Route;
    const send = (status: number, contentType: string, body: string) => {
      res.writeHead(status, { 'Content-Type': contentType });
      res.end(body);
    };
    const json = (status: number, body: unknown) => send(status, 'application/json', `${JSON.stringify(body, null, 2)}\n`);
    if (!routes.has(path)) return send(404, 'text/plain', 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed\n');
    try {
      switch (path) {
        case '/metrics': {
          const { contentType, body } = await this.handlers.metrics();
          return send(200, contentType, body);
        }
        case '/healthz': {
          // kube-proxy's shape, so existing tooling reads it.
          const reason = this.handlers.unhealthyReason();
          const body = { lastUpdated: this.handlers.lastSynced()?.toISOString() ?? null, currentTime: new Date().toISOString(), healthy: reason === null, ...(reason ? { reason } : {}) };
          return json(reason === null ? 200 : 503, body);
        }
        case '/readyz': {
          const ready = this.handlers.ready();
          return send(ready ? 200 : 503, 'text/plain', ready ? 'ok\n' : 'not ready: the first full sync has not completed\n');
        }
        case '/explain': {
          const service = url.searchParams.get('service') ?? '';
          const { status, body } = await this.handlers.explain(service);
          return json(status, body);
        }
      }
    } catch (err) {
      this.log.error({ path, err: err instanceof Error ? err.message : String(err) }, 'HTTP handler failed');
      if (!res.headersSent) send(500, 'text/plain', 'internal error\n');
    }
  }
}

/** `1.2.3.4:10265` or `[::1]:10265`, as the config schema validated it. */
export function splitHostPort(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(address.slice(colon + 1)) };
}
