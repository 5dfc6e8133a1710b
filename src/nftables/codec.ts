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
  const parts = text.split(SEPARATOR);
  if (parts.length !== fields.length) throw new CodecError(`"${text}" has ${parts.length} fields, expected ${fields.length}`);
  const out = Buffer.alloc(4 * fields.length);
  fields.forEach((field, i) => {
    const part = parts[i]!;
    const at = 4 * i;
    switch (field) {
      case 'ipv4': {
        const octets = part.split('.').map(Number);
        if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) throw new CodecError(`"${part}" is not an IPv4 address`);
        octets.forEach((o, j) => (out[at + j] = o));
        break;
      }
      case 'proto': {
        const n = PROTOCOLS[part];
        if (n === undefined) throw new CodecError(`"${part}" is not tcp, udp or sctp`);
        out[at] = n;
        break;
      }
      case 'port': {
        const n = Number(part);
        if (!Number.isInteger(n) || n < 0 || n > 65535) throw new CodecError(`"${part}" is not a port`);
        out.writeUInt16BE(n, at);
        break;
      }
      case 'slot': {
        const n = Number(part);
        if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new CodecError(`"${part}" is not a slot`);
        out.writeUInt32LE(n, at);
        break;
      }
    }
  });
  return out;
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
