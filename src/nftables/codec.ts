// Element keys and values between the text `nft list` prints
// (`10.96.0.10 . tcp . 80 . 5`, `fd00:96::10 . tcp . 80 . 5`) and the bytes
// the kernel stores: each field of a concatenation takes whole 4-byte
// registers (an IPv6 address four of them); addresses and ports in network
// order, the slot (a numgen/jhash result) in host order. IPv6 addresses read
// back in RFC 5952 text, the form the model keeps them in.

import ipaddr from 'ipaddr.js';
import { fieldBytes, fieldsBytes, type Field } from './layout.js';

const PROTOCOLS: Readonly<Record<string, number>> = { tcp: 6, udp: 17, sctp: 132 };
const PROTOCOL_NAMES = new Map(Object.entries(PROTOCOLS).map(([name, n]) => [n, name]));

export const SEPARATOR = ' . ';

export class CodecError extends Error {}

export function encode(fields: readonly Field[], text: string): Buffer {
  const out = Buffer.alloc(fieldsBytes(fields));
  encodeInto(fields, text, out, 0);
  return out;
}

/**
 * Writes the fieldsBytes(fields) bytes of `text` at `offset` of `out` (zeroed
 * there). Parses IPv4 and numbers by character codes: a cold start encodes
 * about a million fields.
 */
export function encodeInto(fields: readonly Field[], text: string, out: Buffer, offset: number): void {
  let pos = 0;
  let at = offset;
  for (let i = 0; i < fields.length; i++) {
    if (i > 0) {
      if (text.charCodeAt(pos) !== 32 || text.charCodeAt(pos + 1) !== 46 || text.charCodeAt(pos + 2) !== 32) throw new CodecError(`"${text}" has ${i} fields, expected ${fields.length}`);
      pos += 3;
    }
    let end = text.indexOf(SEPARATOR, pos);
    if (end === -1) end = text.length;
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
      case 'ipv6': {
        const address = text.slice(pos, end);
        if (!address.includes(':') || address.includes('%') || !ipaddr.IPv6.isValid(address)) throw new CodecError(`"${address}" is not an IPv6 address`);
        out.set(ipaddr.IPv6.parse(address).toByteArray(), at);
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
    at += fieldBytes(fields[i]!);
  }
  if (pos !== text.length) throw new CodecError(`"${text}" has more than ${fields.length} fields`);
}

export function decode(fields: readonly Field[], bytes: Uint8Array): string {
  if (bytes.length !== fieldsBytes(fields)) throw new CodecError(`${bytes.length} bytes for ${fields.join(' . ')}`);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  let next = 0;
  return fields
    .map((field) => {
      const at = next;
      next += fieldBytes(field);
      switch (field) {
        case 'ipv4':
          return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
        case 'ipv6':
          return (ipaddr.fromByteArray([...buf.subarray(at, at + 16)]) as ipaddr.IPv6).toRFC5952String();
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
