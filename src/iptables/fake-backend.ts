// An in-memory iptables with the semantics of iptables-{nft,legacy}-restore
// --noflush, down to which line each tool blames. The conformance tests run
// the same scenarios against this fake and the real tools in a namespace.
//
// The two tools differ in when they evaluate a table section:
// - legacy applies each line to an in-memory copy as it reads it, so the first
//   failing line is blamed, even if a syntax error follows;
// - nft parses the whole section first (a syntax error anywhere wins), then at
//   COMMIT evaluates the commands in order against its cache: an unknown jump
//   target aborts blaming the COMMIT line, and the kernel's own refusals
//   (deleting a busy chain, jumping to a built-in) only surface after every
//   command passed the cache, each blamed on its line.
// Both commit table by table: a failure leaves its table as it was, while the
// tables COMMITted earlier in the payload stay applied.
// ipset is modelled as far as the agent uses it: hash sets whose members carry
// a comment; a rule matching a set that does not exist, or a set of the other
// family (ip6tables and an inet set), is refused, and a set that a rule still
// matches cannot be destroyed.

import type { IPFamily } from '../selection/selection.js';
import { RestoreError, type BackendMode, type IptablesBackend } from './backend.js';
import {
  BUILTIN_CHAINS,
  formatSave,
  isBuiltinChain,
  isKnownTable,
  jumpTarget,
  parseRestore,
  parseSave,
  type KnownTable,
  type RestoreCommand,
  type RestoreSection,
  type SavedChain,
} from './save-format.js';

/** Targets the tools resolve as extensions; any other -j names a chain. */
const EXTENSION_TARGETS: ReadonlySet<string> = new Set([
  'ACCEPT', 'DROP', 'RETURN', 'QUEUE', 'REJECT', 'DNAT', 'SNAT', 'MASQUERADE', 'REDIRECT', 'NETMAP',
  'MARK', 'CONNMARK', 'LOG', 'NFLOG', 'NFQUEUE', 'TPROXY', 'CT', 'NOTRACK', 'TRACE', 'CHECKSUM',
  'CLASSIFY', 'TCPMSS', 'DSCP', 'TOS', 'TTL', 'AUDIT', 'SET', 'SECMARK', 'CONNSECMARK', 'IDLETIMER',
  'TEE', 'SYNPROXY', 'HMARK', 'LED',
]);

const POLICIES: ReadonlySet<string> = new Set(['ACCEPT', 'DROP']);

interface TableState {
  readonly chains: Map<string, SavedChain>;
  /** Rules jumping to each name, so -X can refuse a referenced chain without scanning the table. */
  readonly refs: Map<string, number>;
}

export interface RestoreRecord {
  readonly payload: string;
  /** Null when the whole payload applied. */
  readonly error: RestoreError | null;
}

export class FakeIptables implements IptablesBackend {
  /** Every payload passed to restore, in order, with its outcome. */
  readonly history: RestoreRecord[] = [];
  private readonly tables = new Map<KnownTable, TableState>();
  /** ipsets: name -> create line, members (entry -> comment). */
  private readonly sets = new Map<string, { create: string; members: Map<string, string> }>();

  /** iptables or ip6tables: which rules the data plane over it plans, and which sets its rules may match. */
  constructor(readonly mode: BackendMode = 'nft', readonly family: IPFamily = 'ipv4') {
    for (const table of Object.keys(BUILTIN_CHAINS) as KnownTable[]) {
      this.tables.set(table, stateOf(table, new Map()));
    }
  }

  /** Replaces the tables present in an iptables-save text; the others keep their content. */
  load(text: string): void {
    for (const [name, { chains }] of parseSave(text)) {
      if (!isKnownTable(name)) throw new Error(`FakeIptables holds no table ${name}`);
      this.tables.set(name, stateOf(name, chains));
    }
  }

