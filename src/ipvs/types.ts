// The IPVS objects the agent programs, shared by the kernel client and the
// fake: virtual services keyed by address or by firewall mark, and their real
// servers (destinations).

export type IpvsFamily = 4 | 6;
export type IpvsProtocol = 'tcp' | 'udp' | 'sctp';

/** A virtual service's identity: address, protocol and port, or a firewall mark. */
export type ServiceKey =
  | { readonly kind: 'address'; readonly family: IpvsFamily; readonly protocol: IpvsProtocol; readonly address: string; readonly port: number }
  | { readonly kind: 'fwmark'; readonly family: IpvsFamily; readonly fwmark: number };

export interface ServiceSpec {
  readonly key: ServiceKey;
  /** Scheduler module name without the `ip_vs_` prefix: wrr, rr, lc, sh, ... */
  readonly scheduler: string;
  /** IP_VS_SVC_F_* bits (persistent, one-packet, scheduler flags), without the kernel's internal `hashed` bit. */
  readonly flags: number;
  /** Persistence timeout in seconds (used with the persistent flag). */
  readonly timeout: number;
  /** Persistence netmask: a 32-bit mask for IPv4 (0xffffff00 is /24), a prefix length for IPv6. */
  readonly netmask: number;
}

/** How IPVS forwards to the real server: NAT (masq) is what a proxy uses. */
export type ForwardMethod = 'masq' | 'local' | 'tunnel' | 'route' | 'bypass';

/** A real server's identity within its service (same family as the service). */
export interface DestKey {
  readonly address: string;
  /** 0 on a fwmark service keeps the packet's own destination port. */
  readonly port: number;
}

export interface DestSpec extends DestKey {
  /** 0 keeps existing connections but sends no new ones. */
  readonly weight: number;
  readonly forward: ForwardMethod;
  /** Connection thresholds; 0 means no limit. */
  readonly upperThreshold: number;
  readonly lowerThreshold: number;
}

export interface ObservedDest extends DestSpec {
  readonly activeConns: number;
  readonly inactiveConns: number;
  readonly persistentConns: number;
}

/** Same scheduler, flags and persistence: no update needed. */
export function sameService(a: ServiceSpec, b: ServiceSpec): boolean {
  return a.scheduler === b.scheduler && a.flags === b.flags && a.timeout === b.timeout && a.netmask >>> 0 === b.netmask >>> 0;
}

/** Same weight, forwarding and thresholds: no update needed. */
export function sameDest(a: DestSpec, b: DestSpec): boolean {
  return a.weight === b.weight && a.forward === b.forward && a.upperThreshold === b.upperThreshold && a.lowerThreshold === b.lowerThreshold;
}

/** An IPVS request the kernel (or the fake) refused, with the kernel's errno name. */
export class IpvsError extends Error {
  constructor(readonly code: string, readonly request: string) {
    super(`${request}: ${code}`);
    this.name = 'IpvsError';
  }
}

/**
 * IPVS table operations. Errors are the kernel's: EEXIST for a service or
 * destination that exists, ESRCH for a missing service, ENOENT for a missing
 * destination or an unknown scheduler.
 */
export interface IpvsClient {
  services(): Promise<ServiceSpec[]>;
  /** The service's real servers; a missing service has none. */
  dests(service: ServiceKey): Promise<ObservedDest[]>;
  addService(service: ServiceSpec): Promise<void>;
  updateService(service: ServiceSpec): Promise<void>;
  deleteService(service: ServiceKey): Promise<void>;
  addDest(service: ServiceKey, dest: DestSpec): Promise<void>;
  updateDest(service: ServiceKey, dest: DestSpec): Promise<void>;
  deleteDest(service: ServiceKey, dest: DestKey): Promise<void>;
  /** Deletes every service of the network namespace, ours or not. */
  flush(): Promise<void>;
  close(): void;
}

/** `tcp 10.96.0.10:53`, `fwmark 0x4000` (IPv6 addresses in brackets): for messages and keys. */
export function serviceText(key: ServiceKey): string {
  if (key.kind === 'fwmark') return `fwmark 0x${key.fwmark.toString(16)}${key.family === 6 ? ' (IPv6)' : ''}`;
  return `${key.protocol} ${hostPort(key.address, key.port)}`;
}

export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** What each request does, in the words errors carry (kernel client and fake alike). */
export const requestText = {
  addService: (key: ServiceKey) => `add ${serviceText(key)}`,
  updateService: (key: ServiceKey) => `update ${serviceText(key)}`,
  deleteService: (key: ServiceKey) => `delete ${serviceText(key)}`,
  addDest: (key: ServiceKey, dest: DestKey) => `add ${hostPort(dest.address, dest.port)} to ${serviceText(key)}`,
  updateDest: (key: ServiceKey, dest: DestKey) => `update ${hostPort(dest.address, dest.port)} in ${serviceText(key)}`,
  deleteDest: (key: ServiceKey, dest: DestKey) => `delete ${hostPort(dest.address, dest.port)} from ${serviceText(key)}`,
};
