import { parseIPv4, parseIPv4Cidr, type IPv4Cidr } from './ipv4.js';

/** The first `bits` bits of an address, as a number (2 ** 32 fits a double exactly). */
function prefixOf(address: number, bits: number): number {
  return bits === 0 ? 0 : Math.floor(address / 2 ** (32 - bits));
}

/** Two ranges overlap exactly when the shorter prefix contains the other's base. */
export function cidrsOverlap(a: IPv4Cidr, b: IPv4Cidr): boolean {
  const bits = Math.min(a.bits, b.bits);
  return prefixOf(a.base, bits) === prefixOf(b.base, bits);
}

export function cidrContains(range: IPv4Cidr, address: number): boolean {
  return prefixOf(address, range.bits) === prefixOf(range.base, range.bits);
}

/** A CIDR already validated by the config schema. */
export function mustParseCidr(text: string): IPv4Cidr {
  const parsed = parseIPv4Cidr(text);
  if (!parsed) throw new Error(`not an IPv4 CIDR: ${text}`);
  return parsed;
}

/** A dotted quad already validated (config, Node status): throws otherwise. */
export function mustParseIPv4(text: string): number {
  const parsed = parseIPv4(text);
  if (parsed === null) throw new Error(`not an IPv4 address: ${text}`);
  return parsed;
}

/** Network byte order, as netlink attributes carry addresses. */
export function ipv4Bytes(address: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(address >>> 0);
  return b;
}

export function formatIPv4(address: number): string {
  return [24, 16, 8, 0].map((shift) => (Math.floor(address / 2 ** shift) % 256).toString()).join('.');
}