  async restore(payload: string): Promise<void> {
    try {
      this.apply(payload);
    } catch (err) {
      if (err instanceof RestoreError) this.history.push({ payload, error: err });
      throw err;
    }
    this.history.push({ payload, error: null });
  }

  /** `ipset restore -exist`: create (kept when present), add, del, destroy; all or nothing. */
  async restoreSets(payload: string): Promise<void> {
    const next = new Map([...this.sets].map(([name, set]) => [name, { create: set.create, members: new Map(set.members) }]));
    payload.split('\n').forEach((line, i) => {
      if (line.trim() === '') return;
      const [verb, name, entry] = line.split(' ');
      const set = next.get(name ?? '');
      const fail = (reason: string) => new Error(`ipset v7.17: Error in line ${i + 1}: ${reason}`);
      if (verb === 'create') {
        if (!set) next.set(name!, { create: line, members: new Map() });
        else if (set.create !== line) throw fail('Set cannot be created: set with the same name already exists');
        return;
      }
      if (!set) throw fail('The set with the given name does not exist');
      if (verb === 'add') set.members.set(entry!, /comment "([^"]*)"/.exec(line)?.[1] ?? '');
      else if (verb === 'del') set.members.delete(entry!);
      else if (verb === 'destroy') {
        if (this.setInUse(name!)) throw fail('Set cannot be destroyed: it is in use by a kernel component');
        next.delete(name!);
      } else throw fail(`unknown command ${verb}`);
    });
    this.sets.clear();
    for (const [name, set] of next) this.sets.set(name, set);
  }

  async saveSet(name: string): Promise<string | null> {
    const set = this.sets.get(name);
    if (!set) return null;
    const adds = [...set.members].map(([entry, comment]) => `add ${name} ${entry} comment "${comment}"`);
    return `${[set.create, ...adds].join('\n')}\n`;
  }

  /** The family of a set's members, from its create line; null when there is no such set. */
  private setFamily(name: string): IPFamily | null {
    const set = this.sets.get(name);
    if (!set) return null;
    return / family inet6( |$)/.test(set.create) ? 'ipv6' : 'ipv4';
  }

  private setInUse(name: string): boolean {
    for (const { chains } of this.tables.values()) {
      for (const chain of chains.values()) if (chain.rules.some((spec) => matchedSets(spec).includes(name))) return true;
    }
    return false;
  }

  /** iptables-save's layout: built-ins in fixed order, then user chains in byte order. */
  async save(table: KnownTable): Promise<string> {
    const { chains } = this.tables.get(table)!;
    const users = [...chains.keys()].filter((name) => !isBuiltinChain(table, name)).sort(byteOrder);
    const ordered = new Map<string, SavedChain>();
    for (const name of [...BUILTIN_CHAINS[table], ...users]) ordered.set(name, chains.get(name)!);
    return formatSave(new Map([[table, { chains: ordered }]]));
  }

  private apply(payload: string): void {
    const { sections, error } = parseRestore(payload);
    for (const section of sections) {
      const committed = section.commitLine !== null;
      // A section cut short by a syntax error: nft never evaluates it, legacy
      // has applied its lines to a copy (and may fail on one) before the error.
      if (!committed && this.mode === 'nft') continue;
      const next = new SectionRun(this.mode, this.family, section, this.tables.get(section.table)!, (name) => this.setFamily(name)).run();
      if (committed) this.tables.set(section.table, next);
    }
    if (error) throw refusal(this.mode, error.line, error.message);
  }
}

/** The error the tool reports, worded after iptables-nft-restore's "line N failed: reason". */
function refusal(mode: BackendMode, line: number, reason: string): RestoreError {
  const message = `iptables-${mode}-restore: line ${line} failed: ${reason}`;
  return new RestoreError(message, `${message}\n`, line);
}

class SectionRun {
  private readonly chains: Map<string, SavedChain>;
  private readonly refs: Map<string, number>;
  /** Chains already copied from the committed state (copy on first write). */
  private readonly owned = new Set<string>();
  /** nft only: refusals the kernel reports when the batch is sent. */
  private readonly kernelRefusals: { line: number; reason: string }[] = [];

