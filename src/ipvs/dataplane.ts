// The IPVS data plane: per frontend (ClusterIP:port, and the port's ClusterSet
// IPs, marked alike) one virtual service
// keyed by a firewall mark of the agent's own (IPVS consults fwmark services
// before address services, so kube-proxy's service for the same ClusterIP:port
// stays in the table, untouched and unused), whose real servers are the
// selection's endpoints with the selection's weights as exact integers.
//
// plan turns a selection into values; observe reads the kernel's table back
// and keeps only services carrying the agent's marks; diff and diffGroup give
// the fewest requests from one state to the other (a weight change is one
// request whatever the table's size); apply sends them through the netlink
// client (or the fake). A TCP real server leaving the selection is first set
// to weight 0, so its connections finish, and deleted by `sweep` once it has
// no connections left or its drain bound has passed; a UDP one is deleted at
// once. The rules IPVS mode needs beside the table (marking, ACCEPT ahead of
// kube-proxy, masquerade, reject, the local route) are desired-state values
// from aux.ts, rendered with the table for a dry run.

import { familyOfAddress, familySelection, type FrontendSelection, type GroupSelection, type IPFamily } from '../selection/selection.js';
import type { ApplyOutcome, ApplyStats, Dataplane, DataplaneSettings, FrontendDescription, GroupText, KernelState, Refusal, ServiceName } from '../sync/dataplane.js';
import { auxState, renderAux, type AuxFrontend, type AuxState } from './aux.js';
import { ipvsGroupText, isIpvsExplainRead, type IpvsExplainRead } from './explain-text.js';
import { frontendIdentity, isAgentMark, MarkAllocator, markHex, preferredMark } from './marks.js';
import { destLine, renderIpvsadmSave, serviceArgs, serviceLine, type IpvsTableEntry } from './save-format.js';
import { hostPort, IpvsError, sameDest, sameService, serviceText, type DestKey, type DestSpec, type IpvsClient, type ObservedDest, type ServiceKey, type ServiceSpec } from './types.js';
import { integerWeights } from './weights.js';

const IP_VS_SVC_F_PERSISTENT = 0x0001;
const FULL_NETMASK = 0xffffffff;

/** One frontend's desired (or observed) IPVS state. */
export interface IpvsFrontend {
  /** `namespace/service:port/protocol`: what the mark is derived from. */
  readonly id: string;
  readonly mark: number;
  /** The ClusterIP; empty for a frontend adopted from the kernel, which does not know it. */
  readonly ip: string;
  /** ClusterSet IPs of the same port: marked for the same virtual service. */
  readonly clustersetIPs: readonly string[];
  readonly port: number;
  readonly protocol: string;
  readonly comment: string;
  /** Null: no virtual service (no usable endpoint, the frontend is rejected). */
  readonly service: ServiceSpec | null;
  /** Real servers by address and port. */
  readonly dests: readonly DestSpec[];
}

export interface IpvsGroup {
  readonly key: string;
  readonly frontends: readonly IpvsFrontend[];
}

export type IpvsOp =
  | { readonly op: 'addService'; readonly service: ServiceSpec }
  | { readonly op: 'updateService'; readonly service: ServiceSpec }
  | { readonly op: 'deleteService'; readonly key: ServiceKey }
  | { readonly op: 'addDest'; readonly key: ServiceKey; readonly dest: DestSpec }
  /** `drain`: the weight-0 step of a removal; the real server is deleted later. */
  | { readonly op: 'updateDest'; readonly key: ServiceKey; readonly dest: DestSpec; readonly drain?: boolean }
  | { readonly op: 'deleteDest'; readonly key: ServiceKey; readonly dest: DestKey };

export interface IpvsPart {
  readonly key: string;
  readonly ops: readonly IpvsOp[];
}

export interface IpvsTransaction {
  readonly keys: readonly string[];
  readonly parts: readonly IpvsPart[];
  /** From an empty kernel (diff from null): the whole table, rendered as `ipvsadm -Sn` prints it. */
  readonly initial: readonly IpvsTableEntry[] | null;
  /** The rules beside the table, for a full diff. */
  readonly aux: AuxState | null;
}

interface KernelEntry {
  readonly service: ServiceSpec;
  readonly dests: readonly ObservedDest[];
}

