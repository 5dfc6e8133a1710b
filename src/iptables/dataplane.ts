// The iptables data plane: selections become chains and rules (plan), the
// kernel's tables are read back (observe), the difference becomes units of
// iptables-restore --noflush payload (diff, render) and is restored batch by
// batch (apply). Its fake is the same class over FakeIptables.

import { familyOfAddress, familySelection, type FrontendSelection, type GroupSelection, type IPFamily } from '../selection/selection.js';
import { clusterCIDROf, type ApplyOutcome, type ApplyStats, type Dataplane, type DataplaneSettings, type FrontendDescription, type GroupText, type KernelState, type Refusal, type ServiceName } from '../sync/dataplane.js';
import { iptablesGroupText } from './explain-text.js';
import { RestoreError, type IptablesBackend } from './backend.js';
import { diffFragment, diffPlans, TEARDOWN_KEY } from './diff.js';
import { observe, staleKey, type ObservedState, type TableDump } from './observe.js';
import { assemblePlan, EMPTY_PLAN, planFragment } from './planner.js';
import { SKELETON_KEY, TABLES, type Fragment, type OwnedChain, type Plan, type SetRule, type Table, type UnitChange } from './plan-types.js';
import { batchUnits, renderPayload, unitAtLine } from './render.js';
import { parseSave } from './save-format.js';
import { externalChain, frontendChain, probability } from './service-rules.js';
import { frontendSetOf } from './layout.js';
import {
  diffGroupMembers, diffSet, mergeSetChanges, NO_SET_CHANGE, parseSetSave, renderSetAfter, renderSetBefore,
  type Members, type SetChange,
} from './frontend-set.js';

/** The kernel's iptables state, attributed to the fragments of a desired plan. */
export interface IptablesKernel extends KernelState<Fragment> {
  readonly observed: ObservedState;
  /** The frontend set's members; null when the set does not exist. */
  readonly members: Members | null;
}

/** Units of restore payload; `keys` names each unit's owner. `set`: the frontend set's change around them. */
export interface IptablesTransaction {
  readonly keys: readonly string[];
  readonly units: readonly UnitChange[];
  readonly set: SetChange;
}

function tx(units: readonly UnitChange[], set: SetChange = NO_SET_CHANGE): IptablesTransaction {
  return { keys: units.map((u) => u.key), units, set };
}

const NO_SETTINGS: DataplaneSettings = { clusterCIDR: '', localCluster: '', masqueradeBit: 14, maxChainsPerRestore: Infinity };

/**
 * One family's tables: iptables for IPv4, ip6tables for IPv6 (the backend's
 * family). It plans only its family's frontends of each selection.
 */
export class IptablesDataplane implements Dataplane<Fragment, IptablesKernel, IptablesTransaction> {
  readonly family: IPFamily;
  private settings: DataplaneSettings = NO_SETTINGS;

  constructor(private readonly backend: IptablesBackend, settings?: DataplaneSettings) {
    this.family = backend.family ?? 'ipv4';
    if (settings) this.settings = settings;
  }

  get name(): string {
    return `${this.family === 'ipv6' ? 'ip6tables' : 'iptables'}-${this.backend.mode}`;
  }

  configure(settings: DataplaneSettings): void {
    this.settings = settings;
  }

  /** What the rules of this family are planned with. */
  private get ruleContext() {
    return { clusterCIDR: clusterCIDROf(this.settings, this.family), localCluster: this.settings.localCluster, family: this.family };
  }

  plan(selection: GroupSelection): Fragment | undefined {
    return selection.settings.mode === 'off' ? undefined : planFragment(familySelection(selection, this.family), this.ruleContext);
  }

  private assemble(desired: ReadonlyMap<string, Fragment>): Plan {
    return assemblePlan(desired, { masqueradeBit: this.settings.masqueradeBit, family: this.family });
  }

  async observe(desired: ReadonlyMap<string, Fragment>): Promise<IptablesKernel> {
    const members = await this.readMembers();
    const observed = observe(await this.readKernel(), this.assemble(desired));
    return { observed, members, group: (key) => observed.plan.fragments.get(key) };
  }

  diff(last: IptablesKernel | null, desired: ReadonlyMap<string, Fragment>): IptablesTransaction {
    const target = this.assemble(desired);
    if (!last) return tx(diffPlans(EMPTY_PLAN, target).units, diffSet(null, target));
    return tx(diffPlans(last.observed.plan, target, last.observed.strayJumps).units, diffSet(last.members, target));
  }

