// A UDP client for data-plane tests, run inside a namespace by netns.ts:
//   node udp-client.js <ip> <port> <count> <intervalMs>
// Sends from one socket, so every datagram belongs to one conntrack flow.
// Prints a JSON array of the answers' bodies ("" for a datagram unanswered
// within the interval).
import { createSocket } from 'node:dgram';

const [ip, port, countText, intervalText] = process.argv.slice(2);

if (ip !== undefined && port !== undefined && countText !== undefined && intervalText !== undefined) {
  const socket = createSocket('udp4');
  const answers: string[] = [];
  let pending: ((body: string) => void) | null = null;
  socket.on('message', (msg) => pending?.(msg.toString()));
  const interval = Number(intervalText);
  for (let i = 0; i < Number(countText); i++) {
    const sent = Date.now();
    const answer = new Promise<string>((resolve) => {
      pending = resolve;
      setTimeout(() => resolve(''), interval);
    });
    socket.send(String(i), Number(port), ip);
    answers.push(await answer);
    pending = null;
    await new Promise((r) => setTimeout(r, Math.max(0, interval - (Date.now() - sent))));
  }
  socket.close();
  process.stdout.write(`${JSON.stringify(answers)}\n`);
}
