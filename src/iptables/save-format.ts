// The text formats of iptables-save and iptables-restore. Rule specs stay
// opaque strings (the text after "-A CHAIN "), compared verbatim; only the
// tokenizer looks inside them, to find a rule's jump target.

import type { Table } from './plan-types.js';

/** Built-in chains per table, in the order iptables-save prints them. */
export const BUILTIN_CHAINS = {
  raw: ['PREROUTING', 'OUTPUT'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
} as const satisfies Record<string, readonly string[]>;

export type KnownTable = keyof typeof BUILTIN_CHAINS;

export function isKnownTable(name: string): name is KnownTable {
  return Object.hasOwn(BUILTIN_CHAINS, name);
}

export function isBuiltinChain(table: KnownTable, chain: string): boolean {
  return (BUILTIN_CHAINS[table] as readonly string[]).includes(chain);
}

/** Both tools refuse longer chain names (legacy: "28 chars max"). */
export const MAX_CHAIN_NAME = 28;

export interface SavedChain {
  /** Built-in chains have a policy; user chains print "-" and hold null. */
  policy: string | null;
  /** Specs in order, each the text after "-A CHAIN ". */
  rules: string[];
}

export interface SavedTable {
  /** In the order the dump declares them (iptables-save: built-ins, then user chains sorted). */
  chains: Map<string, SavedChain>;
}

export class SaveParseError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(`line ${line}: ${message}`);
    this.name = 'SaveParseError';
  }
}

/**
 * Parses iptables-save output (with or without -c). Comments and counters are
 * dropped. One pass over the text with indexOf, no per-line regex: dumps of
 * kube-proxy nodes run to tens of MB.
 */
export function parseSave(text: string): Map<Table | string, SavedTable> {
  const tables = new Map<string, SavedTable>();
  let table: SavedTable | null = null;
  let tableName = '';
  let lineNo = 0;
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    lineNo++;
    let at = start;
    start = end + 1;
    const first = text.charCodeAt(at);
    if (at === end || first === HASH) continue;

    if (first === STAR) {
      if (table) throw new SaveParseError(`table ${tableName} has no COMMIT before the next table`, lineNo);
      tableName = text.slice(at + 1, end);
      if (tables.has(tableName)) throw new SaveParseError(`table ${tableName} appears twice`, lineNo);
      table = { chains: new Map() };
      tables.set(tableName, table);
      continue;
    }
    if (!table) throw new SaveParseError(`"${text.slice(at, end)}" outside a table`, lineNo);

    if (first === COLON) {
      const nameEnd = boundedIndexOf(text, ' ', at + 1, end);
      const policyEnd = boundedIndexOf(text, ' ', nameEnd + 1, end);
      const name = text.slice(at + 1, nameEnd);
      const policy = text.slice(nameEnd + 1, policyEnd);
      if (name === '' || policy === '') throw new SaveParseError(`bad chain line "${text.slice(at, end)}"`, lineNo);
      if (table.chains.has(name)) throw new SaveParseError(`chain ${name} declared twice`, lineNo);
      table.chains.set(name, { policy: policy === '-' ? null : policy, rules: [] });
      continue;
    }
    if (first === BRACKET) {
      // "[packets:bytes] -A ..." from iptables-save -c.
      const close = boundedIndexOf(text, '] ', at, end);
      if (close === end) throw new SaveParseError('unterminated rule counters', lineNo);
      at = close + 2;
    }
    if (text.startsWith('-A ', at) && at + 3 <= end) {
      const chainEnd = boundedIndexOf(text, ' ', at + 3, end);
      const chain = table.chains.get(text.slice(at + 3, chainEnd));
      if (!chain) throw new SaveParseError(`rule for undeclared chain ${text.slice(at + 3, chainEnd)}`, lineNo);
      chain.rules.push(chainEnd === end ? '' : text.slice(chainEnd + 1, end));
      continue;
    }
    if (end - at === 6 && text.startsWith('COMMIT', at)) {
      table = null;
      continue;
    }
    throw new SaveParseError(`unexpected line "${text.slice(at, end)}"`, lineNo);
  }
  if (table) throw new SaveParseError(`table ${tableName} has no COMMIT`, lineNo + 1);
  return tables;
}

