// Learns about changes others make to the tables the agent shares, as they
// happen, and repairs them between full syncs.
//
//   nft:    nf_tables events (in-process monitor) → per-generation filter:
//           the agent's own commits dropped, foreign ones reduced to the
//           watched chains they touched → pending touches → repair request
//   legacy: nothing is announced: every second `iptables-legacy -S` of the
//           built-in chains holding the agent's jumps and of its dispatch
//           chains → jumps out of place or a dispatch chain changed by
//           someone else → pending touches → repair request
//
// The runner serialises the repair with syncs and rate-limits it by
// minSyncInterval, so any number of touches collapse into one repair. A
// repair re-reads only the touched built-in chains and puts the agent's jumps
// first again with one small restore; a deleted or changed MCS- chain (or a
// deleted table) is repaired by an early full sync. Events lost in a burst
// (a rewrite of tens of thousands of rules outgrows the socket's buffer) cost
// a check of our jumps; the rest waits for the next full sync.

import { existsSync, readFileSync } from 'node:fs';
import type { BackendMode, IptablesBackend } from '../iptables/backend.js';
import { renderPayload } from '../iptables/render.js';
import { errorText, type Logger } from '../log.js';
import type { ChainRef, Jump } from '../iptables/plan-types.js';
import type { IPFamily } from '../selection/selection.js';
import { assessJumps, chainId, type ChainReader, type JumpCause, type JumpFinding } from './kernel-check.js';
import { NfTablesMonitor, type NfEventSource, type NfMonitorHandlers } from './nf-monitor.js';
import type { LegacySnapshot, LegacyTables } from './legacy-tables.js';
import { jumpMoves, specsOf, type InProcessJumps, type RuleHead } from './nft-rules.js';
import { GenerationFilter, touchKey, type GenerationVerdict, type Origin, type Touch } from './watch-filter.js';

export type DriftCause = JumpCause | 'chain_deleted' | 'chain_changed' | 'table_deleted' | 'events_lost';
export const DRIFT_CAUSES: readonly DriftCause[] = ['jump_order', 'jump_missing', 'chain_deleted', 'chain_changed', 'table_deleted', 'events_lost'];
export type CheckTrigger = 'event' | 'poll';

export interface DriftMetricsSink {
  /** An nf_tables generation seen, by origin. */
  generation(origin: Origin): void;
  /** The watched chains were read back. */
  check(trigger: CheckTrigger): void;
  detected(cause: DriftCause): void;
  repaired(cause: DriftCause): void;
}

export interface DriftWatchOptions {
  readonly mode: BackendMode;
  /** The tables watched: iptables' (default) or ip6tables' (nf_tables family ip6 on nft). */
  readonly family?: IPFamily;
  readonly reader: ChainReader;
  /**
   * nft: the built-in chains read and our jumps moved first in-process (one
   * netlink dump, one nf_tables transaction); without it, through `reader`
   * and an iptables-restore.
   */
  readonly inProcess?: InProcessJumps;
  /**
   * legacy: the tables read in-process every second (the built-in chains'
   * rules and a fingerprint of each of our chains, compared with the one taken
   * right after our last write); without it, `reader` in one process.
   */
  readonly legacy?: LegacyTables;
  /** Applies the targeted repair (a payload touching only the jumps). */
  readonly backend: Pick<IptablesBackend, 'restore'>;
  /** The agent's jumps from built-in chains. */
  readonly jumps: readonly Jump[];
  /** Prefix of the agent's chains. */
  readonly prefix: string;
  /** The agent's dispatch chains, which legacy polling reads. */
  readonly dispatchChains: readonly ChainRef[];
  /** Legacy: the dispatch chains' rules as last applied, by `table/chain`, sorted; without it they are not checked. */
  readonly expectedDispatch?: () => ReadonlyMap<string, readonly string[]>;
  readonly log: Logger;
  readonly metrics?: DriftMetricsSink;
  /** Asks the runner for a repair (it calls repair() when its turn comes). */
  readonly requestRepair: () => void;
  /** Legacy polling period (default 1000 ms). */
  readonly pollIntervalMs?: number;
  /** The nf_tables event source (default: the netlink monitor). */
  readonly source?: (handlers: NfMonitorHandlers) => NfEventSource;
  readonly now?: () => number;
}