  diffGroup(key: string, last: Fragment | undefined, next: Fragment | undefined): IptablesTransaction {
    const change = diffFragment(key, last, next);
    return tx(change ? [change] : [], diffGroupMembers(last, next));
  }

  merge(parts: readonly IptablesTransaction[]): IptablesTransaction {
    return tx(parts.flatMap((p) => p.units), mergeSetChanges(parts.map((p) => p.set)));
  }

  /**
   * Renders and restores the units batch by batch, stopping at the first
   * batch that fails to render or that the backend refuses; the batches
   * before it stay applied. The frontend set gains its members before the
   * first restore and loses them only after the last one succeeded, so it
   * always holds every frontend the kernel's rules dispatch.
   */
  async apply(t: IptablesTransaction): Promise<ApplyOutcome> {
    const units = t.units;
    const before = renderSetBefore(t.set, this.family);
    if (before !== '') {
      try {
        await this.backend.restoreSets(before);
      } catch (error) {
        return { stats: { restores: 0, payloadBytes: 0, chainsWritten: 0, units: units.length }, refused: { kind: 'error', error } };
      }
    }
    const outcome = await this.applyUnits(units);
    if (outcome.refused) return outcome;
    const after = renderSetAfter(t.set, this.family);
    if (after !== '') {
      try {
        await this.backend.restoreSets(after);
      } catch (error) {
        return { stats: outcome.stats, refused: { kind: 'error', error } };
      }
    }
    return outcome;
  }

  private async applyUnits(units: readonly UnitChange[]): Promise<ApplyOutcome> {
    // legacy replaces the whole table on every restore, so splitting would only multiply that cost.
    const limit = this.backend.mode === 'nft' ? this.settings.maxChainsPerRestore : Infinity;
    let payloadBytes = 0;
    let restores = 0;
    const stats = (): ApplyStats => ({ restores, payloadBytes, chainsWritten: sumChains(units), units: units.length });
    for (const batch of batchUnits(units, limit)) {
      let payload;
      try {
        payload = renderPayload(batch);
      } catch (error) {
        const failing = unrenderable(batch).filter(([u]) => isGroupKey(u.key)).map(([u, err]) => ({ group: u.key, error: err }));
        return { stats: stats(), refused: { kind: 'render', error, failing } };
      }
      if (payload === '') continue;
      try {
        await this.backend.restore(payload);
      } catch (error) {
        return { stats: stats(), refused: refusal(error, batch) };
      }
      payloadBytes += payload.length;
      restores++;
    }
    return { stats: stats(), refused: null };
  }

  async works(): Promise<boolean> {
    try {
      await this.backend.restore('*nat\nCOMMIT\n');
      return true;
    } catch {
      return false;
    }
  }

  async cleanup(): Promise<ApplyStats> {
    const observed = observe(await this.readKernel(), EMPTY_PLAN);
    const { units } = diffPlans(observed.plan, EMPTY_PLAN, observed.strayJumps);
    // One restore: teardown relies on every fragment's removal in the same transaction.
    const payload = renderPayload(units);
    if (payload !== '') await this.backend.restore(payload);
    // The set goes last: the kernel refuses to destroy a set a rule still matches.
    const after = renderSetAfter(diffSet(await this.readMembers(), EMPTY_PLAN), this.family);
    if (after !== '') await this.backend.restoreSets(after);
    return { restores: payload === '' ? 0 : 1, payloadBytes: payload.length, chainsWritten: sumChains(units), units: units.length };
  }

  /** The restore payload, with the ipset commands around it as comments (iptables-restore skips them). */
  render(t: IptablesTransaction): string {
    const comments = (text: string) => text.split('\n').filter((l) => l !== '').map((l) => `# ipset: ${l}\n`).join('');
    return comments(renderSetBefore(t.set, this.family)) + renderPayload(t.units) + comments(renderSetAfter(t.set, this.family));
  }

  /** The chains the frontends' names give, with the dispatch rules jumping to them, as the kernel holds them unowned. */
  adopt(key: string, frontends: readonly Pick<FrontendSelection, 'name' | 'protocol'>[], kernel: IptablesKernel): Fragment | undefined {
    const chains: OwnedChain[] = [];
    const setRules: SetRule[] = [];
    for (const fe of frontends) {
      const stale = kernel.observed.plan.fragments.get(staleKey('nat', frontendChain(fe)));
      chains.push(...(stale?.chains ?? []));
      setRules.push(...(stale?.setRules ?? []));
    }
    return chains.length === 0 ? undefined : { key, chains, setRules };
  }

