// An HTTP client for data-plane tests, run inside a namespace by netns.ts:
//   node http-client.js <url> <count> <timeoutMs> <concurrency> [intervalMs]
// Each request uses a new TCP connection, so every one goes through conntrack
// and NAT afresh. Prints one JSON HttpSummary line. With count 0 it goes on
// until its stdin closes, printing each outcome as a JSON line as it comes
// ({"body": ...} or {"error": ...}), then the summary.
import { request } from 'node:http';
import type { HttpSummary } from './netns.js';

const [url, countText, timeoutText, concurrencyText, intervalText] = process.argv.slice(2);

function once(target: string, timeoutMs: number): Promise<{ body: string } | { error: string }> {
  return new Promise((resolve) => {
    const done = (outcome: { body: string } | { error: string }): void => {
      clearTimeout(timer);
      resolve(outcome);
    };
    const req = request(target, { agent: false, headers: { connection: 'close' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => done(res.statusCode === 200 ? { body: Buffer.concat(chunks).toString() } : { error: `HTTP_${res.statusCode}` }));
      res.on('error', (err: NodeJS.ErrnoException) => done({ error: err.code ?? err.message }));
    });
    // A deadline for the whole exchange: req.setTimeout only starts counting
    // once the socket connects, so a dropped SYN would never time out.
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => done({ error: err.code ?? err.message }));
    req.end();
  });
}

/** With intervalMs, each worker starts a request at most every intervalMs: a steady stream over time. */
async function main(target: string, count: number, timeoutMs: number, concurrency: number, intervalMs: number): Promise<void> {
  const summary: HttpSummary = { ok: 0, failed: 0, bodies: {}, errors: {} };
  const streaming = count === 0;
  let stopped = false;
  if (streaming) process.stdin.on('end', () => (stopped = true)).resume();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (streaming ? !stopped : next < count) {
      next++;
      const started = Date.now();
      const outcome = await once(target, timeoutMs);
      const rest = intervalMs - (Date.now() - started);
      if (rest > 0) await new Promise((r) => setTimeout(r, rest));
      if (streaming) process.stdout.write(`${JSON.stringify(outcome)}\n`);
      if ('body' in outcome) {
        summary.ok++;
        summary.bodies[outcome.body] = (summary.bodies[outcome.body] ?? 0) + 1;
      } else {
        summary.failed++;
        summary.errors[outcome.error] = (summary.errors[outcome.error] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, streaming ? concurrency : Math.min(concurrency, count)) }, worker));
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

// `node --test dist/test/` also runs every file under test/, without arguments.
if (url !== undefined && countText !== undefined && timeoutText !== undefined && concurrencyText !== undefined) {
  await main(url, Number(countText), Number(timeoutText), Number(concurrencyText), Number(intervalText ?? 0));
}
