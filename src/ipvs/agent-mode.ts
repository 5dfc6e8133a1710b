// How the agent runs the IPVS data plane (`--proxy-mode ipvs`): the table
// through the netlink client, the rules beside it (aux.ts) applied with the
// table whenever the frontends they name change, the draining real servers
// swept on a fixed period (the sync loop runs the sweep in its slots, so the
// kernel is written from one place), and a clear refusal at start when the
// kernel has no IPVS.

import { execFile } from 'node:child_process';
import type { ApplyOutcome } from '../sync/dataplane.js';
import { applyAux, auxState, removeAux, renderAux, type AuxFrontend, type AuxState, type AuxTools } from './aux.js';
import { auxFrontends, IpvsDataplane, type IpvsDataplaneOptions, type IpvsGroup, type IpvsKernel, type IpvsTransaction } from './dataplane.js';
import { NetlinkIpvs } from './netlink-client.js';
import type { IpvsClient } from './types.js';

/** How often draining real servers are checked and deleted once idle (or past their drain bound). */
export const SWEEP_INTERVAL_MS = 10_000;

/** The kernel cannot run IPVS mode; the message names the cause. */
export class IpvsUnavailableError extends Error {}

/** Fails with IpvsUnavailableError when the client cannot reach the kernel's IPVS table (no ip_vs). */
export async function requireIpvs(client: IpvsClient): Promise<void> {
  try {
    await client.services();
  } catch (err) {
    const cause = err instanceof Error ? err.message : String(err);
    throw new IpvsUnavailableError(`proxy mode ipvs cannot start: ${cause}`, { cause: err });
  }
}

/** The agent's IPVS data plane over netlink, once the kernel answered for its IPVS table; IpvsUnavailableError otherwise. */
export async function startIpvs(backendMode: 'nft' | 'legacy', options: IpvsDataplaneOptions = {}): Promise<AgentIpvsDataplane> {
  let client: NetlinkIpvs;
  try {
    client = new NetlinkIpvs();
  } catch (err) {
    throw new IpvsUnavailableError(`proxy mode ipvs cannot start: no generic netlink socket: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  try {
    await requireIpvs(client);
  } catch (err) {
    client.close();
    throw err;
  }
  return new AgentIpvsDataplane(client, auxTools(backendMode), options);
}

/** The commands aux.ts runs: iptables of the node's backend, ip, sysctl. */
export function auxTools(backendMode: 'nft' | 'legacy'): AuxTools {
  return { iptables: backendMode === 'legacy' ? 'iptables-legacy' : 'iptables-nft', exec: execTool };
}

const execTool = (argv: readonly string[], input?: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = execFile(argv[0]!, argv.slice(1), { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${argv.join(' ')}: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
    // A command that exits without reading its input closes the pipe: its exit status tells, not EPIPE.
    child.stdin?.on('error', () => undefined);
    if (input === undefined) child.stdin?.end();
    else child.stdin?.end(input);
  });

/**
 * The IPVS data plane as the running agent uses it: after each apply, the
 * auxiliary rules for the frontends of the state last diffed are applied when
 * they differ from those last applied (the first full sync puts them in; a
 * restarted agent rewrites them only with its first full sync, so traffic
 * keeps its marks meanwhile).
 */
export class AgentIpvsDataplane extends IpvsDataplane {
  private readonly groups = new Map<string, IpvsGroup>();
  private appliedAux: string | null = null;

  constructor(client: IpvsClient, private readonly tools: AuxTools, options: IpvsDataplaneOptions = {}) {
    super(client, options);
  }

  override diff(last: IpvsKernel | null, desired: ReadonlyMap<string, IpvsGroup>): IpvsTransaction {
    const t = super.diff(last, desired);
    this.groups.clear();
    for (const [key, group] of desired) this.groups.set(key, group);
    return t;
  }

  override diffGroup(key: string, last: IpvsGroup | undefined, next: IpvsGroup | undefined): IpvsTransaction {
    const t = super.diffGroup(key, last, next);
    if (next) this.groups.set(key, next);
    else this.groups.delete(key);
    return t;
  }

  override async apply(t: IpvsTransaction): Promise<ApplyOutcome> {
    const outcome = await super.apply(t);
    if (outcome.refused) return outcome;
    try {
      await this.applyAuxIfChanged();
    } catch (error) {
      return { stats: outcome.stats, refused: { kind: 'error', error } };
    }
    return outcome;
  }

  /** The auxiliary state for the frontends of the desired state last diffed. */
  auxState(): AuxState {
    const frontends: AuxFrontend[] = [];
    for (const g of this.groups.values()) for (const fe of g.frontends) frontends.push(...auxFrontends(fe));
    return auxState(frontends);
  }

  private async applyAuxIfChanged(): Promise<void> {
    const aux = this.auxState();
    const text = renderAux(aux);
    if (text === this.appliedAux) return;
    this.appliedAux = null;
    await applyAux(aux, this.tools);
    this.appliedAux = text;
  }

  /** --cleanup: the owned services, then every auxiliary rule, chain and route. */
  async cleanupAll(): Promise<void> {
    await this.cleanup();
    await removeAux(auxState([]), this.tools);
    this.appliedAux = null;
  }
}
