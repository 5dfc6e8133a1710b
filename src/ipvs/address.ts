// IPVS carries every address as the kernel's 16-byte `union nf_inet_addr`:
// an IPv4 address fills the first 4 bytes, an IPv6 address all 16.

import { addressBytes, addressFromBytes, parseAddress } from '../network/address.js';
import type { IpvsFamily } from './types.js';

export const INET_ADDR_LEN = 16;

/** Encodes an address of the given family; embedded-IPv4 IPv6 text is not accepted. */
export function inetAddrBytes(family: IpvsFamily, text: string): Buffer {
  const address = parseAddress(text);
  if (family === 4) {
    if (address?.family !== 'IPv4') throw new Error(`not an IPv4 address: ${text}`);
    const out = Buffer.alloc(INET_ADDR_LEN);
    addressBytes(address).copy(out);
    return out;
  }
  if (address?.family !== 'IPv6' || text.includes('.')) throw new Error(`not an IPv6 address: ${text}`);
  return addressBytes(address);
}

/** Dotted quad, or RFC 5952 text (lower case, the longest run of two or more zero groups as `::`). */
export function inetAddrText(family: IpvsFamily, buf: Buffer): string {
  return addressFromBytes(family === 4 ? buf.subarray(0, 4) : buf.subarray(0, INET_ADDR_LEN))!.text;
}
