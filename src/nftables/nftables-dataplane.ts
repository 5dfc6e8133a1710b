// The nftables data plane behind the engine's Dataplane seam: selections
// become element states (plan), the agent's table is read back (observe), the
// difference is element operations per group (diff, diffGroup) sent as one
// atomic nf_tables batch (apply). The skeleton is written only when a full
// diff finds it missing or different. Its fake is the same class over
// FakeNftables.

import { familyOfAddress, familySelection, type FrontendSelection, type GroupSelection, type IPFamily } from '../selection/selection.js';
import type { ApplyOutcome, ApplyStats, Dataplane, DataplaneSettings, FrontendDescription, GroupText, KernelState, ServiceName } from '../sync/dataplane.js';
import { nftablesGroupText } from './explain-text.js';
import { NftError, type NftablesClient, type NftOp, type ObservedTable } from './client.js';
import { decode } from './codec.js';
import { checkSkeleton, diffTableByGroup, STALE_PART, toOps, type SkeletonCheck } from './dataplane.js';
import { diffGroup as diffGroupElements } from './diff.js';
import { FAMILY, planSkeleton, SET_BY_NAME, shardOf, shardSet, SLOTS, TABLE, type Skeleton } from './layout.js';
import { CLUSTERSET_COMMENT, planNftGroup, type NftGroup, type NftPort } from './plan.js';
import { renderSkeletonScript } from './render.js';
import { slotCounts } from './slots.js';
import { SEPARATOR } from './codec.js';

/** The table read back, attributed on demand to the groups of a desired state. */
export interface NftablesKernel extends KernelState<NftGroup> {
  readonly observed: ObservedTable | null;
  readonly skeleton: SkeletonCheck;
}

/** One group's (or the skeleton's, key '') element operations. */
export interface NftPart {
  readonly key: string;
  readonly ops: readonly NftOp[];
}

export interface NftablesTransaction {
  readonly keys: readonly string[];
  /** Written before the elements: the table is missing or its skeleton differs. */
  readonly skeleton: Skeleton | null;
  /** The table holds a set of ours with another type: deleted first. */
  readonly recreate: boolean;
  readonly parts: readonly NftPart[];
}

export const SKELETON_KEY = '';
export const STALE_KEY = STALE_PART;

const NO_SETTINGS: DataplaneSettings = { clusterCIDR: '', localCluster: '', masqueradeBit: 14, maxChainsPerRestore: Infinity };

function transaction(parts: readonly NftPart[], skeleton: Skeleton | null = null, recreate = false): NftablesTransaction {
  const keys = [...(skeleton ? [SKELETON_KEY] : []), ...parts.map((p) => p.key)];
  return { keys, skeleton, recreate, parts };
}

function countElements(ops: readonly NftOp[]): number {
  let n = 0;
  for (const op of ops) {
    if (op.op === 'addElements' || op.op === 'deleteElements') n += op.elements.length;
    else if (op.op === 'addPacked' || op.op === 'deletePacked') n += op.keys.length / (4 * SET_BY_NAME.get(op.set)!.key.length);
  }
  return n;
}

export class NftablesDataplane implements Dataplane<NftGroup, NftablesKernel, NftablesTransaction> {
  readonly name = 'nftables';
  readonly family: IPFamily = 'ipv4';
  private settings: DataplaneSettings = NO_SETTINGS;

  constructor(private readonly client: NftablesClient, settings?: DataplaneSettings) {
    if (settings) this.settings = settings;
  }

  configure(settings: DataplaneSettings): void {
    this.settings = settings;
  }

  private skeleton(): Skeleton {
    return planSkeleton({ clusterCIDR: this.settings.clusterCIDR });
  }

  plan(selection: GroupSelection): NftGroup | undefined {
    if (selection.settings.mode === 'off') return undefined;
    return planNftGroup(selection.key, familySelection(selection, this.family).frontends, { localCluster: this.settings.localCluster });
  }

  async observe(desired: ReadonlyMap<string, NftGroup>): Promise<NftablesKernel> {
    const observed = await this.client.read();
    const skeleton = checkSkeleton(observed, this.skeleton());
    let index: KernelIndex | null = null;
    return {
      observed,
      skeleton,
      group: (key) => {
        const want = desired.get(key);
        if (!want || !observed) return undefined;
        index ??= new KernelIndex(observed);
        return index.group(key, want.ports);
      },
    };
  }