/** The agent's services in the kernel, attributed to the desired groups' frontends by mark. */
export interface IpvsKernel extends KernelState<IpvsGroup> {
  readonly services: ReadonlyMap<number, KernelEntry>;
  /** Owned marks no desired frontend holds. */
  readonly stale: readonly number[];
}

export interface IpvsDataplaneOptions {
  /** Scheduler of every virtual service (default wrr). */
  readonly scheduler?: string;
  /** Longest a removed TCP real server keeps its connections at weight 0 before it is deleted (default 900 s). */
  readonly drainBoundMs?: number;
  readonly now?: () => number;
}

export const DEFAULT_SCHEDULER = 'wrr';
export const DEFAULT_DRAIN_BOUND_MS = 900_000;
/** The key of sweep's deletions and of deletions of owned services no group holds. */
export const DRAIN_KEY = '~drain';

/** What a sweep did: its apply's outcome and the real servers it deleted, idle or past their drain bound (0 when refused). */
export interface SweepResult {
  readonly outcome: ApplyOutcome;
  readonly idle: number;
  readonly bound: number;
}

const destId = (d: DestKey) => `${d.address}/${d.port}`;
const fwmarkKey = (family: 4 | 6, mark: number): ServiceKey => ({ kind: 'fwmark', family, fwmark: mark });

function compareDest(a: DestKey, b: DestKey): number {
  const pa = a.address.split('.').map(Number);
  const pb = b.address.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0 && !Number.isNaN(d)) return d;
  }
  return a.address.localeCompare(b.address) || a.port - b.port;
}

function isGroupKey(key: string): boolean {
  return key !== '' && !key.startsWith('~');
}

interface Drain {
  readonly key: ServiceKey;
  readonly dest: DestKey;
  readonly until: number;
}

export class IpvsDataplane implements Dataplane<IpvsGroup, IpvsKernel, IpvsTransaction> {
  readonly name = 'ipvs';
  readonly family: IPFamily = 'ipv4';
  private readonly scheduler: string;
  private readonly drainBoundMs: number;
  private readonly now: () => number;
  private readonly marks = new MarkAllocator();
  /** Real servers at weight 0 waiting to be deleted, by mark and `address/port`. */
  private readonly drains = new Map<number, Map<string, Drain>>();

  constructor(private readonly client: IpvsClient, options: IpvsDataplaneOptions = {}) {
    this.scheduler = options.scheduler ?? DEFAULT_SCHEDULER;
    this.drainBoundMs = options.drainBoundMs ?? DEFAULT_DRAIN_BOUND_MS;
    this.now = options.now ?? Date.now;
  }

  configure(_settings: DataplaneSettings): void {
    // Marks, routing table and scheduler are the data plane's own; nothing in the shared settings changes them.
  }

  /** The mark a frontend's packets carry. */
  markOf(fe: Pick<FrontendSelection, 'name' | 'protocol'>): number {
    return this.marks.markOf(frontendIdentity(fe));
  }

  /** One frontend per port: its ClusterSet IPs select alike, so they share its mark and virtual service. */
  plan(selection: GroupSelection): IpvsGroup | undefined {
    if (selection.settings.mode === 'off') return undefined;
    const byId = new Map<string, IpvsFrontend>();
    for (const fe of familySelection(selection, this.family).frontends) {
      const id = frontendIdentity(fe);
      const planned = byId.get(id);
      if (!planned) byId.set(id, this.planFrontend(fe));
      else if (fe.kind === 'clusterset-ip') byId.set(id, { ...planned, clustersetIPs: [...planned.clustersetIPs, fe.ip] });
    }
    return { key: selection.key, frontends: [...byId.values()] };
  }

  private planFrontend(fe: FrontendSelection, mark = this.marks.markOf(frontendIdentity(fe))): IpvsFrontend {
    const id = frontendIdentity(fe);
    const family = fe.family === 'ipv6' ? 6 : 4;
    const weights = integerWeights(fe.endpoints.map((e) => e.weight));
    const dests = fe.endpoints
      .map((e, i): DestSpec => ({ address: e.ip, port: e.port, weight: weights[i]!, forward: 'masq', upperThreshold: 0, lowerThreshold: 0 }))
      .sort(compareDest);
    const service: ServiceSpec | null = dests.length === 0 ? null : {
      key: fwmarkKey(family, mark),
      scheduler: this.scheduler,
      flags: fe.affinity === null ? 0 : IP_VS_SVC_F_PERSISTENT,
      timeout: fe.affinity ?? 0,
      netmask: family === 6 ? 128 : FULL_NETMASK,
    };
    const comment = `${fe.name.namespace}/${fe.name.service}:${fe.name.port}`;
    return { id, mark, ip: fe.ip, clustersetIPs: [], port: fe.port, protocol: fe.protocol.toLowerCase(), comment, service, dests };
  }

