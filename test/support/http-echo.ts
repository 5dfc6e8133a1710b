// An HTTP server for data-plane tests, run inside a namespace by netns.ts:
//   node http-echo.js <ip> <port> <body>
// Answers every request with <body>; prints "listening <ip>:<port>" once ready.
// Exits when its stdin closes, so it never outlives the test process.
import { createServer } from 'node:http';

const [ip, port, body] = process.argv.slice(2);

// `node --test dist/test/` also runs every file under test/, without arguments.
if (ip !== undefined && port !== undefined && body !== undefined) {
  const payload = Buffer.from(body);
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': payload.length });
    res.end(payload);
  });
  server.listen(Number(port), ip, () => process.stdout.write(`listening ${ip}:${port}\n`));
  process.stdin.on('end', () => process.exit(0)).resume();
}