interface PendingTouch extends Touch {
  /** Who committed it, as far as known. */
  readonly by: string;
  /** When it was seen. */
  readonly at: number;
}

/** How long an exited iptables-restore of the agent still counts as its own (its events may be read after its exit). */
const OWN_GRACE_MS = 10_000;
const LEGACY_BY = 'unknown (iptables-legacy announces nothing)';
/** A legacy poll waits at least this many times as long as the last read took, and at most MAX_POLL_MS. */
const POLL_COST_FACTOR = 10;
const MAX_POLL_MS = 30_000;
/** More jump repairs than this within FIGHT_WINDOW_MS: someone else insists on being first too; said once per window. */
const FIGHT_REPAIRS = 10;
const FIGHT_WINDOW_MS = 60_000;

export class DriftWatch {
  private readonly now: () => number;
  private readonly pending = new Map<string, PendingTouch>();
  private lost: { reason: string; at: number } | null = null;
  /** Process ids and netlink ports of the agent's writers: expiry time, Infinity while running. */
  private readonly ownPids = new Map<number, number>();
  private readonly ownPorts = new Set<number>();
  private writes = 0;
  private inFlight = 0;
  private readonly filter: GenerationFilter;
  private source: NfEventSource | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private polling: Promise<void> | null = null;
  /** Seconds of the stretched poll period last logged. */
  private pollStretched = 0;
  private running = false;
  /** When each recent targeted jump repair ran, and when a fight was last reported. */
  private recentJumpRepairs: number[] = [];
  private fightReportedAt = -Infinity;
  /** Legacy, in-process: the fingerprints of our chains (`table/chain`) as our last write left them. */
  private ownChains: Map<string, string> | null = null;
  /** A full sync the watch asked for is running: what a poll reads of our chains meanwhile is about to be rewritten. */
  private fullSyncing = false;

  constructor(private readonly opts: DriftWatchOptions) {
    this.now = opts.now ?? (() => performance.now());
    const builtins = new Set(opts.jumps.map((j) => chainId(j.table, j.chain)));
    const tables = new Set<string>(opts.jumps.map((j) => j.table));
    this.filter = new GenerationFilter({ family: opts.family === 'ipv6' ? 'ip6' : 'ip', tables, builtins, prefix: opts.prefix }, (g) => this.isOwn(g.pid, g.portid));
    if (opts.inProcess) this.ownPort(opts.inProcess.portid);
  }

  /** What watches: nf_tables events (nft) or a one-second poll (legacy). */
  get method(): 'events' | 'poll' {
    return this.opts.mode === 'nft' ? 'events' : 'poll';
  }

  /** Starts watching; call once the first full sync has put the agent's rules in. */
  start(): void {
    if (this.running) return;
    this.running = true;
    if (this.opts.mode === 'nft') {
      const handlers: NfMonitorHandlers = { onEvents: (events) => this.onVerdicts(this.filter.push(events)), onLost: (reason) => this.onLost(reason) };
      const source = (this.opts.source ?? ((h) => new NfTablesMonitor(h)))(handlers);
      try {
        source.start();
        this.source = source;
      } catch (err) {
        this.opts.log.error({ err: (err as Error).message }, 'drift watch: cannot read nf_tables events; changes to our jumps and chains are repaired at the next full sync only');
        return;
      }
    } else {
      this.noteOwnChains();
      this.schedulePoll(this.opts.pollIntervalMs ?? 1000);
    }
    const tool = this.opts.family === 'ipv6' ? 'ip6tables' : 'iptables';
    this.opts.log.info({ method: this.method, family: this.opts.family ?? 'ipv4' }, this.method === 'events'
      ? `watching nf_tables events for changes to the ${tool} built-in chains holding our jumps and to our MCS- chains`
      : `${tool}-legacy announces no changes: checking the built-in chains holding our jumps and our dispatch chains every second`);
  }

  async stop(): Promise<void> {
    this.running = false;
    this.source?.stop();
    this.source = null;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
    await this.polling;
  }

