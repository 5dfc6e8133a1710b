// The real backend: one iptables-{nft,legacy}-restore process per restore,
// payload on stdin (ip6tables-… for IPv6). Debian 12 (and a Debian-slim image
// with the iptables package) ships both variants under these names, whereas
// plain "iptables-restore" is whichever update-alternatives points to.

import { execa } from 'execa';
import type { Logger } from '../log.js';
import type { IPFamily } from '../selection/selection.js';
import type { Table } from './plan-types.js';
import { LockTimeoutError, RestoreError, type BackendMode, type IptablesBackend } from './backend.js';
import { jumpTarget, parseSave } from './save-format.js';

export type BackendChoice = BackendMode | 'auto';

export interface ExecBackendOptions {
  readonly mode: BackendChoice;
  /**
   * Passed as -w to every restore: how long to wait for the xtables lock
   * (iptables-legacy only; /run/xtables.lock, or the file XTABLES_LOCKFILE names).
   */
  readonly lockWaitSeconds?: number;
  /** Run every command as `ip netns exec <netns> ...` (tests, benchmarks); the agent leaves it unset. */
  readonly netns?: string;
  /** iptables (IPv4, the default) or ip6tables (IPv6). */
  readonly family?: IPFamily;
  readonly log: Logger;
}

/** The command of one family's tool in one backend: `iptables-nft-save`, `ip6tables-legacy-restore`. */
export function toolName(family: IPFamily | undefined, mode: BackendMode, what: 'save' | 'restore'): string {
  return `${family === 'ipv6' ? 'ip6tables' : 'iptables'}-${mode}-${what}`;
}

/** What one backend's full dump says about who uses it. */
export interface DumpEvidence {
  /** KUBE-* chains in nat, mangle and filter. */
  readonly kubeChains: number;
  /** Rules in those tables that sit in or jump to a KUBE-* chain. */
  readonly kubeRules: number;
  /** Rules in any table. */
  readonly rules: number;
}

export interface BackendDecision {
  readonly mode: BackendMode;
  /** One sentence for the log. */
  readonly reason: string;
  /** Both backends hold kube-proxy chains: the node mixes backends. */
  readonly mixed: boolean;
  readonly evidence: Readonly<Record<BackendMode, DumpEvidence>>;
}

const KUBE_TABLES: ReadonlySet<string> = new Set(['nat', 'mangle', 'filter']);

export function summarizeDump(dump: string): DumpEvidence {
  let kubeChains = 0;
  let kubeRules = 0;
  let rules = 0;
  for (const [table, { chains }] of parseSave(dump)) {
    const kubeTable = KUBE_TABLES.has(table);
    for (const [name, chain] of chains) {
      rules += chain.rules.length;
      if (!kubeTable) continue;
      if (name.startsWith('KUBE-')) {
        kubeChains++;
        kubeRules += chain.rules.length;
        continue;
      }
      for (const spec of chain.rules) {
        if (spec.includes('KUBE-') && jumpTarget(spec)?.startsWith('KUBE-')) kubeRules++;
      }
    }
  }
  return { kubeChains, kubeRules, rules };
}

/**
 * Picks the backend kube-proxy uses, so our DNAT rules sit next to its rules
 * and are seen in the same hook order. Ties go to nft, Debian 12's default.
 */
export function decideBackend(dumps: Readonly<Record<BackendMode, string>>): BackendDecision {
  const evidence = { nft: summarizeDump(dumps.nft), legacy: summarizeDump(dumps.legacy) };
  const { nft, legacy } = evidence;
  const decide = (mode: BackendMode, reason: string, mixed = false): BackendDecision => ({ mode, reason, mixed, evidence });

  if (nft.kubeChains > 0 && legacy.kubeChains > 0) {
    const mode = legacy.kubeRules > nft.kubeRules ? 'legacy' : 'nft';
    return decide(
      mode,
      `kube-proxy chains in both iptables-nft (${nft.kubeRules} KUBE- rules) and iptables-legacy (${legacy.kubeRules}): using iptables-${mode}, which has more`,
      true,
    );
  }
  for (const mode of ['nft', 'legacy'] as const) {
    const e = evidence[mode];
    if (e.kubeChains > 0) return decide(mode, `kube-proxy chains found in iptables-${mode} only (${e.kubeChains} KUBE- chains, ${e.kubeRules} rules)`);
  }
  if (nft.rules > 0 || legacy.rules > 0) {
    const mode = legacy.rules > nft.rules ? 'legacy' : 'nft';
    return decide(mode, `no kube-proxy chains; iptables-${mode} holds the most rules (nft ${nft.rules}, legacy ${legacy.rules})`);
  }
  return decide('nft', 'no rules in either backend: nft, the Debian 12 default');
}

