import { cidrContains, familyOf, mustParseCidr, parseAddress, type Cidr } from '../network/address.js';
import { parseIPv4 } from '../network/ipv4.js';

// Every value the agent takes from the API server is checked here for what it
// is before it enters the model: names as Kubernetes defines them, cluster
// names as the config does, numbers as integers in range, addresses a proxy
// may send traffic to. The API server is not trusted to have checked them
// (annotation values are free text, and a lenient or compromised server lets
// anything through); whatever passes here ends up in rule comments and
// arguments, so what fails is reported and left out.
//
// Each check returns null for a good value, or the reason it is refused,
// phrased to follow "<field> <value> ..." in a problem report.

/** At most this many characters of a refused value are shown in reports. */
export const SHOWN_MAX = 64;

/**
 * A value as reports show it: strings quoted, with quotes, backslashes,
 * control characters and anything outside printable ASCII escaped, at most
 * SHOWN_MAX characters of the original (longer ones say how long they were);
 * other values by their JSON text and type. Safe in a log line, an Event and
 * a terminal, whatever the value holds.
 */
export function shown(value: unknown): string {
  if (typeof value === 'string') return quoted(value);
  if (value === undefined) return 'undefined';
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  let text: string;
  try {
    text = JSON.stringify(value) ?? typeof value;
  } catch {
    text = Object.prototype.toString.call(value);
  }
  return `${escape(cut(text))}${text.length > SHOWN_MAX ? `... (${text.length} chars)` : ''}`;
}

/** A short word (a protocol, an address type) as it is, anything else as shown(). */
export function bare(value: unknown): string {
  return typeof value === 'string' && /^[A-Za-z0-9._-]{1,32}$/.test(value) ? value : shown(value);
}

function quoted(text: string): string {
  return `"${escape(cut(text))}"${text.length > SHOWN_MAX ? `... (${text.length} chars)` : ''}`;
}

/** The first SHOWN_MAX characters, never splitting a surrogate pair. */
function cut(text: string): string {
  return text.length <= SHOWN_MAX ? text : text.slice(0, SHOWN_MAX).replace(/[\uD800-\uDBFF]$/, '');
}

function escape(text: string): string {
  let out = '';
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code >= 0x20 && code < 0x7f) out += ch;
    else out += code <= 0xffff ? `\\u${code.toString(16).padStart(4, '0')}` : `\\u{${code.toString(16)}}`;
  }
  return out;
}

/** Why a value is not a string, or null when it is one. */
function notString(value: unknown): string | null {
  return typeof value === 'string' ? null : `has the wrong type: expected a string, got ${typeName(value)}`;
}

export function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** The config's rule for cluster names: a DNS label, dots allowed, at most 63 characters. */
const CLUSTER_NAME = /^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/;

/** RFC 1123 label, as Kubernetes checks a namespace name and a port name: 1-63 of [a-z0-9-], alphanumeric at both ends. */
export function dnsLabelProblem(value: unknown): string | null {
  const wrong = notString(value);
  if (wrong) return wrong;
  const text = value as string;
  if (text.length > 63) return 'is longer than 63 characters (a DNS label)';
  return DNS1123_LABEL.test(text) ? null : 'is not a DNS label (lower-case letters, digits and "-", alphanumeric at both ends)';
}

/** RFC 1035 label, as Kubernetes checks a Service name: a DNS label starting with a letter. */
export function serviceNameProblem(value: unknown): string | null {
  const wrong = notString(value);
  if (wrong) return wrong;
  const text = value as string;
  if (text.length > 63) return 'is longer than 63 characters (a Service name is a DNS label)';
  return DNS1035_LABEL.test(text) ? null : 'is not a Service name (a DNS label starting with a letter)';
}

/** RFC 1123 subdomain, as Kubernetes checks most object names (an EndpointSlice's): at most 253 characters. */
export function dnsSubdomainProblem(value: unknown): string | null {
  const wrong = notString(value);
  if (wrong) return wrong;
  const text = value as string;
  if (text.length > 253) return 'is longer than 253 characters (a DNS subdomain)';
  return DNS1123_SUBDOMAIN.test(text) ? null : 'is not a DNS subdomain (dot-separated DNS labels)';
}

