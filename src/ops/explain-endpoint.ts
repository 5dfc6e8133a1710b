import type { SyncEngine } from '../sync/engine.js';
import { explain, parseServiceArg, readKernelForExplain, type ClusterHealthLookup } from './explain.js';
import { SharedKernelRead } from './kernel-read.js';

/** How long one read of the kernel answers /explain unless a sync changes it first. */
export const KERNEL_READ_MAX_AGE_MS = 1000;
/** Requests answered at once; more get 503 and retry. */
export const MAX_EXPLAIN_IN_FLIGHT = 32;

/**
 * GET /explain: the agent's own plan, compared with one shared, cached read
 * of the kernel, with a bound on requests in progress.
 */
export class ExplainEndpoint {
  private readonly kernel: SharedKernelRead<unknown>;
  private inProgress = 0;

  constructor(
    private readonly engine: SyncEngine,
    /** The data plane's own read of its kernel objects (Dataplane.readForExplain). */
    read: () => Promise<unknown>,
    private readonly health: ClusterHealthLookup,
  ) {
    this.kernel = new SharedKernelRead<unknown>(() => readKernelForExplain(read), KERNEL_READ_MAX_AGE_MS);
  }

  /** A sync changed the kernel: the next request reads it again. */
  synced(): void {
    this.kernel.invalidate();
  }

  async answer(service: string): Promise<{ status: number; body: unknown }> {
    const query = parseServiceArg(service);
    if (!query) return { status: 400, body: { error: `service must be NAMESPACE/NAME (got ${JSON.stringify(service)})` } };
    if (this.inProgress >= MAX_EXPLAIN_IN_FLIGHT) return { status: 503, body: { error: `busy: ${MAX_EXPLAIN_IN_FLIGHT} explain requests in progress; retry` } };
    this.inProgress++;
    try {
      return { status: 200, body: explain(this.engine, query, await this.kernel.get(), this.health) };
    } finally {
      this.inProgress--;
    }
  }
}
