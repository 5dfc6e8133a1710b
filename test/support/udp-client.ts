// A UDP client for data-plane tests, run inside a namespace by netns.ts:
//   node udp-client.js <ip> <port> <count> <intervalMs> [timeoutMs]
// Sends from one socket, so every datagram belongs to one conntrack flow: one
// datagram at a time, the next when the answer is in (or timeoutMs passed, by
// default intervalMs) and at least intervalMs after the last one. Prints a JSON
// array of the answers' bodies ("" for a datagram unanswered within timeoutMs).
// With count 0 it sends until its stdin closes, printing each answer as a JSON
// line as it comes, then the array.
import { createSocket } from 'node:dgram';

const [ip, port, countText, intervalText, timeoutText] = process.argv.slice(2);

if (ip !== undefined && port !== undefined && countText !== undefined && intervalText !== undefined) {
  const socket = createSocket('udp4');
  const answers: string[] = [];
  let pending: ((body: string) => void) | null = null;
  socket.on('message', (msg) => pending?.(msg.toString()));
  const interval = Number(intervalText);
  const timeout = Number(timeoutText ?? intervalText);
  const count = Number(countText);
  const streaming = count === 0;
  let stopped = false;
  if (streaming) process.stdin.on('end', () => (stopped = true)).resume();
  for (let i = 0; streaming ? !stopped : i < count; i++) {
    const sent = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const answer = new Promise<string>((resolve) => {
      pending = resolve;
      timer = setTimeout(() => resolve(''), timeout);
    });
    socket.send(String(i), Number(port), ip);
    const body = await answer;
    clearTimeout(timer);
    answers.push(body);
    pending = null;
    if (streaming) process.stdout.write(`${JSON.stringify({ answer: body })}\n`);
    await new Promise((r) => setTimeout(r, Math.max(0, interval - (Date.now() - sent))));
  }
  socket.close();
  process.stdout.write(`${JSON.stringify(answers)}\n`);
}
