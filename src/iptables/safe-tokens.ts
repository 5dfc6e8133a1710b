import { shown } from '../model/api-values.js';

// The last check before text reaches iptables-restore, whatever the model
// holds: a restore payload is a line-oriented language where a newline ends
// a command, "COMMIT" ends a table, a '"' opens or closes a token and a '\'
// escapes the next character. One value carrying any of them could end the
// token it was meant to stay inside and write rules of its own into any
// table. Values are validated long before (src/model/api-values.ts); this
// refuses to emit what slipped through, so a bug there costs one group's
// rules (it is quarantined), never the node's firewall.
//
// What a rule's arguments may hold: printable ASCII only (no control
// character, no newline, nothing past 0x7e); no '\' anywhere; a '"' only to
// quote the argument of a --comment: it opens the token right after
// `--comment` and the next '"' closes it as the token's last character; at
// most one --comment per rule (the agent writes one). A value that closes the
// comment it was put in can then add no argument of its own: what follows it
// must end with the closing quote, so it would need a quoted token of its
// own, which only a second --comment may open. Chain names are one token of
// [A-Za-z0-9_.-], at most 28 characters (what the kernel holds).

/** A payload line the renderer refused to emit, naming the unit (service group) it belongs to. */
export class UnsafeTokenError extends Error {
  constructor(
    /** The unit (a service group's key, '' for the skeleton) whose rule it is. */
    readonly unit: string,
    /** The refused text, as reports show it (escaped, truncated). */
    readonly text: string,
    readonly reason: string,
  ) {
    super(`unsafe iptables-restore token in ${unit === '' ? 'the skeleton' : `unit ${unit}`}: ${reason} in ${text}; nothing was emitted`);
    this.name = 'UnsafeTokenError';
  }
}

/** Anything outside printable ASCII, or a backslash. */
const UNSAFE_CHAR = /[^\x20-\x7e]|\\/;
const CHAIN_NAME = /^[A-Za-z0-9_.-]{1,28}$/;
/** The longest quoted argument iptables-restore reads (its parameter buffer holds 1,023 bytes). */
const MAX_QUOTED = 1023;

/** Why `spec` (a rule's arguments) cannot be emitted, or null when it can. */
export function specProblem(spec: string): string | null {
  const bad = UNSAFE_CHAR.exec(spec);
  if (bad) return bad[0] === '\\' ? `a backslash at ${bad.index}` : `character ${shown(bad[0])} (not printable ASCII) at ${bad.index}`;
  // Hot path (every rule of a sync): specs without a quote need no tokenizing.
  if (!spec.includes('"')) return null;
  let previous = '';
  let i = 0;
  while (i < spec.length) {
    if (spec[i] === ' ') {
      i++;
      continue;
    }
    if (spec[i] === '"') {
      if (previous !== COMMENT) return `a quoted argument at ${i} that is not a --comment's`;
      const close = spec.indexOf('"', i + 1);
      if (close === -1) return `a quote opened at ${i} and never closed`;
      if (close + 1 < spec.length && spec[close + 1] !== ' ') return `a quote at ${close} inside a token`;
      if (close - i - 1 > MAX_QUOTED) return `a quoted argument of ${close - i - 1} characters`;
      previous = spec.slice(i, close + 1);
      i = close + 1;
      continue;
    }
    let end = spec.indexOf(' ', i);
    if (end === -1) end = spec.length;
    const quote = spec.indexOf('"', i);
    if (quote !== -1 && quote < end) return `a quote at ${quote} inside a token`;
    previous = spec.slice(i, end);
    i = end;
  }
  return commentCount(spec) > 1 ? 'more than one --comment' : null;
}

const COMMENT = '--comment';

/**
 * How many --comment options a spec holds. The agent writes one per rule
 * (and iptables-save prints it once): a second one can only come from a
 * value that closed the first and opened another around arguments of its own.
 */
function commentCount(spec: string): number {
  let n = 0;
  for (let at = spec.indexOf(COMMENT); at !== -1; at = spec.indexOf(COMMENT, at + COMMENT.length)) {
    const end = at + COMMENT.length;
    if ((at === 0 || spec[at - 1] === ' ') && (end === spec.length || spec[end] === ' ')) n++;
  }
  return n;
}

/** Why `name` cannot be emitted as a chain name, or null when it can. */
export function chainProblem(name: string): string | null {
  return CHAIN_NAME.test(name) ? null : 'not a chain name ([A-Za-z0-9_.-], at most 28 characters)';
}

/** Throws UnsafeTokenError unless `spec` can be emitted as a rule's arguments. */
export function assertSafeSpec(unit: string, spec: string): void {
  const problem = specProblem(spec);
  if (problem !== null) throw new UnsafeTokenError(unit, shown(spec), problem);
}

/** Throws UnsafeTokenError unless `name` can be emitted as a chain name. */
export function assertSafeChain(unit: string, name: string): void {
  const problem = chainProblem(name);
  if (problem !== null) throw new UnsafeTokenError(unit, shown(name), problem);
}