  diff(last: NftablesKernel | null, desired: ReadonlyMap<string, NftGroup>): NftablesTransaction {
    const check = last ? last.skeleton : { writeSkeleton: true, recreate: false };
    const observed = last && !check.recreate ? last.observed : null;
    const parts = diffTableByGroup(observed, desired);
    return transaction(parts, check.writeSkeleton || check.recreate ? this.skeleton() : null, check.recreate);
  }

  diffGroup(key: string, last: NftGroup | undefined, next: NftGroup | undefined): NftablesTransaction {
    const ops = toOps(diffGroupElements(last, next));
    return transaction(ops.length > 0 ? [{ key, ops }] : []);
  }

  merge(parts: readonly NftablesTransaction[]): NftablesTransaction {
    const skeleton = parts.find((p) => p.skeleton)?.skeleton ?? null;
    return transaction(parts.flatMap((p) => p.parts), skeleton, parts.some((p) => p.recreate));
  }

  /**
   * One atomic batch, deletions before additions. When the kernel refuses an
   * operation, the parts before the one holding it are applied in a second
   * batch, so the outcome reads as "stopped at the refused part".
   */
  async apply(tx: NftablesTransaction): Promise<ApplyOutcome> {
    let restores = 0;
    const written = tx.parts.reduce((n, p) => n + countElements(p.ops), 0);
    const stats = (): ApplyStats => ({ restores, payloadBytes: 0, chainsWritten: written, units: tx.keys.length });
    try {
      if (tx.recreate) {
        await this.client.commit([{ op: 'deleteTable' }]).catch((err: unknown) => {
          if (!(err instanceof NftError && err.code === 'ENOENT')) throw err;
        });
        restores++;
      }
      if (tx.skeleton) {
        await this.client.writeSkeleton(tx.skeleton);
        restores++;
      }
    } catch (error) {
      return { stats: stats(), refused: { kind: 'error', error } };
    }
    const { ops, owner } = ordered(tx.parts);
    if (ops.length === 0) return { stats: stats(), refused: null };
    try {
      await this.client.commit(ops);
      restores++;
      return { stats: stats(), refused: null };
    } catch (error) {
      if (!(error instanceof NftError) || error.opIndex < 0) return { stats: stats(), refused: { kind: 'error', error } };
      const blamedPart = owner[error.opIndex]!;
      const before = ordered(tx.parts.slice(0, blamedPart));
      if (before.ops.length > 0) {
        try {
          await this.client.commit(before.ops);
          restores++;
        } catch (again) {
          return { stats: stats(), refused: { kind: 'error', error: again } };
        }
      }
      const rest = tx.parts.slice(blamedPart).map((p) => p.key).filter(isGroupKey);
      const blamed = tx.parts[blamedPart]!.key;
      return {
        stats: stats(),
        refused: { kind: 'refused', error, groups: rest, blamed: isGroupKey(blamed) ? blamed : null, reason: `${error.code}: ${error.message.replace(/^nf_tables batch: /, '')}` },
      };
    }
  }

  async works(): Promise<boolean> {
    try {
      await this.client.read();
      return true;
    } catch {
      return false;
    }
  }

  async cleanup(): Promise<ApplyStats> {
    try {
      await this.client.commit([{ op: 'deleteTable' }]);
      return { restores: 1, payloadBytes: 0, chainsWritten: 1, units: 1 };
    } catch (err) {
      if (err instanceof NftError && err.code === 'ENOENT') return { restores: 0, payloadBytes: 0, chainsWritten: 0, units: 0 };
      throw err;
    }
  }

  /** The transaction as nft commands: the skeleton script, then element deletions and additions. */
  render(tx: NftablesTransaction): string {
    const lines: string[] = [];
    if (tx.recreate) lines.push(`delete table ${FAMILY} ${TABLE}`);
    const head = tx.skeleton ? renderSkeletonScript(tx.skeleton) : '';
    for (const op of ordered(tx.parts).ops) lines.push(...renderOp(op));
    return head + (lines.length > 0 ? `${lines.join('\n')}\n` : '');
  }