/** The inverse of parseSave, in iptables-save's layout without comments and with zero counters. */
export function formatSave(tables: ReadonlyMap<Table | string, SavedTable>): string {
  const out: string[] = [];
  for (const [name, { chains }] of tables) {
    out.push(`*${name}`);
    for (const [chain, { policy }] of chains) out.push(`:${chain} ${policy ?? '-'} [0:0]`);
    for (const [chain, { rules }] of chains) {
      for (const spec of rules) out.push(spec === '' ? `-A ${chain}` : `-A ${chain} ${spec}`);
    }
    out.push('COMMIT');
  }
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

export class SpecSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SpecSyntaxError';
  }
}

/**
 * Splits a rule spec into arguments the way iptables-restore does: whitespace
 * separates, double quotes group, and inside quotes a backslash escapes the
 * next character. Unlike iptables (which lets an open quote run to the end of
 * the line) an unterminated quote is an error: it always means a bug here.
 */
export function tokenizeSpec(spec: string): string[] {
  const tokens: string[] = [];
  let token = '';
  let inToken = false;
  let quoted = false;
  for (let i = 0; i < spec.length; i++) {
    const c = spec[i]!;
    if (quoted) {
      if (c === '\\' && i + 1 < spec.length) token += spec[++i];
      else if (c === '"') quoted = false;
      else token += c;
    } else if (c === '"') {
      quoted = true;
      inToken = true;
    } else if (c === ' ' || c === '\t') {
      if (inToken) tokens.push(token);
      token = '';
      inToken = false;
    } else {
      token += c;
      inToken = true;
    }
  }
  if (quoted) throw new SpecSyntaxError('unterminated quoted string');
  if (inToken) tokens.push(token);
  return tokens;
}

/** The chain or target a rule jumps or goes to (-j/-g), or null when it has none. */
export function jumpTarget(spec: string): string | null {
  const tokens = tokenizeSpec(spec);
  for (let i = 0; i + 1 < tokens.length; i++) {
    const t = tokens[i];
    if (t === '-j' || t === '--jump' || t === '-g' || t === '--goto') return tokens[i + 1]!;
  }
  return null;
}

// ---------------------------------------------------------------------------
// iptables-restore payloads

export type RestoreCommand =
  /** ":CHAIN POLICY [p:b]": creates or flushes a user chain; sets a built-in's policy ("-" = null keeps it). */
  | { readonly line: number; readonly op: 'declare'; readonly chain: string; readonly policy: string | null }
  | { readonly line: number; readonly op: 'append'; readonly chain: string; readonly spec: string }
  /** Position is 1-based; a bare -I inserts at 1. */
  | { readonly line: number; readonly op: 'insert'; readonly chain: string; readonly spec: string; readonly position: number }
  | { readonly line: number; readonly op: 'delete'; readonly chain: string; readonly spec: string; readonly position?: undefined }
  | { readonly line: number; readonly op: 'delete'; readonly chain: string; readonly position: number; readonly spec?: undefined }
  | { readonly line: number; readonly op: 'flush'; readonly chain: string }
  | { readonly line: number; readonly op: 'deleteChain'; readonly chain: string }
  | { readonly line: number; readonly op: 'policy'; readonly chain: string; readonly policy: string };

export interface RestoreSection {
  readonly table: KnownTable;
  /** Line of "*table". */
  readonly line: number;
  readonly commands: RestoreCommand[];
  /** Line of COMMIT; null for a section cut short by a syntax error or the end of the payload. */
  commitLine: number | null;
}

export interface RestoreSyntaxError {
  readonly line: number;
  readonly message: string;
}

export interface ParsedRestore {
  /** Every section up to the first syntax error, the last possibly without COMMIT. */
  readonly sections: RestoreSection[];
  readonly error: RestoreSyntaxError | null;
}

/**
 * Parses a restore payload. It covers the commands the agent writes (-A -I -D
 * -F -X -P and chain lines); anything else (-N, -Z, bare -F/-X that act on
 * every chain) is reported as unsupported rather than silently modelled.
 * Parsing stops at the first syntax error, which is returned with its 1-based
 * line, together with what was parsed before it: the real tools have already
 * committed the earlier tables by then.
 */