  async observe(desired: ReadonlyMap<string, IpvsGroup>): Promise<IpvsKernel> {
    const owned = (await this.client.services()).filter((s) => s.key.kind === 'fwmark' && isAgentMark(s.key.fwmark));
    const entries = await Promise.all(owned.map(async (service) => ({ service, dests: await this.client.dests(service.key) })));
    const services = new Map<number, KernelEntry>();
    for (const e of entries) services.set((e.service.key as { fwmark: number }).fwmark >>> 0, e);
    const held = new Set<number>();
    const groups = new Map<string, IpvsGroup>();
    for (const [key, group] of desired) {
      const frontends = group.frontends.map((fe): IpvsFrontend => {
        held.add(fe.mark);
        const entry = services.get(fe.mark);
        return { ...fe, service: entry?.service ?? null, dests: entry ? [...entry.dests].map(destSpec).sort(compareDest) : [] };
      });
      groups.set(key, { key, frontends });
    }
    const stale = [...services.keys()].filter((m) => !held.has(m)).sort((a, b) => a - b);
    return { services, stale, group: (key) => groups.get(key) };
  }

  diff(last: IpvsKernel | null, desired: ReadonlyMap<string, IpvsGroup>): IpvsTransaction {
    const parts: IpvsPart[] = [];
    for (const [key, next] of desired) {
      const ops = this.diffFrontends(last?.group(key)?.frontends ?? [], next.frontends);
      if (ops.length > 0) parts.push({ key, ops });
    }
    for (const mark of last?.stale ?? []) {
      const entry = last!.services.get(mark)!;
      parts.push({ key: `~${markHex(mark)}`, ops: [{ op: 'deleteService', key: entry.service.key }] });
    }
    const frontends = [...desired.values()].flatMap((g) => g.frontends);
    const initial = last === null ? frontends.flatMap((fe) => (fe.service ? [{ service: fe.service, dests: fe.dests }] : [])) : null;
    return { keys: parts.map((p) => p.key), parts, initial, aux: auxState(frontends.flatMap(auxFrontends)) };
  }

  diffGroup(key: string, last: IpvsGroup | undefined, next: IpvsGroup | undefined): IpvsTransaction {
    const before = last?.frontends ?? [];
    const after = next?.frontends ?? [];
    const kept = new Set(after.map((fe) => fe.id));
    for (const fe of before) if (!kept.has(fe.id)) this.marks.release(fe.id);
    const ops = this.diffFrontends(before, after);
    const parts = ops.length > 0 ? [{ key, ops }] : [];
    return { keys: parts.map((p) => p.key), parts, initial: null, aux: null };
  }

  /** The requests taking the kernel from `last` to `next`, frontends matched by mark. */
  private diffFrontends(last: readonly IpvsFrontend[], next: readonly IpvsFrontend[]): IpvsOp[] {
    const ops: IpvsOp[] = [];
    const before = new Map(last.map((fe) => [fe.mark, fe]));
    const after = new Map(next.map((fe) => [fe.mark, fe]));
    for (const fe of last) {
      if (fe.service && !after.get(fe.mark)?.service) ops.push({ op: 'deleteService', key: fe.service.key });
    }
    for (const fe of next) {
      const old = before.get(fe.mark);
      if (!fe.service) continue;
      if (!old?.service) {
        ops.push({ op: 'addService', service: fe.service });
        for (const dest of fe.dests) ops.push({ op: 'addDest', key: fe.service.key, dest });
        continue;
      }
      if (!sameService(old.service, fe.service)) ops.push({ op: 'updateService', service: fe.service });
      ops.push(...this.diffDests(fe, old.dests));
    }
    return ops;
  }