  adopt(key: string, frontends: readonly Pick<FrontendSelection, 'name' | 'protocol'>[], kernel: NftablesKernel): NftGroup | undefined {
    if (!kernel.observed) return undefined;
    const index = new KernelIndex(kernel.observed);
    const ports: NftPort[] = [];
    for (const fe of frontends) {
      const name = `${fe.name.namespace}/${fe.name.service}:${fe.name.port}`;
      for (const frontend of index.byName.get(`${name}/${fe.protocol.toLowerCase()}`) ?? []) ports.push({ ...frontend, name });
    }
    return ports.length === 0 ? undefined : index.group(key, ports);
  }

  owned(desired: ReadonlyMap<string, NftGroup>): { chains: number; rules: number } {
    const skeleton = this.skeleton();
    let elements = 0;
    for (const g of desired.values()) for (const p of g.ports) elements += 2 + (p.slots.length > 0 ? p.slots.length + 1 + p.localIPs.length + (p.affinity ? 1 : 0) : 0);
    return { chains: skeleton.chains.length, rules: skeleton.chains.reduce((n, c) => n + c.rules.length, 0) + elements };
  }

  written(tx: NftablesTransaction): { group: string; name: string }[] {
    return tx.parts.flatMap((p) => [...new Set(p.ops.map((op) => ('set' in op ? op.set : TABLE)))].map((name) => ({ group: p.key, name })));
  }

  /** The frontend's slot map and each endpoint's share: its slot count of 64. */
  describe(fe: FrontendSelection): FrontendDescription {
    const counts = slotCounts(fe.endpoints.map((ep) => ({ id: `${ep.ip}:${ep.port}`, weight: ep.weight })));
    const shares = new Map<string, number>();
    fe.endpoints.forEach((ep, i) => shares.set(`${ep.cluster} ${ep.ip}:${ep.port}`, counts[i]! / SLOTS));
    const key = [fe.ip, fe.protocol.toLowerCase(), fe.port].join(SEPARATOR);
    return { handle: fe.endpoints.length === 0 ? `no_endpoints ${key}` : `${shardSet(shardOf(fe.ip))} ${key}`, shares };
  }

  /** The agent's table as read back (`table` null: it does not exist). */
  async readForExplain(): Promise<ExplainRead> {
    return { table: await this.client.read() };
  }

  /** The group's elements, planned and in `kernel` (a readForExplain() value; null: unreadable). */
  explainGroup(selection: GroupSelection, services: readonly ServiceName[], kernel: unknown): GroupText {
    const planned = planNftGroup(selection.key, familySelection(selection, this.family).frontends, { localCluster: this.settings.localCluster });
    return nftablesGroupText(planned, services.filter((s) => familyOfAddress(s.clusterIP) === this.family), isExplainRead(kernel) ? kernel.table : undefined);
  }
}

/** What readForExplain() read: the table, null when it does not exist. */
export interface ExplainRead {
  readonly table: ObservedTable | null;
}

function isExplainRead(value: unknown): value is ExplainRead {
  return typeof value === 'object' && value !== null && 'table' in value;
}

/** Group keys, as opposed to the skeleton's and the stale elements' parts. */
function isGroupKey(key: string): boolean {
  return key !== SKELETON_KEY && key !== STALE_KEY;
}

/**
 * All deletions, then all additions (a key moving between groups is deleted
 * before it is added), each set's operations next to each other; the part of
 * each op. The kernel commits a batch whose element messages alternate
 * between sets slower: the 30,000 messages of a cold start at 10,000
 * services took 1.7–2.3 s of kernel time interleaved by group, 0.9–1.4 s
 * grouped by set, in runs here.
 */
function ordered(parts: readonly NftPart[]): { ops: NftOp[]; owner: number[] } {
  const ops: NftOp[] = [];
  const owner: number[] = [];
  for (const deleting of [true, false]) {
    const bySet = new Map<string, { op: NftOp; part: number }[]>();
    parts.forEach((p, i) => {
      for (const op of p.ops) {
        const isDelete = op.op === 'deleteElements' || op.op === 'deletePacked' || op.op === 'deleteTable' || op.op === 'flushSet';
        if (isDelete !== deleting) continue;
        const set = 'set' in op ? op.set : '';
        let list = bySet.get(set);
        if (!list) bySet.set(set, (list = []));
        list.push({ op, part: i });
      }
    });
    for (const list of bySet.values()) {
      for (const { op, part } of list) {
        ops.push(op);
        owner.push(part);
      }
    }
  }
  return { ops, owner };
}