  /** An iptables-restore the agent spawned: its commits are the agent's own. */
  ownWrite(pid: number | undefined, exited: Promise<unknown>): void {
    this.writes++;
    this.inFlight++;
    if (pid !== undefined) this.ownPids.set(pid, Infinity);
    const done = () => {
      this.inFlight--;
      if (pid !== undefined) this.ownPids.set(pid, this.now() + OWN_GRACE_MS);
      if (this.inFlight === 0) this.noteOwnChains();
    };
    exited.then(done, done);
  }

  /** A netlink port the agent commits through in-process (a native nftables writer). */
  ownPort(portid: number): void {
    this.ownPorts.add(portid);
  }

  /** Whether a committer is the agent. Netlink ports count in the agent's pid namespace, NEWGEN's pid in the kernel's. */
  isOwn(pid: number, portid: number): boolean {
    if (pid === process.pid || this.ownPorts.has(portid)) return true;
    const now = this.now();
    for (const [p, until] of this.ownPids) if (until < now) this.ownPids.delete(p);
    if (this.ownPids.has(portid) || this.ownPids.has(pid)) return true;
    // A thread of this process (an in-process writer committing off the main thread).
    return pid > 0 && existsSync(`/proc/self/task/${pid}`);
  }

  /** Touches waiting for a repair. */
  get pendingCount(): number {
    return this.pending.size + (this.lost ? 1 : 0);
  }

  private onVerdicts(verdicts: readonly GenerationVerdict[]): void {
    let wake = false;
    for (const v of verdicts) {
      this.opts.metrics?.generation(v.origin);
      if (v.origin !== 'watched') continue;
      const by = `${v.procName || 'unknown'} (pid ${v.pid})`;
      for (const t of v.touches) {
        const key = touchKey(t);
        if (!this.pending.has(key)) this.pending.set(key, { ...t, by, at: this.now() });
      }
      wake = true;
    }
    if (wake) this.opts.requestRepair();
  }

  private onLost(reason: string): void {
    this.filter.reset();
    this.lost ??= { reason, at: this.now() };
    this.opts.requestRepair();
  }