  private diffDests(fe: IpvsFrontend, oldDests: readonly DestSpec[]): IpvsOp[] {
    const key = fe.service!.key;
    const ops: IpvsOp[] = [];
    const old = new Map(oldDests.map((d) => [destId(d), d]));
    const next = new Set(fe.dests.map(destId));
    const draining = this.drains.get(fe.mark);
    for (const d of oldDests) {
      if (next.has(destId(d))) continue;
      if (fe.protocol === 'udp') ops.push({ op: 'deleteDest', key, dest: { address: d.address, port: d.port } });
      else if (d.weight !== 0 || !draining?.has(destId(d))) ops.push({ op: 'updateDest', key, dest: { ...d, weight: 0 }, drain: true });
    }
    for (const d of fe.dests) {
      const was = old.get(destId(d));
      if (was) {
        if (!sameDest(was, d)) ops.push({ op: 'updateDest', key, dest: d });
      } else if (draining?.has(destId(d))) {
        // Back while draining: the kernel still holds it at weight 0.
        ops.push({ op: 'updateDest', key, dest: d });
      } else {
        ops.push({ op: 'addDest', key, dest: d });
      }
    }
    return ops;
  }

  merge(parts: readonly IpvsTransaction[]): IpvsTransaction {
    const all = parts.flatMap((p) => p.parts);
    return { keys: all.map((p) => p.key), parts: all, initial: null, aux: null };
  }

  /**
   * Sends every part's requests: parts concurrently (the client bounds the
   * requests in flight), each service's requests in order. Requests are
   * idempotent where the kernel's answer says the change is already there (a
   * service or real server that exists is updated, one that is gone is not
   * deleted again), so a part retried after a partial apply converges. The
   * first part in order with a refused request is reported; the parts before
   * it applied.
   */
  async apply(t: IpvsTransaction): Promise<ApplyOutcome> {
    const start = this.requestCount();
    const failures = await Promise.all(t.parts.map((part) => this.applyPart(part)));
    const stats: ApplyStats = {
      restores: this.requestCount() - start,
      payloadBytes: 0,
      chainsWritten: t.parts.reduce((n, p) => n + servicesOf(p.ops).size, 0),
      units: t.parts.length,
    };
    const at = failures.findIndex((f) => f !== null);
    if (at < 0) return { stats, refused: null };
    return { stats, refused: refusal(failures[at], t.parts[at]!.key) };
  }

  private requestCount(): number {
    return (this.client as { requests?: number }).requests ?? 0;
  }

  private async applyPart(part: IpvsPart): Promise<unknown> {
    const byService = new Map<string, IpvsOp[]>();
    for (const op of part.ops) {
      const id = serviceText(op.op === 'addService' || op.op === 'updateService' ? op.service.key : op.key);
      let list = byService.get(id);
      if (!list) byService.set(id, (list = []));
      list.push(op);
    }
    const results = await Promise.allSettled([...byService.values()].map(async (ops) => {
      for (const op of ops) await this.send(op);
    }));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    return failed ? failed.reason : null;
  }

  private async send(op: IpvsOp): Promise<void> {
    const c = this.client;
    switch (op.op) {
      case 'addService':
        await tolerate(() => c.addService(op.service), 'EEXIST', () => c.updateService(op.service));
        return;
      case 'updateService':
        await c.updateService(op.service);
        return;
      case 'deleteService':
        await tolerate(() => c.deleteService(op.key), 'ESRCH');
        this.drains.delete(op.key.kind === 'fwmark' ? op.key.fwmark >>> 0 : -1);
        return;
      case 'addDest':
        await tolerate(() => c.addDest(op.key, op.dest), 'EEXIST', () => c.updateDest(op.key, op.dest));
        this.undrain(op.key, op.dest);
        return;
      case 'updateDest':
        await c.updateDest(op.key, op.dest);
        if (op.drain) this.drain(op.key, op.dest);
        else this.undrain(op.key, op.dest);
        return;
      case 'deleteDest':
        await tolerate(() => c.deleteDest(op.key, op.dest), 'ENOENT');
        this.undrain(op.key, op.dest);
        return;
    }
  }

  private drain(key: ServiceKey, dest: DestKey): void {
    if (key.kind !== 'fwmark') return;
    let map = this.drains.get(key.fwmark >>> 0);
    if (!map) this.drains.set(key.fwmark >>> 0, (map = new Map()));
    if (!map.has(destId(dest))) map.set(destId(dest), { key, dest: { address: dest.address, port: dest.port }, until: this.now() + this.drainBoundMs });
  }

  private undrain(key: ServiceKey, dest: DestKey): void {
    if (key.kind !== 'fwmark') return;
    const map = this.drains.get(key.fwmark >>> 0);
    map?.delete(destId(dest));
    if (map?.size === 0) this.drains.delete(key.fwmark >>> 0);
  }

