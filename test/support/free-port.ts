import { createServer, type AddressInfo } from 'node:net';

/** A loopback port the kernel just handed out and took back: nothing listens on it (unless another process races for it). */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}
