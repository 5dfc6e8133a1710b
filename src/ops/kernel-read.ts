/**
 * One read of the kernel shared by everyone asking: at most one in flight,
 * its result reused for `maxAgeMs` and dropped by invalidate() (a sync changed
 * the kernel). /explain reads the data plane's kernel objects through it, so
 * a flood of requests costs one read at a time (`iptables-save` per table, or
 * one dump of the nftables table), not one per request.
 */
export class SharedKernelRead<T> {
  private inFlight: { readonly generation: number; readonly promise: Promise<T> } | null = null;
  private cached: { readonly at: number; readonly value: T } | null = null;
  /** Bumped by invalidate(): a read started before it is neither cached nor joined. */
  private generation = 0;

  constructor(
    private readonly read: () => Promise<T>,
    private readonly maxAgeMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get(): Promise<T> {
    if (this.cached && this.now() - this.cached.at < this.maxAgeMs) return Promise.resolve(this.cached.value);
    if (this.inFlight) {
      // A read from before the last sync: wait for it to finish, then read afresh (still one at a time).
      return this.inFlight.generation === this.generation ? this.inFlight.promise : this.inFlight.promise.then(() => this.get());
    }
    const generation = this.generation;
    const started = this.now();
    const promise = this.read()
      .then((value) => {
        if (generation === this.generation) this.cached = { at: started, value };
        return value;
      })
      .finally(() => {
        this.inFlight = null;
      });
    this.inFlight = { generation, promise };
    return promise;
  }

  invalidate(): void {
    this.generation++;
    this.cached = null;
  }
}
