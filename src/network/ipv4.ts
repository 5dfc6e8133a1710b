/** Strict dotted-quad IPv4 parsing: no leading zeros, no shorthand, as the API validates. */
export function parseIPv4(text: string): number | null {
  // Values from the API may be of any type: anything but a string is no address.
  if (typeof text !== 'string') return null;
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let value = 0;
  for (const part of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part)) return null;
    const octet = Number(part);
    if (octet > 255) return null;
    value = value * 256 + octet;
  }
  return value;
}

export interface IPv4Cidr {
  readonly base: number;
  readonly bits: number;
}

export function parseIPv4Cidr(text: string): IPv4Cidr | null {
  const [ip, len, extra] = text.split('/');
  if (ip === undefined || len === undefined || extra !== undefined || !/^\d{1,2}$/.test(len)) return null;
  const base = parseIPv4(ip);
  const bits = Number(len);
  if (base === null || bits > 32) return null;
  if (bits < 32 && base % 2 ** (32 - bits) !== 0) return null;
  return { base, bits };
}
