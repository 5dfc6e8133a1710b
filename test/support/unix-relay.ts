import net from 'node:net';
import { pathToFileURL } from 'node:url';

/*
 * Relays TCP connections on host:port to a unix socket. Run inside a network
 * namespace (`ip netns exec NS node dist/test/support/unix-relay.js SOCKET PORT`),
 * it lets a process there reach a TestApiServer of the root namespace through
 * the shared filesystem, without routing between the namespaces.
 */

export interface UnixRelay {
  readonly port: number;
  close(): Promise<void>;
}

/** Listens on host:port (port 0 picks one) and pipes each connection to socketPath. */
export async function startUnixRelay(socketPath: string, port: number, host = '127.0.0.1'): Promise<UnixRelay> {
  const connections = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(socketPath);
    connections.add(client).add(upstream);
    // Whichever side fails or closes, the other goes with it, as one TCP connection would.
    const teardown = () => {
      client.destroy();
      upstream.destroy();
      connections.delete(client);
      connections.delete(upstream);
    };
    client.on('error', teardown).on('close', teardown);
    upstream.on('error', teardown).on('close', teardown);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of connections) socket.destroy();
      }),
  };
}

async function main(args: string[]): Promise<void> {
  const [socketPath, portArg] = args;
  const port = Number(portArg);
  if (!socketPath || !Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write('usage: unix-relay.js SOCKET_PATH PORT\n');
    process.exit(2);
  }
  const relay = await startUnixRelay(socketPath, port);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => void relay.close().then(() => process.exit(0)));
  }
  process.stdout.write('ready\n');
}

// `node --test dist/test/` also runs every file under test/, without arguments: stay inert then.
// (Tests spawning the relay pass arguments and inherit NODE_TEST_CONTEXT, so only both together mean that.)
const isEntryPoint = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
const runByTestRunner = process.argv.length <= 2 && process.env.NODE_TEST_CONTEXT !== undefined;
if (isEntryPoint && !runByTestRunner) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`unix-relay: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
