// node connect-client.js <ip> <port> <count>: opens count TCP connections one
// after another (each closed once established) and prints the connections per
// second and the CPU time this process spent per connection. Run inside a
// namespace by the per-packet figure. The CPU time counts the kernel's work
// done in this process's context (the SYN and its answer cross the node's
// hooks in the softirq its own send raises) and not the time spent waiting
// for a CPU, so it stays readable on a loaded machine where wall time does not.
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
const cpuBefore = process.cpuUsage();
for (let i = 0; i < count; i++) await once();
const cpu = process.cpuUsage(cpuBefore);
const seconds = (performance.now() - started) / 1000;
process.stdout.write(`${JSON.stringify({ count, seconds, perSecond: count / seconds, cpuMicros: (cpu.user + cpu.system) / count })}\n`);
