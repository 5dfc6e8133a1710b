import { execa } from 'execa';
import type { Logger } from '../log.js';
import { familyOfAddress } from '../selection/selection.js';
import type { StaleUdpFlow } from './stale-flows.js';

/**
 * Deletes conntrack entries of stale UDP flows, one `conntrack -D` per flow
 * (the tool has no batch mode; a sync removes few UDP endpoints). Failures are
 * logged, never thrown: the rules are already right, and the entries expire.
 */
export async function flushUdpFlows(flows: readonly StaleUdpFlow[], log: Logger): Promise<void> {
  for (const flow of flows) {
    const r = await execa('conntrack', deleteArgs(flow), { reject: false });
    // Exit 1 with "0 flow entries have been deleted" just means nothing was there.
    if (r.failed && !/0 flow entries/.test(r.stderr)) {
      log.warn({ clusterIP: flow.clusterIP, port: flow.port, endpoint: flow.endpoint, error: r.stderr.trim() || r.shortMessage }, 'could not delete stale UDP conntrack entries');
    } else {
      log.debug({ clusterIP: flow.clusterIP, port: flow.port, endpoint: flow.endpoint }, 'deleted stale UDP conntrack entries');
    }
  }
}

/** `conntrack -D` arguments for one flow; IPv6 flows name their family (conntrack looks in IPv4 otherwise). */
export function deleteArgs(flow: StaleUdpFlow): string[] {
  const ip = flow.endpoint.slice(0, flow.endpoint.lastIndexOf(':'));
  const family = familyOfAddress(flow.clusterIP) === 'ipv6' ? ['-f', 'ipv6'] : [];
  return ['-D', ...family, '-p', 'udp', '--orig-dst', flow.clusterIP, '--orig-port-dst', String(flow.port), '--dst-nat', ip];
}
