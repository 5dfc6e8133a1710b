// The cheap check behind drift repair: read a few chains (`iptables -S CHAIN`,
// never a whole-table iptables-save) and judge the agent's jumps in the
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
 * `iptables-<mode> -t TABLE -S CHAIN` per chain, all in one `sh` process (a
 * process start costs more than reading a short chain); inside `netns` when
 * set (tests, benchmarks).
 */
export function execChainReader(mode: BackendMode, opts: { netns?: string; lockWaitSeconds?: number; family?: IPFamily } = {}): ChainReader {
  const tool = `${opts.family === 'ipv6' ? 'ip6tables' : 'iptables'}-${mode}`;
  const wait = String(opts.lockWaitSeconds ?? 5);
  return {
    async read(chains) {
      const out = new Map<string, string[] | null>();
      if (chains.length === 0) return out;
      for (const c of chains) if (!SAFE_NAME.test(c.table) || !SAFE_NAME.test(c.name)) throw new Error(`unexpected chain name ${c.table}/${c.name}`);
      const script = chains.map((c) => `${tool} -w ${wait} -t ${c.table} -S ${c.name} 2>&1; echo "${MARK} $?"`).join('\n');
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
        if (i < chains.length) bodies.push(body);
      });
      chains.forEach((c, i) => {
        const body = bodies[i] ?? '';
        const status = statuses[i];
        if (status === 0) out.set(chainId(c.table, c.name), parseListing(body, c.name));
        // iptables-nft 1.8.9 calls a chain missing from an existing table "incompatible".
        else if (/No chain\/target\/match|does not exist|is incompatible/i.test(body)) out.set(chainId(c.table, c.name), null);
        else throw new Error(`${tool} -t ${c.table} -S ${c.name} failed: ${body.trim() || `exit ${status ?? 'unknown'}`}`);
      });
      return out;
    },
  };
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