  /**
   * The next legacy poll. Every read makes libiptc fetch and parse the whole
   * table, so with kube-proxy's thousands of chains one read takes far longer
   * than with a few: the period stretches to POLL_COST_FACTOR times the last
   * read's duration (at least the base period), keeping polling to a few
   * percent of a core whatever the table's size.
   */
  private schedulePoll(inMs: number): void {
    if (!this.running) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      const cpuBefore = cpuMs();
      this.polling = this.pollOnce().finally(() => {
        this.polling = null;
        const base = this.opts.pollIntervalMs ?? 1000;
        // CPU time, not wall time: a loaded machine must not slow the polling down, a large table must.
        const spent = cpuMs() - cpuBefore;
        const next = Math.min(MAX_POLL_MS, Math.max(base, POLL_COST_FACTOR * spent));
        if (next > base && this.pollStretched !== Math.round(next / 1000)) {
          this.pollStretched = Math.round(next / 1000);
          this.opts.log.info({ periodMs: Math.round(next), readCpuMs: Math.round(spent) }, 'reading the watched chains takes long (the table is large): polling less often');
        }
        this.schedulePoll(next);
      });
    }, inMs);
    this.pollTimer.unref();
  }

  /** Legacy, in-process: our chains as they are now, taken as what our last write left (a foreign change in between is adopted: the next full sync checks it). */
  private noteOwnChains(): void {
    if (!this.opts.legacy || !this.running) return;
    try {
      this.ownChains = this.readOwnChains();
    } catch (err) {
      this.ownChains = null;
      this.opts.log.debug({ err: errorText(err) }, 'drift poll could not fingerprint our chains; they are checked again after our next write');
    }
  }

  private readOwnChains(): Map<string, string> {
    const out = new Map<string, string>();
    for (const table of new Set(this.opts.jumps.map((j) => j.table))) {
      for (const [chain, print] of this.opts.legacy!.read(table)?.chains ?? []) out.set(chainId(table, chain), print);
    }
    return out;
  }

  /** A change a legacy poll found (who made it is unknown), once. */
  private notePolled(t: Touch, at: number): void {
    if (!this.pending.has(touchKey(t))) this.pending.set(touchKey(t), { ...t, by: LEGACY_BY, at });
  }

  /** Legacy, in-process: one read of each table holding our jumps; no process started. */
  private pollInProcess(legacy: LegacyTables): void {
    const writes = this.writes;
    const busy = this.inFlight > 0;
    const builtins = new Map<string, string[]>();
    const chains = new Map<string, string>();
    try {
      for (const table of new Set(this.opts.jumps.map((j) => j.table))) {
        const snap = legacy.read(table);
        for (const r of builtinRefs(this.opts.jumps.filter((j) => j.table === table))) builtins.set(chainId(table, r.name), specsOf(table, r.name, snap?.builtins.get(r.name) ?? [], this.opts.jumps));
        for (const [chain, print] of snap?.chains ?? []) chains.set(chainId(table, chain), print);
      }
    } catch (err) {
      this.opts.log.debug({ err: errorText(err) }, 'drift poll could not read the tables; trying again next period');
      return;
    }
    this.opts.metrics?.check('poll');
    let wake = false;
    const at = this.now();
    const note = (t: Touch) => {
      this.notePolled(t, at);
      wake = true;
    };
    for (const f of assessJumps(builtins, this.opts.jumps).findings) note({ cause: 'builtin', table: f.table, chain: f.chain });
    // Our chains as our last write left them; judged only while the agent wrote nothing since.
    const own = !busy && !this.fullSyncing && this.inFlight === 0 && this.writes === writes ? this.ownChains : null;
    if (own) {
      for (const [id, print] of own) {
        if (chains.get(id) === print) continue;
        const [table, chain] = id.split('/') as [string, string];
        note({ cause: chains.has(id) ? 'chain_changed' : 'chain_deleted', table, chain });
      }
      for (const id of chains.keys()) {
        if (own.has(id)) continue;
        const [table, chain] = id.split('/') as [string, string];
        note({ cause: 'chain_changed', table, chain });
      }
    }
    if (wake) this.opts.requestRepair();
  }

  private async pollOnce(): Promise<void> {
    if (this.opts.legacy) return this.pollInProcess(this.opts.legacy);
    const writes = this.writes;
    const busy = this.inFlight > 0;
    let builtins: Map<string, string[]>;
    let dispatch: Map<string, string[] | null>;
    try {
      // One read of every watched chain.
      const read = await this.opts.reader.read([...builtinRefs(this.opts.jumps), ...this.opts.dispatchChains]);
      builtins = builtinsOf(read, this.opts.jumps);
      dispatch = new Map(this.opts.dispatchChains.map((c) => [chainId(c.table, c.name), read.get(chainId(c.table, c.name)) ?? null]));
    } catch (err) {
      this.opts.log.debug({ err: errorText(err) }, 'drift poll could not read the chains; trying again next period');
      return;
    }
    this.opts.metrics?.check('poll');
    let wake = false;
    const at = this.now();
    for (const f of assessJumps(builtins, this.opts.jumps).findings) {
      this.notePolled({ cause: 'builtin', table: f.table, chain: f.chain }, at);
      wake = true;
    }
    // A dispatch chain that differs from what the agent last applied, read while the agent wrote nothing, was changed by someone else.
    const quiet = !busy && this.inFlight === 0 && this.writes === writes;
    const expected = quiet ? this.opts.expectedDispatch?.() : undefined;
    if (expected) {
      for (const [id, rules] of dispatch) {
        const want = expected.get(id) ?? [];
        if (rules !== null && sameRules([...rules].sort(), want)) continue;
        const [table, chain] = id.split('/') as [string, string];
        this.notePolled({ cause: rules === null ? 'chain_deleted' : 'chain_changed', table, chain }, at);
        wake = true;
      }
    }
    if (wake) this.opts.requestRepair();
  }

  /** The built-in chains holding `jumps`; in-process also each rule's handle and what it is. */
  private async readBuiltins(jumps: readonly Jump[]): Promise<{ chains: Map<string, string[]>; heads: Map<string, RuleHead[]> | null }> {
    if (this.opts.legacy) {
      const snaps = new Map<string, LegacySnapshot | null>();
      const chains = new Map<string, string[]>();
      for (const r of builtinRefs(jumps)) {
        if (!snaps.has(r.table)) snaps.set(r.table, this.opts.legacy.read(r.table));
        chains.set(chainId(r.table, r.name), specsOf(r.table, r.name, snaps.get(r.table)?.builtins.get(r.name) ?? [], this.opts.jumps));
      }
      return { chains, heads: null };
    }
    const native = this.opts.inProcess;
    if (!native) return { chains: builtinsOf(await this.opts.reader.read(builtinRefs(jumps)), jumps), heads: null };
    const heads = new Map<string, RuleHead[]>();
    const chains = new Map<string, string[]>();
    for (const r of builtinRefs(jumps)) {
      const rules = native.rules(r.table, r.name);
      heads.set(chainId(r.table, r.name), rules);
      chains.set(chainId(r.table, r.name), specsOf(r.table, r.name, rules, this.opts.jumps));
    }
    return { chains, heads };
  }

  /**
   * Repairs what the pending touches point at; the runner calls it between
   * syncs. Jumps out of place are put first again by one restore that touches
   * nothing else; anything else takes `runFull` (the full sync, which reads
   * the kernel back and repairs drift).
   */
  async repair(runFull: () => Promise<unknown>): Promise<void> {
    if (this.pendingCount === 0) return;
    const touches = [...this.pending.values()];
    this.pending.clear();
    const lost = this.lost;
    this.lost = null;
    if (lost) {
      // What was lost is unknown: our jumps, what decides the traffic, are checked now; the rest waits for the next full
      // sync, as without the watch (a full sync per burst would cost more than the storm: it reads kube-proxy's tables whole).
      for (const r of builtinRefs(this.opts.jumps)) touches.push({ cause: 'builtin', table: r.table, chain: r.name, by: `unknown (${lost.reason})`, at: lost.at });
      this.opts.metrics?.detected('events_lost');
      this.opts.log.warn({ reason: lost.reason }, `nf_tables events were lost (${lost.reason}); checking our jumps now, the next full sync checks the rest`);
    }
    const since = Math.min(...touches.map((t) => t.at));
    const structural = touches.filter((t) => t.cause !== 'builtin');
    if (structural.length > 0) {
      const causes = new Set<DriftCause>(structural.map((t) => t.cause as DriftCause));
      for (const c of causes) this.opts.metrics?.detected(c);
      const what = structural.map(describeTouch);
      this.opts.log.warn({ causes: [...causes], what, by: [...new Set(structural.map((t) => t.by))] }, `kernel drift: ${what.join('; ')}; repairing with a full sync`);
      this.fullSyncing = true;
      try {
        await runFull();
      } finally {
        this.fullSyncing = false;
      }
      // A full sync that found nothing to write leaves the fingerprints to take here.
      this.noteOwnChains();
      for (const c of causes) this.opts.metrics?.repaired(c);
      if (lost) this.opts.metrics?.repaired('events_lost');
      this.opts.log.info({ causes: [...causes], sinceSeenMs: round(this.now() - since) }, 'kernel drift repaired by a full sync');
      return;
    }
    if (touches.length === 0) return;
    const touched = this.opts.jumps.filter((j) => touches.some((t) => t.table === j.table && t.chain === j.chain));
    const readStart = this.now();
    const { chains, heads } = await this.readBuiltins(touched);
    const readMs = round(this.now() - readStart);
    this.opts.metrics?.check(this.opts.mode === 'nft' ? 'event' : 'poll');
    const { findings, units } = assessJumps(chains, this.opts.jumps);
    if (lost) this.opts.metrics?.repaired('events_lost');
    if (findings.length === 0) {
      this.opts.log.debug({ chains: [...chains.keys()] }, 'built-in chains changed by someone else; our jumps are still in place');
      return;
    }
    for (const f of findings) this.opts.metrics?.detected(f.cause);
    const by = [...new Set(touches.map((t) => t.by))];
    const what = findings.map(describeFinding);
    const writeStart = this.now();
    // A jump still there but out of place moves in-process; one that is gone is written by iptables-restore.
    const moves = heads && this.opts.inProcess ? jumpMoves(findings, heads, this.opts.jumps) : null;
    try {
      if (moves) for (const m of moves) this.opts.inProcess!.moveFirst(m.table, m.chain, m.keep, m.drop);
      else await this.opts.backend.restore(renderPayload(units));
    } catch (err) {
      // Typically MCS-SERVICES is gone too: the full sync rebuilds everything.
      this.opts.log.warn({ what, by, err: errorText(err) }, `kernel drift: ${what.join('; ')}; putting our jumps first failed, repairing with a full sync`);
      await runFull();
      for (const f of findings) this.opts.metrics?.repaired(f.cause);
      return;
    }
    for (const f of findings) this.opts.metrics?.repaired(f.cause);
    const writeMs = round(this.now() - writeStart);
    this.noteJumpRepair(by);
    this.opts.log.warn({ causes: [...new Set(findings.map((f) => f.cause))], what, by, sinceSeenMs: round(this.now() - since), readMs, writeMs, how: moves ? 'moved in-process' : 'iptables-restore' }, `kernel drift: ${what.join('; ')}; our jumps are first again`);
  }

  /** Another writer that also wants position 1 would trade places with us every minSyncInterval: say so, naming it. */
  private noteJumpRepair(by: readonly string[]): void {
    const now = this.now();
    this.recentJumpRepairs = this.recentJumpRepairs.filter((t) => t > now - FIGHT_WINDOW_MS);
    this.recentJumpRepairs.push(now);
    if (this.recentJumpRepairs.length <= FIGHT_REPAIRS || now - this.fightReportedAt < FIGHT_WINDOW_MS) return;
    this.fightReportedAt = now;
    this.opts.log.warn({ repairs: this.recentJumpRepairs.length, windowMs: FIGHT_WINDOW_MS, by },
      `our jumps were moved ${this.recentJumpRepairs.length} times in the last minute: another writer keeps putting its rules first; each repair waits minSyncInterval`);
  }
}

