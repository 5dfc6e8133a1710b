// IPVS carries every address as the kernel's 16-byte `union nf_inet_addr`:
// an IPv4 address fills the first 4 bytes, an IPv6 address all 16.

import { isIPv4, isIPv6 } from 'node:net';
import { formatIPv4, ipv4Bytes, mustParseIPv4 } from '../network/cidr.js';
import type { IpvsFamily } from './types.js';

export const INET_ADDR_LEN = 16;

function ipv6Bytes(text: string): Buffer {
  const [head = '', tail] = text.split('::');
  const groups = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  const out = Buffer.alloc(INET_ADDR_LEN);
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** RFC 5952 text: lower case, the longest run (two or more) of zero groups as `::`. */
function ipv6Text(buf: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => buf.readUInt16BE(i * 2));
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.at < 0) return hex.join(':');
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.len).join(':')}`;
}

/** Encodes an address of the given family; embedded-IPv4 IPv6 text is not accepted. */
export function inetAddrBytes(family: IpvsFamily, text: string): Buffer {
  if (family === 4) {
    if (!isIPv4(text)) throw new Error(`not an IPv4 address: ${text}`);
    const out = Buffer.alloc(INET_ADDR_LEN);
    ipv4Bytes(mustParseIPv4(text)).copy(out);
    return out;
  }
  if (!isIPv6(text) || text.includes('.')) throw new Error(`not an IPv6 address: ${text}`);
  return ipv6Bytes(text);
}

export function inetAddrText(family: IpvsFamily, buf: Buffer): string {
  if (family === 4) return formatIPv4(buf.readUInt32BE(0));
  return ipv6Text(buf);
}