  constructor(
    private readonly mode: BackendMode,
    private readonly family: IPFamily,
    private readonly section: RestoreSection,
    committed: TableState,
    private readonly setFamily: (name: string) => IPFamily | null,
  ) {
    this.chains = new Map(committed.chains);
    this.refs = new Map(committed.refs);
  }

  run(): TableState {
    for (const command of this.section.commands) this.execute(command);
    const [first] = this.kernelRefusals;
    if (first) throw this.refuse(first.line, this.kernelRefusals.map((r) => `line ${r.line}: ${r.reason}`).join('; '));
    return { chains: this.chains, refs: this.refs };
  }

  private execute(cmd: RestoreCommand): void {
    switch (cmd.op) {
      case 'declare':
        return this.declare(cmd.line, cmd.chain, cmd.policy);
      case 'append': {
        this.checkTarget(cmd.line, cmd.spec);
        const chain = this.writable(cmd.line, cmd.chain);
        chain.rules.push(cmd.spec);
        this.reference(cmd.spec, 1);
        return;
      }
      case 'insert': {
        this.checkTarget(cmd.line, cmd.spec);
        const chain = this.writable(cmd.line, cmd.chain);
        if (cmd.position > chain.rules.length + 1) throw this.refuse(cmd.line, 'Index of insertion too big.');
        chain.rules.splice(cmd.position - 1, 0, cmd.spec);
        this.reference(cmd.spec, 1);
        return;
      }
      case 'delete':
        return cmd.spec === undefined ? this.deleteAt(cmd.line, cmd.chain, cmd.position) : this.deleteSpec(cmd.line, cmd.chain, cmd.spec);
      case 'flush':
        return this.flush(this.writable(cmd.line, cmd.chain));
      case 'deleteChain':
        return this.deleteChain(cmd.line, cmd.chain);
      case 'policy': {
        if (!this.isBuiltin(cmd.chain)) throw this.refuse(cmd.line, 'Bad built-in chain name.');
        if (!POLICIES.has(cmd.policy)) throw this.refuse(cmd.line, 'Bad policy name.');
        this.writable(cmd.line, cmd.chain).policy = cmd.policy;
        return;
      }
    }
  }

  private declare(line: number, name: string, policy: string | null): void {
    if (this.isBuiltin(name)) {
      // "-" leaves a built-in's policy alone; --noflush never flushes a built-in.
      if (policy === null) return;
      if (!POLICIES.has(policy)) throw this.refuse(line, 'Bad policy name.');
      this.writable(line, name).policy = policy;
      return;
    }
    // nft ignores a policy on a user chain; legacy refuses it.
    if (policy !== null && this.mode === 'legacy') {
      throw this.refuse(line, `Can't set policy \`${policy}' on \`${name}': Bad built-in chain name`);
    }
    if (this.chains.has(name)) this.flush(this.writable(line, name));
    else {
      this.chains.set(name, { policy: null, rules: [] });
      this.owned.add(name);
    }
  }

  private deleteSpec(line: number, name: string, spec: string): void {
    this.checkTarget(line, spec);
    const chain = this.chains.get(name);
    const index = chain ? chain.rules.indexOf(spec) : -1;
    if (index === -1) throw this.refuse(line, 'Bad rule (does a matching rule exist in that chain?).');
    this.writable(line, name).rules.splice(index, 1);
    this.reference(spec, -1);
  }

  private deleteAt(line: number, name: string, position: number): void {
    const chain = this.writable(line, name);
    if (position > chain.rules.length) throw this.refuse(line, 'Index of deletion too big.');
    const [spec] = chain.rules.splice(position - 1, 1);
    this.reference(spec!, -1);
  }

