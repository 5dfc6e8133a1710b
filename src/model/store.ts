import type { ServiceRecord, SliceRecord } from './records.js';

/**
 * Indexed records of every Service and EndpointSlice seen. Each mutation
 * returns the service-group keys it affects, which is all the change tracker
 * needs to know.
 */
export class ModelStore {
  private readonly services = new Map<string, ServiceRecord>();
  /** ns/serviceName → slice name → slice. */
  private readonly slicesByService = new Map<string, Map<string, SliceRecord>>();
  /** ns/sliceName → ns/serviceName, to find a slice whose label changed or vanished. */
  private readonly sliceOwner = new Map<string, string>();

  /** Changing it regroups every Service at the next full sync. */
  constructor(public servicePrefix: string) {}

  /** The group a Service name belongs to: `derived-<x>` and `<x>` share group ns/x. */
  groupKeyOf(namespace: string, serviceName: string): string {
    const logical = serviceName.startsWith(this.servicePrefix) ? serviceName.slice(this.servicePrefix.length) : serviceName;
    return `${namespace}/${logical}`;
  }

  service(namespace: string, name: string): ServiceRecord | undefined {
    return this.services.get(`${namespace}/${name}`);
  }

  slicesOf(namespace: string, serviceName: string): Iterable<SliceRecord> {
    return this.slicesByService.get(`${namespace}/${serviceName}`)?.values() ?? [];
  }

  get serviceCount(): number {
    return this.services.size;
  }

  /** Every group with a Service or a slice (slices may arrive before their Service). */
  allGroupKeys(): Set<string> {
    const keys = new Set<string>();
    for (const svc of this.services.values()) keys.add(this.groupKeyOf(svc.namespace, svc.name));
    for (const owner of this.slicesByService.keys()) {
      const slash = owner.indexOf('/');
      keys.add(this.groupKeyOf(owner.slice(0, slash), owner.slice(slash + 1)));
    }
    return keys;
  }

  upsertService(record: ServiceRecord): string[] {
    this.services.set(`${record.namespace}/${record.name}`, record);
    return [this.groupKeyOf(record.namespace, record.name)];
  }

  deleteService(namespace: string, name: string): string[] {
    return this.services.delete(`${namespace}/${name}`) ? [this.groupKeyOf(namespace, name)] : [];
  }

  upsertSlice(record: SliceRecord): string[] {
    const affected = this.deleteSlice(record.namespace, record.name);
    const owner = `${record.namespace}/${record.serviceName}`;
    let slices = this.slicesByService.get(owner);
    if (!slices) this.slicesByService.set(owner, (slices = new Map()));
    slices.set(record.name, record);
    this.sliceOwner.set(`${record.namespace}/${record.name}`, owner);
    const key = this.groupKeyOf(record.namespace, record.serviceName);
    return affected.includes(key) ? affected : [...affected, key];
  }

  deleteSlice(namespace: string, name: string): string[] {
    const sliceKey = `${namespace}/${name}`;
    const owner = this.sliceOwner.get(sliceKey);
    if (owner === undefined) return [];
    this.sliceOwner.delete(sliceKey);
    const slices = this.slicesByService.get(owner)!;
    slices.delete(name);
    if (slices.size === 0) this.slicesByService.delete(owner);
    return [this.groupKeyOf(namespace, owner.slice(namespace.length + 1))];
  }
}
