// The per-packet harness: labs of three namespaces (client 10.3.0.2 → node →
// server 10.1.0.11:8080), each node programmed its own way, and the rate of
// new TCP connections from the client through the node to given targets,
// measured interleaved (ABBA order over the rounds, labs reversed on odd
// rounds, conntrack flushed before each measurement) so that the machine's
// load and conntrack's size weigh the same on every figure.

import { execa } from 'execa';
import { fileURLToPath } from 'node:url';
import { netnsExec, startHttpServer, type Topology } from '../test/support/netns.js';
import { percentile } from './stats.js';

/** The real server every target reaches; connecting to it directly is a connection to no service. */
export const SERVER = '10.1.0.11';
export const SERVER_PORT = 8080;

export interface PacketLab {
  readonly name: string;
  readonly node: string;
  readonly client: string;
}

/** One lab's namespaces, linked and routed, with the server answering; `program` then fills the node's tables. */
export async function buildLab(topology: Topology, name: string, program: (node: string) => Promise<void>): Promise<PacketLab> {
  const node = await topology.namespace(`${name}-node`);
  const client = await topology.namespace(`${name}-client`);
  const server = await topology.namespace(`${name}-server`);
  await topology.link({ ns: node, ifname: 'to-server', address: '10.1.0.1/24' }, { ns: server, ifname: 'eth0', address: `${SERVER}/24` });
  await topology.link({ ns: node, ifname: 'to-client', address: '10.3.0.1/24' }, { ns: client, ifname: 'eth0', address: '10.3.0.2/24' });
  await execa('ip', ['-n', server, 'route', 'add', 'default', 'via', '10.1.0.1']);
  await execa('ip', ['-n', client, 'route', 'add', 'default', 'via', '10.3.0.1']);
  await topology.enableForwarding(node);
  await startHttpServer(server, SERVER, SERVER_PORT, 'ok');
  await program(node);
  return { name, node, client };
}

export interface Target {
  readonly name: string;
  readonly ip: string;
  readonly port: number;
}

/** One target's figures, each the median over the rounds. */
export interface ConnectFigures {
  /** New connections per second (wall time: the machine's load weighs on it). */
  readonly perSecond: number;
  /** The client's CPU time per connection, µs (user and system: the node's hooks run in its softirqs). */
  readonly cpuMicros: number;
}

/** New-connection figures by lab name then target name. */
export async function measureRates(
  labs: readonly PacketLab[], targets: (lab: PacketLab) => readonly Target[], connections: number, rounds: number,
): Promise<Map<string, Map<string, ConnectFigures>>> {
  const samples = new Map(labs.map((lab) => [lab.name, new Map(targets(lab).map((t) => [t.name, [] as ConnectFigures[]]))]));
  const rate = async (lab: PacketLab, t: Target): Promise<ConnectFigures> => {
    await netnsExec(lab.node, 'conntrack', ['-F'], { reject: false });
    const { stdout } = await netnsExec(lab.client, process.execPath, [fileURLToPath(new URL('./connect-client.js', import.meta.url)), t.ip, String(t.port), String(connections)]);
    return JSON.parse(stdout) as ConnectFigures;
  };
  for (const lab of labs) await rate(lab, targets(lab)[0]!); // warm-up
  for (let r = 0; r < rounds; r++) {
    const forward = r % 2 === 0;
    const order = forward ? labs : [...labs].reverse();
    for (const lab of order) {
      const ts = forward ? targets(lab) : [...targets(lab)].reverse();
      for (const t of ts) samples.get(lab.name)!.get(t.name)!.push(await rate(lab, t));
    }
  }
  const median = (xs: readonly ConnectFigures[]): ConnectFigures => ({
    perSecond: percentile(xs.map((x) => x.perSecond), 50),
    cpuMicros: percentile(xs.map((x) => x.cpuMicros), 50),
  });
  return new Map([...samples].map(([lab, byTarget]) => [lab, new Map([...byTarget].map(([t, xs]) => [t, median(xs)]))]));
}
