// The IPVS generic netlink message layout (include/uapi/linux/ip_vs.h):
// requests carry a nested service attribute and, for real-server commands, a
// nested destination attribute; dump replies carry one of them per message.
// Integers are host byte order except ports (network order); addresses are
// 16-byte `nf_inet_addr` unions.

import { AttrStream, parseAttributes } from 'netlink';
import { INET_ADDR_LEN, inetAddrBytes, inetAddrText } from './address.js';
import type { DestKey, DestSpec, ForwardMethod, IpvsFamily, IpvsProtocol, ObservedDest, ServiceKey, ServiceSpec } from './types.js';

export const IPVS_GENL_NAME = 'IPVS';
export const IPVS_GENL_VERSION = 1;

export const enum Cmd {
  NEW_SERVICE = 1,
  SET_SERVICE = 2,
  DEL_SERVICE = 3,
  GET_SERVICE = 4,
  NEW_DEST = 5,
  SET_DEST = 6,
  DEL_DEST = 7,
  GET_DEST = 8,
  FLUSH = 17,
}

const CMD_ATTR_SERVICE = 1;
const CMD_ATTR_DEST = 2;

const enum Svc {
  AF = 1,
  PROTOCOL = 2,
  ADDR = 3,
  PORT = 4,
  FWMARK = 5,
  SCHED_NAME = 6,
  FLAGS = 7,
  TIMEOUT = 8,
  NETMASK = 9,
}

const enum Dest {
  ADDR = 1,
  PORT = 2,
  FWD_METHOD = 3,
  WEIGHT = 4,
  U_THRESH = 5,
  L_THRESH = 6,
  ACTIVE_CONNS = 7,
  INACT_CONNS = 8,
  PERSIST_CONNS = 9,
  ADDR_FAMILY = 11,
}

const AF_INET = 2;
const AF_INET6 = 10;
/** The kernel sets this on every service it holds; it is not part of what a caller configures. */
export const IP_VS_SVC_F_HASHED = 0x0002;

const PROTOCOLS: Record<IpvsProtocol, number> = { tcp: 6, udp: 17, sctp: 132 };
/** IP_VS_CONN_F_FWD_MASK values, in order. */
const FORWARD: readonly ForwardMethod[] = ['masq', 'local', 'tunnel', 'route', 'bypass'];

const af = (family: IpvsFamily) => (family === 4 ? AF_INET : AF_INET6);

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

function be16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** An IPv4 netmask travels as the kernel's __be32 mask, an IPv6 one as a host-order prefix length. */
function netmaskBytes(family: IpvsFamily, netmask: number): Buffer {
  if (family === 6) return u32(netmask);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(netmask >>> 0);
  return b;
}

function serviceKeyAttrs(out: AttrStream, key: ServiceKey): void {
  out.push(Svc.AF, u16(af(key.family)));
  if (key.kind === 'fwmark') {
    out.push(Svc.FWMARK, u32(key.fwmark));
    return;
  }
  out.push(Svc.PROTOCOL, u16(PROTOCOLS[key.protocol]));
  out.push(Svc.ADDR, inetAddrBytes(key.family, key.address));
  out.push(Svc.PORT, be16(key.port));
}

/** The nested service attribute: the identity only (delete, lookups) or the full entry (add, update). */
function serviceAttr(out: AttrStream, service: ServiceKey | ServiceSpec): void {
  out.push(CMD_ATTR_SERVICE, (svc) => {
    if ('key' in service) {
      serviceKeyAttrs(svc, service.key);
      svc.push(Svc.SCHED_NAME, Buffer.from(`${service.scheduler}\0`));
      // struct ip_vs_flags { flags; mask }: the mask says which bits this request sets.
      svc.push(Svc.FLAGS, Buffer.concat([u32(service.flags), u32(0xffffffff)]));
      svc.push(Svc.TIMEOUT, u32(service.timeout));
      svc.push(Svc.NETMASK, netmaskBytes(service.key.family, service.netmask));
    } else {
      serviceKeyAttrs(svc, service);
    }
  });
}

function destAttr(out: AttrStream, family: IpvsFamily, dest: DestKey | DestSpec): void {
  out.push(CMD_ATTR_DEST, (d) => {
    d.push(Dest.ADDR, inetAddrBytes(family, dest.address));
    d.push(Dest.PORT, be16(dest.port));
    d.push(Dest.ADDR_FAMILY, u16(af(family)));
    if ('weight' in dest) {
      d.push(Dest.FWD_METHOD, u32(FORWARD.indexOf(dest.forward)));
      d.push(Dest.WEIGHT, u32(dest.weight));
      d.push(Dest.U_THRESH, u32(dest.upperThreshold));
      d.push(Dest.L_THRESH, u32(dest.lowerThreshold));
    }
  });
}