/** The built-in chains holding `jumps`, each once. */
function builtinRefs(jumps: readonly Jump[]): ChainRef[] {
  const refs = new Map<string, ChainRef>();
  for (const j of jumps) refs.set(chainId(j.table, j.chain), { table: j.table, name: j.chain });
  return [...refs.values()];
}

/** The listings of the built-in chains; a built-in chain always exists in a table that does, so an absent one reads as empty. */
function builtinsOf(read: ReadonlyMap<string, string[] | null>, jumps: readonly Jump[]): Map<string, string[]> {
  return new Map(builtinRefs(jumps).map((r) => [chainId(r.table, r.name), read.get(chainId(r.table, r.name)) ?? []]));
}

/** CPU time of this process and of its reaped children (the sh and iptables of each read), in ms. */
function cpuMs(): number {
  const usage = process.cpuUsage();
  let children = 0;
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // cutime and cstime, fields 16 and 17 of stat, in clock ticks of 10 ms.
    children = (Number(fields[13]) + Number(fields[14])) * 10;
  } catch {
    // Without /proc, only the process's own time counts.
  }
  return (usage.user + usage.system) / 1000 + children;
}

function sameRules(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((r, i) => r === b[i]);
}

function describeFinding(f: JumpFinding): string {
  const where = `${f.table} ${f.chain}`;
  if (f.cause === 'jump_missing') return `${where}: our jump to ${target(f.spec)} was gone`;
  return `${where}: ${f.ahead ? JSON.stringify(f.ahead) : 'a foreign rule'} was ahead of our jump to ${target(f.spec)}`;
}

function describeTouch(t: PendingTouch): string {
  switch (t.cause) {
    case 'table_deleted': return `table ${t.table} was deleted by ${t.by}`;
    case 'chain_deleted': return `${t.table} ${t.chain} was deleted by ${t.by}`;
    default: return `${t.table} ${t.chain} was changed by ${t.by}`;
  }
}

function target(spec: string): string {
  return /-j (\S+)/.exec(spec)?.[1] ?? spec;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
