// node connect-client.js <ip> <port> <count>: opens count TCP connections one
// after another (each closed once established) and prints the connections per
// second. Run inside a namespace by the per-packet figure.
import { connect } from 'node:net';

const [ip, portText, countText] = process.argv.slice(2);

function once(): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: ip!, port: Number(portText) });
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('error', reject);
    socket.setTimeout(2000, () => socket.destroy(new Error('connect timed out')));
  });
}

const count = Number(countText);
const started = performance.now();
for (let i = 0; i < count; i++) await once();
const seconds = (performance.now() - started) / 1000;
process.stdout.write(`${JSON.stringify({ count, seconds, perSecond: count / seconds })}\n`);