  private deleteChain(line: number, name: string): void {
    const chain = this.chains.get(name);
    if (!chain) throw this.refuse(line, 'No chain/target/match by that name.');
    if (this.isBuiltin(name) || chain.rules.length > 0 || (this.refs.get(name) ?? 0) > 0) {
      const reason = `CHAIN_DEL failed (Device or resource busy): chain ${name}`;
      if (this.mode === 'legacy') throw this.refuse(line, reason);
      this.kernelRefusals.push({ line, reason });
    }
    // nft's cache forgets the chain even when the kernel will refuse: later
    // lines of the section see it gone.
    for (const spec of chain.rules) this.reference(spec, -1);
    this.chains.delete(name);
  }

  private flush(chain: SavedChain): void {
    for (const spec of chain.rules) this.reference(spec, -1);
    chain.rules = [];
  }

  /** Parse-time check of -j/-g (both tools resolve the target before touching the chain) and of the sets matched. */
  private checkTarget(line: number, spec: string): void {
    for (const set of matchedSets(spec)) {
      const family = this.setFamily(set);
      if (family === null) throw this.refuse(line, `Set ${set} doesn't exist.`);
      if (family !== this.family) throw this.refuse(line, `The protocol family of set ${set} is ${family === 'ipv6' ? 'IPv6' : 'IPv4'}, which is not applicable.`);
    }
    const target = jumpTarget(spec);
    if (target === null || EXTENSION_TARGETS.has(target)) return;
    if (!this.chains.has(target)) {
      if (this.mode === 'legacy') throw this.refuse(line, `Couldn't load target \`${target}'`);
      throw this.refuse(this.section.commitLine!, `Chain '${target}' does not exist`);
    }
    if (this.isBuiltin(target)) {
      const reason = `jump to built-in chain ${target}: Operation not supported`;
      if (this.mode === 'legacy') throw this.refuse(line, reason);
      this.kernelRefusals.push({ line, reason });
    }
  }

  /** The chain, copied from the committed state before its first change. */
  private writable(line: number, name: string): SavedChain {
    const chain = this.chains.get(name);
    if (!chain) throw this.refuse(line, 'No chain/target/match by that name.');
    if (this.owned.has(name)) return chain;
    const copy = { policy: chain.policy, rules: [...chain.rules] };
    this.chains.set(name, copy);
    this.owned.add(name);
    return copy;
  }

  private reference(spec: string, delta: 1 | -1): void {
    countReference(this.refs, spec, delta);
  }

  private isBuiltin(name: string): boolean {
    return isBuiltinChain(this.section.table, name);
  }

  private refuse(line: number, reason: string): RestoreError {
    return refusal(this.mode, line, reason);
  }
}

/** A table holding the given chains, with every built-in present (ACCEPT unless given). */
function stateOf(table: KnownTable, given: ReadonlyMap<string, SavedChain>): TableState {
  const chains = new Map<string, SavedChain>();
  for (const name of BUILTIN_CHAINS[table]) chains.set(name, { policy: 'ACCEPT', rules: [] });
  const refs = new Map<string, number>();
  for (const [name, chain] of given) {
    chains.set(name, { policy: isBuiltinChain(table, name) ? chain.policy ?? 'ACCEPT' : null, rules: [...chain.rules] });
    for (const spec of chain.rules) countReference(refs, spec, 1);
  }
  return { chains, refs };
}

function countReference(refs: Map<string, number>, spec: string, delta: 1 | -1): void {
  const target = jumpTarget(spec);
  if (target === null || EXTENSION_TARGETS.has(target)) return;
  const count = (refs.get(target) ?? 0) + delta;
  if (count > 0) refs.set(target, count);
  else refs.delete(target);
}

/** The ipsets a rule matches (`-m set --match-set NAME`). */
function matchedSets(spec: string): string[] {
  return [...spec.matchAll(/--match-set (\S+)/g)].map((m) => m[1]!);
}

/** strcmp order, as both tools sort user chains. */
function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
