/** Strict dotted-quad IPv4 parsing: no leading zeros, no shorthand, as the API validates. */
export function parseIPv4(text: string): number | null {
  // Values from the API may be of any type: anything but a string is no address.
  if (typeof text !== 'string' || text.length < 7 || text.length > 15) return null;
  // One pass over the characters: this runs for every endpoint of every slice.
  let value = 0;
  let octet = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      if (digits === 0 || ++parts > 4) return null;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits === 1 && octet === 0) return null; // a leading zero
      octet = octet * 10 + (c - 0x30);
      if (++digits > 3 || octet > 255) return null;
    } else {
      return null;
    }
  }
  return parts === 4 ? value : null;
}