function stream(fill: (out: AttrStream) => void): Uint8Array[] {
  const out = new AttrStream();
  fill(out);
  return out.bufs;
}

/** Payload (after the genl header) of a service command. */
export function servicePayload(service: ServiceKey | ServiceSpec): Uint8Array[] {
  return stream((out) => serviceAttr(out, service));
}

/** Payload of a destination command, or of a destination dump when `dest` is absent. */
export function destPayload(service: ServiceKey, dest?: DestKey | DestSpec): Uint8Array[] {
  return stream((out) => {
    serviceAttr(out, service);
    if (dest) destAttr(out, service.family, dest);
  });
}

function attrMap(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  parseAttributes(buf, (a) => out.set(a.type, a.data));
  return out;
}

function need(attrs: Map<number, Buffer>, type: number, what: string): Buffer {
  const value = attrs.get(type);
  if (!value) throw new Error(`IPVS reply without ${what}`);
  return value;
}

function familyOf(afValue: number): IpvsFamily {
  if (afValue === AF_INET) return 4;
  if (afValue === AF_INET6) return 6;
  throw new Error(`IPVS reply with unknown address family ${afValue}`);
}

function protocolName(n: number): IpvsProtocol {
  const found = (Object.keys(PROTOCOLS) as IpvsProtocol[]).find((p) => PROTOCOLS[p] === n);
  if (!found) throw new Error(`IPVS reply with unknown protocol ${n}`);
  return found;
}

function addressOf(buf: Buffer, family: IpvsFamily): string {
  if (buf.length < (family === 4 ? 4 : INET_ADDR_LEN)) throw new Error(`IPVS reply with a ${buf.length}-byte address`);
  return inetAddrText(family, buf);
}

/** One GET_SERVICE dump message's attributes (after the genl header). */
export function parseService(payload: Buffer): ServiceSpec {
  const svc = attrMap(need(attrMap(payload), CMD_ATTR_SERVICE, 'a service'));
  const family = familyOf(need(svc, Svc.AF, 'an address family').readUInt16LE(0));
  const fwmark = svc.get(Svc.FWMARK);
  const key: ServiceKey = fwmark
    ? { kind: 'fwmark', family, fwmark: fwmark.readUInt32LE(0) }
    : {
        kind: 'address',
        family,
        protocol: protocolName(need(svc, Svc.PROTOCOL, 'a protocol').readUInt16LE(0)),
        address: addressOf(need(svc, Svc.ADDR, 'an address'), family),
        port: need(svc, Svc.PORT, 'a port').readUInt16BE(0),
      };
  return {
    key,
    scheduler: need(svc, Svc.SCHED_NAME, 'a scheduler').toString('latin1').replace(/\0.*$/s, ''),
    flags: need(svc, Svc.FLAGS, 'flags').readUInt32LE(0) & ~IP_VS_SVC_F_HASHED,
    timeout: need(svc, Svc.TIMEOUT, 'a timeout').readUInt32LE(0),
    netmask: family === 6 ? need(svc, Svc.NETMASK, 'a netmask').readUInt32LE(0) : need(svc, Svc.NETMASK, 'a netmask').readUInt32BE(0),
  };
}

/** One GET_DEST dump message's attributes; `family` is the service's, for replies without ADDR_FAMILY. */
export function parseDest(payload: Buffer, family: IpvsFamily): ObservedDest {
  const d = attrMap(need(attrMap(payload), CMD_ATTR_DEST, 'a destination'));
  const destFamily = d.has(Dest.ADDR_FAMILY) ? familyOf(d.get(Dest.ADDR_FAMILY)!.readUInt16LE(0)) : family;
  const n = (type: number, what: string) => need(d, type, what).readUInt32LE(0);
  const forward = FORWARD[n(Dest.FWD_METHOD, 'a forwarding method') & 0x7];
  if (!forward) throw new Error('IPVS reply with an unknown forwarding method');
  return {
    address: addressOf(need(d, Dest.ADDR, 'an address'), destFamily),
    port: need(d, Dest.PORT, 'a port').readUInt16BE(0),
    weight: n(Dest.WEIGHT, 'a weight'),
    forward,
    upperThreshold: n(Dest.U_THRESH, 'an upper threshold'),
    lowerThreshold: n(Dest.L_THRESH, 'a lower threshold'),
    activeConns: n(Dest.ACTIVE_CONNS, 'active connections'),
    inactiveConns: n(Dest.INACT_CONNS, 'inactive connections'),
    persistentConns: n(Dest.PERSIST_CONNS, 'persistent connections'),
  };
}
