// A UDP server for data-plane tests, run inside a namespace by netns.ts:
//   node udp-echo.js <ip> <port> <body>
// Answers every datagram with <body>; prints "listening" once bound; exits when stdin closes.
import { createSocket } from 'node:dgram';

const [ip, port, body] = process.argv.slice(2);

if (ip !== undefined && port !== undefined && body !== undefined) {
  const socket = createSocket('udp4');
  socket.on('message', (_msg, from) => socket.send(body, from.port, from.address));
  socket.bind(Number(port), ip, () => process.stdout.write(`listening ${ip}:${port}\n`));
  process.stdin.on('end', () => process.exit(0)).resume();
}
