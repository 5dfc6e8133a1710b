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
// most one quoted argument per rule (the agent writes one comment per rule).
// A value that closes the comment it was put in can then add no argument of
// its own: what follows it ends with the comment's closing quote, so it would
// need a second quoted argument. Chain names are one token of [A-Za-z0-9_.-],
// at most 28 characters (what the kernel holds).

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
  // Hot path (every rule of a sync): no slicing, only searches.
  let quoted = 0;
  for (let open = spec.indexOf('"'); open !== -1; open = spec.indexOf('"', open + 1)) {
    if (!afterComment(spec, open)) return `a quote at ${open} that does not open a --comment's argument`;
    const close = spec.indexOf('"', open + 1);
    if (close === -1) return `a quote opened at ${open} and never closed`;
    if (close + 1 < spec.length && spec.charCodeAt(close + 1) !== 0x20) return `a quote at ${close} inside a token`;
    if (close - open - 1 > MAX_QUOTED) return `a quoted argument of ${close - open - 1} characters`;
    if (++quoted > 1) return 'more than one quoted argument';
    open = close;
  }
  return null;
}

/** Whether position `at` starts the token right after a `--comment` token. */
function afterComment(spec: string, at: number): boolean {
  const start = at - COMMENT.length - 1;
  return start >= 0 && spec.startsWith(COMMENT_SPACE, start) && (start === 0 || spec.charCodeAt(start - 1) === 0x20);
}

const COMMENT = '--comment';
const COMMENT_SPACE = `${COMMENT} `;

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
