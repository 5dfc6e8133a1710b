// Addresses and CIDRs of both families. Parsing and prefix matching come from
// ipaddr.js; this module adds the strictness the Kubernetes API applies (no
// shorthand or leading zeros in IPv4, no zone in IPv6, no host bits in a CIDR)
// and one canonical text per value, which is what the kernel reports back.

import ipaddr from 'ipaddr.js';

export type IPFamily = 'IPv4' | 'IPv6';
export const IP_FAMILIES: readonly IPFamily[] = ['IPv4', 'IPv6'];

export interface Address {
  readonly family: IPFamily;
  /** Canonical text: dotted quad, or RFC 5952 (lower case, longest zero run as `::`). */
  readonly text: string;
  readonly ip: ipaddr.IPv4 | ipaddr.IPv6;
}

export interface Cidr {
  readonly family: IPFamily;
  /** The network address (no host bits set). */
  readonly base: Address;
  readonly bits: number;
  /** Canonical `base/bits`. */
  readonly text: string;
}

const PREFIX = /^(0|[1-9]\d{0,2})$/;

function familyOfIp(ip: ipaddr.IPv4 | ipaddr.IPv6): IPFamily {
  return ip.kind() === 'ipv4' ? 'IPv4' : 'IPv6';
}

function wrap(ip: ipaddr.IPv4 | ipaddr.IPv6): Address {
  const family = familyOfIp(ip);
  return { family, ip, text: family === 'IPv4' ? ip.toString() : (ip as ipaddr.IPv6).toRFC5952String() };
}

/** Strict parsing of either family; null when the text is not an address as the API writes one. */
export function parseAddress(text: string): Address | null {
  if (typeof text !== 'string') return null;
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return wrap(ipaddr.IPv4.parse(text));
  if (text.includes(':') && !text.includes('%') && ipaddr.IPv6.isValid(text)) return wrap(ipaddr.IPv6.parse(text));
  return null;
}

export function familyOf(text: string): IPFamily | null {
  return parseAddress(text)?.family ?? null;
}

export function isAddressOf(family: IPFamily, text: string): boolean {
  return familyOf(text) === family;
}

/** Why a text is not a CIDR; null when it is one. */
export function cidrProblem(text: string): string | null {
  if (typeof text !== 'string') return 'is not a string';
  const slash = text.indexOf('/');
  if (slash < 0 || text.indexOf('/', slash + 1) >= 0) return 'must be address/prefix-length';
  const base = parseAddress(text.slice(0, slash));
  const len = text.slice(slash + 1);
  if (!base) return 'has no valid IPv4 or IPv6 address before the "/"';
  const max = base.family === 'IPv4' ? 32 : 128;
  if (!PREFIX.test(len) || Number(len) > max) return `has a prefix length that is not 0 to ${max}`;
  const network = networkOf(base, Number(len));
  if (network.text !== base.text) return `has host bits set (the network is ${network.text}/${len})`;
  return null;
}

function networkOf(address: Address, bits: number): Address {
  const bytes = address.ip.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    bytes[i] = bytes[i]! & (0xff << (8 - keep)) & 0xff;
  }
  return wrap(ipaddr.fromByteArray(bytes));
}

/** Strict CIDR parsing: a network address (no host bits) and a decimal prefix length within its family. */
export function parseCidr(text: string): Cidr | null {
  if (cidrProblem(text) !== null) return null;
  const slash = text.indexOf('/');
  const base = parseAddress(text.slice(0, slash))!;
  const bits = Number(text.slice(slash + 1));
  return { family: base.family, base, bits, text: `${base.text}/${bits}` };
}

/** An address already validated (config, Node status, kernel): throws otherwise. */
export function mustParseAddress(text: string): Address {
  const parsed = parseAddress(text);
  if (!parsed) throw new Error(`not an IPv4 or IPv6 address: ${text}`);
  return parsed;
}

/** A CIDR already validated by the config schema: throws otherwise. */
export function mustParseCidr(text: string): Cidr {
  const parsed = parseCidr(text);
  if (!parsed) throw new Error(`not a CIDR: ${text} ${cidrProblem(text) ?? ''}`.trim());
  return parsed;
}

/** Whether the range holds the address; never across families. */
export function cidrContains(range: Cidr, address: Address): boolean {
  return range.family === address.family && address.ip.match(range.base.ip, range.bits);
}

/** Two ranges of one family overlap exactly when the shorter prefix contains the other's base; ranges of two families never do. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.base.ip.match(b.base.ip, Math.min(a.bits, b.bits));
}

/** Network byte order: 4 bytes for IPv4, 16 for IPv6, as netlink attributes carry them. */
export function addressBytes(address: Address): Buffer {
  return Buffer.from(address.ip.toByteArray());
}

/** The address in a netlink attribute (4 or 16 bytes); null for any other length. */
export function addressFromBytes(buf: Uint8Array | undefined): Address | null {
  if (!buf || (buf.length !== 4 && buf.length !== 16)) return null;
  return wrap(ipaddr.fromByteArray([...buf]));
}

export function canonicalAddress(text: string): string | null {
  return parseAddress(text)?.text ?? null;
}

export function canonicalCidr(text: string): string | null {
  return parseCidr(text)?.text ?? null;
}

/** The all-zero address of a family: the base of its default route. */
export function unspecified(family: IPFamily): Address {
  return wrap(ipaddr.fromByteArray(new Array<number>(family === 'IPv4' ? 4 : 16).fill(0)));
}