/** A cluster name, from the config or the API: a DNS label, dots allowed (it appears in rule comments and slice names). */
export function clusterNameProblem(value: unknown): string | null {
  const wrong = notString(value);
  if (wrong) return wrong;
  return CLUSTER_NAME.test(value as string) ? null : 'is not a cluster name (a DNS label of at most 63 characters: lower-case letters, digits, "-" and ".")';
}

export function isClusterName(value: unknown): value is string {
  return clusterNameProblem(value) === null;
}

/**
 * A Service or EndpointSlice port name: empty, or a DNS label (Kubernetes
 * checks ServicePort.name and EndpointPort.name with IsDNS1123Label; only a
 * container port name is an IANA service name).
 */
export function portNameProblem(value: unknown): string | null {
  if (value === '') return null;
  return dnsLabelProblem(value);
}

/** A port number: an integer in 1-65535, a number and not its text. */
export function portNumberProblem(value: unknown): string | null {
  if (typeof value !== 'number') return `has the wrong type: expected an integer, got ${typeName(value)}`;
  if (!Number.isInteger(value)) return 'is not an integer';
  return value >= 1 && value <= 65535 ? null : 'is out of range 1-65535';
}

/** An integer in [min, max], a number and not its text. */
export function integerProblem(value: unknown, min: number, max: number): string | null {
  if (typeof value !== 'number') return `has the wrong type: expected an integer, got ${typeName(value)}`;
  if (!Number.isInteger(value)) return 'is not an integer';
  return value >= min && value <= max ? null : `is out of range ${min}-${max}`;
}

/** A condition of an endpoint: a boolean, not its text. */
export function booleanProblem(value: unknown): string | null {
  return typeof value === 'boolean' ? null : `has the wrong type: expected a boolean, got ${typeName(value)}`;
}

/** An annotation or label value: a string (the API defines them as strings; anything else is refused). */
export function stringValueProblem(value: unknown): string | null {
  return notString(value);
}

/**
 * An endpoint address a proxy may send traffic to: a dotted-quad IPv4
 * address that is not unspecified, loopback, link-local, multicast or the
 * broadcast address (kube-proxy refuses these too: DNAT to them would reach
 * the node itself or nothing at all).
 */
export function endpointAddressProblem(value: unknown): string | null {
  const wrong = notString(value);
  if (wrong) return wrong;
  const ip = parseIPv4(value as string);
  if (ip === null) return 'is not a valid IPv4 address';
  const first = Math.floor(ip / 2 ** 24);
  if (ip === 0) return 'is the unspecified address';
  if (ip === 0xffffffff) return 'is the broadcast address';
  if (first === 127) return 'is a loopback address';
  if (first === 169 && Math.floor(ip / 2 ** 16) % 256 === 254) return 'is a link-local address';
  if (first >= 224 && first <= 239) return 'is a multicast address';
  return null;
}

/** The IPv6 counterparts of endpointAddressProblem's refusals. */
const IPV6_REFUSED: readonly [Cidr, string][] = [
  [mustParseCidr('::/128'), 'is the unspecified address'],
  [mustParseCidr('::1/128'), 'is a loopback address'],
  [mustParseCidr('fe80::/10'), 'is a link-local address'],
  [mustParseCidr('ff00::/8'), 'is a multicast address'],
];

/** endpointAddressProblem for a slice of addressType IPv6. */
export function endpointIPv6AddressProblem(value: unknown): string | null {
  const wrong = notString(value);
  if (wrong) return wrong;
  const address = parseAddress(value as string);
  if (address?.family !== 'IPv6') return 'is not a valid IPv6 address';
  return IPV6_REFUSED.find(([range]) => cidrContains(range, address))?.[1] ?? null;
}

/**
 * A ClusterSet IP (a derived Service's load-balancer ingress IP): an address
 * of either family that endpointAddressProblem or its IPv6 counterpart would
 * take, since the agent DNATs from it as it DNATs to those.
 */
export function clustersetIPProblem(value: unknown): string | null {
  const wrong = notString(value);
  if (wrong) return wrong;
  const family = familyOf(value as string);
  if (family === null) return 'is not a valid IP address';
  return family === 'IPv6' ? endpointIPv6AddressProblem(value) : endpointAddressProblem(value);
}