  owned(desired: ReadonlyMap<string, Fragment>): { chains: number; rules: number } {
    const plan = this.assemble(desired);
    let chains = plan.setChains.length;
    let rules = plan.jumps.length;
    for (const f of [plan.skeleton, ...plan.fragments.values()]) {
      chains += f.chains.length;
      rules += f.setRules.length;
      for (const c of f.chains) rules += c.rules.length;
    }
    return { chains, rules };
  }

  written(t: IptablesTransaction): { group: string; name: string }[] {
    return t.units.flatMap((u) => [...u.ops.nat.declare, ...u.ops.filter.declare].map((name) => ({ group: u.key, name })));
  }

  /**
   * The frontend's chain, and each endpoint's share as the cascade of
   * `statistic` probabilities draws it: each rule takes its probability, as
   * the kernel stores it, of what the rules before it left.
   */
  describe(fe: FrontendSelection): FrontendDescription {
    const shares = new Map<string, number>();
    let remaining = 1;
    let weightLeft = fe.endpoints.reduce((sum, ep) => sum + ep.weight, 0);
    fe.endpoints.forEach((ep, i) => {
      const p = i === fe.endpoints.length - 1 ? 1 : Number(probability(ep.weight / weightLeft));
      const share = remaining * p;
      shares.set(`${ep.cluster} ${ep.ip}:${ep.port}`, share);
      remaining -= share;
      weightLeft -= ep.weight;
    });
    return { handle: fe.kind === 'clusterset-ip' ? externalChain(fe) : frontendChain(fe), shares };
  }

  /** iptables-save text of each table. */
  async readForExplain(): Promise<Map<Table, string>> {
    const dumps = new Map<Table, string>();
    for (const table of TABLES) dumps.set(table, await this.backend.save(table));
    return dumps;
  }

  /** The group's chains and rules as iptables-save prints them; `kernel` is iptables-save text per table. */
  explainGroup(selection: GroupSelection, services: readonly ServiceName[], kernel: unknown): GroupText {
    const own = services.filter((s) => familyOfAddress(s.clusterIP) === this.family);
    return iptablesGroupText(familySelection(selection, this.family), own, kernel instanceof Map ? (kernel as Map<Table, string>) : null, this.ruleContext);
  }

  private async readMembers(): Promise<Members | null> {
    const saved = await this.backend.saveSet(frontendSetOf(this.family));
    return saved === null ? null : parseSetSave(saved, this.family);
  }

  private async readKernel(): Promise<Map<Table, TableDump>> {
    const dumps = new Map<Table, TableDump>();
    for (const table of TABLES) {
      const saved = parseSave(await this.backend.save(table)).get(table);
      dumps.set(table, saved?.chains ?? new Map());
    }
    return dumps;
  }
}

/** What a refused restore says about the groups of its batch. */
function refusal(error: unknown, batch: readonly UnitChange[]): Refusal {
  if (!(error instanceof RestoreError)) return { kind: 'error', error };
  const blamed = error.line === undefined ? null : unitAtLine(batch, error.line);
  return {
    kind: 'refused',
    error,
    groups: batch.map((u) => u.key).filter(isGroupKey),
    blamed: blamed && isGroupKey(blamed.key) ? blamed.key : null,
    reason: refusalReason(error, batch),
  };
}

/** A service group's unit, as opposed to the skeleton's setup and teardown or a stale chain's removal. */
function isGroupKey(key: string): boolean {
  return key !== SKELETON_KEY && key !== TEARDOWN_KEY && !key.startsWith('~');
}

/** The units of a batch that fail to render alone, with their errors. */
function unrenderable(batch: readonly UnitChange[]): [UnitChange, unknown][] {
  const failing: [UnitChange, unknown][] = [];
  for (const u of batch) {
    try {
      renderPayload([u]);
    } catch (err) {
      failing.push([u, err]);
    }
  }
  return failing;
}

/**
 * The refused rule and the tool's words, without line numbers: the same
 * refusal reads the same whatever else the payload held, so a retry that
 * fails the same way is not news.
 */
function refusalReason(error: RestoreError, batch: readonly UnitChange[]): string {
  const line = error.line === undefined ? undefined : renderPayload(batch).split('\n')[error.line - 1];
  const words = (error.stderr.trim() || error.message)
    .split('\n')
    .filter((l) => !/^Try `/.test(l))
    .join('; ')
    .replace(/\bline:? \d+:?\s*/g, '')
    .replace(/\s+/g, ' ')
    .trim();
  return `the kernel refused its rules${line ? ` (${JSON.stringify(line)})` : ''}: ${words}`;
}

function sumChains(units: readonly UnitChange[]): number {
  return units.reduce((n, u) => n + u.chainCount, 0);
}
