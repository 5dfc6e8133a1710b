import type { ServiceGroup } from './group.js';

/** Joins a cluster's endpoints in one string; `ip:port` never contains it. */
const SEPARATOR = ',';

/**
 * Which endpoints each group uses, by cluster: the probe targets, and the
 * groups a health verdict touches. Per group, cluster names alternate with
 * that cluster's endpoints joined into one string (`ip:port,ip:port`, in
 * model order, duplicates kept): one string per cluster instead of one per
 * endpoint, for every group of the cluster. The representation stays in here.
 */
export class EndpointIndex {
  private readonly entries = new Map<string, string[]>();

  /** Records the endpoints of the group as built now (none when it is gone). */
  set(key: string, group: ServiceGroup | null): void {
    this.entries.delete(key);
    if (!group) return;
    const byCluster = new Map<string, string[]>();
    for (const fe of [...group.frontends, ...(group.local ? [group.local] : [])]) {
      for (const port of fe.ports) {
        for (const ep of port.endpoints) {
          const list = byCluster.get(ep.cluster) ?? [];
          if (list.length === 0) byCluster.set(ep.cluster, list);
          list.push(`${ep.ip}:${ep.port}`);
        }
      }
    }
    if (byCluster.size === 0) return;
    const entry: string[] = [];
    for (const [cluster, eps] of byCluster) entry.push(cluster, eps.join(SEPARATOR));
    this.entries.set(key, entry);
  }

  /** Endpoints per cluster, deduplicated across groups. */
  byCluster(): Map<string, string[]> {
    const sets = new Map<string, Set<string>>();
    for (const entry of this.entries.values()) {
      for (let i = 0; i < entry.length; i += 2) {
        const cluster = entry[i]!;
        let set = sets.get(cluster);
        if (!set) sets.set(cluster, (set = new Set()));
        for (const ep of entry[i + 1]!.split(SEPARATOR)) set.add(ep);
      }
    }
    return new Map([...sets].map(([cluster, set]) => [cluster, [...set]]));
  }

  /** Groups with an endpoint in `cluster` (kind cluster) or at `ip:port` (kind endpoint). */
  groupsUsing(kind: 'cluster' | 'endpoint', target: string): string[] {
    const keys: string[] = [];
    for (const [key, entry] of this.entries) {
      for (let i = 0; i < entry.length; i += 2) {
        if (kind === 'cluster' ? entry[i] === target : listHas(entry[i + 1]!, target)) {
          keys.push(key);
          break;
        }
      }
    }
    return keys;
  }
}

/** Whether `target` is one of the items of a list joined with SEPARATOR. */
function listHas(joined: string, target: string): boolean {
  if (target === '') return false;
  for (let at = joined.indexOf(target); at !== -1; at = joined.indexOf(target, at + 1)) {
    const end = at + target.length;
    if ((at === 0 || joined[at - 1] === SEPARATOR) && (end === joined.length || joined[end] === SEPARATOR)) return true;
  }
  return false;
}
