// Element keys and values between the text `nft list` prints
// (`10.96.0.10 . tcp . 80 . 5`) and the bytes the kernel stores: each field of
// a concatenation takes a 4-byte register; addresses and ports in network
// order, the slot (a numgen/jhash result) in host order.

import type { Field } from './layout.js';

const PROTOCOLS: Readonly<Record<string, number>> = { tcp: 6, udp: 17, sctp: 132 };
const PROTOCOL_NAMES = new Map(Object.entries(PROTOCOLS).map(([name, n]) => [n, name]));

export const SEPARATOR = ' . ';

export class CodecError extends Error {}

export function encode(fields: readonly Field[], text: string): Buffer {
  const out = Buffer.alloc(4 * fields.length);
  encodeInto(fields, text, out, 0);
  return out;
}

/**
 * Writes the 4 × fields.length bytes of `text` at `offset` of `out` (zeroed
 * there). Parses by character codes: a cold start encodes about a million fields.
 */
export function encodeInto(fields: readonly Field[], text: string, out: Buffer, offset: number): void {
  let pos = 0;
  for (let i = 0; i < fields.length; i++) {
    if (i > 0) {
      if (text.charCodeAt(pos) !== 32 || text.charCodeAt(pos + 1) !== 46 || text.charCodeAt(pos + 2) !== 32) throw new CodecError(`"${text}" has ${i} fields, expected ${fields.length}`);
      pos += 3;
    }
    let end = text.indexOf(SEPARATOR, pos);
    if (end === -1) end = text.length;
    const at = offset + 4 * i;
    switch (fields[i]!) {
      case 'ipv4': {
        let octet = 0;
        let digits = 0;
        let j = 0;
        for (let k = pos; k <= end; k++) {
          const c = k < end ? text.charCodeAt(k) : 46;
          if (c === 46) {
            if (digits === 0 || digits > 3 || octet > 255 || j > 3) throw new CodecError(`"${text.slice(pos, end)}" is not an IPv4 address`);
            out[at + j++] = octet;
            octet = 0;
            digits = 0;
          } else if (c >= 48 && c <= 57) {
            octet = octet * 10 + (c - 48);
            digits++;
          } else {
            throw new CodecError(`"${text.slice(pos, end)}" is not an IPv4 address`);
          }
        }
        if (j !== 4) throw new CodecError(`"${text.slice(pos, end)}" is not an IPv4 address`);
        break;
      }
      case 'proto': {
        const n = PROTOCOLS[text.slice(pos, end)];
        if (n === undefined) throw new CodecError(`"${text.slice(pos, end)}" is not tcp, udp or sctp`);
        out[at] = n;
        break;
      }
      case 'port':
      case 'slot': {
        let n = 0;
        if (end === pos || end - pos > 10) throw new CodecError(`"${text.slice(pos, end)}" is not a number`);
        for (let k = pos; k < end; k++) {
          const c = text.charCodeAt(k);
          if (c < 48 || c > 57) throw new CodecError(`"${text.slice(pos, end)}" is not a number`);
          n = n * 10 + (c - 48);
        }
        if (fields[i] === 'port') {
          if (n > 65535) throw new CodecError(`"${text.slice(pos, end)}" is not a port`);
          out.writeUInt16BE(n, at);
        } else {
          if (n > 0xffffffff) throw new CodecError(`"${text.slice(pos, end)}" is not a slot`);
          out.writeUInt32LE(n, at);
        }
        break;
      }
    }
    pos = end;
  }
  if (pos !== text.length) throw new CodecError(`"${text}" has more than ${fields.length} fields`);
}

export function decode(fields: readonly Field[], bytes: Uint8Array): string {
  if (bytes.length !== 4 * fields.length) throw new CodecError(`${bytes.length} bytes for ${fields.length} fields`);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  return fields
    .map((field, i) => {
      const at = 4 * i;
      switch (field) {
        case 'ipv4':
          return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
        case 'proto':
          return PROTOCOL_NAMES.get(buf[at]!) ?? String(buf[at]);
        case 'port':
          return String(buf.readUInt16BE(at));
        case 'slot':
          return String(buf.readUInt32LE(at));
      }
    })
    .join(SEPARATOR);
}