/** Dumps both backends of one family (every table that exists, creating none) and decides. */
export async function detectBackend(options: { readonly netns?: string; readonly family?: IPFamily; readonly log: Logger }): Promise<BackendDecision> {
  const dumps = { nft: '', legacy: '' };
  const failures: string[] = [];
  for (const mode of ['nft', 'legacy'] as const) {
    // Without -t, iptables-save prints only tables that exist; "-t mangle"
    // would instantiate the legacy table it asks about.
    const result = await run(options.netns, toolName(options.family, mode, 'save'), []);
    if (result.failed) {
      failures.push(`${mode}: ${describeFailure(result)}`);
      options.log.warn({ backend: mode, stderr: result.stderr }, 'iptables backend detection could not dump this backend; counting it as empty');
    } else {
      dumps[mode] = result.stdout;
    }
  }
  if (failures.length === 2) throw new Error(`${options.family === 'ipv6' ? 'ip6tables' : 'iptables'} backend detection failed: ${failures.join('; ')}`);
  return decideBackend(dumps);
}

export class ExecIptablesBackend implements IptablesBackend {
  private readonly lockWait: string;
  readonly family: IPFamily;
  private readonly restoreListeners: ((pid: number | undefined, exited: Promise<unknown>) => void)[] = [];

  constructor(
    readonly mode: BackendMode,
    private readonly options: Omit<ExecBackendOptions, 'mode'>,
    /** How `auto` chose the mode; undefined when the mode was given. */
    readonly detection?: BackendDecision,
  ) {
    this.lockWait = String(options.lockWaitSeconds ?? 5);
    this.family = options.family ?? 'ipv4';
  }

  /** The same backend (mode, lock wait, namespace) for another family's tools. */
  forFamily(family: IPFamily): ExecIptablesBackend {
    return new ExecIptablesBackend(this.mode, { ...this.options, family }, this.detection);
  }

  /** Told of every restore process as it starts: what it commits is the agent's own write (drift detection). */
  onRestoreStarted(listener: (pid: number | undefined, exited: Promise<unknown>) => void): void {
    this.restoreListeners.push(listener);
  }

  async restore(payload: string): Promise<void> {
    const tool = toolName(this.family, this.mode, 'restore');
    const started = performance.now();
    const subprocess = run(this.options.netns, tool, ['-w', this.lockWait, '--noflush'], payload);
    for (const listener of this.restoreListeners) listener(subprocess.pid, subprocess);
    const result = await subprocess;
    const durationMs = Math.round(performance.now() - started);
    if (result.failed && holdsLock(result.stderr)) {
      this.options.log.debug({ tool, bytes: payload.length, durationMs }, 'iptables restore gave up waiting for the xtables lock');
      throw new LockTimeoutError(
        `${tool}: another writer held the xtables lock (${process.env.XTABLES_LOCKFILE ?? '/run/xtables.lock'}) for longer than ${this.lockWait}s (iptablesLockWait); nothing was applied`,
        result.stderr,
      );
    }
    if (result.failed) {
      const line = blamedLine(result.stderr);
      this.options.log.debug({ tool, bytes: payload.length, durationMs, line }, 'iptables restore refused');
      throw new RestoreError(`${tool} failed${line === undefined ? '' : ` at line ${line}`}: ${describeFailure(result)}`, result.stderr, line);
    }
    this.options.log.debug({ tool, bytes: payload.length, durationMs }, 'iptables restore applied');
  }

