// Request admission for one netlink socket: up to `size` requests at once
// (the `netlink` package aborts the process with a few hundred in flight),
// in arrival order, and a dump always alone.

/**
 * The package groups a multipart reply by "the parts since the
 * last DONE", so any other reply arriving between a dump's parts (which come
 * as the socket is read) would cut it short.
 */
export class Admission {
  private active = 0;
  private dumping = false;
  private readonly waiting: Array<{ dump: boolean; start: () => void }> = [];

  constructor(private readonly size: number) {}

  async run<T>(dump: boolean, work: () => Promise<T>): Promise<T> {
    await new Promise<void>((start) => {
      this.waiting.push({ dump, start });
      this.admit();
    });
    try {
      return await work();
    } finally {
      this.active--;
      this.dumping = false;
      this.admit();
    }
  }

  private admit(): void {
    for (let next = this.waiting[0]; next; next = this.waiting[0]) {
      const fits = next.dump ? this.active === 0 : !this.dumping && this.active < this.size;
      if (!fits) return;
      this.waiting.shift();
      this.active++;
      this.dumping = next.dump;
      next.start();
    }
  }
}
