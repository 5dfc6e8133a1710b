// The kernel's IPVS table over generic netlink, through the `netlink`
// package's socket: one socket per client, the IPVS family resolved once,
// requests bounded in flight because the package aborts the process with a
// few hundred outstanding on one socket.

import { constants } from 'node:os';
import { createGenericNetlink, FlagsGet, formatGenlHeader, MessageType, parseError, parseGenlHeader, type GenericNetlinkSocket, type NetlinkMessage } from 'netlink';
import { Admission } from './admission.js';
import { Cmd, destPayload, IPVS_GENL_NAME, IPVS_GENL_VERSION, parseDest, parseService, servicePayload } from './codec.js';
import { IpvsError, requestText, serviceText, type DestKey, type DestSpec, type IpvsClient, type ObservedDest, type ServiceKey, type ServiceSpec } from './types.js';

/** Requests outstanding on the socket at once; well below where the package fails. */
export const MAX_IN_FLIGHT = 64;
/** A request the kernel never answers must not stall a sync forever. */
const TIMEOUT_MS = 5000;
/**
 * A dump's answer grows with the table (10,000 services are about 1 MB of
 * replies), and a slow kernel (UML at load 10) took more than 5 s for one.
 */
const DUMP_TIMEOUT_MS = 60_000;
const GET_FAMILY = 3;

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

export interface NetlinkIpvsOptions {
  readonly maxInFlight?: number;
}

export class NetlinkIpvs implements IpvsClient {
  private readonly genl: GenericNetlinkSocket = createGenericNetlink();
  private readonly admission: Admission;
  private family: Promise<number> | null = null;
  /** Messages sent, for callers that count the cost of a change. */
  requests = 0;

  constructor(options: NetlinkIpvsOptions = {}) {
    this.admission = new Admission(options.maxInFlight ?? MAX_IN_FLIGHT);
  }

  async services(): Promise<ServiceSpec[]> {
    const replies = await this.request(Cmd.GET_SERVICE, [], 'list services', FlagsGet.DUMP);
    return replies.map(parseService);
  }

  async dests(service: ServiceKey): Promise<ObservedDest[]> {
    const replies = await this.request(Cmd.GET_DEST, destPayload(service), `list real servers of ${serviceText(service)}`, FlagsGet.DUMP);
    return replies.map((r) => parseDest(r, service.family));
  }

  async addService(service: ServiceSpec): Promise<void> {
    await this.request(Cmd.NEW_SERVICE, servicePayload(service), requestText.addService(service.key));
  }

  async updateService(service: ServiceSpec): Promise<void> {
    await this.request(Cmd.SET_SERVICE, servicePayload(service), requestText.updateService(service.key));
  }

  async deleteService(service: ServiceKey): Promise<void> {
    await this.request(Cmd.DEL_SERVICE, servicePayload(service), requestText.deleteService(service));
  }

  async addDest(service: ServiceKey, dest: DestSpec): Promise<void> {
    await this.request(Cmd.NEW_DEST, destPayload(service, dest), requestText.addDest(service, dest));
  }

  async updateDest(service: ServiceKey, dest: DestSpec): Promise<void> {
    await this.request(Cmd.SET_DEST, destPayload(service, dest), requestText.updateDest(service, dest));
  }

  async deleteDest(service: ServiceKey, dest: DestKey): Promise<void> {
    await this.request(Cmd.DEL_DEST, destPayload(service, dest), requestText.deleteDest(service, dest));
  }

  async flush(): Promise<void> {
    await this.request(Cmd.FLUSH, [], 'flush');
  }

  close(): void {
    this.genl.socket.close();
  }

  /** The IPVS family id, which exists only once the ip_vs module is loaded. */
  private familyId(): Promise<number> {
    this.family ??= this.genl.ctrlRequest(GET_FAMILY, { familyName: IPVS_GENL_NAME }, { timeout: TIMEOUT_MS }).then(
      (replies) => {
        const id = replies[0]?.familyId;
        if (id === undefined) throw new Error('generic netlink answered without the IPVS family id');
        return id;
      },
      (err: unknown) => {
        this.family = null;
        throw new Error(`this kernel has no IPVS generic netlink family (is the ip_vs module loaded?): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      },
    );
    return this.family;
  }

  /** Sends one request and returns the payloads (after the genl header) of its replies. */
  private request(cmd: Cmd, payload: Uint8Array[], what: string, flags = 0): Promise<Buffer[]> {
    return this.admission.run(flags === FlagsGet.DUMP, async () => {
      const family = await this.familyId();
      this.requests++;
      const header = formatGenlHeader({ cmd, version: IPVS_GENL_VERSION });
      const timeout = flags === FlagsGet.DUMP ? DUMP_TIMEOUT_MS : TIMEOUT_MS;
      // checkError off: the package reports a refusal only as text, the errno is needed.
      const [replies] = await this.genl.socket.request(family, [header, ...payload], { flags, timeout, checkError: false }).catch((err: unknown) => {
        // The package's timeout names no request.
        throw err instanceof Error && err.message === 'Timeout has been reached' ? new Error(`${what}: no answer from the kernel within ${timeout} ms`, { cause: err }) : err;
      });
      return replies.flatMap((reply) => payloadOf(reply, family, what));
    });
  }
}

function payloadOf(reply: NetlinkMessage, family: number, what: string): Buffer[] {
  if (reply.type === MessageType.ERROR) {
    const errno = Math.abs(parseError(reply.data, reply.flags).errno);
    if (errno === 0) return [];
    throw new IpvsError(errnoNames.get(errno) ?? `errno ${errno}`, what);
  }
  if (reply.type !== family) throw new Error(`${what}: unexpected netlink message type ${reply.type}`);
  return [reply.data.subarray(parseGenlHeader(reply.data).consumed)];
}
