// Dual stack: one Dataplane instance per IP family (iptables and ip6tables,
// say) behind the one Dataplane the engine drives, as kube-proxy's
// metaproxier puts one proxier per family behind one interface. Each family's
// instance plans only its family's frontends of a selection; here its state,
// kernel read-back and transactions are carried side by side, one slot per
// instance, and the kernel calls run family after family.

import { familySelection, type FrontendSelection, type GroupSelection, type IPFamily } from '../selection/selection.js';
import type {
  ApplyOutcome, ApplyStats, Dataplane, DataplaneSettings, FrontendDescription, GroupText, KernelState, ServiceName, Transaction,
} from './dataplane.js';

/** A group's state: one slot per family's data plane, undefined where that family programs nothing. */
export type FamilyGroup = readonly unknown[];

export interface FamilyKernel extends KernelState<FamilyGroup> {
  readonly parts: readonly KernelState<unknown>[];
}

export interface FamilyTransaction extends Transaction {
  readonly parts: readonly Transaction[];
}

const NO_STATS: ApplyStats = { restores: 0, payloadBytes: 0, chainsWritten: 0, units: 0 };

function addStats(a: ApplyStats, b: ApplyStats): ApplyStats {
  return { restores: a.restores + b.restores, payloadBytes: a.payloadBytes + b.payloadBytes, chainsWritten: a.chainsWritten + b.chainsWritten, units: a.units + b.units };
}

export class FamilyDataplanes implements Dataplane<FamilyGroup, FamilyKernel, FamilyTransaction> {
  readonly name: string;
  /** The first family's (the one whose text leads in dry runs). */
  readonly family: IPFamily;

  constructor(private readonly planes: readonly Dataplane[]) {
    const families = planes.map((p) => p.family);
    if (planes.length === 0 || new Set(families).size !== families.length) throw new Error(`one data plane per IP family is needed, got ${families.join(', ') || 'none'}`);
    this.name = planes.map((p) => p.name).join(' + ');
    this.family = families[0]!;
  }

  /** The families served, in order. */
  get families(): IPFamily[] {
    return this.planes.map((p) => p.family);
  }

  configure(settings: DataplaneSettings): void {
    for (const p of this.planes) p.configure(settings);
  }

  plan(selection: GroupSelection): FamilyGroup | undefined {
    // A family none of the group's frontends is in holds nothing for it (rather than an empty state per group).
    const parts = this.planes.map((p) => (familySelection(selection, p.family).frontends.length === 0 ? undefined : p.plan(selection)));
    return parts.every((s) => s === undefined) ? undefined : parts;
  }

  async observe(desired: ReadonlyMap<string, FamilyGroup>): Promise<FamilyKernel> {
    const parts: KernelState<unknown>[] = [];
    for (const [i, p] of this.planes.entries()) parts.push(await p.observe(column(desired, i)));
    return {
      parts,
      group: (key) => {
        const states = parts.map((k) => k.group(key));
        return states.every((s) => s === undefined) ? undefined : states;
      },
    };
  }

  diff(last: FamilyKernel | null, desired: ReadonlyMap<string, FamilyGroup>): FamilyTransaction {
    return transaction(this.planes.map((p, i) => p.diff(last?.parts[i] ?? null, column(desired, i))));
  }

  diffGroup(key: string, last: FamilyGroup | undefined, next: FamilyGroup | undefined): FamilyTransaction {
    return transaction(this.planes.map((p, i) => p.diffGroup(key, last?.[i], next?.[i])));
  }

  merge(parts: readonly FamilyTransaction[]): FamilyTransaction {
    return transaction(this.planes.map((p, i) => p.merge(parts.map((t) => t.parts[i]!))));
  }

