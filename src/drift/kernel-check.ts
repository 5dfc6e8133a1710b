// The cheap check behind drift repair: read a few chains (`iptables -S CHAIN`,
// or `iptables -S` of a table when many of its chains are wanted; never a
// whole iptables-save) and judge the agent's jumps in the
// built-in chains with the same rule the full sync applies (observe): each
// jump present once and ahead of every KUBE- jump.

import { execFile } from 'node:child_process';
import type { BackendMode } from '../iptables/backend.js';
import { observe, type TableDump } from '../iptables/observe.js';
import { jumpTarget } from '../iptables/save-format.js';
import { diffPlans } from '../iptables/diff.js';
import { SKELETON_KEY, type ChainRef, type Jump, type Plan, type Table, type UnitChange } from '../iptables/plan-types.js';
import type { IPFamily } from '../selection/selection.js';

/** Reads chains' rules. */
export interface ChainReader {
  /**
   * The rule specs of each chain (keyed by chainId) as `iptables -S` prints
   * them, without `-A CHAIN `; null for a chain that does not exist.
   */
  read(chains: readonly ChainRef[]): Promise<Map<string, string[] | null>>;
}

const SAFE_NAME = /^[A-Za-z0-9_.-]+$/;
const MARK = '#clusterset-proxy-chain-end';

/**
 * Above this many chains of one table, the table is listed once: iptables
 * fetches and parses the whole table for every `-S CHAIN` anyway (legacy's
 * libiptc always; nft for its cache), so one listing beats dozens of reads.
 */
const CHAINS_PER_TABLE_READ = 8;

/**
 * `iptables-<mode> -t TABLE -S CHAIN` per chain, or `-t TABLE -S` once for a
 * table of which more than CHAINS_PER_TABLE_READ chains are wanted, all in one
 * `sh` process (a process start costs more than reading a short chain);
 * inside `netns` when set (tests, benchmarks).
 */
export function execChainReader(mode: BackendMode, opts: { netns?: string; lockWaitSeconds?: number; family?: IPFamily } = {}): ChainReader {
  const tool = `${opts.family === 'ipv6' ? 'ip6tables' : 'iptables'}-${mode}`;
  const wait = String(opts.lockWaitSeconds ?? 5);
  return {
    async read(chains) {
      const out = new Map<string, string[] | null>();
      if (chains.length === 0) return out;
      for (const c of chains) if (!SAFE_NAME.test(c.table) || !SAFE_NAME.test(c.name)) throw new Error(`unexpected chain name ${c.table}/${c.name}`);
      const perTable = new Map<string, number>();
      for (const c of chains) perTable.set(c.table, (perTable.get(c.table) ?? 0) + 1);
      const whole = new Set([...perTable].filter(([, n]) => n > CHAINS_PER_TABLE_READ).map(([t]) => t));
      // One command per chain, or per table read whole; `reads[i]` is the command's chain, null for a whole table.
      const reads: { table: string; chain: string | null }[] = [
        ...[...whole].map((table) => ({ table, chain: null })),
        ...chains.filter((c) => !whole.has(c.table)).map((c) => ({ table: c.table, chain: c.name })),
      ];
      const script = reads.map((r) => `${tool} -w ${wait} -t ${r.table} -S${r.chain === null ? '' : ` ${r.chain}`} 2>&1; echo "${MARK} $?"`).join('\n');
      const [file, argv] = opts.netns === undefined ? ['sh', ['-c', script]] : ['ip', ['netns', 'exec', opts.netns, 'sh', '-c', script]];
      const stdout = await new Promise<string>((resolve, reject) => {
        execFile(file, argv, { timeout: 30_000, maxBuffer: 64 * 1024 * 1024 }, (err, so) => (err ? reject(err) : resolve(so)));
      });
      // Section 0 is the first chain's listing; each later one starts with the previous command's exit status.
      const sections = stdout.split(`${MARK} `);
      const bodies: string[] = [];
      const statuses: number[] = [];
      sections.forEach((text, i) => {
        let body = text;
        if (i > 0) {
          const nl = text.indexOf('\n');
          statuses.push(Number(nl === -1 ? text : text.slice(0, nl)));
          body = nl === -1 ? '' : text.slice(nl + 1);
        }
        if (i < reads.length) bodies.push(body);
      });
      reads.forEach((r, i) => {
        const body = bodies[i] ?? '';
        const status = statuses[i];
        if (r.chain === null) {
          if (status !== 0) throw new Error(`${tool} -t ${r.table} -S failed: ${body.trim() || `exit ${status ?? 'unknown'}`}`);
          for (const c of chains) {
            if (c.table !== r.table) continue;
            out.set(chainId(c.table, c.name), listsChain(body, c.name) ? parseListing(body, c.name) : null);
          }
          return;
        }
        const id = chainId(r.table, r.chain);
        if (status === 0) out.set(id, parseListing(body, r.chain));
        // iptables-nft 1.8.9 calls a chain missing from an existing table "incompatible".
        else if (/No chain\/target\/match|does not exist|is incompatible/i.test(body)) out.set(id, null);
        else throw new Error(`${tool} -t ${r.table} -S ${r.chain} failed: ${body.trim() || `exit ${status ?? 'unknown'}`}`);
      });
      return out;
    },
  };
}

