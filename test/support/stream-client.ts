// A steady stream of HTTP requests for failover measurements, run inside a namespace:
//   node stream-client.js <url> <durationMs> <intervalMs> <timeoutMs>
// A request starts every intervalMs whatever the earlier ones do (open loop, so
// a request hanging until its timeout does not hide the ones behind it), each on
// a new TCP connection. Prints one JSON array of StreamRequest, with wall-clock
// times so that the caller can line them up with what it did meanwhile.
import { request } from 'node:http';

export interface StreamRequest {
  /** Date.now() at the start and the end of the request. */
  readonly start: number;
  readonly end: number;
  readonly ok: boolean;
  /** The response body, or the error code (ECONNREFUSED, ETIMEDOUT, HTTP_503...). */
  readonly outcome: string;
}

function once(target: string, timeoutMs: number): Promise<StreamRequest> {
  const start = Date.now();
  return new Promise((resolve) => {
    const done = (ok: boolean, outcome: string): void => {
      clearTimeout(timer);
      resolve({ start, end: Date.now(), ok, outcome });
    };
    const req = request(target, { agent: false, headers: { connection: 'close' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => (res.statusCode === 200 ? done(true, Buffer.concat(chunks).toString()) : done(false, `HTTP_${res.statusCode}`)));
      res.on('error', (err: NodeJS.ErrnoException) => done(false, err.code ?? err.message));
    });
    // A deadline for the whole exchange: a dropped SYN would never time out otherwise.
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => done(false, err.code ?? err.message));
    req.end();
  });
}

async function main(target: string, durationMs: number, intervalMs: number, timeoutMs: number): Promise<void> {
  const pending: Promise<StreamRequest>[] = [];
  const started = Date.now();
  for (let i = 0; started + i * intervalMs < started + durationMs; i++) {
    const wait = started + i * intervalMs - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    pending.push(once(target, timeoutMs));
  }
  process.stdout.write(`${JSON.stringify(await Promise.all(pending))}\n`);
}

const [url, duration, interval, timeout] = process.argv.slice(2);
// `node --test dist/test/` also runs every file under test/, without arguments.
if (url !== undefined && duration !== undefined && interval !== undefined && timeout !== undefined) {
  await main(url, Number(duration), Number(interval), Number(timeout));
}
