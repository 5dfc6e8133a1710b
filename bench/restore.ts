import { execa } from 'execa';
import type { BackendMode, IptablesBackend } from '../src/iptables/backend.js';
import type { Table } from '../src/iptables/plan-types.js';

/**
 * One iptables-restore --noflush of `payload` inside `ns`, spawned exactly as
 * the agent's backend spawns it (`ip netns exec`, -w): the floor the kernel and
 * the tool impose. Returns its wall time in ms, or null when it ran past
 * `timeoutMs` and was killed (nothing is committed then: the tool sends its
 * batch to the kernel only at the end).
 */
export async function bareRestore(ns: string, mode: BackendMode, payload: string, timeoutMs = 0): Promise<number | null> {
  const started = performance.now();
  const result = await execa('ip', ['netns', 'exec', ns, `iptables-${mode}-restore`, '-w', '5', '--noflush'], {
    input: payload,
    reject: false,
    ...(timeoutMs > 0 ? { timeout: timeoutMs, killSignal: 'SIGKILL' as const } : {}),
  });
  const ms = performance.now() - started;
  if (result.timedOut) return null;
  if (result.failed) throw new Error(`iptables-${mode}-restore in ${ns} failed: ${result.stderr.trim() || result.shortMessage}`);
  return ms;
}

/** Passes everything to `inner` and keeps the last payloads restored, so they can be replayed bare. */
export class RecordingBackend implements IptablesBackend {
  readonly payloads: string[] = [];

  constructor(private readonly inner: IptablesBackend) {}

  get mode(): BackendMode {
    return this.inner.mode;
  }

  async restore(payload: string): Promise<void> {
    await this.inner.restore(payload);
    this.payloads.push(payload);
  }

  save(table: Table): Promise<string> {
    return this.inner.save(table);
  }

  restoreSets(payload: string): Promise<void> {
    return this.inner.restoreSets(payload);
  }

  saveSet(name: string): Promise<string | null> {
    return this.inner.saveSet(name);
  }

  /** Takes the payloads recorded since the last call. */
  take(): string[] {
    return this.payloads.splice(0);
  }
}
