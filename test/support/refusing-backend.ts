import type { IptablesBackend } from '../../src/iptables/backend.js';

/** An option iptables knows no match or target for: "unknown option", at the rule's line. */
export const INVALID_OPTION = '--no-such-option';

/** `backend`, with each payload line that DNATs to `ip` made invalid. */
export function refusingEndpoint(backend: IptablesBackend, ip: string): IptablesBackend {
  const needle = `--to-destination ${ip}:`;
  return {
    mode: backend.mode,
    save: (table) => backend.save(table),
    restoreSets: (payload) => backend.restoreSets(payload),
    saveSet: (name) => backend.saveSet(name),
    restore: (payload) => backend.restore(payload.split('\n').map((l) => (l.includes(needle) ? `${l} ${INVALID_OPTION}` : l)).join('\n')),
  };
}