  /** Real servers at weight 0 waiting for their connections to end, as `fwmark 0x… ip:port`. */
  drainingDests(): string[] {
    return [...this.drains.values()].flatMap((m) => [...m.values()].map((d) => `${serviceText(d.key)} ${hostPort(d.dest.address, d.dest.port)}`));
  }

  /**
   * Deletes the draining real servers that have no connection left or whose
   * drain bound has passed: one dump per service with draining servers, one
   * request per deletion.
   */
  async sweep(): Promise<SweepResult> {
    const now = this.now();
    const ops: IpvsOp[] = [];
    let idle = 0;
    let bound = 0;
    for (const [, map] of this.drains) {
      const first = map.values().next().value as Drain;
      const conns = new Map((await this.client.dests(first.key)).map((d) => [destId(d), d.activeConns + d.inactiveConns]));
      for (const d of map.values()) {
        const unused = (conns.get(destId(d.dest)) ?? 0) === 0;
        if (!unused && d.until > now) continue;
        ops.push({ op: 'deleteDest', key: d.key, dest: d.dest });
        if (unused) idle++;
        else bound++;
      }
    }
    const outcome = await this.apply({ keys: ops.length > 0 ? [DRAIN_KEY] : [], parts: ops.length > 0 ? [{ key: DRAIN_KEY, ops }] : [], initial: null, aux: null });
    return outcome.refused ? { outcome, idle: 0, bound: 0 } : { outcome, idle, bound };
  }

  /** Real servers at weight 0 waiting to be deleted. */
  draining(): number {
    let n = 0;
    for (const map of this.drains.values()) n += map.size;
    return n;
  }

  async works(): Promise<boolean> {
    try {
      await this.client.services();
      return true;
    } catch {
      return false;
    }
  }

  /** Deletes every service carrying the agent's marks; every other service stays. */
  async cleanup(): Promise<ApplyStats> {
    const start = this.requestCount();
    const owned = (await this.client.services()).filter((s) => s.key.kind === 'fwmark' && isAgentMark(s.key.fwmark));
    await Promise.all(owned.map((s) => tolerate(() => this.client.deleteService(s.key), 'ESRCH')));
    this.drains.clear();
    return { restores: this.requestCount() - start, payloadBytes: 0, chainsWritten: owned.length, units: owned.length };
  }

  /**
   * From an empty kernel: the table as `ipvsadm -Sn` prints it, then the rules
   * beside it. Otherwise the requests in `ipvsadm -R` syntax, in order.
   */
  render(t: IpvsTransaction): string {
    let out = t.initial ? renderIpvsadmSave(t.initial) : t.parts.flatMap((p) => p.ops.map(opLine)).map((l) => `${l}\n`).join('');
    if (t.aux) out += renderAux(t.aux);
    return out;
  }

  /** The kernel's services of the frontends, when no desired group holds them (a group held back after a restart). */
  adopt(key: string, frontends: readonly Pick<FrontendSelection, 'name' | 'protocol'>[], kernel: IpvsKernel): IpvsGroup | undefined {
    const stale = new Set(kernel.stale);
    const found: IpvsFrontend[] = [];
    for (const fe of frontends) {
      const id = frontendIdentity(fe);
      const mark = this.marks.markOf(id);
      const entry = kernel.services.get(mark);
      if (!entry || !stale.has(mark)) continue;
      const dests = [...entry.dests].map(destSpec).sort(compareDest);
      found.push({ id, mark, ip: '', clustersetIPs: [], port: 0, protocol: fe.protocol.toLowerCase(), comment: '', service: entry.service, dests });
    }
    return found.length === 0 ? undefined : { key, frontends: found };
  }

  owned(desired: ReadonlyMap<string, IpvsGroup>): { chains: number; rules: number } {
    let chains = 0;
    let rules = 0;
    for (const g of desired.values()) {
      for (const fe of g.frontends) {
        if (fe.service) chains++;
        rules += fe.dests.length + 1 + (fe.service ? 0 : 1);
      }
    }
    return { chains, rules };
  }

  written(t: IpvsTransaction): { group: string; name: string }[] {
    return t.parts.flatMap((p) => [...servicesOf(p.ops)].map((name) => ({ group: p.key, name })));
  }