export function parseRestore(payload: string): ParsedRestore {
  const sections: RestoreSection[] = [];
  let section: RestoreSection | null = null;
  let lineNo = 0;
  const fail = (message: string, line = lineNo): ParsedRestore => ({ sections, error: { line, message } });

  for (let start = 0; start < payload.length; ) {
    let end = payload.indexOf('\n', start);
    if (end === -1) end = payload.length;
    lineNo++;
    const text = payload.slice(start, end).trim();
    start = end + 1;
    if (text === '' || text.startsWith('#')) continue;

    if (text.startsWith('*')) {
      if (section) return fail(`Bad argument \`${text}'`);
      const table = text.slice(1);
      if (!isKnownTable(table)) return fail(`table name '${table}' invalid`);
      section = { table, line: lineNo, commands: [], commitLine: null };
      sections.push(section);
      continue;
    }
    if (!section) return fail(`"${text}" outside a table section`);
    if (text === 'COMMIT') {
      section.commitLine = lineNo;
      section = null;
      continue;
    }
    const command = text.startsWith(':') ? parseChainLine(text, lineNo) : parseCommandLine(text, lineNo, section.table);
    if (typeof command === 'string') return fail(command);
    section.commands.push(command);
  }
  // Both tools blame the line after the last one.
  if (section) return fail('COMMIT expected', lineNo + 1);
  return { sections, error: null };
}

function parseChainLine(text: string, line: number): RestoreCommand | string {
  const [name = '', policy, counters, extra] = text.slice(1).split(/\s+/);
  if (name === '' || policy === undefined) return `bad chain line "${text}"`;
  if (name.length > MAX_CHAIN_NAME) return `chain name \`${name}' too long (${MAX_CHAIN_NAME} chars max)`;
  if ((counters !== undefined && !/^\[\d+:\d+\]$/.test(counters)) || extra !== undefined) return `bad chain line "${text}"`;
  return { line, op: 'declare', chain: name, policy: policy === '-' ? null : policy };
}

const COMMANDS: Record<string, Exclude<RestoreCommand['op'], 'declare'>> = {
  '-A': 'append',
  '--append': 'append',
  '-I': 'insert',
  '--insert': 'insert',
  '-D': 'delete',
  '--delete': 'delete',
  '-F': 'flush',
  '--flush': 'flush',
  '-X': 'deleteChain',
  '--delete-chain': 'deleteChain',
  '-P': 'policy',
  '--policy': 'policy',
};

const DIGITS = /^\d+$/;

function parseCommandLine(text: string, line: number, table: KnownTable): RestoreCommand | string {
  const [flag, afterFlag] = splitFirst(text);
  const op = Object.hasOwn(COMMANDS, flag) ? COMMANDS[flag]! : undefined;
  if (op === undefined) return flag.startsWith('-') ? `unsupported command "${flag}"` : `Bad argument \`${flag}'`;
  const [chain, rest] = splitFirst(afterFlag);
  if (chain === '' || chain.startsWith('-')) return `option "${flag}" requires a chain name`;

  switch (op) {
    case 'append':
      return checkedSpec(rest, table) ?? { line, op, chain, spec: rest };
    case 'insert': {
      const [first, afterFirst] = splitFirst(rest);
      const numbered = DIGITS.test(first);
      const spec = numbered ? afterFirst : rest;
      const position = numbered ? Number(first) : 1;
      if (position < 1) return 'Invalid rule number';
      return checkedSpec(spec, table) ?? { line, op, chain, spec, position };
    }
    case 'delete':
      if (rest === '') return `option "${flag}" requires a rule spec or number`;
      if (DIGITS.test(rest)) {
        const position = Number(rest);
        return position < 1 ? 'Invalid rule number' : { line, op, chain, position };
      }
      return checkedSpec(rest, table) ?? { line, op, chain, spec: rest };
    case 'flush':
    case 'deleteChain':
      return rest === '' ? { line, op, chain } : `unexpected argument "${rest}"`;
    case 'policy':
      return rest === '' || /\s/.test(rest) ? `option "${flag}" requires a chain and one policy` : { line, op, chain, policy: rest };
  }
}

/** A parse-time error of the spec (both tools check these before touching the table), or null. */
function checkedSpec(spec: string, table: KnownTable): string | null {
  let target: string | null;
  try {
    target = jumpTarget(spec);
  } catch (err) {
    return (err as Error).message;
  }
  if (table === 'nat' && target === 'DROP') {
    return 'The "nat" table is not intended for filtering, the use of DROP is therefore inhibited.';
  }
  return null;
}

function splitFirst(text: string): [string, string] {
  const space = text.search(/\s/);
  return space === -1 ? [text, ''] : [text.slice(0, space), text.slice(space + 1).trimStart()];
}

function boundedIndexOf(text: string, needle: string, from: number, end: number): number {
  const i = text.indexOf(needle, from);
  return i === -1 || i > end ? end : i;
}

const HASH = 0x23;
const STAR = 0x2a;
const COLON = 0x3a;
const BRACKET = 0x5b;
