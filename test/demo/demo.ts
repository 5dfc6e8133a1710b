// `npm run demo`: clusterset-proxy on a simulated node of cluster "brazil",
// where `serve` runs locally and is also imported from cluster "chile01":
// local first, failover to chile01 under the same name, and back. No cluster needed.
// Everything lives in network namespaces that are removed at the end.

import { endpoint, importedSlice, service, slice } from '../support/fixtures.js';
import { Lab } from '../support/lab.js';

const CLUSTER_IP = '10.96.0.50';
const LOCAL_IP = '10.96.0.40';
const SERVE = `http://${LOCAL_IP}/`;
const DERIVED = `http://${CLUSTER_IP}/`;

function say(text: string): void {
  process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}

async function showRules(lab: Lab): Promise<void> {
  for (const table of ['nat', 'filter'] as const) {
    const lines = (await lab.save(table)).split('\n').filter((l) => l.includes('MCS-'));
    process.stdout.write(`# iptables-save -t ${table} | grep MCS-\n${lines.join('\n')}\n`);
  }
}

async function showAnswers(lab: Lab, url: string, count: number): Promise<void> {
  const r = await lab.requests(url, count);
  const bodies = Object.entries(r.bodies).map(([body, n]) => `${body}: ${n}`).join(', ');
  const errors = Object.entries(r.errors).map(([code, n]) => `${code}: ${n}`).join(', ');
  const name = url === SERVE ? 'serve' : 'derived-serve';
  process.stdout.write(`${count} new connections to ${name} (${url}) answered by -> ${bodies || '(none)'}${errors ? `; failed: ${errors}` : ''}\n`);
}

async function main(): Promise<void> {
  const lab = new Lab('nft');
  const stop = () => void lab.stop().finally(() => process.exit(130));
  process.once('SIGINT', stop);
  try {
    say('Setting up: a node of cluster brazil, a brazil pod, two pods of cluster chile01, a test API server');
    await lab.start();
    await lab.addPod({ ip: '10.1.0.10', body: 'brazil pod serve-x (10.1.0.10)' });
    await lab.addPod({ ip: '10.2.0.10', body: 'chile01 pod serve-a (10.2.0.10)' });
    await lab.addPod({ ip: '10.2.0.11', body: 'chile01 pod serve-b (10.2.0.11)' });
    await lab.routeServiceRange('10.96.0.0/12');
    const imported = importedSlice.bind(null, 'default', 'chile01', 'serve-5d8f', 'derived-serve');
    const local = (ready: boolean) => slice('default', 'serve-abcde', 'serve', [endpoint('10.1.0.10', { ready })]);
    lab.apply(
      // brazil's own `serve`, with its pod.
      service('default', 'serve', LOCAL_IP, [{ name: 'http', port: 80 }]),
      local(true),
      // What Karmada writes in brazil after `serve` is exported from chile01 and imported here.
      service('default', 'derived-serve', CLUSTER_IP, [{ name: 'http', port: 80 }]),
      imported([endpoint('10.2.0.10')]),
    );
    const config = await lab.writeConfig({ clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16', minSyncInterval: '100ms' });

    say('Starting bin/clusterset-proxy inside the node namespace (policy local-first, one name)');
    const agent = await lab.startAgent(['--config', config]);
    await lab.waitForRules((t) => t.includes(`-d ${LOCAL_IP}/32`), 'the first rules');
    await showRules(lab);
    await showAnswers(lab, SERVE, 10);
    await showAnswers(lab, DERIVED, 10);

    say('brazil\'s pod turns unready: both names fail over to chile01');
    lab.apply(local(false));
    await lab.waitForRules((t) => !t.includes('10.1.0.10:8080'), 'the failover');
    await showAnswers(lab, SERVE, 10);

    say('chile01 scales serve to two pods: Karmada updates imported-chile01-serve-5d8f');
    lab.apply(imported([endpoint('10.2.0.10'), endpoint('10.2.0.11')]));
    await lab.waitForRules((t) => t.includes('10.2.0.11:8080'), 'the second pod');
    await showRules(lab);
    await showAnswers(lab, SERVE, 40);

    say('brazil\'s pod is ready again: traffic comes home');
    lab.apply(local(true));
    await lab.waitForRules((t) => t.includes('10.1.0.10:8080'), 'the fail-back');
    await showAnswers(lab, SERVE, 10);

    say('No ready pod anywhere: clients are refused at once, not left to time out');
    lab.apply(local(false), imported([]));
    await lab.waitForRules((t) => t.includes('has no endpoints'), 'the reject rule');
    await showAnswers(lab, SERVE, 3);

    say('Agent log (JSON, one line per event)');
    await agent.stop('SIGTERM');
    process.stdout.write((await agent.logs()).split('\n').filter((l) => /sync done|starting|detected|synced|now sends|stopping/.test(l)).join('\n') + '\n');

    say('clusterset-proxy --cleanup removes everything it owns');
    const cleanup = await lab.runAgent(['--config', config, '--cleanup']);
    if (cleanup.code !== 0) throw new Error(`--cleanup failed: ${cleanup.stderr}`);
    const left = (await lab.saveAll()).split('\n').filter((l) => l.includes('MCS-')).length;
    process.stdout.write(`MCS- lines left in iptables-save: ${left}\n`);
    say('Done: namespaces removed');
  } finally {
    await lab.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