  /** The frontend's fwmark service; wrr draws new connections exactly in the weights' ratio. */
  describe(fe: FrontendSelection): FrontendDescription {
    const mark = this.marks.peek(frontendIdentity(fe)) ?? this.markOf(fe);
    const weights = integerWeights(fe.endpoints.map((e) => e.weight));
    const total = weights.reduce((a, b) => a + b, 0);
    const shares = new Map<string, number>();
    fe.endpoints.forEach((ep, i) => shares.set(`${ep.cluster} ${ep.ip}:${ep.port}`, total === 0 ? 0 : weights[i]! / total));
    return { handle: serviceText(fwmarkKey(fe.family === 'ipv6' ? 6 : 4, mark)), shares };
  }

  /**
   * Every service in the table and the real servers of the agent's own: one
   * dump per owned service (explain shares one read between its requests).
   */
  async readForExplain(): Promise<IpvsExplainRead> {
    const services = await this.client.services();
    const owned = services.filter((s) => s.key.kind === 'fwmark' && isAgentMark(s.key.fwmark));
    const dests = new Map(await Promise.all(owned.map(async (s) => [(s.key as { fwmark: number }).fwmark >>> 0, await this.client.dests(s.key)] as const)));
    return { services, dests };
  }

  /** The group's virtual services and real servers, planned and in `kernel` (a readForExplain() value; null: unreadable). */
  explainGroup(selection: GroupSelection, services: readonly ServiceName[], kernel: unknown): GroupText {
    // Planning here takes no mark: a frontend the agent does not hold shows the mark it would first try.
    // Only this data plane's family is shown, as only it is planned.
    const own = familySelection(selection, this.family);
    const frontends = own.settings.mode === 'off' ? [] : own.frontends.map((fe) => {
      const id = frontendIdentity(fe);
      return this.planFrontend(fe, this.marks.peek(id) ?? preferredMark(id));
    });
    return ipvsGroupText(own, frontends, services.filter((s) => familyOfAddress(s.clusterIP) === this.family), isIpvsExplainRead(kernel) ? kernel : null,
      (mark, dest) => this.drains.get(mark)?.get(destId(dest))?.until);
  }
}

function destSpec(d: ObservedDest | DestSpec): DestSpec {
  return { address: d.address, port: d.port, weight: d.weight, forward: d.forward, upperThreshold: d.upperThreshold, lowerThreshold: d.lowerThreshold };
}

/** The addresses whose packets get a frontend's mark: its ClusterIP and ClusterSet IPs (none for an adopted one). */
export function auxFrontends(fe: IpvsFrontend): AuxFrontend[] {
  if (fe.ip === '') return [];
  const at = (ip: string, comment: string): AuxFrontend => ({ ip, port: fe.port, protocol: fe.protocol, comment, mark: fe.mark, reject: fe.service === null });
  return [at(fe.ip, fe.comment), ...fe.clustersetIPs.map((ip) => at(ip, `${fe.comment} clusterset IP`))];
}

function servicesOf(ops: readonly IpvsOp[]): Set<string> {
  return new Set(ops.map((op) => serviceText(op.op === 'addService' || op.op === 'updateService' ? op.service.key : op.key)));
}

async function tolerate(request: () => Promise<void>, code: string, instead?: () => Promise<void>): Promise<void> {
  try {
    await request();
  } catch (err) {
    if (!(err instanceof IpvsError) || err.code !== code) throw err;
    if (instead) await instead();
  }
}

function opLine(op: IpvsOp): string {
  switch (op.op) {
    case 'addService': return serviceLine(op.service);
    case 'updateService': return serviceLine(op.service).replace(/^-A /, '-E ');
    case 'deleteService': return `-D ${serviceArgs(op.key)}`;
    case 'addDest': return destLine(op.key, op.dest);
    case 'updateDest': return destLine(op.key, op.dest).replace(/^-a /, '-e ');
    case 'deleteDest': return `-d ${serviceArgs(op.key)} -r ${hostPort(op.dest.address, op.dest.port)}`;
  }
}

function refusal(error: unknown, key: string): Refusal {
  if (!(error instanceof IpvsError)) return { kind: 'error', error };
  const groups = isGroupKey(key) ? [key] : [];
  return { kind: 'refused', error, groups, blamed: groups[0] ?? null, reason: `the kernel refused ${error.request}: ${error.code}` };
}