function renderOp(op: NftOp): string[] {
  const verb = op.op === 'addElements' || op.op === 'addPacked' ? 'add' : 'delete';
  if (op.op === 'deleteTable') return [`delete table ${FAMILY} ${TABLE}`];
  if (op.op === 'flushSet') return [`flush set ${FAMILY} ${TABLE} ${op.set}`];
  const spec = SET_BY_NAME.get(op.set)!;
  const items: string[] = [];
  if ('keys' in op) {
    const kl = 4 * spec.key.length;
    const dl = 4 * spec.data.length;
    for (let i = 0; i < op.keys.length / kl; i++) {
      const key = decode(spec.key, op.keys.subarray(i * kl, (i + 1) * kl));
      items.push(verb === 'add' && dl > 0 && op.data ? `${key} : ${decode(spec.data, op.data.subarray(i * dl, (i + 1) * dl))}` : key);
    }
  } else {
    for (const e of op.elements) items.push(`${e.key}${verb === 'add' && e.comment ? ` comment "${e.comment}"` : ''}${verb === 'add' && e.data !== undefined ? ` : ${e.data}` : ''}`);
  }
  return items.length === 0 ? [] : [`${verb} element ${FAMILY} ${TABLE} ${op.set} { ${items.join(', ')} }`];
}

/** The observed table indexed by frontend: slots, affinity, hairpin and names. */
class KernelIndex {
  private readonly slots = new Map<string, string[]>();
  private readonly affinity = new Set<string>();
  private readonly hairpin = new Map<string, string[]>();
  private readonly rejected = new Set<string>();
  /** `namespace/service:port/protocol` → its ports (ClusterIP, ClusterSet IPs) as service_ports names them. */
  readonly byName = new Map<string, NftPort[]>();

  constructor(observed: ObservedTable) {
    for (const s of observed.sets) {
      if (s.name.startsWith('slots-')) {
        for (const e of s.elements) {
          const at = e.key.lastIndexOf(SEPARATOR);
          const frontend = e.key.slice(0, at);
          const slot = Number(e.key.slice(at + SEPARATOR.length));
          let list = this.slots.get(frontend);
          if (!list) this.slots.set(frontend, (list = []));
          if (e.data) list[slot] = e.data.replace(SEPARATOR, ':');
        }
      } else if (s.name === 'affinity') {
        for (const e of s.elements) this.affinity.add(e.key);
      } else if (s.name === 'no_endpoints') {
        for (const e of s.elements) this.rejected.add(e.key);
      } else if (s.name === 'hairpin') {
        for (const e of s.elements) {
          const [ip, clusterIP] = e.key.split(SEPARATOR) as [string, string];
          this.hairpin.set(clusterIP, [...(this.hairpin.get(clusterIP) ?? []), ip]);
        }
      }
    }
    const ports = observed.sets.find((s) => s.name === 'service_ports');
    for (const e of ports?.elements ?? []) {
      const [clusterIP, protocol, portText] = e.key.split(SEPARATOR) as [string, NftPort['protocol'], string];
      if (!e.comment) continue;
      const clusterset = e.comment.endsWith(` ${CLUSTERSET_COMMENT}`);
      const name = clusterset ? e.comment.slice(0, -CLUSTERSET_COMMENT.length - 1) : e.comment;
      const port: NftPort = { clusterIP, clusterset, protocol, port: Number(portText), name, affinity: false, slots: [], localIPs: [] };
      this.byName.set(`${name}/${protocol}`, [...(this.byName.get(`${name}/${protocol}`) ?? []), port]);
    }
  }

  /** What the kernel holds for these ports, as a group state; undefined when it holds nothing of them. */
  group(key: string, ports: readonly NftPort[]): NftGroup | undefined {
    const out: NftPort[] = [];
    for (const p of ports) {
      const frontend = [p.clusterIP, p.protocol, p.port].join(SEPARATOR);
      const slots = this.slots.get(frontend) ?? [];
      const complete = slots.length === SLOTS && slots.every((s) => s !== undefined);
      if (!complete && !this.rejected.has(frontend)) continue;
      out.push({
        ...p,
        affinity: this.affinity.has(frontend),
        slots: complete ? slots : [],
        localIPs: (this.hairpin.get(p.clusterIP) ?? []).sort(),
      });
    }
    return out.length === 0 ? undefined : { key, ports: out };
  }
}
