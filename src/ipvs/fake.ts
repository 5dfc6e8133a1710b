// An in-memory IPVS table with the kernel's semantics, for tests that run
// without root or without a kernel that has IP_VS. The conformance suite runs
// the same scenarios against it and against the kernel.

import { inetAddrBytes, inetAddrText } from './address.js';
import { IpvsError, requestText, type DestKey, type DestSpec, type IpvsClient, type ObservedDest, type ServiceKey, type ServiceSpec } from './types.js';

/** The schedulers a 6.1 kernel builds as modules. */
export const KERNEL_SCHEDULERS: ReadonlySet<string> = new Set(['rr', 'wrr', 'lc', 'wlc', 'fo', 'ovf', 'lblc', 'lblcr', 'dh', 'sh', 'mh', 'sed', 'nq']);

const INT_MAX = 0x7fffffff;

/** Canonical address text, so `::1` and `0:0::1` name one service as they do in the kernel. */
function canonical(family: 4 | 6, address: string): string {
  return inetAddrText(family, inetAddrBytes(family, address));
}

function keyOf(key: ServiceKey): string {
  return key.kind === 'fwmark'
    ? `fwmark/${key.family}/${key.fwmark}`
    : `addr/${key.family}/${key.protocol}/${canonical(key.family, key.address)}/${key.port}`;
}

function normalKey(key: ServiceKey): ServiceKey {
  return key.kind === 'fwmark' ? { ...key } : { ...key, address: canonical(key.family, key.address) };
}

interface Entry {
  spec: ServiceSpec;
  /** Real servers by canonical `address/port`, in the order they were added. */
  dests: Map<string, DestSpec>;
}

export class FakeIpvs implements IpvsClient {
  private readonly table = new Map<string, Entry>();
  /** Requests served, as the kernel client counts messages sent. */
  requests = 0;

  async services(): Promise<ServiceSpec[]> {
    this.requests++;
    return [...this.table.values()].map((e) => ({ ...e.spec }));
  }

  async dests(service: ServiceKey): Promise<ObservedDest[]> {
    this.requests++;
    const entry = this.table.get(keyOf(service));
    return [...(entry?.dests.values() ?? [])].map((d) => ({ ...d, activeConns: 0, inactiveConns: 0, persistentConns: 0 }));
  }

  async addService(service: ServiceSpec): Promise<void> {
    const what = requestText.addService(service.key);
    this.requests++;
    const id = keyOf(service.key);
    if (this.table.has(id)) throw new IpvsError('EEXIST', what);
    this.checkService(service, what);
    this.table.set(id, { spec: { ...service, key: normalKey(service.key) }, dests: new Map() });
  }

  async updateService(service: ServiceSpec): Promise<void> {
    const what = requestText.updateService(service.key);
    const entry = this.find(service.key, what);
    this.checkService(service, what);
    entry.spec = { ...service, key: entry.spec.key };
  }

  async deleteService(service: ServiceKey): Promise<void> {
    this.find(service, requestText.deleteService(service));
    this.table.delete(keyOf(service));
  }

  async addDest(service: ServiceKey, dest: DestSpec): Promise<void> {
    const what = requestText.addDest(service, dest);
    const entry = this.find(service, what);
    checkDest(dest, what);
    const id = destId(service, dest);
    if (entry.dests.has(id)) throw new IpvsError('EEXIST', what);
    if (!unicast(service.family, dest.address)) throw new IpvsError('EINVAL', what);
    entry.dests.set(id, { ...dest, address: canonical(service.family, dest.address) });
  }

  async updateDest(service: ServiceKey, dest: DestSpec): Promise<void> {
    const what = requestText.updateDest(service, dest);
    const entry = this.find(service, what);
    checkDest(dest, what);
    const id = destId(service, dest);
    if (!entry.dests.has(id)) throw new IpvsError('ENOENT', what);
    entry.dests.set(id, { ...dest, address: canonical(service.family, dest.address) });
  }

  async deleteDest(service: ServiceKey, dest: DestKey): Promise<void> {
    const what = requestText.deleteDest(service, dest);
    const entry = this.find(service, what);
    if (!entry.dests.delete(destId(service, dest))) throw new IpvsError('ENOENT', what);
  }

  async flush(): Promise<void> {
    this.requests++;
    this.table.clear();
  }

  close(): void {}

  /** Counts the request and finds its service: the kernel answers ESRCH when there is none. */
  private find(key: ServiceKey, what: string): Entry {
    this.requests++;
    const entry = this.table.get(keyOf(key));
    if (!entry) throw new IpvsError('ESRCH', what);
    return entry;
  }

  private checkService(service: ServiceSpec, what: string): void {
    // The kernel loads ip_vs_<name> on demand and answers ENOENT when there is no such module.
    if (!KERNEL_SCHEDULERS.has(service.scheduler)) throw new IpvsError('ENOENT', what);
    // An IPv6 persistence netmask is a prefix length.
    if (service.key.family === 6 && (service.netmask < 1 || service.netmask > 128)) throw new IpvsError('EINVAL', what);
  }
}

function destId(service: ServiceKey, dest: DestKey): string {
  return `${canonical(service.family, dest.address)}/${dest.port}`;
}

/** What the kernel accepts as a new real server: not a zero, multicast or broadcast address. */
function unicast(family: 4 | 6, address: string): boolean {
  const bytes = inetAddrBytes(family, address);
  if (family === 6) return bytes[0] !== 0xff && !bytes.equals(Buffer.alloc(16));
  return bytes[0] !== 0 && (bytes[0]! < 224 || bytes[0]! > 239) && address !== '255.255.255.255';
}

function checkDest(dest: DestSpec, what: string): void {
  // The kernel holds weights and thresholds as signed ints, and wants lower <= upper.
  if (dest.weight > INT_MAX || dest.lowerThreshold > dest.upperThreshold) throw new IpvsError('ERANGE', what);
}
