// Which nf_tables changes matter to the agent, and whose they were. Changes
// are gathered per committed generation (the kernel sends a generation's
// objects, then its NEWGEN): a generation the agent committed is dropped
// whole, a foreign one is reduced to the few watched chains it touched, so a
// rewrite of thousands of foreign rules yields at most a handful of touches.

import type { NfEvent } from './nf-events.js';

/** What the agent shares with others in nf_tables (iptables-nft keeps iptables' tables as family ip). */
export interface WatchedSet {
  readonly family: string;
  /** Tables holding the agent's chains and jumps. */
  readonly tables: ReadonlySet<string>;
  /** `table/chain` of each built-in chain holding one of the agent's jumps. */
  readonly builtins: ReadonlySet<string>;
  /** Prefix of the agent's own chains. */
  readonly prefix: string;
}

export type TouchCause = 'builtin' | 'chain_deleted' | 'chain_changed' | 'table_deleted';

/** A watched object a foreign generation changed. */
export interface Touch {
  readonly cause: TouchCause;
  readonly table: string;
  /** Absent for a table. */
  readonly chain?: string;
}

export type Origin = 'agent' | 'watched' | 'other';

export interface GenerationVerdict {
  readonly id: number;
  readonly pid: number;
  readonly procName: string;
  /** agent: committed by the agent; watched: foreign and touching watched chains; other: foreign, nothing watched. */
  readonly origin: Origin;
  /** Objects changed in the generation (all of them, watched or not). */
  readonly changes: number;
  /** Watched objects touched, each once; empty unless origin is watched. */
  readonly touches: readonly Touch[];
}

export function touchKey(t: Touch): string {
  return `${t.cause}:${t.table}/${t.chain ?? ''}`;
}

/** The watched object a change touches, if any. */
export function watchedTouch(watch: WatchedSet, e: { kind: string; op: 'new' | 'del'; family: string; table: string; chain?: string }): Touch | null {
  if (e.family !== watch.family || !watch.tables.has(e.table)) return null;
  if (e.kind === 'table') return e.op === 'del' ? { cause: 'table_deleted', table: e.table } : null;
  if (e.kind !== 'chain' && e.kind !== 'rule') return null;
  const chain = e.chain;
  if (chain === undefined) return null;
  if (watch.builtins.has(`${e.table}/${chain}`)) return { cause: 'builtin', table: e.table, chain };
  if (!chain.startsWith(watch.prefix)) return null;
  return { cause: e.kind === 'chain' && e.op === 'del' ? 'chain_deleted' : 'chain_changed', table: e.table, chain };
}

/**
 * Collects changes until their generation ends, then judges it. `isOwn` says
 * whether the committer is the agent (itself, one of its threads, or an
 * iptables-restore it spawned), from the NEWGEN's process id and netlink port.
 */
export class GenerationFilter {
  private touches = new Map<string, Touch>();
  private changes = 0;

  constructor(private readonly watch: WatchedSet, private readonly isOwn: (committer: { readonly pid: number; readonly portid: number }) => boolean) {}

  push(events: readonly NfEvent[]): GenerationVerdict[] {
    const verdicts: GenerationVerdict[] = [];
    for (const e of events) {
      if (e.type === 'change') {
        this.changes++;
        const touch = watchedTouch(this.watch, e);
        if (touch) this.touches.set(touchKey(touch), touch);
        continue;
      }
      const own = this.isOwn(e);
      const touches = own ? [] : [...this.touches.values()];
      verdicts.push({ id: e.id, pid: e.pid, procName: e.procName, origin: own ? 'agent' : touches.length > 0 ? 'watched' : 'other', changes: this.changes, touches });
      this.touches = new Map();
      this.changes = 0;
    }
    return verdicts;
  }

  /** Forgets a generation cut short (events were lost). */
  reset(): void {
    this.touches = new Map();
    this.changes = 0;
  }
}