  async save(table: Table): Promise<string> {
    const tool = toolName(this.family, this.mode, 'save');
    const result = await run(this.options.netns, tool, ['-t', table]);
    if (result.failed) throw new Error(`${tool} -t ${table} failed: ${describeFailure(result)}`);
    return result.stdout;
  }

  async restoreSets(payload: string): Promise<void> {
    const result = await run(this.options.netns, 'ipset', ['restore', '-exist'], payload);
    if (result.failed) throw new Error(`ipset restore failed: ${describeFailure(result)}`);
    this.options.log.debug({ tool: 'ipset', bytes: payload.length }, 'ipset restore applied');
  }

  async saveSet(name: string): Promise<string | null> {
    const result = await run(this.options.netns, 'ipset', ['save', name]);
    if (!result.failed) return result.stdout;
    if (/does not exist/.test(result.stderr)) return null;
    throw new Error(`ipset save ${name} failed: ${describeFailure(result)}`);
  }
}

export async function createIptablesBackend(options: ExecBackendOptions): Promise<ExecIptablesBackend> {
  if (options.mode !== 'auto') return new ExecIptablesBackend(options.mode, options);
  const decision = await detectBackend(options);
  const fields = { backend: decision.mode, reason: decision.reason, evidence: decision.evidence };
  if (decision.mixed) options.log.warn(fields, 'node mixes iptables backends: kube-proxy chains exist in both nft and legacy');
  else options.log.info({ ...fields, family: options.family ?? 'ipv4' }, 'iptables backend detected');
  return new ExecIptablesBackend(decision.mode, options, decision);
}

/**
 * ip6tables in the mode of an iptables backend (kube-proxy drives both
 * families with tools of one kind), when the kernel takes IPv6 rules; null
 * (logged) when it does not, e.g. with IPv6 disabled: then IPv4 alone is served.
 */
export async function ip6tablesBeside(backend: ExecIptablesBackend, log: Logger): Promise<ExecIptablesBackend | null> {
  const v6 = backend.forFamily('ipv6');
  try {
    await v6.restore('*nat\nCOMMIT\n');
    return v6;
  } catch (err) {
    log.warn({ backend: v6.mode, err: (err as Error).message.split('\n')[0] }, 'ip6tables takes no rules on this node: IPv6 ClusterIPs are not served, IPv4 ones are');
    return null;
  }
}

/**
 * The payload line the tool blames. Forms seen from iptables 1.8.9:
 * "line N failed", "Error occurred at line: N", "COMMIT expected at line N",
 * "line N: CHAIN_DEL failed ..." (nft, one per refused command; the first wins).
 */
export function blamedLine(stderr: string): number | undefined {
  const match = /\bline:? (\d+)/.exec(stderr);
  return match ? Number(match[1]) : undefined;
}

/** iptables' words when -w ran out: "Another app is currently holding the xtables lock. Stopped waiting after 5s." */
export function holdsLock(stderr: string): boolean {
  return /holding the xtables lock/.test(stderr);
}

const TOOL_TIMEOUT_MS = 120_000;

function run(netns: string | undefined, tool: string, args: readonly string[], input?: string) {
  const [file, argv] = netns === undefined ? [tool, args] : ['ip', ['netns', 'exec', netns, tool, ...args]];
  return execa(file, argv, {
    reject: false,
    stripFinalNewline: false,
    // Dumps of large kube-proxy nodes reach tens of MB.
    maxBuffer: 512 * 1024 * 1024,
    // A hung tool must not stall syncing for good: the failure is retried with backoff.
    // Generous: a 10k-service legacy restore takes seconds, plus the lock wait.
    timeout: TOOL_TIMEOUT_MS,
    forceKillAfterDelay: 2000,
    ...(input === undefined ? { stdin: 'ignore' as const } : { input }),
  });
}

function describeFailure(result: { stderr: string; shortMessage?: string }): string {
  const stderr = result.stderr.trim();
  return stderr === '' ? result.shortMessage ?? 'failed' : stderr;
}