  /** Family after family; a refusal stops there, and what the families before it applied stays (the next full sync reads it back). */
  async apply(tx: FamilyTransaction): Promise<ApplyOutcome> {
    let stats = NO_STATS;
    for (const [i, p] of this.planes.entries()) {
      const outcome = await p.apply(tx.parts[i]!);
      stats = addStats(stats, outcome.stats);
      if (outcome.refused) return { stats, refused: outcome.refused };
    }
    return { stats, refused: null };
  }

  async works(): Promise<boolean> {
    for (const p of this.planes) if (!(await p.works())) return false;
    return true;
  }

  async cleanup(): Promise<ApplyStats> {
    let stats = NO_STATS;
    for (const p of this.planes) stats = addStats(stats, await p.cleanup());
    return stats;
  }

  /** Each family's text in turn; every family after the first opens with a comment line naming its data plane. */
  render(tx: FamilyTransaction): string {
    return this.planes.map((p, i) => {
      const text = p.render(tx.parts[i]!);
      return i === 0 || text === '' ? text : `# ${p.name} (${p.family})\n${text}`;
    }).join('');
  }

  adopt(key: string, frontends: readonly Pick<FrontendSelection, 'name' | 'protocol'>[], kernel: FamilyKernel): FamilyGroup | undefined {
    const parts = this.planes.map((p, i) => p.adopt(key, frontends, kernel.parts[i]!));
    return parts.every((s) => s === undefined) ? undefined : parts;
  }

  owned(desired: ReadonlyMap<string, FamilyGroup>): { chains: number; rules: number } {
    let chains = 0;
    let rules = 0;
    for (const [i, p] of this.planes.entries()) {
      const o = p.owned(column(desired, i));
      chains += o.chains;
      rules += o.rules;
    }
    return { chains, rules };
  }

  written(tx: FamilyTransaction): { group: string; name: string }[] {
    return this.planes.flatMap((p, i) => p.written(tx.parts[i]!));
  }

  describe(frontend: FrontendSelection): FrontendDescription {
    return this.planeOf(frontend.family).describe(frontend);
  }

  private planeOf(family: IPFamily): Dataplane {
    return this.planes.find((p) => p.family === family) ?? this.planes[0]!;
  }
}

/**
 * Explain over every family, when each family's data plane shows its kernel
 * objects: one read per family, and the group's lines of each in turn.
 */
export class ExplainedFamilyDataplanes extends FamilyDataplanes {
  constructor(private readonly explained: readonly Required<Pick<Dataplane, 'readForExplain' | 'explainGroup'>>[] & readonly Dataplane[]) {
    super(explained);
  }

  async readForExplain(): Promise<unknown[]> {
    const reads: unknown[] = [];
    for (const p of this.explained) reads.push(await p.readForExplain());
    return reads;
  }

  explainGroup(selection: GroupSelection, services: readonly ServiceName[], kernel: unknown): GroupText {
    const reads = Array.isArray(kernel) ? kernel : null;
    const texts = this.explained.map((p, i) => p.explainGroup(selection, services, reads ? reads[i] : null));
    const unread = texts.some((t) => t.kernel === null);
    return {
      planned: texts.flatMap((t) => t.planned),
      kernel: unread ? null : texts.flatMap((t) => t.kernel!),
      inSync: unread ? null : texts.every((t) => t.inSync),
    };
  }
}

/** One data plane for the families given: the instance itself for one, both behind one interface for two. */
export function familyDataplanes(planes: readonly Dataplane[]): Dataplane {
  if (planes.length === 1) return planes[0]!;
  const explained = planes.every((p) => p.readForExplain && p.explainGroup);
  return explained ? new ExplainedFamilyDataplanes(planes as never) : new FamilyDataplanes(planes);
}

/** One family's slot of every group that has a state in it. */
function column(desired: ReadonlyMap<string, FamilyGroup>, i: number): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [key, parts] of desired) if (parts[i] !== undefined) out.set(key, parts[i]);
  return out;
}

function transaction(parts: readonly Transaction[]): FamilyTransaction {
  return { keys: parts.flatMap((t) => t.keys), parts };
}
