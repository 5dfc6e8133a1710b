// IPVS tables as `ipvsadm -Sn` (ipvsadm 1.31) prints them: the text an
// operator compares and `--dry-run` shows. Services sort by firewall mark
// (address services, mark 0, first), family, protocol, address and port;
// real servers by family, address and port; numbers, never names.

import { inetAddrBytes } from './address.js';
import { hostPort, type DestSpec, type ServiceKey, type ServiceSpec } from './types.js';

export interface IpvsTableEntry {
  readonly service: ServiceSpec;
  readonly dests: readonly DestSpec[];
}

const IP_VS_SVC_F_PERSISTENT = 0x0001;
const IP_VS_SVC_F_ONEPACKET = 0x0004;
/** IP_VS_SVC_F_SCHED1..3, in the order ipvsadm lists them. */
const SCHED_FLAGS = [0x0008, 0x0010, 0x0020] as const;
const PROTOCOL_ORDER = { tcp: 6, udp: 17, sctp: 132 } as const;
const PROTOCOL_SWITCH = { tcp: '-t', udp: '-u', sctp: '--sctp-service' } as const;

export function serviceArgs(key: ServiceKey): string {
  if (key.kind === 'fwmark') return `-f ${key.fwmark}${key.family === 6 ? ' -6' : ''}`;
  return `${PROTOCOL_SWITCH[key.protocol]} ${hostPort(key.address, key.port)}`;
}

/** sh and mh name their two flags; every other scheduler's are flag-1..3. */
function schedFlagNames(scheduler: string, flags: number): string[] {
  const named = scheduler === 'sh' || scheduler === 'mh' ? [`${scheduler}-fallback`, `${scheduler}-port`, 'flag-3'] : ['flag-1', 'flag-2', 'flag-3'];
  return SCHED_FLAGS.flatMap((bit, i) => (flags & bit ? [named[i]!] : []));
}

function netmaskText(service: ServiceSpec): string | null {
  if (service.key.family === 6) return service.netmask === 128 ? null : String(service.netmask);
  if (service.netmask >>> 0 === 0xffffffff) return null;
  return [24, 16, 8, 0].map((shift) => (service.netmask >>> shift) & 255).join('.');
}

export function serviceLine(service: ServiceSpec): string {
  const parts = [`-A ${serviceArgs(service.key)} -s ${service.scheduler}`];
  if (service.flags & IP_VS_SVC_F_PERSISTENT) {
    parts.push(`-p ${service.timeout}`);
    const mask = netmaskText(service);
    if (mask !== null) parts.push(`-M ${mask}`);
  }
  if (service.flags & IP_VS_SVC_F_ONEPACKET) parts.push('-o');
  const named = schedFlagNames(service.scheduler, service.flags);
  if (named.length > 0) parts.push(`-b ${named.join(',')}`);
  return parts.join(' ');
}

function forwardArgs(dest: DestSpec): string {
  switch (dest.forward) {
    case 'masq': return '-m';
    case 'route': return '-g';
    // The kernel's default tunnel type; the agent configures no other.
    case 'tunnel': return '-i';
    case 'local': case 'bypass': throw new Error(`ipvsadm has no switch for a ${dest.forward} real server (${hostPort(dest.address, dest.port)})`);
  }
}

export function destLine(key: ServiceKey, dest: DestSpec): string {
  const tunnel = dest.forward === 'tunnel' ? ' --tun-type ipip' : '';
  return `-a ${serviceArgs(key)} -r ${hostPort(dest.address, dest.port)} ${forwardArgs(dest)} -w ${dest.weight}${tunnel}`;
}

function familyOf(text: string): 4 | 6 {
  return text.includes(':') ? 6 : 4;
}

function compareAddress(a: string, b: string): number {
  const fa = familyOf(a);
  const fb = familyOf(b);
  return fa - fb || Buffer.compare(inetAddrBytes(fa, a), inetAddrBytes(fb, b));
}

function compareServices(a: ServiceKey, b: ServiceKey): number {
  const mark = (k: ServiceKey) => (k.kind === 'fwmark' ? k.fwmark : 0);
  const byMark = mark(a) - mark(b) || a.family - b.family;
  if (byMark !== 0 || a.kind === 'fwmark' || b.kind === 'fwmark') return byMark;
  return PROTOCOL_ORDER[a.protocol] - PROTOCOL_ORDER[b.protocol] || compareAddress(a.address, b.address) || a.port - b.port;
}

export function renderIpvsadmSave(table: readonly IpvsTableEntry[]): string {
  const lines: string[] = [];
  for (const { service, dests } of [...table].sort((a, b) => compareServices(a.service.key, b.service.key))) {
    lines.push(serviceLine(service));
    const sorted = [...dests].sort((a, b) => compareAddress(a.address, b.address) || a.port - b.port);
    for (const dest of sorted) lines.push(destLine(service.key, dest));
  }
  return lines.map((line) => `${line}\n`).join('');
}