/** Whether a table's `iptables -S` listing declares `chain` (`-N` for a user chain, `-P` for a built-in). */
export function listsChain(text: string, chain: string): boolean {
  return text.split('\n').some((line) => line === `-N ${chain}` || line.startsWith(`-P ${chain} `));
}

/** The rules of `chain` in `iptables -S CHAIN` output. */
export function parseListing(text: string, chain: string): string[] {
  const prefix = `-A ${chain} `;
  const rules: string[] = [];
  for (const line of text.split('\n')) if (line.startsWith(prefix)) rules.push(line.slice(prefix.length));
  return rules;
}

export type JumpCause = 'jump_order' | 'jump_missing';

/** One of the agent's jumps out of place, and what took its place. */
export interface JumpFinding {
  readonly cause: JumpCause;
  readonly table: Table;
  readonly chain: string;
  readonly spec: string;
  /** The foreign rule now ahead of it (the first KUBE- jump, or the first rule when the jump is gone); null when none. */
  readonly ahead: string | null;
}

export interface JumpAssessment {
  readonly findings: readonly JumpFinding[];
  /** The change that puts every jump of the chains read first again; empty when all are in place. */
  readonly units: readonly UnitChange[];
}

/** `table/chain` of a jump's built-in chain. */
export function chainId(table: string, chain: string): string {
  return `${table}/${chain}`;
}

/**
 * Judges the agent's jumps in the built-in chains read (`chains`, keyed by
 * chainId); jumps of chains not read are not judged.
 */
export function assessJumps(chains: ReadonlyMap<string, readonly string[]>, wanted: readonly Jump[]): JumpAssessment {
  const judged = wanted.filter((j) => chains.has(chainId(j.table, j.chain)));
  const dumps = new Map<Table, Map<string, { rules: readonly string[] }>>();
  for (const j of judged) {
    let dump = dumps.get(j.table);
    if (!dump) dumps.set(j.table, (dump = new Map()));
    dump.set(j.chain, { rules: chains.get(chainId(j.table, j.chain))! });
  }
  const desired = jumpsOnly(judged);
  const observed = observe(dumps as ReadonlyMap<Table, TableDump>, desired);
  const inPlace = new Set(observed.plan.jumps.map((j) => `${chainId(j.table, j.chain)}\0${j.spec}`));
  const findings: JumpFinding[] = [];
  for (const j of judged) {
    if (inPlace.has(`${chainId(j.table, j.chain)}\0${j.spec}`)) continue;
    const rules = chains.get(chainId(j.table, j.chain))!;
    const present = rules.includes(j.spec);
    const firstKube = rules.find((r) => jumpTarget(r)?.startsWith('KUBE-'));
    findings.push({ cause: present ? 'jump_order' : 'jump_missing', table: j.table, chain: j.chain, spec: j.spec, ahead: (present ? firstKube : rules[0]) ?? null });
  }
  if (findings.length === 0) return { findings, units: [] };
  // Read back, only the jumps are compared: nothing else is created or deleted.
  const { units } = diffPlans({ ...EMPTY_JUMPS, jumps: observed.plan.jumps }, desired, observed.strayJumps);
  return { findings, units };
}

const EMPTY_JUMPS: Plan = { setChains: [], skeleton: { key: SKELETON_KEY, chains: [], setRules: [] }, fragments: new Map(), jumps: [] };

function jumpsOnly(jumps: readonly Jump[]): Plan {
  return { ...EMPTY_JUMPS, jumps };
}

/** A short fingerprint of a chain's rules (legacy polling compares it from one read to the next). */
export function fingerprint(rules: readonly string[] | null): string {
  if (rules === null) return '-';
  let h = 0x811c9dc5;
  for (const r of rules) {
    for (let i = 0; i < r.length; i++) h = Math.imul(h ^ r.charCodeAt(i), 0x01000193);
    h = Math.imul(h ^ 10, 0x01000193);
  }
  return `${rules.length}:${(h >>> 0).toString(16)}`;
}
