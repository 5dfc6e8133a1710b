// Decodes the notifications nf_tables multicasts on NFNLGRP_NFTABLES (what
// `nft monitor` prints): one netlink message per object created or deleted in
// a committed transaction, then a NEWGEN message that closes the generation
// and names the process that committed it. Only what drift detection needs is
// read: the kind of object, created or deleted, family, table, chain, and for
// NEWGEN the generation id and the committing process.

/** The multicast group of nf_tables' notifications. */
export const NFNLGRP_NFTABLES = 7;

const NFNL_SUBSYS_NFTABLES = 10;
const NLMSG_HDRLEN = 16;
const NFGENMSG_LEN = 4;
const NLA_TYPE_MASK = 0x3fff;

/** nf_tables message types (the low byte of nlmsg_type). */
const MSG = {
  NEWTABLE: 0, DELTABLE: 2,
  NEWCHAIN: 3, DELCHAIN: 5,
  NEWRULE: 6, DELRULE: 8,
  NEWSET: 9, DELSET: 11,
  NEWSETELEM: 12, DELSETELEM: 14,
  NEWGEN: 15,
  NEWOBJ: 18, DELOBJ: 20,
  NEWFLOWTABLE: 22, DELFLOWTABLE: 24,
} as const;

/** Address families of nfgenmsg.nfgen_family (NFPROTO_*). */
export const FAMILY: Readonly<Record<number, string>> = { 1: 'inet', 2: 'ip', 3: 'arp', 5: 'netdev', 7: 'bridge', 10: 'ip6' };

export type ObjectKind = 'table' | 'chain' | 'rule' | 'set' | 'setelem' | 'obj' | 'flowtable';

/** One object created or deleted by a committed transaction. */
export interface NfChange {
  readonly type: 'change';
  readonly kind: ObjectKind;
  readonly op: 'new' | 'del';
  /** ip, ip6, inet, ... (the number itself when unknown). */
  readonly family: string;
  readonly table: string;
  /** The chain of a chain or rule event; undefined for other kinds. */
  readonly chain?: string;
  /** Netlink port id of the socket that committed (nlmsg_pid). */
  readonly portid: number;
}

/** The end of a committed generation. */
export interface NfGeneration {
  readonly type: 'generation';
  readonly id: number;
  /** The process that committed (NFTA_GEN_PROC_PID: a task id, so a thread's id for a threaded committer). */
  readonly pid: number;
  /** Its command name as the kernel knows it (15 characters at most), e.g. "iptables-nft-re". */
  readonly procName: string;
  readonly portid: number;
}

export type NfEvent = NfChange | NfGeneration;

const CHANGE_TYPES: ReadonlyMap<number, { kind: ObjectKind; op: 'new' | 'del' }> = new Map([
  [MSG.NEWTABLE, { kind: 'table', op: 'new' }], [MSG.DELTABLE, { kind: 'table', op: 'del' }],
  [MSG.NEWCHAIN, { kind: 'chain', op: 'new' }], [MSG.DELCHAIN, { kind: 'chain', op: 'del' }],
  [MSG.NEWRULE, { kind: 'rule', op: 'new' }], [MSG.DELRULE, { kind: 'rule', op: 'del' }],
  [MSG.NEWSET, { kind: 'set', op: 'new' }], [MSG.DELSET, { kind: 'set', op: 'del' }],
  [MSG.NEWSETELEM, { kind: 'setelem', op: 'new' }], [MSG.DELSETELEM, { kind: 'setelem', op: 'del' }],
  [MSG.NEWOBJ, { kind: 'obj', op: 'new' }], [MSG.DELOBJ, { kind: 'obj', op: 'del' }],
  [MSG.NEWFLOWTABLE, { kind: 'flowtable', op: 'new' }], [MSG.DELFLOWTABLE, { kind: 'flowtable', op: 'del' }],
]);

/**
 * The attribute numbers of the table name and the chain name in each kind's
 * message. Every kind carries its table as attribute 1; a chain message names
 * the chain in NFTA_CHAIN_NAME (3), a rule in NFTA_RULE_CHAIN (2).
 */
const CHAIN_ATTR: Partial<Record<ObjectKind, number>> = { chain: 3, rule: 2 };
const TABLE_ATTR = 1;
const GEN_ID = 1;
const GEN_PROC_PID = 2;
const GEN_PROC_NAME = 3;

/**
 * Decodes one datagram read from the group: any number of netlink messages.
 * Messages of other subsystems, and message types drift detection does not
 * use, are skipped; a truncated message ends the datagram.
 */
export function decodeNfMessages(buf: Uint8Array): NfEvent[] {
  const data = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const events: NfEvent[] = [];
  for (let off = 0; off + NLMSG_HDRLEN <= data.length;) {
    const len = data.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > data.length) break;
    const type = data.readUInt16LE(off + 4);
    const portid = data.readUInt32LE(off + 12);
    if (type >> 8 === NFNL_SUBSYS_NFTABLES && len >= NLMSG_HDRLEN + NFGENMSG_LEN) {
      const event = decodeOne(data, off, len, type & 0xff, portid);
      if (event) events.push(event);
    }
    off += align4(len);
  }
  return events;
}

function decodeOne(data: Buffer, off: number, len: number, msg: number, portid: number): NfEvent | null {
  const familyNumber = data[off + NLMSG_HDRLEN]!;
  const attrsStart = off + NLMSG_HDRLEN + NFGENMSG_LEN;
  const attrsEnd = off + len;
  if (msg === MSG.NEWGEN) {
    let id = 0;
    let pid = 0;
    let procName = '';
    forEachAttr(data, attrsStart, attrsEnd, (type, at, size) => {
      if (type === GEN_ID && size >= 4) id = data.readUInt32BE(at);
      else if (type === GEN_PROC_PID && size >= 4) pid = data.readUInt32BE(at);
      else if (type === GEN_PROC_NAME) procName = cString(data, at, size);
    });
    return { type: 'generation', id, pid, procName, portid };
  }
  const change = CHANGE_TYPES.get(msg);
  if (!change) return null;
  const chainAttr = CHAIN_ATTR[change.kind];
  let table = '';
  let chain: string | undefined;
  forEachAttr(data, attrsStart, attrsEnd, (type, at, size) => {
    if (type === TABLE_ATTR) table = cString(data, at, size);
    else if (type === chainAttr) chain = cString(data, at, size);
  });
  const family = FAMILY[familyNumber] ?? String(familyNumber);
  return chain === undefined
    ? { type: 'change', ...change, family, table, portid }
    : { type: 'change', ...change, family, table, chain, portid };
}

function forEachAttr(data: Buffer, start: number, end: number, fn: (type: number, at: number, size: number) => void): void {
  for (let at = start; at + 4 <= end;) {
    const len = data.readUInt16LE(at);
    if (len < 4 || at + len > end) return;
    fn(data.readUInt16LE(at + 2) & NLA_TYPE_MASK, at + 4, len - 4);
    at += align4(len);
  }
}

function cString(data: Buffer, at: number, size: number): string {
  const nul = data.indexOf(0, at);
  const end = nul === -1 || nul > at + size ? at + size : nul;
  return data.toString('utf8', at, end);
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
